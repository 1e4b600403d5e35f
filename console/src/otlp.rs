//! OTLP/HTTP trace ingest (`POST /v1/traces`, binary protobuf or OTLP's JSON encoding, which
//! OpenTelemetry JS's default HTTP exporter sends): spans from OpenTelemetry-only services become
//! segment documents, so they appear in the service map, the trace list and the timelines beside
//! what arrives over UDP. The answer is in the request's encoding.
//!
//! SERVER (and other local-root) spans become segments named after the resource's `service.name`;
//! CLIENT and PRODUCER spans become remote subsegments named after the downstream they called
//! (`peer.service`, `server.address` or the older attributes, see `remote_name`), which draws an
//! edge to the service whose span names them as parent; INTERNAL spans become local subsegments.

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use prost::Message;
use serde_json::{Map, Value, json};
use std::sync::atomic::Ordering;

use super::api::{error, respond};
use super::datagram::Received;
use super::document::Document;
use super::state::State;
use super::store::Inserted;

/// The largest export request read; OpenTelemetry SDKs send a few hundred KiB at most.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Answers `POST /v1/traces`: stores the spans' documents and says how many were rejected.
pub async fn ingest<B>(state: &State, req: Request<B>) -> Response<Full<Bytes>>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let Some(format) = Format::from_content_type(&header(CONTENT_TYPE)) else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send OTLP/HTTP protobuf (application/x-protobuf) or JSON (application/json)",
        );
    };
    let Some(encoding) = Encoding::from_header(&header(CONTENT_ENCODING)) else {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the body uncompressed, gzip or deflate");
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(StatusCode::PAYLOAD_TOO_LARGE, &format!("cannot read the body: {e}")),
    };
    let body = match encoding.decode(body) {
        Ok(b) => b,
        Err(e) => {
            state.count_malformed(e.to_string());
            let status =
                if matches!(e, OtlpError::TooLarge) { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::BAD_REQUEST };
            return error(status, &e.to_string());
        }
    };
    let (docs, mut rejected) = match format.decode(&body).map(|request| documents(&request)) {
        Ok(d) => d,
        Err(e) => {
            state.count_malformed(e.to_string());
            return error(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    for value in docs {
        let Ok(document) = Document::parse(&value) else {
            rejected += 1;
            continue;
        };
        match state.store().insert(Received { text: value.to_string(), document }) {
            Inserted::TraceFull => rejected += 1,
            _ => {
                state.accepted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let partial_success = (rejected > 0).then(|| ExportTracePartialSuccess {
        rejected_spans: i64::try_from(rejected).unwrap_or(i64::MAX),
        error_message: "spans without valid ids, or in a full trace, were not kept".into(),
    });
    let answer = ExportTraceServiceResponse { partial_success };
    match format {
        Format::Protobuf => respond(StatusCode::OK, "application/x-protobuf", Bytes::from(answer.encode_to_vec())),
        Format::Json => {
            // OTLP's JSON leaves an absent message out rather than writing null.
            let body = match &answer.partial_success {
                None => json!({}),
                Some(p) => {
                    json!({"partialSuccess": {"rejectedSpans": p.rejected_spans, "errorMessage": p.error_message}})
                }
            };
            respond(StatusCode::OK, "application/json", Bytes::from(body.to_string()))
        }
    }
}

/// How an export request is encoded: OTLP/HTTP's binary protobuf, or its JSON mapping (ids as hex,
/// enums as numbers, lowerCamelCase names), which `opentelemetry-proto`'s serde support reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// The format a lower-cased `Content-Type` names (parameters such as `charset` aside).
    fn from_content_type(value: &str) -> Option<Format> {
        match value.split(';').next().unwrap_or_default().trim() {
            "application/x-protobuf" | "application/protobuf" => Some(Format::Protobuf),
            "application/json" => Some(Format::Json),
            _ => None,
        }
    }

    fn decode(self, body: &[u8]) -> Result<ExportTraceServiceRequest, OtlpError> {
        match self {
            Format::Protobuf => Ok(ExportTraceServiceRequest::decode(body)?),
            Format::Json => Ok(serde_json::from_slice(body)?),
        }
    }
}

/// Why an export request was refused.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The body is not an `ExportTraceServiceRequest`.
    #[error("not an OTLP ExportTraceServiceRequest: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The body is not an `ExportTraceServiceRequest` in OTLP's JSON encoding.
    #[error("not an OTLP ExportTraceServiceRequest in JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The body is not valid for its `Content-Encoding`.
    #[error("the body is not valid {encoding}: {source}")]
    Compressed {
        /// The declared encoding.
        encoding: &'static str,
        /// What the decoder found.
        #[source]
        source: std::io::Error,
    },
    /// The body decompresses to more than the console reads.
    #[error("the body decompresses to more than {} MiB", MAX_BODY / (1024 * 1024))]
    TooLarge,
}

/// A request body's `Content-Encoding`: the ADOT collector and the CloudWatch agent send gzip by
/// default, and OpenTelemetry's Python exporter can also send deflate (zlib).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    Deflate,
}

impl Encoding {
    /// The encoding a lower-cased header value names; `None` for one the console cannot read.
    fn from_header(value: &str) -> Option<Encoding> {
        match value.trim() {
            "" | "identity" => Some(Encoding::Identity),
            "gzip" | "x-gzip" => Some(Encoding::Gzip),
            "deflate" => Some(Encoding::Deflate),
            _ => None,
        }
    }

    /// The decoded body, read at most to [`MAX_BODY`] bytes so that a small compressed body cannot
    /// claim unbounded memory.
    fn decode(self, body: Bytes) -> Result<Bytes, OtlpError> {
        use std::io::Read;
        let (encoding, reader): (_, Box<dyn Read + '_>) = match self {
            Encoding::Identity => return Ok(body),
            Encoding::Gzip => ("gzip", Box::new(flate2::read::GzDecoder::new(&body[..]))),
            Encoding::Deflate => ("deflate", Box::new(flate2::read::ZlibDecoder::new(&body[..]))),
        };
        let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(MAX_BODY));
        let limit = u64::try_from(MAX_BODY).unwrap_or(u64::MAX) + 1;
        reader.take(limit).read_to_end(&mut out).map_err(|source| OtlpError::Compressed { encoding, source })?;
        if out.len() > MAX_BODY {
            return Err(OtlpError::TooLarge);
        }
        Ok(Bytes::from(out))
    }
}

/// The segment documents (JSON values) an export request's spans stand for, and how many spans
/// were skipped for invalid ids.
pub fn documents(request: &ExportTraceServiceRequest) -> (Vec<Value>, usize) {
    let mut docs = Vec::new();
    let mut skipped = 0;
    for rs in &request.resource_spans {
        let attrs = rs.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default();
        let service = text(attrs, "service.name").unwrap_or_else(|| "unknown_service".to_owned());
        for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
            match document(span, &service) {
                Some(d) => docs.push(d),
                None => skipped += 1,
            }
        }
    }
    (docs, skipped)
}

