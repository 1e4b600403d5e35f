//! Segments: what one traced exchange records, and the names X-Ray accepts for them.
//!
//! A `Segment` is filled on the request path with cheap clones (header values and URIs share the
//! connection's buffers) and turned into JSON later (`document`), on the emitter task, so that
//! formatting and string building stay off the hot path.

use http::{HeaderValue, Method, Uri};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use super::aws::{self, AwsService};
use super::cause::{Failure, FailureKind};
use super::flags::Flags;
use super::grpc::{self, Grpc};
use super::id::{SegmentId, TraceId};
use super::tunnel::Tunnel;

/// A finished segment on its way out: the exporters' queues hold it boxed, so that each step to
/// the encoder moves a pointer rather than the segment's 424 bytes (~75 instructions a copy).
pub type Finished = Box<Segment>;

/// One segment, or a subsegment sent on its own or inside its segment.
#[derive(Clone, Debug)]
pub struct Segment {
    /// Service name (segments) or downstream name (remote subsegments), already sanitised.
    pub name: Arc<str>,
    /// This document's id.
    pub id: SegmentId,
    /// The trace it belongs to.
    pub trace_id: TraceId,
    /// The caller's segment or subsegment, if any.
    pub parent_id: Option<SegmentId>,
    /// Epoch seconds.
    pub start_time: f64,
    /// Epoch seconds.
    pub end_time: f64,
    /// Segment, independent subsegment, or subsegment embedded in its parent.
    pub kind: Kind,
    /// Which way the traced call went; recorded as an annotation.
    pub direction: Direction,
    /// Whether the downstream sends its own segment (remote subsegments only).
    pub traced: bool,
    /// The trace id is random in its right-most 7 bytes (see `TraceHeader::random_trace_id`): the
    /// OTLP span's W3C trace flags say so, as the `traceparent` passed on does.
    pub random_trace_id: bool,
    /// The HTTP exchange.
    pub http: Http,
    /// What the proxy saw go wrong, if anything.
    pub failure: Option<Failure>,
    /// Embedded subsegments.
    pub subsegments: Vec<Segment>,
    /// Set when this records a tunnelled connection rather than one request.
    pub tunnel: Option<Box<Tunnel>>,
    /// Set when the request was a gRPC call.
    pub grpc: Option<Box<Grpc>>,
    /// The W3C `tracestate` of the context the request carried on, when one was followed: the
    /// OTLP span's `traceState` (an X-Ray document has no place for it).
    pub trace_state: Option<Box<str>>,
}

/// What kind of document a [`Segment`] is written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A segment: the service's own record of a request it served.
    Segment,
    /// A remote subsegment sent as its own document (`"type": "subsegment"`).
    IndependentSubsegment,
    /// A remote subsegment inside its segment's `subsegments`.
    EmbeddedSubsegment,
}

/// Which way a traced call went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A request the application received.
    Inbound,
    /// A request the application made.
    Outbound,
}

impl Direction {
    /// The annotation value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// The `http` object: request facts, and the response once there is one.
#[derive(Clone, Debug)]
pub struct Http {
    /// Request method.
    pub method: Method,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Host the request was for (Host header or URI authority).
    pub host: Option<HeaderValue>,
    /// The request target; the path is kept, the query dropped as the SDKs do.
    pub uri: Uri,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// Whether `client_ip` came from `X-Forwarded-For`.
    pub x_forwarded_for: bool,
    /// The client's `User-Agent`.
    pub user_agent: Option<HeaderValue>,
    /// Status code, once a response exists.
    pub status: Option<u16>,
    /// Bytes of response body: the declared length, or what was counted.
    pub content_length: Option<u64>,
}

impl Http {
    /// The `User-Agent` as text: a value with bytes beyond ASCII (which `HeaderValue::to_str`
    /// refuses) is read as UTF-8, what clients that send them mean, any byte that is not replaced,
    /// rather than the field being dropped.
    pub fn user_agent_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.user_agent.as_ref().map(|v| String::from_utf8_lossy(v.as_bytes()))
    }
}

/// Facts about where the proxy runs, written into every document.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    /// `AWS::EKS::Container` when running in a Kubernetes pod.
    pub origin: Option<&'static str>,
    /// EKS cluster name.
    pub cluster_name: Option<String>,
    /// Pod name.
    pub pod: Option<String>,
    /// Container id.
    pub container_id: Option<String>,
    /// Kubernetes namespace, recorded as the `k8s_namespace` annotation.
    pub namespace: Option<String>,
    /// The `aws` block every segment carries, written from the fields above by the first
    /// document and copied by the rest: it is the same for every request of the process, and
    /// writing it afresh cost ~320 of the ~9k instructions tracing takes a request in a pod. The
    /// fields must not change once a document has been written.
    pub aws_json: OnceLock<Box<[u8]>>,
}

impl Segment {
    /// Applies `f` to this document and to each embedded subsegment: a remote call and the segment
    /// that holds it end together.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut Segment)) {
        f(self);
        for s in &mut self.subsegments {
            f(s);
        }
    }

    /// Error, throttle and fault flags as X-Ray derives them from the status and any failure.
    pub fn flags(&self) -> Flags {
        let status = self.http.status.unwrap_or(0);
        let throttle = status == 429;
        let mut error = (400..500).contains(&status);
        let mut fault = status >= 500;
        if let Some(f) = &self.failure {
            fault |= f.fault();
            error |= !f.fault();
        }
        let flags = Flags { error, throttle, fault };
        // gRPC answers 200 whatever happened: its outcome is the `grpc-status`.
        match self.grpc.as_ref().and_then(|g| g.status) {
            Some(code) => flags | grpc::flags(code),
            None => flags,
        }
    }

    /// The AWS service a remote call went to, read from its host (`*.amazonaws.com`); `None` for
    /// this service's own segments.
    pub fn aws(&self) -> Option<AwsService> {
        if self.kind == Kind::Segment {
            return None;
        }
        aws::service(self.http.host.as_ref()?.to_str().ok()?)
    }

    /// The `cause` of a gRPC call that ended with a status other than OK: the status name and its
    /// message.
    pub fn grpc_failure(&self) -> Option<Failure> {
        let g = self.grpc.as_ref()?;
        let code = g.status.filter(|c| *c != 0)?;
        let kind = FailureKind::Grpc { code, remote: self.kind != Kind::Segment };
        let message = g.message.clone().map_or(std::borrow::Cow::Borrowed(grpc::status_name(code)), Into::into);
        Some(Failure { kind, message })
    }
}

/// The longest name X-Ray accepts for a segment.
pub const MAX_NAME_CHARS: usize = 200;

/// Whether X-Ray accepts `c` in a segment name: letters, digits, spaces and `_ . : / % & # = + - @`.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " _.:/%&#=+-@".contains(c)
}

/// Turns a configured service name into one X-Ray accepts: 1 to 200 characters of letters, digits,
/// spaces and `_ . : / % & # = + - @`; anything else becomes `_`.
pub fn sanitize_name(name: &str) -> String {
    let cleaned: String =
        name.trim().chars().take(MAX_NAME_CHARS).map(|c| if is_name_char(c) { c } else { '_' }).collect();
    if cleaned.is_empty() { "unnamed".to_owned() } else { cleaned }
}

#[cfg(test)]
#[path = "segment_tests.rs"]
mod tests;
