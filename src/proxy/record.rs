//! How a request's record begins, in both directions: read the caller's trace header, pick the
//! trace, decide sampling, build the segment the request will be reported as, and pass the header on.
//! A tunnel's record begins here too, as its own trace.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Uri, header};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::forward::{X_FORWARDED_FOR, X_FORWARDED_PROTO};
use super::probes::Probes;
use crate::admin::Draining;
use crate::metrics::{DecisionSource, Metrics};
use crate::otel::exporter::OtlpExporter;
use crate::otel::propagation::{ContextFields, Propagation};
use crate::xray::aws;
use crate::xray::centralized::Centralized;
use crate::xray::centralized::rule::RequestFacts;
use crate::xray::emitter::Emitter;
use crate::xray::header::{Sampled, TraceHeader};
use crate::xray::id::{SegmentId, TraceId};
use crate::xray::sampling::Sampler;
use crate::xray::segment::{Direction, Finished, Http, Kind, Segment, sanitize_name};
use crate::xray::tunnel::{Ended, Tunnel};

/// Process-wide tracing state, shared by every connection.
#[derive(Debug)]
pub struct Tracer {
    /// This service's name, sanitised.
    pub service_name: Arc<str>,
    /// Local sampling rules: the fallback whenever the centralized rules cannot decide.
    pub sampler: Sampler,
    /// The trace context formats read and written.
    pub propagation: Propagation,
    /// The X-Ray console's rules, when centralized sampling is on.
    pub centralized: Option<Arc<Centralized>>,
    /// Health checks, never sampled unless asked.
    pub probes: Probes,
    /// Where segments go over UDP, if X-Ray export is on.
    pub emitter: Option<Emitter>,
    /// Where spans go over OTLP, if OTLP export is on. With neither exporter, tracing is off (the
    /// proxy still forwards and counts).
    pub otlp: Option<OtlpExporter>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Whether the proxy is draining (every exchange's end reads it: see [`Draining`]).
    pub draining: Draining,
}

impl Tracer {
    /// Whether requests are traced: at least one exporter is on.
    pub fn enabled(&self) -> bool {
        self.emitter.is_some() || self.otlp.is_some()
    }

