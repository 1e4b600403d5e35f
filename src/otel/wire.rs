//! An OTLP export request written straight from segments into one buffer: the protobuf bytes
//! prost would write for the structures [`super::span::push_spans`] builds, without building
//! them. Building them cost some 18 allocations per span (every attribute's key and string value,
//! the ids, the name) and prost computes a nested message's length again at every level it is
//! nested in: together 11k instructions per span, as much as the rest of tracing.
//!
//! The envelope (the resource and the instrumentation scope) is encoded once, by prost, when the
//! exporter starts; each span is written into a scratch buffer so that its length is known, then
//! appended after its key and length. Fields go in field-number order and defaults are left out,
//! as prost does, so the bytes are prost's (the tests compare them).

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use std::borrow::Borrow;

use super::span::{Attributes, describe, each_span};
use crate::xray::segment::Segment;

/// Protobuf wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// The parts of every export request that do not change: encoded once.
#[derive(Debug)]
pub struct Envelope {
    /// `ResourceSpans.resource` (field 1), key and length included.
    resource: Vec<u8>,
    /// `ScopeSpans.scope` (field 1), key and length included.
    scope: Vec<u8>,
}

impl Envelope {
    /// The envelope of `resource`'s spans from this proxy's instrumentation scope.
    pub fn new(resource: Resource, scope: InstrumentationScope) -> Envelope {
        let mut envelope = Envelope { resource: Vec::new(), scope: Vec::new() };
        prost::encoding::message::encode(1, &resource, &mut envelope.resource);
        prost::encoding::message::encode(1, &scope, &mut envelope.scope);
        envelope
    }
}

/// Writes an `ExportTraceServiceRequest` holding the spans of `segments` into `out` (cleared
/// first); `scratch` is reused from call to call. Returns how many spans it holds.
pub fn request<S: Borrow<Segment>>(
    envelope: &Envelope,
    segments: &[S],
    out: &mut Vec<u8>,
    scratch: &mut Scratch,
) -> usize {
    let spans = &mut scratch.spans;
    spans.clear();
    let mut count = 0;
    for seg in segments {
        each_span(seg.borrow(), |seg, parent, kind| {
            write_span(seg, parent, kind, spans, &mut scratch.span);
            count += 1;
        });
    }
    let scope_spans = envelope.scope.len() + spans.len();
    let resource_spans = envelope.resource.len() + field_len(2, scope_spans);
    out.clear();
    out.reserve(field_len(1, resource_spans));
    key(out, 1, LEN);
    varint(out, resource_spans as u64);
    out.extend_from_slice(&envelope.resource);
    key(out, 2, LEN);
    varint(out, scope_spans as u64);
    out.extend_from_slice(&envelope.scope);
    out.extend_from_slice(spans);
    count
}

/// Buffers [`request`] reuses.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Every span of the request, as `ScopeSpans.spans` fields.
    spans: Vec<u8>,
    /// One span's message, before its length is known.
    span: Vec<u8>,
}