fn document(span: &Span, service: &str) -> Option<Value> {
    let trace = hex(&span.trace_id, 16)?;
    let id = hex(&span.span_id, 8)?;
    let parent = hex(&span.parent_span_id, 8);
    let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
    let a = &span.attributes;
    let remote = matches!(kind, SpanKind::Client | SpanKind::Producer);
    let mut entry = Map::new();
    entry.insert("id".into(), json!(id));
    let name = if remote {
        entry.insert("namespace".into(), json!("remote"));
        remote_name(a).unwrap_or_else(|| span.name.clone())
    } else if kind == SpanKind::Internal && parent.is_some() {
        span.name.clone()
    } else {
        service.to_owned()
    };
    entry.insert("name".into(), json!(name));
    let start = span.start_time_unix_nano as f64 / 1e9;
    let end = span.end_time_unix_nano.max(span.start_time_unix_nano) as f64 / 1e9;
    entry.insert("start_time".into(), json!(start));
    entry.insert("end_time".into(), json!(end));
    http_and_outcome(&mut entry, span, service);
    entry.insert("annotations".into(), json!({ "otel_span_kind": kind.as_str_name() }));

    let root = json!(format!("1-{}-{}", &trace[..8], &trace[8..]));
    let is_segment = matches!(kind, SpanKind::Server | SpanKind::Consumer) || parent.is_none();
    if is_segment && !remote {
        entry.insert("trace_id".into(), root);
        if let Some(p) = parent {
            entry.insert("parent_id".into(), json!(p));
        }
        return Some(Value::Object(entry));
    }
    if let Some(p) = parent {
        // A span under another span of its service: an independent subsegment.
        entry.insert("type".into(), json!("subsegment"));
        entry.insert("trace_id".into(), root);
        entry.insert("parent_id".into(), json!(p));
        return Some(Value::Object(entry));
    }
    // A call that starts its trace: X-Ray holds the remote subsegment in a segment of the caller's
    // service, with an id of its own derived from the span's.
    let mut holder_id = span.span_id.clone();
    holder_id[0] ^= 0xff;
    let mut holder = Map::new();
    holder.insert("trace_id".into(), root);
    holder.insert("id".into(), json!(hex(&holder_id, 8)?));
    holder.insert("name".into(), json!(service));
    holder.insert("start_time".into(), json!(start));
    holder.insert("end_time".into(), json!(end));
    holder.insert("subsegments".into(), json!([Value::Object(entry)]));
    Some(Value::Object(holder))
}