    /// Hands a finished record to each exporter that is on.
    pub fn export(&self, seg: Finished) {
        match (&self.emitter, &self.otlp) {
            (Some(udp), Some(otlp)) => {
                otlp.emit(seg.clone());
                udp.emit(seg);
            }
            (Some(udp), None) => udp.emit(seg),
            (None, Some(otlp)) => otlp.emit(seg),
            (None, None) => {}
        }
    }
}

/// A traced request's record, from its start to the end of its response.
#[derive(Debug)]
pub struct Record {
    /// The trace.
    pub root: TraceId,
    /// The decision.
    pub sampled: bool,
    /// What will be emitted, when sampled: a segment (possibly holding a remote subsegment) or an
    /// independent subsegment.
    pub segment: Option<Box<Segment>>,
    /// Whether the client gets `Root=..;Sampled=..` back (inbound only: an application's own
    /// outgoing calls get their responses unchanged).
    pub echo: bool,
}

/// What every record works out first, whichever way the request goes.
struct Opening {
    /// Epoch time now.
    wall: Duration,
    /// The caller's header, as far as it could be used.
    incoming: TraceHeader,
    /// The caller's `tracestate` belongs to no context that goes on (see `Problems`).
    stale_tracestate: bool,
    /// The caller's trace, or a new one.
    root: TraceId,
    /// The host the request is for.
    host: Option<HeaderValue>,
    /// The sampling decision.
    sampled: bool,
}

impl Record {
    /// Begins the record of a request going `direction` from `peer`, and writes the trace header the
    /// next hop gets into `req`.
    ///
    /// Inbound, the request continues the caller's trace (or starts one) and the application is told
    /// our segment is its parent. Outbound, a call that carries `Root` and `Parent` (an instrumented
    /// application, or one that forwards the header it received) gets an independent subsegment under
    /// that parent; a call without one starts a trace: a segment for this service holding the remote
    /// subsegment. Either way the callee is told the subsegment is its parent, which is what joins
    /// the two nodes with an edge.
    pub fn begin<B>(tracer: &Tracer, direction: Direction, peer: IpAddr, req: &mut Request<B>) -> Record {
        let fields = Fields::of(req.headers());
        let opening = Opening::read(tracer, direction, req, &fields);
        let id = SegmentId::new();
        let segment = opening.sampled.then(|| {
            let mut segment = Box::new(match direction {
                Direction::Inbound => inbound_segment(tracer, &opening, id, peer, req, &fields),
                Direction::Outbound => outbound_segment(tracer, &opening, id, req, &fields),
            });
            // The caller's `tracestate`, when it goes on with the context (and W3C is spoken), read
            // for recorded requests only. Only a followed `traceparent` brings one, and with it a
            // parent: never a segment holding a call that starts a trace, whose span is its
            // subsegment's.
            if tracer.propagation.w3c && !opening.stale_tracestate {
                segment.trace_state = fields.context.tracestate(req.headers());
            }
            segment
        });
        let (o, headers) = (&opening, req.headers_mut());
        tracer.propagation.write(headers, &o.incoming, &o.root, &id, o.sampled, o.stale_tracestate);
        // The client learns the decision the way X-Ray clients expect it, when X-Ray is spoken.
        let echo = direction == Direction::Inbound && tracer.propagation.xray;
        Record { root: opening.root, sampled: opening.sampled, segment, echo }
    }
}

impl Opening {
    /// Reads the header, picks the trace and makes the sampling decision.
    fn read<B>(tracer: &Tracer, direction: Direction, req: &Request<B>, fields: &Fields<'_>) -> Opening {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let (incoming, stale_tracestate) = read_header(tracer, &fields.context);
        let root = incoming.root.unwrap_or_else(|| TraceId::new(wall.as_secs()));
        let host = host(req, fields);
        let sampled = decide(tracer, direction, incoming.sampled, host.as_ref(), req, fields, wall.as_secs());
        Opening { wall, incoming, stale_tracestate, root, host, sampled }
    }

