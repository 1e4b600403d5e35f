//! Segments turned into spans.

use super::*;
use crate::xray::cause::{ErrorKind, Failure, FailureKind};
use crate::xray::grpc::Grpc;
use crate::xray::id::{SegmentId, TraceId};
use crate::xray::segment::Http;
use crate::xray::tunnel::{Ended, Tunnel};
use http::HeaderValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use std::sync::Arc;

pub(crate) fn segment(direction: Direction, kind: Kind, status: u16) -> Segment {
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
        random_trace_id: false,
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
        trace_state: None,
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
    // Sampled, with a remote parent; the random-trace-id bit only when the trace's id is random.
    assert_eq!(span.flags, 0x301);
    let mut random = segment(Direction::Inbound, Kind::Segment, 201);
    random.random_trace_id = true;
    assert_eq!(one(&random).flags, 0x303);
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
    // The application got the proxy's 502 on the SERVER side, which it answered with.
    assert_eq!(attr(&out[1], "http.response.status_code"), Some(&Value::IntValue(502)));
}

#[test]
fn a_call_the_proxy_answered_for_has_no_response_status() {
    let mut refused = segment(Direction::Outbound, Kind::IndependentSubsegment, 502);
    refused.failure =
        Some(Failure { kind: FailureKind::Upstream(ErrorKind::ConnectRefused), message: "connection refused".into() });
    let span = one(&refused);
    assert_eq!(span.kind, SpanKind::Client as i32);
    assert_eq!(attr(&span, "http.response.status_code"), None, "no response came from the callee");
    assert_eq!(attr(&span, "http.response.body.size"), None);
    assert_eq!(text(&span, "error.type").as_deref(), Some("ConnectionRefused"));
    assert_eq!(span.status.as_ref().map(|s| s.message.as_str()), Some("connection refused"));
}

/// The one span of `seg`.
fn one(seg: &Segment) -> Span {
    let mut out = Vec::new();
    push_spans(seg, &mut out);
    assert_eq!(out.len(), 1);
    out.remove(0)
}

pub(crate) fn grpc_call(direction: Direction, kind: Kind, code: u32, message: Option<&str>) -> Segment {
    let mut seg = segment(direction, kind, 200);
    seg.http.uri = "/shop.v1.Catalog/GetItem".parse().expect("uri");
    seg.grpc = Some(Box::new(Grpc {
        service: "shop.v1.Catalog".into(),
        method: "GetItem".into(),
        status: Some(code),
        message: message.map(Into::into),
        sent: 1,
        received: 0,
    }));
    seg
}