/// Appends one `ScopeSpans.spans` field (2): the span `seg` stands for.
fn write_span(seg: &Segment, parent: Option<[u8; 8]>, kind: SpanKind, out: &mut Vec<u8>, body: &mut Vec<u8>) {
    body.clear();
    // Attributes are field 9, written as `describe` hands them over; the fields before them are
    // only known once it returns, so they are written after and the two parts swapped below.
    let mut attributes = Wire(body);
    let head = describe(seg, parent, kind, &mut attributes);
    let attributes_len = body.len();
    bytes(body, 1, &head.trace_id);
    bytes(body, 2, &head.span_id);
    string(body, 3, head.trace_state);
    if let Some(p) = &head.parent {
        bytes(body, 4, p);
    }
    string(body, 5, &head.name);
    if head.kind as i32 != 0 {
        key(body, 6, VARINT);
        varint(body, head.kind as i32 as u64);
    }
    fixed64(body, 7, head.start);
    fixed64(body, 8, head.end);
    // Fields 1-8 were written after the attributes: rotate them to the front.
    body.rotate_left(attributes_len);
    if let Some(message) = &head.error {
        // Status { message = 2; code = 3 }.
        let code = StatusCode::Error as i32 as u64;
        let status_len = bytes_len(2, message.len()) + key_len(3) + varint_len(code);
        key(body, 15, LEN);
        varint(body, status_len as u64);
        string(body, 2, message);
        key(body, 3, VARINT);
        varint(body, code);
    }
    if head.flags != 0 {
        key(body, 16, FIXED32);
        body.extend_from_slice(&head.flags.to_le_bytes());
    }
    key(out, 2, LEN);
    varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// Attributes written as `Span.attributes` fields (9): `KeyValue { key = 1; value = 2 }` with
/// `AnyValue { string_value = 1; bool_value = 2; int_value = 3 }`.
struct Wire<'a>(&'a mut Vec<u8>);

impl Wire<'_> {
    /// One `KeyValue` whose `AnyValue` holds `value_len` bytes, written by `value`.
    fn key_value(&mut self, k: &str, value_len: usize, value: impl FnOnce(&mut Vec<u8>)) {
        let out = &mut *self.0;
        let kv_len = bytes_len(1, k.len()) + field_len(2, value_len);
        key(out, 9, LEN);
        varint(out, kv_len as u64);
        string(out, 1, k);
        key(out, 2, LEN);
        varint(out, value_len as u64);
        value(out);
    }
}

impl Attributes for Wire<'_> {
    fn string(&mut self, key: &'static str, value: &str) {
        // A oneof member is written even when it holds its type's default.
        let len = field_len(1, value.len());
        self.key_value(key, len, |out| {
            self::key(out, 1, LEN);
            varint(out, value.len() as u64);
            out.extend_from_slice(value.as_bytes());
        });
    }

    fn int(&mut self, key: &'static str, value: i64) {
        // int64 is a varint of the two's complement.
        let v = value as u64;
        self.key_value(key, key_len(3) + varint_len(v), |out| {
            self::key(out, 3, VARINT);
            varint(out, v);
        });
    }

    fn boolean(&mut self, key: &'static str, value: bool) {
        self.key_value(key, key_len(2) + 1, |out| {
            self::key(out, 2, VARINT);
            out.push(u8::from(value));
        });
    }
}

fn key(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from(field << 3 | wire));
}

fn key_len(field: u32) -> usize {
    varint_len(u64::from(field << 3))
}

/// The size of a length-delimited field of `len` bytes.
fn field_len(field: u32, len: usize) -> usize {
    key_len(field) + varint_len(len as u64) + len
}

/// The size of a `bytes` or `string` field of `len` bytes as [`bytes`] writes it.
fn bytes_len(field: u32, len: usize) -> usize {
    if len == 0 { 0 } else { field_len(field, len) }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    // 7 bits per byte; 0 takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// A `bytes` field; prost leaves an empty one out.
fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    if !b.is_empty() {
        key(out, field, LEN);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
}

/// A `string` field; prost leaves an empty one out.
fn string(out: &mut Vec<u8>, field: u32, s: &str) {
    bytes(out, field, s.as_bytes());
}

/// A `fixed64` field; prost leaves a zero out.
fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(out, field, FIXED64);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// The same request built as `opentelemetry-proto` structures and encoded by prost: what the unit
/// tests and the property test (`tests/segment_schema_props.rs`) compare [`request`] with.
#[doc(hidden)]
pub fn by_prost(resource: Resource, scope: InstrumentationScope, segments: &[Segment]) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
    use prost::Message;
    let mut spans = Vec::new();
    for seg in segments {
        super::span::push_spans(seg, &mut spans);
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans { scope: Some(scope), spans, ..ScopeSpans::default() }],
            ..ResourceSpans::default()
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