    /// The one way a document of this request starts: open, without response or failure yet.
    fn segment(&self, name: Arc<str>, id: SegmentId, kind: Kind, direction: Direction, http: Http) -> Segment {
        Segment {
            name,
            id,
            trace_id: self.root,
            parent_id: self.incoming.parent,
            start_time: self.wall.as_secs_f64(),
            end_time: 0.0,
            kind,
            direction,
            traced: false,
            random_trace_id: self.incoming.random_trace_id(),
            http,
            failure: None,
            subsegments: Vec::new(),
            tunnel: None,
            grpc: None,
            trace_state: None,
        }
    }
}

/// The segment of a request the application receives, with who called as far as we can tell.
fn inbound_segment<B>(
    tracer: &Tracer,
    o: &Opening,
    id: SegmentId,
    peer: IpAddr,
    req: &Request<B>,
    fields: &Fields<'_>,
) -> Segment {
    let (client_ip, xff) = match fields.forwarded_for.and_then(first_forwarded_for) {
        Some(ip) => (ip, true),
        None => (peer, false),
    };
    let mut http = http_facts(req, o.host.as_ref(), fields, Some(client_ip), xff);
    if fields.forwarded_proto.is_some_and(forwarded_https) {
        http.scheme = "https";
    }
    o.segment(tracer.service_name.clone(), id, Kind::Segment, Direction::Inbound, http)
}

/// The remote subsegment of a call the application makes, inside a new segment when the call starts
/// a trace.
fn outbound_segment<B>(
    tracer: &Tracer,
    o: &Opening,
    sub_id: SegmentId,
    req: &Request<B>,
    fields: &Fields<'_>,
) -> Segment {
    let name = o.host.as_ref().and_then(|h| h.to_str().ok()).map_or_else(|| "unknown".to_owned(), remote_name);
    let http = http_facts(req, o.host.as_ref(), fields, None, false);
    let name = Arc::from(sanitize_name(&name));
    if o.incoming.parent.is_some() {
        return o.segment(name, sub_id, Kind::IndependentSubsegment, Direction::Outbound, http);
    }
    let sub = o.segment(name, sub_id, Kind::EmbeddedSubsegment, Direction::Outbound, http);
    holding(tracer, o, sub)
}

/// A segment for this service holding `sub`, the remote subsegment of a call that starts a trace.
fn holding(tracer: &Tracer, o: &Opening, sub: Segment) -> Segment {
    let http = sub.http.clone();
    let mut seg = o.segment(tracer.service_name.clone(), SegmentId::new(), Kind::Segment, Direction::Outbound, http);
    seg.tunnel.clone_from(&sub.tunnel);
    seg.subsegments.push(sub);
    seg
}

/// The record of a tunnel to `host`:`port` opened at `wall` (with `CONNECT` when `explicit`, else
/// intercepted), when sampling says yes: a segment for this service holding the remote (or `aws`)
/// subsegment of the tunnel. Nothing inside a tunnel can carry a trace header, so each tunnel
/// starts its own trace.
pub fn tunnel_segment(tracer: &Tracer, host: &str, port: u16, explicit: bool, wall: Duration) -> Option<Box<Segment>> {
    let facts = RequestFacts { host, method: Method::CONNECT.as_str(), path: "/" };
    let (source, sampled) = by_rules(tracer, &facts, wall.as_secs());
    tracer.metrics.record_decision(source, sampled);
    if !sampled {
        return None;
    }
    let name = remote_name(host);
    let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let o = Opening {
        wall,
        incoming: TraceHeader::EMPTY,
        stale_tracestate: false,
        root: TraceId::new(wall.as_secs()),
        host: HeaderValue::from_str(&authority).ok(),
        sampled,
    };
    let http = Http {
        method: Method::CONNECT,
        // What goes through `CONNECT` is TLS in practice; the URL says where, not what was asked.
        scheme: "https",
        host: o.host.clone(),
        uri: Uri::from_static("/"),
        client_ip: None,
        x_forwarded_for: false,
        user_agent: None,
        status: None,
        content_length: None,
    };
    let name = Arc::from(sanitize_name(&name));
    let mut sub = o.segment(name, SegmentId::new(), Kind::EmbeddedSubsegment, Direction::Outbound, http);
    sub.tunnel = Some(Box::new(Tunnel { explicit, bytes_sent: 0, bytes_received: 0, ended: Ended::Closed }));
    Some(Box::new(holding(tracer, &o, sub)))
}

/// Reads the caller's trace context, counting and logging headers that cannot be used as they came;
/// and whether its `tracestate` is stale.
fn read_header(tracer: &Tracer, context: &ContextFields<'_>) -> (TraceHeader, bool) {
    let (h, problems) = tracer.propagation.read_fields(context);
    if let Some(problem) = problems.xray {
        tracer.metrics.malformed_headers.fetch_add(1, Relaxed);
        let header = context.xray();
        tracing::debug!(?header, %problem, "malformed trace header; starting a new trace where needed");
    }
    if let Some(problem) = problems.w3c {
        tracer.metrics.malformed_headers.fetch_add(1, Relaxed);
        let header = context.traceparent();
        tracing::debug!(?header, %problem, "traceparent ignored");
    }
    if problems.disagree {
        let traceparent = context.traceparent();
        tracing::debug!(root = ?h.root, ?traceparent, "traceparent names another trace; following X-Amzn-Trace-Id");
    }
    (h, problems.stale_tracestate)
}

/// The caller's decision if it made one; else none for a health check, else the console's rules',
/// else the local rules'.
fn decide<B>(
    tracer: &Tracer,
    direction: Direction,
    incoming: Sampled,
    host: Option<&HeaderValue>,
    req: &Request<B>,
    fields: &Fields<'_>,
    now_secs: u64,
) -> bool {
    let (source, yes) = match incoming {
        Sampled::Yes | Sampled::No => (DecisionSource::Caller, incoming == Sampled::Yes),
        Sampled::Requested | Sampled::Unset if tracer.probes.skips(fields.user_agent, req.uri().path(), direction) => {
            (DecisionSource::HealthCheck, false)
        }
        Sampled::Requested | Sampled::Unset => {
            let facts = RequestFacts {
                host: host.and_then(|h| h.to_str().ok()).unwrap_or(""),
                method: req.method().as_str(),
                path: req.uri().path(),
            };
            by_rules(tracer, &facts, now_secs)
        }
    };
    tracer.metrics.record_decision(source, yes);
    yes
}

/// The sampling rules' decision for a request (or a tunnel) with these facts: the console's rules,
/// else the local ones.
pub fn by_rules(tracer: &Tracer, facts: &RequestFacts<'_>, now_secs: u64) -> (DecisionSource, bool) {
    match tracer.centralized.as_ref().and_then(|c| c.decide(facts, now_secs)) {
        Some(yes) => (DecisionSource::Centralized, yes),
        None => (DecisionSource::Local, tracer.sampler.sample(facts.host, facts.method, facts.path, now_secs)),
    }
}

/// The request's HTTP facts, copied for the segment. A segment outlives its request: it waits in
/// the emitter's or the exporter's queue (a batch of 512 with OTLP, up to 2,048 while a collector
/// is away). A header value or target shared with the request would keep the whole read buffer hyper
/// parsed the head into (8 KB) alive with it, and hyper would allocate a new one for every
/// request: copying the few bytes a document writes costs less than that with OTLP, as much with
/// UDP, and takes the peak RSS with an unreachable collector from ~22 to ~12 MB.
fn http_facts<B>(
    req: &Request<B>,
    host: Option<&HeaderValue>,
    fields: &Fields<'_>,
    client_ip: Option<IpAddr>,
    x_forwarded_for: bool,
) -> Http {
    Http {
        method: req.method().clone(),
        scheme: "http",
        host: host.map(owned),
        // The path is all a document writes of the target (the query is left out, the host is
        // `host`); an authority-form target has none and is kept as it came.
        uri: Uri::from_maybe_shared(Bytes::copy_from_slice(req.uri().path().as_bytes()))
            .unwrap_or_else(|_| req.uri().clone()),
        client_ip,
        x_forwarded_for,
        user_agent: fields.user_agent.map(owned),
        status: None,
        content_length: None,
    }
}

/// A copy of `v` that shares no buffer with it.
fn owned(v: &HeaderValue) -> HeaderValue {
    // The bytes were a valid value already, so this cannot fail; the fallback only shares.
    HeaderValue::from_maybe_shared(Bytes::copy_from_slice(v.as_bytes())).unwrap_or_else(|_| v.clone())
}

/// The fields of a request head a record reads, the trace context's among them, found in one
/// pass over its fields: each look-up by name hashes the name again (~110 instructions), and a
/// head holds a handful of fields. Each is the name's first value, as `HeaderMap::get` finds it.
#[derive(Default)]
struct Fields<'a> {
    context: ContextFields<'a>,
    host: Option<&'a HeaderValue>,
    user_agent: Option<&'a HeaderValue>,
    forwarded_for: Option<&'a HeaderValue>,
    forwarded_proto: Option<&'a HeaderValue>,
}

