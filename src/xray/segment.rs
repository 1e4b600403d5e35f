//! Segment documents: what one traced exchange records, and its JSON form.
//!
//! A `Segment` is filled on the request path with cheap clones (header values and URIs share the
//! connection's buffers) and turned into JSON later, on the emitter task, so that formatting and
//! string building stay off the hot path.

use http::{HeaderValue, Method, Uri};
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use super::grpc::{self, Grpc};
use super::id::{SegmentId, TraceId};
use super::tunnel::{self, Tunnel};
use crate::proxy::error::{Failure, FailureKind};

/// The longest string the schema allows in the `http` object.
pub const MAX_HTTP_STRING: usize = 250;

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
        let mut throttle = status == 429;
        let mut error = (400..500).contains(&status);
        let mut fault = status >= 500;
        if let Some(f) = &self.failure {
            fault |= f.fault();
            error |= !f.fault();
        }
        // gRPC answers 200 whatever happened: its outcome is the `grpc-status`.
        if let Some(code) = self.grpc.as_ref().and_then(|g| g.status) {
            let (e, t, f) = grpc::flags(code);
            (error, throttle, fault) = (error | e, throttle | t, fault | f);
        }
        Flags { error, throttle, fault }
    }

    /// The `cause` of a gRPC call that ended with a status other than OK: the status name and its
    /// message.
    fn grpc_failure(&self) -> Option<Failure> {
        let g = self.grpc.as_ref()?;
        let code = g.status.filter(|c| *c != 0)?;
        let kind = FailureKind::Grpc { code, remote: self.kind != Kind::Segment };
        let message = g.message.clone().map_or(std::borrow::Cow::Borrowed(grpc::status_name(code)), Into::into);
        Some(Failure { kind, message })
    }
}

/// A document's `error`, `throttle` and `fault` flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// A client error (4xx, or the client went away).
    pub error: bool,
    /// Throttled (429).
    pub throttle: bool,
    /// A server fault (5xx, or the proxy could not get a whole response).
    pub fault: bool,
}

/// A segment with the environment it is written in: what the emitter serialises.
pub struct Document<'a> {
    /// The segment.
    pub segment: &'a Segment,
    /// Where the proxy runs.
    pub env: &'a Environment,
}

impl Serialize for Document<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (seg, env) = (self.segment, self.env);
        let top = seg.kind != Kind::EmbeddedSubsegment;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", &*seg.name)?;
        m.serialize_entry("id", seg.id.as_str())?;
        if top {
            m.serialize_entry("trace_id", seg.trace_id.as_str())?;
        }
        if let Some(p) = &seg.parent_id {
            m.serialize_entry("parent_id", p.as_str())?;
        }
        m.serialize_entry("start_time", &micros(seg.start_time))?;
        m.serialize_entry("end_time", &micros(seg.end_time))?;
        if seg.kind != Kind::Segment {
            if seg.kind == Kind::IndependentSubsegment {
                m.serialize_entry("type", "subsegment")?;
            }
            let aws = seg.tunnel.as_ref().and_then(|t| t.aws.as_ref());
            m.serialize_entry("namespace", if aws.is_some() { "aws" } else { "remote" })?;
            if let Some(aws) = aws {
                m.serialize_entry("aws", &tunnel::AwsJson(aws))?;
            }
            if seg.traced {
                m.serialize_entry("traced", &true)?;
            }
        }
        let Flags { error, throttle, fault } = seg.flags();
        if error {
            m.serialize_entry("error", &true)?;
        }
        if throttle {
            m.serialize_entry("throttle", &true)?;
        }
        if fault {
            m.serialize_entry("fault", &true)?;
        }
        let method = seg.tunnel.as_ref().is_none_or(|t| t.explicit);
        m.serialize_entry("http", &HttpJson { http: &seg.http, inbound_segment: seg.kind == Kind::Segment, method })?;
        if let Some(f) = &seg.failure {
            m.serialize_entry("cause", &CauseJson(f))?;
        } else if let Some(f) = seg.grpc_failure() {
            m.serialize_entry("cause", &CauseJson(&f))?;
        }
        if seg.kind == Kind::Segment {
            if let Some(origin) = env.origin {
                m.serialize_entry("origin", origin)?;
            }
            m.serialize_entry("aws", &AwsJson(env))?;
        }
        if let Some(t) = &seg.tunnel {
            m.serialize_entry("metadata", &tunnel::MetadataJson(t))?;
        } else if let Some(g) = &seg.grpc {
            m.serialize_entry("metadata", &grpc::MetadataJson(g))?;
        }
        if top {
            m.serialize_entry("annotations", &Annotations { seg, env })?;
        }
        if !seg.subsegments.is_empty() {
            m.serialize_entry("subsegments", &Subsegments { seg, env })?;
        }
        m.end()
    }
}

/// Embedded subsegments, written straight from the parent's list (no intermediate vector).
struct Subsegments<'a> {
    seg: &'a Segment,
    env: &'a Environment,
}

impl Serialize for Subsegments<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let env = self.env;
        s.collect_seq(self.seg.subsegments.iter().map(|segment| Document { segment, env }))
    }
}

/// Rounds to the microsecond, the resolution X-Ray documents use.
fn micros(t: f64) -> f64 {
    (t * 1e6).round() / 1e6
}

/// The `http` object; `method` is left out for intercepted tunnels, where no request was seen.
#[derive(Clone, Copy)]
struct HttpJson<'a> {
    http: &'a Http,
    inbound_segment: bool,
    method: bool,
}

