//! Segments as OpenTelemetry spans, per the HTTP semantic conventions (and the RPC ones for gRPC and
//! AWS calls): what the OTLP exporter sends. Pure: the exporter task calls it, never the request path.
//!
//! What a span says is decided once, in [`describe`], which hands the attributes to an
//! [`Attributes`] sink and returns the rest as a [`Head`]: [`push_spans`] builds
//! `opentelemetry-proto` structures from them, and [`super::wire`] writes the same protobuf bytes
//! straight into the export's buffer, without the structures' allocations.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use std::borrow::Cow;

use crate::xray::cause::{Failure, FailureKind};
use crate::xray::document::with_ip_text;
use crate::xray::grpc::{self, Grpc};
use crate::xray::segment::{Direction, Kind, Segment};
use crate::xray::tunnel::Tunnel;

/// W3C trace flags: sampled (everything exported was sampled), and random-trace-id (Level 2).
const SAMPLED: u32 = 0x01;
const RANDOM_TRACE_ID: u32 = 0x02;
/// OTLP span flags: whether the parent is known to be remote, and that it is.
const HAS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// The spans one finished segment stands for, appended to `out` as `opentelemetry-proto`
/// structures: the reference the exporter's own encoding ([`super::wire`]) is tested against.
///
/// An inbound segment is a SERVER span. An outbound call is one CLIENT span whose id is the remote
/// subsegment's, the id the callee was given as its parent; when the call started a trace, the
/// segment that holds the subsegment in X-Ray adds nothing a span would carry, so the CLIENT span
/// becomes the trace's root.
pub fn push_spans(seg: &Segment, out: &mut Vec<Span>) {
    each_span(seg, |seg, parent, kind| out.push(span(seg, parent, kind)));
}

/// Calls `f` with each span's segment, parent span id and kind, as [`push_spans`] describes them.
pub fn each_span(seg: &Segment, mut f: impl FnMut(&Segment, Option<[u8; 8]>, SpanKind)) {
    let parent = seg.parent_id.map(|p| p.to_bytes());
    match (seg.direction, seg.kind) {
        (Direction::Inbound, _) => f(seg, parent, SpanKind::Server),
        (Direction::Outbound, Kind::Segment) => {
            for sub in &seg.subsegments {
                f(sub, parent, SpanKind::Client);
            }
        }
        (Direction::Outbound, _) => f(seg, parent, SpanKind::Client),
    }
}

/// How many spans [`push_spans`] makes of `seg`.
pub fn span_count(seg: &Segment) -> usize {
    match (seg.direction, seg.kind) {
        (Direction::Outbound, Kind::Segment) => seg.subsegments.len(),
        _ => 1,
    }
}