impl<'a> Fields<'a> {
    fn of(headers: &'a HeaderMap) -> Self {
        let mut found = Fields::default();
        // The map yields a name's values together, first to last.
        for (name, value) in headers {
            let slot = if found.context.note(name, value) {
                continue;
            } else if name == header::HOST {
                &mut found.host
            } else if name == header::USER_AGENT {
                &mut found.user_agent
            } else if name == X_FORWARDED_FOR {
                &mut found.forwarded_for
            } else if name == X_FORWARDED_PROTO {
                &mut found.forwarded_proto
            } else {
                continue;
            };
            slot.get_or_insert(value);
        }
        found
    }
}

/// The host a request is for: the Host header, or the authority of an absolute or HTTP/2 URI.
fn host<B>(req: &Request<B>, fields: &Fields<'_>) -> Option<HeaderValue> {
    fields.host.cloned().or_else(|| req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()))
}

/// The first address in an `X-Forwarded-For` value: the original client, as far as proxies before
/// us know.
fn first_forwarded_for(value: &HeaderValue) -> Option<IpAddr> {
    let first = value.to_str().ok()?.split(',').next()?.trim();
    first.parse().ok().or_else(|| {
        // Some proxies write `ip:port` or `[v6]:port`.
        first.parse::<std::net::SocketAddr>().ok().map(|s| s.ip())
    })
}