/// What a CLIENT or PRODUCER span names its downstream, as the ADOT collector's X-Ray exporter reads
/// it: the service it was told (`peer.service`, an AWS API's `rpc.service`), else the address it
/// called in the current conventions or the older ones many instrumentations still send, else the
/// host of its URL. `None` leaves the span's own name, which says little (`GET`).
fn remote_name(a: &[KeyValue]) -> Option<String> {
    let aws = text(a, "rpc.system").is_some_and(|s| s == "aws-api");
    text(a, "peer.service")
        .or_else(|| aws.then(|| text(a, "rpc.service")).flatten())
        .or_else(|| text(a, "server.address"))
        .or_else(|| text(a, "rpc.service"))
        .or_else(|| text(a, "db.name"))
        .or_else(|| text(a, "http.host"))
        .or_else(|| text(a, "net.peer.name"))
        .or_else(|| {
            let url = text(a, "url.full").or_else(|| text(a, "http.url"))?;
            let authority = url.split_once("://")?.1.split(['/', '?', '#']).next()?;
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let host = match host.strip_prefix('[') {
                Some(v6) => v6.split(']').next()?,
                None => host.split(':').next()?,
            };
            (!host.is_empty()).then(|| host.to_owned())
        })
}

/// The `http` object and the error, throttle and fault flags, from the HTTP semantic conventions
/// (current names, and the older ones many SDKs still send).
fn http_and_outcome(entry: &mut Map<String, Value>, span: &Span, service: &str) {
    let a = &span.attributes;
    let status = int(a, "http.response.status_code").or_else(|| int(a, "http.status_code"));
    let mut request = Map::new();
    for (field, keys) in [
        ("method", &["http.request.method", "http.method"][..]),
        ("url", &["url.full", "http.url"][..]),
        ("client_ip", &["client.address", "net.peer.ip"][..]),
        ("user_agent", &["user_agent.original", "http.user_agent"][..]),
    ] {
        if let Some(v) = keys.iter().find_map(|k| text(a, k)) {
            request.insert(field.into(), json!(v));
        }
    }
    if !request.contains_key("url") {
        if let Some(path) = text(a, "url.path").or_else(|| text(a, "http.target")) {
            let host = text(a, "server.address").unwrap_or_else(|| service.to_owned());
            let scheme = text(a, "url.scheme").unwrap_or_else(|| "http".into());
            request.insert("url".into(), json!(format!("{scheme}://{host}{path}")));
        }
    }
    if !request.is_empty() || status.is_some() {
        let mut http = Map::new();
        http.insert("request".into(), Value::Object(request));
        if let Some(s) = status {
            http.insert("response".into(), json!({ "status": s }));
        }
        entry.insert("http".into(), Value::Object(http));
    }
    let errored = span.status.as_ref().is_some_and(|s| s.code == SpanStatus::Error as i32);
    let status = status.unwrap_or(0);
    if status == 429 {
        entry.insert("throttle".into(), json!(true));
    }
    if (400..500).contains(&status) {
        entry.insert("error".into(), json!(true));
    } else if status >= 500 || errored {
        entry.insert("fault".into(), json!(true));
    }
}

/// Lower-case hex of an id of `len` bytes; `None` when absent, of another length, or all zero.
fn hex(bytes: &[u8], len: usize) -> Option<String> {
    if bytes.len() != len || bytes.iter().all(|&b| b == 0) {
        return None;
    }
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn value<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs.iter().find(|kv| kv.key == key)?.value.as_ref().and_then(|v: &AnyValue| v.value.as_ref())
}

fn text(attrs: &[KeyValue], key: &str) -> Option<String> {
    match value(attrs, key)? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match value(attrs, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        any_value::Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
        let string = |v: &str| Some(AnyValue { value: Some(any_value::Value::StringValue(v.to_owned())) });
        pairs.iter().map(|(k, v)| KeyValue { key: (*k).to_owned(), value: string(v), ..KeyValue::default() }).collect()
    }

    #[test]
    fn a_call_is_named_after_its_downstream_in_whichever_convention_it_came() {
        let name = |pairs: &[(&str, &str)]| remote_name(&attrs(pairs));
        assert_eq!(name(&[("server.address", "back-end"), ("peer.service", "orders")]).as_deref(), Some("orders"));
        let aws = [
            ("rpc.system", "aws-api"),
            ("rpc.service", "DynamoDB"),
            ("server.address", "dynamodb.us-east-1.amazonaws.com"),
        ];
        assert_eq!(name(&aws).as_deref(), Some("DynamoDB"));
        let grpc = [("rpc.system", "grpc"), ("rpc.service", "shop.v1.Catalog"), ("server.address", "catalog")];
        assert_eq!(name(&grpc).as_deref(), Some("catalog"));
        assert_eq!(name(&[("rpc.service", "shop.v1.Catalog")]).as_deref(), Some("shop.v1.Catalog"));
        assert_eq!(name(&[("db.name", "orders")]).as_deref(), Some("orders"));
        assert_eq!(name(&[("http.host", "api.example.com")]).as_deref(), Some("api.example.com"));
        assert_eq!(name(&[("net.peer.name", "api.example.com")]).as_deref(), Some("api.example.com"));
        assert_eq!(name(&[("http.url", "https://user@api.example.com:8443/x?y")]).as_deref(), Some("api.example.com"));
        assert_eq!(name(&[("url.full", "http://[::1]:8080/")]).as_deref(), Some("::1"));
        assert_eq!(name(&[("http.method", "GET")]), None, "nothing to name it after: the span's name");
    }
}
