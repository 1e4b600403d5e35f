//! Segments turned into spans.

use super::*;
use crate::proxy::error::{ErrorKind, Failure, FailureKind};
use crate::xray::id::{SegmentId, TraceId};
use crate::xray::segment::Http;
use http::HeaderValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use std::sync::Arc;

fn segment(direction: Direction, kind: Kind, status: u16) -> Segment {
    Segment {
        name: Arc::from("front-end"),
        id: SegmentId::parse("00f067aa0ba902b7").expect("id"),
        trace_id: TraceId::parse("1-4bf92f35-77b34da6a3ce929d0e0e4736").expect("root"),
        parent_id: SegmentId::parse("53995c3f42cd8ad8"),
        start_time: 1_700_000_000.25,
        end_time: 1_700_000_000.5,
        kind,
        direction,
        traced: false,
        http: Http {
            method: http::Method::POST,
            scheme: "http",
            host: Some(HeaderValue::from_static("back-end.shop:8080")),
            uri: "/orders/7?secret=1".parse().expect("uri"),
            client_ip: Some("10.0.0.9".parse().expect("ip")),
            x_forwarded_for: false,
            user_agent: Some(HeaderValue::from_static("curl/8")),
            status: Some(status),
            content_length: Some(42),
        },
        failure: None,
        grpc: None,
        tunnel: None,
        subsegments: Vec::new(),
    }
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()
}

fn text(span: &Span, key: &str) -> Option<String> {
    match attr(span, key) {
        Some(Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

#[test]
fn an_inbound_segment_is_a_server_span_with_the_http_conventions() {
    let mut out = Vec::new();
    push_spans(&segment(Direction::Inbound, Kind::Segment, 201), &mut out);
    let [span] = out.as_slice() else { panic!("one span") };
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(span.name, "POST");
    assert_eq!(span.trace_id, hex("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!(span.span_id, hex("00f067aa0ba902b7"));
    assert_eq!(span.parent_span_id, hex("53995c3f42cd8ad8"));
    assert_eq!(
        (span.start_time_unix_nano, span.end_time_unix_nano),
        (1_700_000_000_250_000_000, 1_700_000_000_500_000_000)
    );
    assert_eq!(text(span, "http.request.method").as_deref(), Some("POST"));
    assert_eq!(text(span, "url.path").as_deref(), Some("/orders/7"));
    assert_eq!(text(span, "url.scheme").as_deref(), Some("http"));
    assert_eq!(text(span, "server.address").as_deref(), Some("back-end.shop"));
    assert_eq!(attr(span, "server.port"), Some(&Value::IntValue(8080)));
    assert_eq!(text(span, "client.address").as_deref(), Some("10.0.0.9"));
    assert_eq!(text(span, "user_agent.original").as_deref(), Some("curl/8"));
    assert_eq!(attr(span, "http.response.status_code"), Some(&Value::IntValue(201)));
    assert_eq!(span.status, None);
}

#[test]
fn an_outbound_call_is_one_client_span_named_by_the_id_the_callee_got() {
    let mut out = Vec::new();
    push_spans(&segment(Direction::Outbound, Kind::IndependentSubsegment, 200), &mut out);
    assert_eq!(out[0].kind, SpanKind::Client as i32);
    assert_eq!(text(&out[0], "url.full").as_deref(), Some("http://back-end.shop:8080/orders/7"));

    // A call that started its trace: X-Ray's holding segment is not a span of its own.
    let mut holder = segment(Direction::Outbound, Kind::Segment, 200);
    holder.parent_id = None;
    let mut sub = segment(Direction::Outbound, Kind::EmbeddedSubsegment, 200);
    sub.id = SegmentId::parse("0123456789abcdef").expect("id");
    holder.subsegments.push(sub);
    let mut out = Vec::new();
    push_spans(&holder, &mut out);
    assert_eq!((out.len(), span_count(&holder)), (1, 1));
    assert_eq!(out[0].span_id, hex("0123456789abcdef"));
    assert!(out[0].parent_span_id.is_empty());
}

#[test]
fn faults_and_proxy_failures_are_errors() {
    let mut out = Vec::new();
    push_spans(&segment(Direction::Inbound, Kind::Segment, 503), &mut out);
    assert_eq!(out[0].status.as_ref().map(|s| s.code), Some(StatusCode::Error as i32));
    assert_eq!(text(&out[0], "error.type").as_deref(), Some("503"));

    let mut refused = segment(Direction::Inbound, Kind::Segment, 502);
    refused.failure =
        Some(Failure { kind: FailureKind::Upstream(ErrorKind::ConnectRefused), message: "connection refused".into() });
    push_spans(&refused, &mut out);
    assert_eq!(out[1].status.as_ref().map(|s| s.message.as_str()), Some("connection refused"));
    assert_eq!(text(&out[1], "error.type").as_deref(), Some("ConnectionRefused"));

    push_spans(&segment(Direction::Inbound, Kind::Segment, 404), &mut out);
    assert_eq!(out[2].status, None, "a client error is not the server's");
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}