impl Serialize for HttpJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("request", &RequestJson(*self))?;
        if self.http.status.is_some() || self.http.content_length.is_some() {
            m.serialize_entry("response", &ResponseJson(self.http))?;
        }
        m.end()
    }
}

struct RequestJson<'a>(HttpJson<'a>);

impl Serialize for RequestJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (h, inbound_segment) = (self.0.http, self.0.inbound_segment);
        let mut m = s.serialize_map(None)?;
        if self.0.method {
            m.serialize_entry("method", h.method.as_str())?;
        }
        m.serialize_entry("url", &Collected(UrlText(h)))?;
        // Who called is only known, and only meaningful, for the segment of a request we received.
        if inbound_segment {
            if let Some(ip) = h.client_ip {
                m.serialize_entry("client_ip", &Collected(ip))?;
                if h.x_forwarded_for {
                    m.serialize_entry("x_forwarded_for", &true)?;
                }
            }
        }
        if let Some(ua) = h.user_agent.as_ref().and_then(|v| v.to_str().ok()) {
            m.serialize_entry("user_agent", truncate(ua, MAX_HTTP_STRING))?;
        }
        m.end()
    }
}

struct ResponseJson<'a>(&'a Http);

impl Serialize for ResponseJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        if let Some(status) = self.0.status {
            m.serialize_entry("status", &status)?;
        }
        if let Some(len) = self.0.content_length {
            m.serialize_entry("content_length", &len)?;
        }
        m.end()
    }
}

/// `scheme://host/path`: credentials and the query are left out, as the X-Ray SDKs do.
pub fn url(h: &Http) -> String {
    UrlText(h).to_string()
}

/// The `url` field as text, formatted straight into the document without building a string,
/// cut at [`MAX_HTTP_STRING`] characters.
struct UrlText<'a>(&'a Http);

impl fmt::Display for UrlText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = self.0;
        let host = h
            .host
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .or_else(|| h.uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        // `user:pass@host` can reach us through an absolute-form request or a Host header.
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let mut left = MAX_HTTP_STRING;
        for part in [h.scheme, "://", host, h.uri.path()] {
            let kept = truncate(part, left);
            f.write_str(kept)?;
            left -= kept.chars().count();
            if left == 0 {
                break;
            }
        }
        Ok(())
    }
}

/// Serialises a `Display` value as a JSON string, formatted into the output without allocating.
struct Collected<T>(T);

impl<T: fmt::Display> Serialize for Collected<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// The longest prefix of `s` of at most `max` characters.
pub fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

struct CauseJson<'a>(&'a Failure);

impl Serialize for CauseJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.0;
        let exception = serde_json::json!({
            "id": SegmentId::new().as_str(),
            "type": f.kind.exception_type(),
            "message": &*f.message,
            "remote": f.remote(),
        });
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("exceptions", &[exception])?;
        m.end()
    }
}

struct AwsJson<'a>(&'a Environment);

impl Serialize for AwsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let env = self.0;
        let mut m = s.serialize_map(None)?;
        if env.origin.is_some() {
            m.serialize_entry("eks", &EksJson(env))?;
        }
        m.serialize_entry("xray", &XrayJson)?;
        m.end()
    }
}

struct EksJson<'a>(&'a Environment);

impl Serialize for EksJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let env = self.0;
        let mut m = s.serialize_map(None)?;
        for (k, v) in [("cluster_name", &env.cluster_name), ("container_id", &env.container_id), ("pod", &env.pod)] {
            if let Some(v) = v {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

struct XrayJson;

impl Serialize for XrayJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("sdk", "xray-sidecar")?;
        m.serialize_entry("sdk_version", env!("CARGO_PKG_VERSION"))?;
        m.end()
    }
}

struct Annotations<'a> {
    seg: &'a Segment,
    env: &'a Environment,
}

impl Serialize for Annotations<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Keys must match ^[a-zA-Z0-9_]+$ or X-Ray drops the whole document's annotations.
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("direction", self.seg.direction.as_str())?;
        if let Some(ns) = &self.env.namespace {
            m.serialize_entry("k8s_namespace", truncate(ns, 1000))?;
        }
        if self.seg.failure.as_ref().is_some_and(Failure::client_aborted) {
            m.serialize_entry("client_aborted", &true)?;
        }
        if let Some(g) = &self.seg.grpc {
            m.serialize_entry("grpc_service", truncate(&g.service, 1000))?;
            m.serialize_entry("grpc_method", truncate(&g.method, 1000))?;
            if let Some(code) = g.status {
                m.serialize_entry("grpc_status_code", &code)?;
                m.serialize_entry("grpc_status", grpc::status_name(code))?;
            }
        }
        m.end()
    }
}

/// Turns a configured service name into one X-Ray accepts: 1 to 200 characters of letters, digits,
/// spaces and `_ . : / % & # = + - @`; anything else becomes `_`.
pub fn sanitize_name(name: &str) -> String {
    let cleaned: String = name
        .trim()
        .chars()
        .take(200)
        .map(|c| if c.is_ascii_alphanumeric() || " _.:/%&#=+-@".contains(c) { c } else { '_' })
        .collect();
    if cleaned.is_empty() { "unnamed".to_owned() } else { cleaned }
}

#[cfg(test)]
#[path = "segment_tests.rs"]
mod tests;