/// Whether an `X-Forwarded-Proto` value says the client's own hop was HTTPS: a load balancer in
/// front of the pod ended TLS, and the URL the client asked for, the one the trace list shows and
/// filters on, is `https://` (OpenTelemetry's conventions take a server span's `url.scheme` from it
/// too). The first proxy's word is the client's, as with `X-Forwarded-For`.
fn forwarded_https(value: &HeaderValue) -> bool {
    let first = value.as_bytes().split(|&b| b == b',').next().unwrap_or_default();
    first.trim_ascii().eq_ignore_ascii_case(b"https")
}

/// The name X-Ray shows for a remote call or tunnel to `host`: the AWS service for
/// `*.amazonaws.com` (`DynamoDB`, as the X-Ray SDKs name their calls; the document then says
/// `namespace: aws`), else [`destination_name`].
pub fn remote_name(host: &str) -> String {
    aws::service(host).map_or_else(|| destination_name(host), |a| a.name)
}

/// The name X-Ray shows for a destination: the Kubernetes Service name for `svc`, `svc.ns`,
/// `svc.ns.svc` and `svc.ns.svc.cluster.local`, else the host without its port.
pub fn destination_name(host: &str) -> String {
    let host = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.');
    if host.parse::<std::net::IpAddr>().is_ok() {
        return host.to_owned();
    }
    let labels: Vec<&str> = host.split('.').collect();
    let service = match labels.as_slice() {
        [svc] => Some(*svc),
        // `svc.ns`, unless it is plainly a public name such as `example.com`.
        [svc, ns] if !PUBLIC_SUFFIXES.contains(&ns.to_ascii_lowercase().as_str()) => Some(*svc),
        [svc, _, s] if s.eq_ignore_ascii_case("svc") => Some(*svc),
        [svc, _, s, c, l]
            if s.eq_ignore_ascii_case("svc")
                && c.eq_ignore_ascii_case("cluster")
                && l.eq_ignore_ascii_case("local") =>
        {
            Some(*svc)
        }
        _ => None,
    };
    service.unwrap_or(host).to_owned()
}

