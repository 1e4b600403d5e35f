//! Property test: any segment the crate's own types can hold (names through `sanitize_name`, any
//! method, host, path, user agent, status, failure, tunnel, gRPC call, environment and embedded
//! subsegments) serialises to a document AWS's segment schema accepts, and the emitter's
//! hand-written JSON (`Document::write`) is serde's, byte for byte, as the OTLP exporter's
//! hand-written export request (`otel::wire`) is prost's. The documents of all cases are validated
//! in one batch (`support::validate`, the `jsonschema` package).
#![allow(clippy::unwrap_used)]

mod support;

use http::{HeaderValue, Method, Uri};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use support::ids::{segment_id, trace_id};
use xray_sidecar::otel::wire::{self, Envelope, Scratch};
use xray_sidecar::proxy::error::{ErrorKind, Failure, FailureKind};
use xray_sidecar::xray::document::Document;
use xray_sidecar::xray::grpc::Grpc;
use xray_sidecar::xray::segment::{Direction, Environment, Http, Kind, Segment, sanitize_name};
use xray_sidecar::xray::tunnel::{Ended, Tunnel};

const CASES: u32 = 400;

/// Any text, long ones included: control characters, quotes, non-ASCII.
fn any_text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..max).prop_map(|v| v.into_iter().collect())
}

/// A header value as a client may send one: visible ASCII, spaces, tabs and obs-text bytes.
fn header_value(max: usize) -> BoxedStrategy<HeaderValue> {
    let byte = prop_oneof![0x20u8..0x7f, Just(b'\t'), 0x80u8..=0xff];
    let any = proptest::collection::vec(byte, 0..max);
    // Printable ASCII, as clients send, around the schema's 250-character cut: the documents write
    // it by a path of its own. With quotes and backslashes, or only what names and agents hold
    // (`@` included, where a Host header's credentials end).
    let printable = proptest::collection::vec(0x20u8..0x7f, 0..max);
    let plain =
        proptest::collection::vec(prop_oneof![b'a'..=b'z', b'0'..=b'9', Just(b'@'), Just(b'.'), Just(b' ')], 0..max);
    // Boxed: the nested strategy types otherwise overflow the test thread's stack in debug builds.
    prop_oneof![any, printable, plain].prop_map(|b| HeaderValue::from_bytes(&b).unwrap()).boxed()
}

/// A method token: the standard ones, or an extension of any length.
fn method() -> impl Strategy<Value = Method> {
    let token = "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,300}".prop_map(|t| Method::from_bytes(t.as_bytes()).unwrap());
    prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::CONNECT), token]
}

/// A Host header: anything a client may send, or an AWS endpoint (whose segments name the service).
fn host() -> impl Strategy<Value = HeaderValue> {
    let aws =
        ("[a-z0-9-]{1,30}", proptest::option::of("[a-z]{2}-[a-z]{4,9}-[0-9]"), proptest::option::of(":[0-9]{1,5}"))
            .prop_map(|(service, region, port)| {
                let region = region.map(|r| format!(".{r}")).unwrap_or_default();
                let host = format!("{service}{region}.amazonaws.com{}", port.unwrap_or_default());
                HeaderValue::from_str(&host).unwrap()
            });
    prop_oneof![3 => header_value(300), 1 => aws]
}

/// An origin-form or absolute-form target, long ones included.
fn uri() -> impl Strategy<Value = Uri> {
    let path = "(/[A-Za-z0-9._~!$&'()*+,;=:@%-]{0,80}){0,6}(\\?[A-Za-z0-9=&%]{0,40})?";
    let host = "[a-z0-9.-]{1,60}(:[0-9]{1,5})?";
    prop_oneof![
        path.prop_map(|p| format!("/{p}")),
        (host, path).prop_map(|(h, p)| format!("http://{h}/{p}")),
        Just("*".to_owned()),
    ]
    .prop_filter_map("not a URI", |s| s.parse().ok())
}

fn http() -> impl Strategy<Value = Http> {
    (
        method(),
        prop_oneof![Just("http"), Just("https")],
        proptest::option::of(host()),
        uri(),
        proptest::option::of(any::<IpAddr>()),
        any::<bool>(),
        proptest::option::of(header_value(400)),
        proptest::option::of(100u16..1000),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(method, scheme, host, uri, client_ip, x_forwarded_for, user_agent, status, content_length)| {
            Http { method, scheme, host, uri, client_ip, x_forwarded_for, user_agent, status, content_length }
        })
}

fn failure() -> impl Strategy<Value = Failure> {
    let kinds = [
        ErrorKind::ConnectRefused,
        ErrorKind::ConnectTimeout,
        ErrorKind::ConnectFailed,
        ErrorKind::ResponseTimeout,
        ErrorKind::Reset,
        ErrorKind::Protocol,
        ErrorKind::NoRoute,
        ErrorKind::Loop,
        ErrorKind::Forbidden,
        ErrorKind::BadRequest,
        ErrorKind::MethodNotAllowed,
        ErrorKind::HeadTooLarge,
        ErrorKind::ClientLeft,
        ErrorKind::BodyTimeout,
    ];
    let kind = prop_oneof![
        proptest::sample::select(kinds.to_vec()).prop_map(FailureKind::Upstream),
        Just(FailureKind::UpstreamBody),
        Just(FailureKind::ClientAborted),
        Just(FailureKind::TunnelBroken),
        (0u32..40, any::<bool>()).prop_map(|(code, remote)| FailureKind::Grpc { code, remote }),
    ];
    (kind, any_text(300)).prop_map(|(kind, message)| Failure { kind, message: message.into() })
}

