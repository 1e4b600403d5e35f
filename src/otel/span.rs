//! Segments as OpenTelemetry spans, per the HTTP semantic conventions: what the OTLP exporter sends.
//! Pure: the exporter task calls it, never the request path.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};

use crate::xray::segment::{Direction, Kind, Segment};

/// W3C trace flags: sampled (everything exported was sampled).
const SAMPLED: u32 = 0x01;
/// OTLP span flags: whether the parent is known to be remote, and that it is.
const HAS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// The spans one finished segment stands for, appended to `out`.
///
/// An inbound segment is a SERVER span. An outbound call is one CLIENT span whose id is the remote
/// subsegment's, the id the callee was given as its parent; when the call started a trace, the
/// segment that holds the subsegment in X-Ray adds nothing a span would carry, so the CLIENT span
/// becomes the trace's root.
pub fn push_spans(seg: &Segment, out: &mut Vec<Span>) {
    match (seg.direction, seg.kind) {
        (Direction::Inbound, _) => out.push(span(seg, seg.parent_id.map(|p| p.to_bytes()), SpanKind::Server)),
        (Direction::Outbound, Kind::Segment) => {
            for sub in &seg.subsegments {
                out.push(span(sub, seg.parent_id.map(|p| p.to_bytes()), SpanKind::Client));
            }
        }
        (Direction::Outbound, _) => out.push(span(seg, seg.parent_id.map(|p| p.to_bytes()), SpanKind::Client)),
    }
}

/// How many spans [`push_spans`] makes of `seg`.
pub fn span_count(seg: &Segment) -> usize {
    match (seg.direction, seg.kind) {
        (Direction::Outbound, Kind::Segment) => seg.subsegments.len(),
        _ => 1,
    }
}

fn span(seg: &Segment, parent: Option<[u8; 8]>, kind: SpanKind) -> Span {
    let http = &seg.http;
    let mut attributes = Vec::with_capacity(10);
    attributes.push(string("http.request.method", http.method.as_str()));
    attributes.push(string("url.scheme", http.scheme));
    let host = http.host.as_ref().and_then(|h| h.to_str().ok());
    let (address, port) = host.map(split_host_port).unwrap_or((None, None));
    if let Some(a) = address {
        attributes.push(string("server.address", a));
    }
    if let Some(p) = port {
        attributes.push(int("server.port", i64::from(p)));
    }
    match kind {
        SpanKind::Client => {
            let full = format!("{}://{}{}", http.scheme, host.unwrap_or_default(), http.uri.path());
            attributes.push(string("url.full", &full));
        }
        _ => attributes.push(string("url.path", http.uri.path())),
    }
    if let Some(ip) = http.client_ip {
        attributes.push(string("client.address", &ip.to_string()));
    }
    if let Some(ua) = http.user_agent.as_ref().and_then(|u| u.to_str().ok()) {
        attributes.push(string("user_agent.original", ua));
    }
    if let Some(status) = http.status {
        attributes.push(int("http.response.status_code", i64::from(status)));
    }
    if let Some(len) = http.content_length {
        attributes.push(int("http.response.body.size", i64::try_from(len).unwrap_or(i64::MAX)));
    }
    let fault = seg.flags().fault;
    if let Some(f) = &seg.failure {
        attributes.push(string("error.type", f.kind.exception_type()));
    } else if fault {
        attributes.push(string("error.type", &http.status.unwrap_or(500).to_string()));
    }
    let status = fault.then(|| Status {
        message: seg.failure.as_ref().map(|f| f.message.to_string()).unwrap_or_default(),
        code: StatusCode::Error as i32,
    });
    let flags = SAMPLED | if parent.is_some() { HAS_REMOTE | IS_REMOTE } else { HAS_REMOTE };
    Span {
        trace_id: seg.trace_id.to_bytes().to_vec(),
        span_id: seg.id.to_bytes().to_vec(),
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        flags,
        name: http.method.as_str().to_owned(),
        kind: kind as i32,
        start_time_unix_nano: nanos(seg.start_time),
        end_time_unix_nano: nanos(seg.end_time),
        attributes,
        status,
        ..Span::default()
    }
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

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }),
        ..KeyValue::default()
    }
}

#[cfg(test)]
#[path = "span_tests.rs"]
mod tests;