/// Common public suffixes that make a two-label host a domain rather than `service.namespace`.
const PUBLIC_SUFFIXES: [&str; 16] =
    ["com", "net", "org", "io", "dev", "app", "co", "ai", "cloud", "edu", "gov", "info", "biz", "me", "us", "uk"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_keeps_nothing_of_the_buffer_the_head_was_read_into() {
        // As hyper does: every part of the head is a slice of the one buffer it was read into.
        let buffer = Bytes::from(b"/orders/7?k=v example.com probe/1.0".to_vec());
        let mut req = Request::new(());
        *req.uri_mut() = Uri::from_maybe_shared(buffer.slice(0..13)).expect("uri");
        let value = |r: std::ops::Range<usize>| HeaderValue::from_maybe_shared(buffer.slice(r)).expect("value");
        req.headers_mut().insert(header::HOST, value(14..25));
        req.headers_mut().insert(header::USER_AGENT, value(26..35));
        let fields = Fields::of(req.headers());
        let http = http_facts(&req, host(&req, &fields).as_ref(), &fields, None, false);
        drop(req);
        assert!(buffer.is_unique(), "the segment's facts still point into the request's buffer");
        assert_eq!(http.uri.path(), "/orders/7");
        assert_eq!(http.host.as_ref().map(HeaderValue::as_bytes), Some(&b"example.com"[..]));
        assert_eq!(http.user_agent.as_ref().map(HeaderValue::as_bytes), Some(&b"probe/1.0"[..]));
    }

    #[test]
    fn the_fields_read_in_one_pass_are_those_a_look_up_by_name_finds() {
        let mut req = Request::new(());
        let h = req.headers_mut();
        h.append(header::USER_AGENT, HeaderValue::from_static("first/1"));
        h.append(header::ACCEPT, HeaderValue::from_static("*/*"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1, 10.0.0.2"));
        h.append(header::USER_AGENT, HeaderValue::from_static("second/2"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.3"));
        h.append(header::HOST, HeaderValue::from_static("shop"));
        h.append(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        h.append(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        let fields = Fields::of(req.headers());
        for (found, name) in [
            (fields.host, header::HOST),
            (fields.user_agent, header::USER_AGENT),
            (fields.forwarded_for, X_FORWARDED_FOR),
            (fields.forwarded_proto, X_FORWARDED_PROTO),
        ] {
            assert_eq!(found, req.headers().get(&name), "{name}");
        }
        assert_eq!(fields.forwarded_for.and_then(first_forwarded_for), Some([10, 0, 0, 1].into()));
        let none = Request::new(());
        let fields = Fields::of(none.headers());
        assert!(fields.host.is_none() && fields.user_agent.is_none() && fields.forwarded_for.is_none());
        assert!(fields.forwarded_proto.is_none());
    }

    #[test]
    fn the_first_proxy_says_whether_the_client_spoke_https() {
        for (value, https) in [
            ("https", true),
            ("HTTPS", true),
            (" https , http", true),
            ("https,http", true),
            ("http", false),
            ("http, https", false),
            ("", false),
            ("httpsx", false),
            ("wss", false),
        ] {
            assert_eq!(forwarded_https(&HeaderValue::from_static(value)), https, "{value:?}");
        }
    }

    #[test]
    fn kubernetes_service_hosts_are_named_after_the_service() {
        for (host, name) in [
            ("back-end", "back-end"),
            ("back-end:8080", "back-end"),
            ("back-end.shop", "back-end"),
            ("back-end.shop.svc", "back-end"),
            ("back-end.shop.svc.cluster.local", "back-end"),
            ("back-end.shop.svc.cluster.local.:80", "back-end"),
            ("api.example.com", "api.example.com"),
            ("example.com:443", "example.com"),
            ("10.0.0.7:8080", "10.0.0.7"),
            ("[::1]:8080", "::1"),
        ] {
            assert_eq!(destination_name(host), name, "{host}");
        }
    }

    #[test]
    fn plain_http_calls_to_aws_endpoints_are_named_and_typed_the_aws_way() {
        let tracer = Tracer {
            service_name: Arc::from("front-end"),
            sampler: Sampler::from_json(br#"{"version": 2, "default": {"fixed_target": 0, "rate": 1.0}, "rules": []}"#)
                .expect("rules"),
            propagation: Propagation::default(),
            centralized: None,
            probes: Probes::default(),
            emitter: None,
            otlp: None,
            metrics: Arc::default(),
            draining: Draining::default(),
        };
        let call = |host: &str| {
            let mut req = Request::post("/").header(header::HOST, host).body(()).expect("request");
            let rec = Record::begin(&tracer, Direction::Outbound, [127, 0, 0, 1].into(), &mut req);
            rec.segment.expect("sampled").subsegments.remove(0)
        };
        let sub = call("dynamodb.us-east-1.amazonaws.com");
        assert_eq!(&*sub.name, "DynamoDB");
        let aws = sub.aws().expect("an AWS call");
        assert_eq!((aws.name.as_str(), aws.region.as_deref()), ("DynamoDB", Some("us-east-1")));
        let doc = serde_json::to_value(crate::xray::document::Document {
            segment: &sub,
            env: &crate::xray::segment::Environment::default(),
        })
        .expect("json");
        assert_eq!((&doc["namespace"], &doc["aws"]["region"]), (&"aws".into(), &"us-east-1".into()), "{doc}");
        assert_eq!(doc["http"]["request"]["url"], "http://dynamodb.us-east-1.amazonaws.com/");

        let sub = call("back-end.shop:8080");
        assert_eq!((&*sub.name, sub.aws()), ("back-end", None));
    }
}