fn tunnel() -> impl Strategy<Value = Tunnel> {
    let ended = proptest::sample::select(vec![Ended::Closed, Ended::Broken, Ended::ConnectFailed]);
    (any::<bool>(), any::<u64>(), any::<u64>(), ended).prop_map(|(explicit, bytes_sent, bytes_received, ended)| {
        Tunnel { explicit, bytes_sent, bytes_received, ended }
    })
}

fn grpc() -> impl Strategy<Value = Grpc> {
    (
        any_text(1200),
        any_text(1200),
        proptest::option::of(0u32..40),
        proptest::option::of(any_text(300)),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(service, method, status, message, sent, received)| Grpc {
            service,
            method,
            status,
            message,
            sent,
            received,
        })
}

/// One document of `kind`, without subsegments.
fn segment(kind: Kind) -> impl Strategy<Value = Segment> {
    let times = (0.0f64..4.0e9, 0.0f64..3600.0);
    (
        (any_text(250), segment_id(), trace_id(), proptest::option::of(segment_id()), times),
        (prop_oneof![Just(Direction::Inbound), Just(Direction::Outbound)], any::<(bool, bool)>(), http()),
        (
            proptest::option::of(failure()),
            proptest::option::of(tunnel()),
            proptest::option::of(grpc()),
            proptest::option::of(trace_state()),
        ),
    )
        .prop_map(
            move |(
                (name, id, trace_id, parent_id, (start, took)),
                (direction, (traced, random_trace_id), http),
                (failure, tunnel, grpc, trace_state),
            )| {
                Segment {
                    name: Arc::from(sanitize_name(&name)),
                    id,
                    trace_id,
                    parent_id,
                    start_time: start,
                    end_time: start + took,
                    kind,
                    direction,
                    traced,
                    random_trace_id,
                    http,
                    failure,
                    subsegments: Vec::new(),
                    tunnel: tunnel.map(Box::new),
                    grpc: grpc.map(Box::new),
                    trace_state,
                }
            },
        )
}

/// A W3C `tracestate` as a caller may send it (the proxy passes it on as it came).
fn trace_state() -> impl Strategy<Value = Box<str>> {
    "[a-z0-9_*/@=, -]{0,64}".prop_map(String::into_boxed_str)
}

/// A segment with up to three embedded subsegments, or an independent subsegment.
fn document() -> impl Strategy<Value = Segment> {
    let parent = (segment(Kind::Segment), proptest::collection::vec(segment(Kind::EmbeddedSubsegment), 0..3)).prop_map(
        |(mut s, subs)| {
            s.subsegments = subs;
            s
        },
    );
    prop_oneof![3 => parent, 1 => segment(Kind::IndependentSubsegment)]
}

fn environment() -> impl Strategy<Value = Environment> {
    (any::<bool>(), proptest::collection::vec(proptest::option::of(any_text(1200)), 4)).prop_map(|(eks, mut v)| {
        Environment {
            origin: eks.then_some("AWS::EKS::Container"),
            cluster_name: v[0].take(),
            pod: v[1].take(),
            container_id: v[2].take(),
            namespace: v[3].take(),
            ..Environment::default()
        }
    })
}

/// The document with every exception's id (random, made as it is written) set to zeros.
fn same_ids(doc: &str) -> String {
    const KEY: &str = "\"exceptions\":[{\"id\":\"";
    let (mut out, mut rest) = (String::new(), doc);
    while let Some(i) = rest.find(KEY) {
        out.push_str(&rest[..i + KEY.len()]);
        out.push_str("0000000000000000");
        rest = &rest[i + KEY.len() + 16..];
    }
    out.push_str(rest);
    out
}

fn resource() -> Resource {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..KeyValue::default()
    };
    Resource { attributes: vec![kv("service.name", "front-end")], ..Resource::default() }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope { name: "xray-sidecar".into(), ..InstrumentationScope::default() }
}

#[test]
fn every_segment_the_types_can_hold_is_a_valid_document() {
    let docs = Mutex::new(Vec::new());
    let envelope = Envelope::new(resource(), scope());
    let otlp = Mutex::new((Vec::new(), Scratch::default()));
    let mut runner = TestRunner::new(Config { cases: CASES, ..Config::default() });
    let outcome = runner.run(&(document(), environment()), |(segment, env)| {
        // What the emitter sends is written by hand; it must be serde's document, byte for byte.
        let document = Document { segment: &segment, env: &env };
        let mut written = Vec::new();
        document.write(&mut written).unwrap();
        let text = serde_json::to_string(&document).unwrap();
        prop_assert_eq!(same_ids(&String::from_utf8(written).unwrap()), same_ids(&text));
        // So is the OTLP exporter's export request: it must be prost's, byte for byte.
        let (out, scratch) = &mut *otlp.lock().unwrap();
        wire::request(&envelope, std::slice::from_ref(&segment), out, scratch);
        let by_prost = wire::by_prost(resource(), scope(), std::slice::from_ref(&segment));
        prop_assert_eq!(&*out, &by_prost);
        let doc: Value = serde_json::from_str(&text).unwrap();
        // What the schema cannot say: every embedded subsegment is there.
        prop_assert_eq!(doc["subsegments"].as_array().map_or(0, Vec::len), segment.subsegments.len());
        docs.lock().unwrap().push(doc);
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    let docs = docs.into_inner().unwrap();
    assert_eq!(docs.len(), CASES as usize);
    support::validate(&docs);
}
