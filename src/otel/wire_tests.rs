//! The hand-written export request against prost's encoding of the same spans.

use super::*;
use crate::otel::span::span_count;
use crate::otel::span::tests::{grpc_call, segment, tunnel};
use crate::xray::cause::{ErrorKind, Failure, FailureKind};
use crate::xray::segment::{Direction, Kind};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

fn resource() -> Resource {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..KeyValue::default()
    };
    Resource {
        attributes: vec![kv("service.name", "front-end"), kv("k8s.namespace.name", "shop")],
        ..Resource::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope { name: "xray-sidecar".into(), version: "0.1.0".into(), ..InstrumentationScope::default() }
}

/// Every kind of span the fixtures make: server and client, HTTP errors, proxy failures, gRPC
/// outcomes, tunnels, AWS calls, a call that started its trace (no parent), negative and empty
/// values.
fn segments() -> Vec<Segment> {
    let mut out = vec![
        segment(Direction::Inbound, Kind::Segment, 201),
        segment(Direction::Inbound, Kind::Segment, 503),
        segment(Direction::Outbound, Kind::IndependentSubsegment, 404),
        grpc_call(Direction::Inbound, Kind::Segment, 0, None),
        grpc_call(Direction::Inbound, Kind::Segment, 13, Some("internal: 100% sure")),
        grpc_call(Direction::Outbound, Kind::IndependentSubsegment, 5, Some("")),
        tunnel(false, "partner.example.com:8443"),
        tunnel(true, "[2001:db8::1]:443"),
        tunnel(false, "dynamodb.us-east-1.amazonaws.com:443"),
    ];
    let mut refused = segment(Direction::Outbound, Kind::IndependentSubsegment, 502);
    refused.http.status = None;
    refused.http.content_length = None;
    refused.http.user_agent = None;
    refused.failure =
        Some(Failure { kind: FailureKind::Upstream(ErrorKind::ConnectRefused), message: "connection refused".into() });
    out.push(refused);
    // A call that started a trace: its holder segment stands for one CLIENT span per subsegment.
    let mut holder = segment(Direction::Outbound, Kind::Segment, 200);
    holder.parent_id = None;
    holder.subsegments = vec![
        segment(Direction::Outbound, Kind::EmbeddedSubsegment, 200),
        segment(Direction::Outbound, Kind::EmbeddedSubsegment, 500),
    ];
    out.push(holder);
    let mut odd = segment(Direction::Inbound, Kind::Segment, 200);
    odd.start_time = 0.0;
    odd.http.content_length = Some(u64::MAX);
    odd.http.host = None;
    out.push(odd);
    out
}

#[test]
fn the_request_is_byte_for_byte_what_prost_writes() {
    let all = segments();
    let envelope = Envelope::new(resource(), scope());
    let (mut out, mut scratch) = (Vec::new(), Scratch::default());
    // One span at a time, then all of them, then again with the buffers reused.
    for seg in &all {
        let count = request(&envelope, std::slice::from_ref(seg), &mut out, &mut scratch);
        assert_eq!(count, span_count(seg));
        assert_eq!(out, by_prost(resource(), scope(), std::slice::from_ref(seg)), "{seg:?}");
    }
    for _ in 0..2 {
        let count = request(&envelope, &all, &mut out, &mut scratch);
        assert_eq!(count, all.iter().map(span_count).sum::<usize>());
        assert_eq!(out, by_prost(resource(), scope(), &all));
    }
    // And nothing at all is still a well-formed request.
    request::<Segment>(&envelope, &[], &mut out, &mut scratch);
    assert_eq!(out, by_prost(resource(), scope(), &[]));
}

#[test]
fn varint_lengths_match_what_is_written() {
    for v in [0, 1, 127, 128, 16_383, 16_384, u64::from(u32::MAX), i64::MIN as u64, u64::MAX] {
        let mut out = Vec::new();
        varint(&mut out, v);
        assert_eq!(out.len(), varint_len(v), "{v}");
        assert_eq!(prost::encoding::decode_varint(&mut out.as_slice()).expect("varint"), v);
    }
}