#[test]
fn grpc_calls_follow_the_rpc_conventions_with_their_status_as_the_outcome() {
    let ok = one(&grpc_call(Direction::Inbound, Kind::Segment, 0, None));
    assert_eq!(ok.name, "shop.v1.Catalog/GetItem");
    assert_eq!(text(&ok, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(text(&ok, "rpc.service").as_deref(), Some("shop.v1.Catalog"));
    assert_eq!(text(&ok, "rpc.method").as_deref(), Some("GetItem"));
    assert_eq!(attr(&ok, "rpc.grpc.status_code"), Some(&Value::IntValue(0)));
    assert_eq!((ok.status.as_ref(), text(&ok, "error.type")), (None, None));

    // The server failed: ERROR, whichever side records it, with the status name and its message.
    for (direction, kind) in [(Direction::Inbound, Kind::Segment), (Direction::Outbound, Kind::IndependentSubsegment)] {
        let internal = one(&grpc_call(direction, kind, 13, Some("internal for item 42: 100% sure")));
        let status = internal.status.as_ref().expect("an error");
        assert_eq!(status.code, StatusCode::Error as i32);
        assert_eq!(status.message, "internal for item 42: 100% sure");
        assert_eq!(text(&internal, "error.type").as_deref(), Some("INTERNAL"), "not the HTTP status");
        assert_eq!(attr(&internal, "rpc.grpc.status_code"), Some(&Value::IntValue(13)));
    }

    // The caller's mistake: an error for the CLIENT span only.
    let server = one(&grpc_call(Direction::Inbound, Kind::Segment, 5, Some("no item 42")));
    assert_eq!((server.status.as_ref(), text(&server, "error.type")), (None, None));
    let client = one(&grpc_call(Direction::Outbound, Kind::IndependentSubsegment, 5, Some("no item 42")));
    assert_eq!(client.status.as_ref().map(|s| s.message.as_str()), Some("no item 42"));
    assert_eq!(text(&client, "error.type").as_deref(), Some("NOT_FOUND"));

    // ABORTED is a fault for X-Ray but not among OpenTelemetry's server errors; DEADLINE_EXCEEDED is.
    let aborted = one(&grpc_call(Direction::Inbound, Kind::Segment, 10, None));
    assert_eq!(aborted.status, None);
    let late = one(&grpc_call(Direction::Inbound, Kind::Segment, 4, None));
    assert_eq!(text(&late, "error.type").as_deref(), Some("DEADLINE_EXCEEDED"));
    assert_eq!(late.status.as_ref().map(|s| s.message.as_str()), Some(""));
}

#[test]
fn a_client_error_is_an_error_for_the_client_span() {
    let call = one(&segment(Direction::Outbound, Kind::IndependentSubsegment, 404));
    assert_eq!(call.status.as_ref().map(|s| s.code), Some(StatusCode::Error as i32));
    assert_eq!(text(&call, "error.type").as_deref(), Some("404"));
}

pub(crate) fn tunnel(explicit: bool, host: &'static str) -> Segment {
    let mut sub = segment(Direction::Outbound, Kind::IndependentSubsegment, 200);
    sub.http = Http {
        method: http::Method::CONNECT,
        scheme: "https",
        host: Some(HeaderValue::from_static(host)),
        uri: http::Uri::from_static("/"),
        client_ip: None,
        x_forwarded_for: false,
        user_agent: None,
        status: None,
        content_length: None,
    };
    sub.tunnel = Some(Box::new(Tunnel { explicit, bytes_sent: 517, bytes_received: 4096, ended: Ended::Closed }));
    sub
}

#[test]
fn tunnels_are_per_connection_spans_with_their_bytes_and_no_invented_request() {
    let tls = one(&tunnel(false, "partner.example.com:8443"));
    assert_eq!(tls.name, "TLS");
    assert_eq!(attr(&tls, "http.request.method"), None, "no request was seen inside TLS");
    assert_eq!((attr(&tls, "url.full"), attr(&tls, "http.response.status_code")), (None, None));
    assert_eq!(text(&tls, "server.address").as_deref(), Some("partner.example.com"));
    assert_eq!(attr(&tls, "server.port"), Some(&Value::IntValue(8443)));
    assert_eq!(attr(&tls, "xray_sidecar.tunnel.per_connection"), Some(&Value::BoolValue(true)));
    assert_eq!(text(&tls, "xray_sidecar.tunnel.opened_by").as_deref(), Some("interception"));
    assert_eq!(attr(&tls, "xray_sidecar.tunnel.bytes_sent"), Some(&Value::IntValue(517)));
    assert_eq!(attr(&tls, "xray_sidecar.tunnel.bytes_received"), Some(&Value::IntValue(4096)));
    assert_eq!(text(&tls, "xray_sidecar.tunnel.ended").as_deref(), Some("closed"));
    assert_eq!((attr(&tls, "rpc.system"), tls.status.as_ref()), (None, None));

    let connect = one(&tunnel(true, "[2001:db8::1]:443"));
    assert_eq!(connect.name, "CONNECT");
    assert_eq!(text(&connect, "http.request.method").as_deref(), Some("CONNECT"));
    assert_eq!(text(&connect, "server.address").as_deref(), Some("2001:db8::1"));
    assert_eq!(text(&connect, "xray_sidecar.tunnel.opened_by").as_deref(), Some("connect"));

    let mut broken = tunnel(true, "partner.example.com:443");
    broken.failure =
        Some(Failure { kind: FailureKind::Upstream(ErrorKind::ConnectRefused), message: "connection refused".into() });
    let broken = one(&broken);
    assert_eq!(text(&broken, "error.type").as_deref(), Some("ConnectionRefused"));
    assert_eq!(broken.status.as_ref().map(|s| s.message.as_str()), Some("connection refused"));
}

#[test]
fn calls_to_aws_endpoints_carry_the_aws_api_attributes() {
    let aws = one(&tunnel(false, "dynamodb.us-east-1.amazonaws.com:443"));
    assert_eq!(aws.name, "DynamoDB");
    assert_eq!(text(&aws, "rpc.system").as_deref(), Some("aws-api"));
    assert_eq!(text(&aws, "rpc.service").as_deref(), Some("DynamoDB"));
    assert_eq!(text(&aws, "cloud.region").as_deref(), Some("us-east-1"));

    // A plain HTTP call is typed the same way, and keeps its HTTP attributes.
    let mut call = segment(Direction::Outbound, Kind::IndependentSubsegment, 200);
    call.http.host = Some(HeaderValue::from_static("sqs.eu-west-1.amazonaws.com"));
    let call = one(&call);
    assert_eq!(call.name, "SQS");
    assert_eq!(
        (text(&call, "rpc.system").as_deref(), text(&call, "cloud.region").as_deref()),
        (Some("aws-api"), Some("eu-west-1"))
    );
    assert_eq!(text(&call, "http.request.method").as_deref(), Some("POST"));

    // This service's own segment is never an AWS call, whatever Host it was asked for.
    let mut own = segment(Direction::Inbound, Kind::Segment, 200);
    own.http.host = Some(HeaderValue::from_static("sqs.eu-west-1.amazonaws.com"));
    assert_eq!(attr(&one(&own), "rpc.system"), None);
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}