/// Where a span's attributes go, in order.
pub trait Attributes {
    /// A string attribute.
    fn string(&mut self, key: &'static str, value: &str);
    /// An integer attribute.
    fn int(&mut self, key: &'static str, value: i64);
    /// A boolean attribute.
    fn boolean(&mut self, key: &'static str, value: bool);
}

impl Attributes for Vec<KeyValue> {
    fn string(&mut self, key: &'static str, value: &str) {
        self.push(string(key, value));
    }
    fn int(&mut self, key: &'static str, value: i64) {
        self.push(int(key, value));
    }
    fn boolean(&mut self, key: &'static str, value: bool) {
        self.push(boolean(key, value));
    }
}

/// What a span says besides its attributes.
#[derive(Debug)]
pub struct Head<'a> {
    /// The trace id, as W3C writes it.
    pub trace_id: [u8; 16],
    /// The span's id: the segment's or subsegment's.
    pub span_id: [u8; 8],
    /// The W3C `tracestate` the request carried on; empty without one.
    pub trace_state: &'a str,
    /// The parent span's id; `None` for a trace's root.
    pub parent: Option<[u8; 8]>,
    /// W3C trace flags and OTLP's remote-parent bits.
    pub flags: u32,
    /// The span's name.
    pub name: Cow<'a, str>,
    /// SERVER or CLIENT.
    pub kind: SpanKind,
    /// Start and end, in nanoseconds since the Unix epoch.
    pub start: u64,
    pub end: u64,
    /// `Some(message)` when the span is an error (status code ERROR).
    pub error: Option<Cow<'a, str>>,
}

fn span(seg: &Segment, parent: Option<[u8; 8]>, kind: SpanKind) -> Span {
    let mut attributes = Vec::with_capacity(16);
    let head = describe(seg, parent, kind, &mut attributes);
    Span {
        trace_id: head.trace_id.to_vec(),
        span_id: head.span_id.to_vec(),
        trace_state: head.trace_state.to_owned(),
        parent_span_id: head.parent.map(|p| p.to_vec()).unwrap_or_default(),
        flags: head.flags,
        name: head.name.into_owned(),
        kind: head.kind as i32,
        start_time_unix_nano: head.start,
        end_time_unix_nano: head.end,
        attributes,
        status: head.error.map(|m| Status { message: m.into_owned(), code: StatusCode::Error as i32 }),
        ..Span::default()
    }
}

/// The span `seg` stands for, with `parent` and `kind`: its attributes go to `attributes`.
pub fn describe<'a>(
    seg: &'a Segment,
    parent: Option<[u8; 8]>,
    kind: SpanKind,
    attributes: &mut impl Attributes,
) -> Head<'a> {
    let host = seg.http.host.as_ref().and_then(|h| h.to_str().ok());
    let (address, port) = host.map(split_host_port).unwrap_or((None, None));
    if let Some(a) = address {
        attributes.string("server.address", a);
    }
    if let Some(p) = port {
        attributes.int("server.port", i64::from(p));
    }
    match &seg.tunnel {
        Some(t) => tunnel_attributes(seg, t, attributes),
        None => http_attributes(seg, host, kind, attributes),
    }
    let name = if let Some(g) = &seg.grpc {
        rpc_grpc(g, attributes);
        Cow::Owned(format!("{}/{}", g.service, g.method))
    } else if let Some(aws) = seg.aws() {
        attributes.string("rpc.system", "aws-api");
        attributes.string("rpc.service", &aws.name);
        if let Some(region) = &aws.region {
            attributes.string("cloud.region", region);
        }
        Cow::Owned(aws.name)
    } else {
        match &seg.tunnel {
            Some(t) if !t.explicit => Cow::Borrowed("TLS"),
            _ => Cow::Borrowed(seg.http.method.as_str()),
        }
    };
    let error = outcome(seg, kind, attributes);
    let random = if seg.random_trace_id { RANDOM_TRACE_ID } else { 0 };
    let flags = SAMPLED | random | if parent.is_some() { HAS_REMOTE | IS_REMOTE } else { HAS_REMOTE };
    Head {
        trace_id: seg.trace_id.to_bytes(),
        span_id: seg.id.to_bytes(),
        trace_state: seg.trace_state.as_deref().unwrap_or_default(),
        parent,
        flags,
        name,
        kind,
        start: nanos(seg.start_time),
        end: nanos(seg.end_time),
        error,
    }
}

/// The HTTP request and response, per the HTTP semantic conventions.
fn http_attributes(seg: &Segment, host: Option<&str>, kind: SpanKind, attributes: &mut impl Attributes) {
    let http = &seg.http;
    attributes.string("http.request.method", http.method.as_str());
    attributes.string("url.scheme", http.scheme);
    match kind {
        SpanKind::Client => {
            let full = format!("{}://{}{}", http.scheme, host.unwrap_or_default(), http.uri.path());
            attributes.string("url.full", &full);
        }
        _ => attributes.string("url.path", http.uri.path()),
    }
    if let Some(ip) = http.client_ip {
        with_ip_text(ip, |text| attributes.string("client.address", text));
    }
    if let Some(ua) = http.user_agent_text() {
        attributes.string("user_agent.original", &ua);
    }
    // A CLIENT span's response is the callee's: none came when the proxy answered for it (refused,
    // reset, timed out), and HTTP client spans then say no status (the application still got the
    // proxy's 502 or 504, or a gRPC call its status, which the SERVER span of an inbound request
    // does record).
    let answered_by_proxy =
        kind == SpanKind::Client && matches!(seg.failure, Some(Failure { kind: FailureKind::Upstream(_), .. }));
    if let Some(status) = http.status.filter(|_| !answered_by_proxy) {
        attributes.int("http.response.status_code", i64::from(status));
    }
    if let Some(len) = http.content_length.filter(|_| !answered_by_proxy) {
        attributes.int("http.response.body.size", i64::try_from(len).unwrap_or(i64::MAX));
    }
}

/// A tunnel: one TCP connection whose requests the proxy cannot read. Only a `CONNECT` was an HTTP
/// request; an intercepted TLS connection has no method, as its X-Ray document has none.
fn tunnel_attributes(seg: &Segment, t: &Tunnel, attributes: &mut impl Attributes) {
    if t.explicit {
        attributes.string("http.request.method", seg.http.method.as_str());
    }
    attributes.string("network.transport", "tcp");
    // A record per connection, not per request: whoever counts spans must know.
    attributes.boolean("xray_sidecar.tunnel.per_connection", true);
    attributes.string("xray_sidecar.tunnel.opened_by", if t.explicit { "connect" } else { "interception" });
    attributes.int("xray_sidecar.tunnel.bytes_sent", i64::try_from(t.bytes_sent).unwrap_or(i64::MAX));
    attributes.int("xray_sidecar.tunnel.bytes_received", i64::try_from(t.bytes_received).unwrap_or(i64::MAX));
    attributes.string("xray_sidecar.tunnel.ended", t.ended.as_str());
}

/// The RPC conventions for a gRPC call.
fn rpc_grpc(g: &Grpc, attributes: &mut impl Attributes) {
    attributes.string("rpc.system", "grpc");
    attributes.string("rpc.service", &g.service);
    attributes.string("rpc.method", &g.method);
    if let Some(code) = g.status {
        attributes.int("rpc.grpc.status_code", i64::from(code));
    }
}

/// Whether the span is an error, with its status message (`error.type` goes with it): the proxy's own failure first (it says
/// most), then a gRPC call's status, then the HTTP status.
///
/// gRPC, per its semantic conventions: a CLIENT span is an error for any status but OK; a SERVER
/// span only for the codes that mean the server failed (a caller's `NOT_FOUND` is not the server's
/// fault). HTTP likewise: 5xx on both sides, 4xx on the CLIENT side only.
fn outcome<'a>(seg: &'a Segment, kind: SpanKind, attributes: &mut impl Attributes) -> Option<Cow<'a, str>> {
    if let Some(f) = &seg.failure {
        attributes.string("error.type", f.kind.exception_type());
        return seg.flags().fault.then_some(Cow::Borrowed(&*f.message));
    }
    if let Some((g, code)) = seg.grpc.as_ref().and_then(|g| Some((g, g.status?))) {
        let failed = match kind {
            SpanKind::Server => grpc::server_failed(code),
            _ => code != 0,
        };
        if !failed {
            return None;
        }
        attributes.string("error.type", grpc::status_name(code));
        return Some(Cow::Borrowed(g.message.as_deref().unwrap_or_default()));
    }
    let status = seg.http.status?;
    let failed = status >= 500 || (kind == SpanKind::Client && status >= 400);
    if !failed {
        return None;
    }
    attributes.string("error.type", &status.to_string());
    Some(Cow::Borrowed(""))
}

/// `host:port`, `[v6]:port` or a bare host.
fn split_host_port(host: &str) -> (Option<&str>, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        let (addr, tail) = rest.split_once(']').unwrap_or((rest, ""));
        return (Some(addr), tail.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (Some(h), p.parse().ok()),
        _ => (Some(host), None),
    }
}

fn nanos(epoch_secs: f64) -> u64 {
    // Microsecond precision is what the segment kept; rounding there avoids 0.999... artefacts.
    let micros = (epoch_secs * 1e6).round();
    if micros.is_finite() && micros > 0.0 { (micros as u64).saturating_mul(1000) } else { 0 }
}

/// A string attribute.
pub fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) }),
        ..KeyValue::default()
    }
}

fn boolean(key: &str, value: bool) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::BoolValue(value)) }),
        ..KeyValue::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }),
        ..KeyValue::default()
    }
}

#[cfg(test)]
#[path = "span_tests.rs"]
pub(crate) mod tests;
