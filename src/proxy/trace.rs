//! The tracing middleware: reads or starts the trace, decides sampling, passes the header on, answers
//! with the decision, and emits the segment when the response body ends.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use http_body::Body;
use http_body_util::{Either, Full};
use pin_project::{pin_project, pinned_drop};
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, ready};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::body::{End, OnEnd, TraceBody};
use super::error::ProxyError;
use crate::metrics::{DecisionSource, Metrics};
use crate::otel::exporter::OtlpExporter;
use crate::otel::propagation::Propagation;
use crate::otel::traceparent::TRACEPARENT;
use crate::xray::emitter::Emitter;
use crate::xray::header::{self as trace_header, Sampled, TRACE_HEADER, TraceHeader};
use crate::xray::id::TraceId;
use crate::xray::sampling::Sampler;
use crate::xray::segment::{Direction, Failure, Http, Kind, Segment};

/// Process-wide tracing state, shared by every connection.
#[derive(Debug)]
pub struct Tracer {
    /// This service's name, sanitised.
    pub service_name: Arc<str>,
    /// Local sampling rules.
    pub sampler: Sampler,
    /// The trace context formats read and written.
    pub propagation: Propagation,
    /// Where segments go over UDP, if X-Ray export is on.
    pub emitter: Option<Emitter>,
    /// Where spans go over OTLP, if OTLP export is on. With neither exporter, tracing is off (the
    /// proxy still forwards and counts).
    pub otlp: Option<OtlpExporter>,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

impl Tracer {
    /// Whether requests are traced: at least one exporter is on.
    pub fn enabled(&self) -> bool {
        self.emitter.is_some() || self.otlp.is_some()
    }

    /// Hands a finished record to each exporter that is on.
    pub fn export(&self, seg: Segment) {
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

/// The body clients receive: the upstream's, or the proxy's own short error text.
pub type ProxyBody<B> = TraceBody<Either<B, Full<Bytes>>, Finish>;

/// Traces the requests of one connection, inbound or outbound.
#[derive(Clone, Debug)]
pub struct Trace<S> {
    inner: S,
    tracer: Arc<Tracer>,
    peer: IpAddr,
    direction: Direction,
}

impl<S> Trace<S> {
    /// Wraps `inner` for a connection from `peer` going `direction`.
    pub fn new(inner: S, tracer: Arc<Tracer>, peer: IpAddr, direction: Direction) -> Self {
        Trace { inner, tracer, peer, direction }
    }
}

impl<S, B, RB> tower::Service<Request<B>> for Trace<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>, Error = ProxyError>,
    RB: Body<Data = Bytes>,
    RB::Error: Into<crate::BoxError>,
{
    type Response = Response<ProxyBody<RB>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The forwarder is always ready; its failures are answered per request.
        let _ = ready!(self.inner.poll_ready(cx));
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let trace = match (self.tracer.enabled(), self.direction) {
            (false, _) => None,
            (true, Direction::Inbound) => Some(super::inbound::start(&self.tracer, self.peer, &mut req)),
            (true, Direction::Outbound) => Some(super::outbound::start(&self.tracer, &mut req)),
        };
        let finish = Finish { tracer: self.tracer.clone(), start, direction: self.direction, status: None, trace };
        ResponseFuture { inner: self.inner.call(req), finish: Some(finish) }
    }
}

/// What starting the record of a request, inbound or outbound, works out first.
#[derive(Debug)]
pub struct Begun {
    /// Epoch time now.
    pub wall: std::time::Duration,
    /// The caller's header, as far as it could be used.
    pub incoming: TraceHeader,
    /// The caller's trace, or a new one.
    pub root: TraceId,
    /// The host the request is for.
    pub host: Option<HeaderValue>,
    /// The sampling decision.
    pub sampled: bool,
}

/// Reads the header, picks the trace and makes the sampling decision.
pub fn begin<B>(tracer: &Tracer, req: &Request<B>) -> Begun {
    let wall = wall_clock();
    let incoming = read_header(tracer, req.headers());
    let root = incoming.root.unwrap_or_else(|| TraceId::new(wall.as_secs()));
    let host = host(req);
    let sampled = decide(tracer, incoming.sampled, host.as_ref(), req, wall.as_secs());
    Begun { wall, incoming, root, host, sampled }
}

/// Reads the caller's trace context, counting and logging headers that cannot be used as they came.
pub fn read_header(tracer: &Tracer, headers: &HeaderMap) -> TraceHeader {
    let (h, problems) = tracer.propagation.read(headers);
    if let Some(problem) = problems.xray {
        tracer.metrics.malformed_headers.fetch_add(1, Relaxed);
        let header = headers.get(&TRACE_HEADER);
        tracing::debug!(?header, %problem, "malformed trace header; starting a new trace where needed");
    }
    if let Some(problem) = problems.w3c {
        tracer.metrics.malformed_headers.fetch_add(1, Relaxed);
        let header = headers.get(&TRACEPARENT);
        tracing::debug!(?header, %problem, "traceparent ignored");
    }
    if problems.disagree {
        tracing::debug!(root = ?h.root, traceparent = ?headers.get(&TRACEPARENT), "traceparent names another trace; following X-Amzn-Trace-Id");
    }
    h
}

/// The caller's decision if it made one, else the local rules'.
pub fn decide<B>(
    tracer: &Tracer,
    incoming: Sampled,
    host: Option<&HeaderValue>,
    req: &Request<B>,
    now_secs: u64,
) -> bool {
    match incoming {
        Sampled::Yes | Sampled::No => {
            let yes = incoming == Sampled::Yes;
            tracer.metrics.record_decision(DecisionSource::Caller, yes);
            yes
        }
        Sampled::Requested | Sampled::Unset => {
            let h = host.and_then(|h| h.to_str().ok()).unwrap_or("");
            let yes = tracer.sampler.sample(h, req.method().as_str(), req.uri().path(), now_secs);
            tracer.metrics.record_decision(DecisionSource::Local, yes);
            yes
        }
    }
}

/// The request's HTTP facts, cheaply cloned for the segment.
pub fn http_facts<B>(
    req: &Request<B>,
    host: Option<HeaderValue>,
    client_ip: Option<IpAddr>,
    x_forwarded_for: bool,
) -> Http {
    Http {
        method: req.method().clone(),
        scheme: "http",
        host,
        uri: req.uri().clone(),
        client_ip,
        x_forwarded_for,
        user_agent: req.headers().get(header::USER_AGENT).cloned(),
        status: None,
        content_length: None,
    }
}

/// Epoch time now.
pub fn wall_clock() -> std::time::Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// The host a request is for: the Host header, or the authority of an absolute or HTTP/2 URI.
pub fn host<B>(req: &Request<B>) -> Option<HeaderValue> {
    req.headers()
        .get(header::HOST)
        .cloned()
        .or_else(|| req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()))
}

/// The first address in `X-Forwarded-For`: the original client, as far as proxies before us know.
pub fn forwarded_for(h: &HeaderMap) -> Option<IpAddr> {
    let first = h.get("x-forwarded-for")?.to_str().ok()?.split(',').next()?.trim();
    first.parse().ok().or_else(|| {
        // Some proxies write `ip:port` or `[v6]:port`.
        first.parse::<std::net::SocketAddr>().ok().map(|s| s.ip())
    })
}

/// What a traced request carries from its start to the end of its response.
#[derive(Debug)]
pub struct Started {
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

/// Completes the request's record when the response body ends.
#[derive(Debug)]
pub struct Finish {
    tracer: Arc<Tracer>,
    start: Instant,
    direction: Direction,
    /// The response status, once the head is known.
    status: Option<u16>,
    trace: Option<Started>,
}

impl OnEnd for Finish {
    fn on_end(self, bytes: u64, end: End) {
        let failure = match end {
            End::Complete => None,
            End::Failed(why) => Some(Failure {
                kind: "UpstreamBodyError",
                message: format!("upstream response body failed after {bytes} bytes: {why}").into(),
                remote: true,
                fault: true,
                client_aborted: false,
            }),
            End::Aborted => Some(Failure {
                kind: "ClientAborted",
                message: format!("client went away after {bytes} bytes of the response").into(),
                remote: false,
                fault: false,
                client_aborted: true,
            }),
        };
        self.close(Some(bytes), failure);
    }
}

impl Finish {
    /// Counts the request and emits its record: the one place a traced exchange ends, whether its
    /// body ended or it never got a response.
    fn close(self, bytes: Option<u64>, failure: Option<Failure>) {
        let elapsed = self.start.elapsed();
        self.tracer.metrics.record_request(self.direction, self.status, elapsed);
        let Some(Started { segment: Some(mut seg), .. }) = self.trace else {
            return;
        };
        let end_time = seg.start_time + elapsed.as_secs_f64();
        seg.for_each_mut(|s| {
            s.end_time = end_time;
            if let Some(bytes) = bytes {
                s.http.content_length.get_or_insert(bytes);
            }
            if let Some(f) = &failure {
                // A proxy failure recorded at the response head says more than what followed it.
                s.failure.get_or_insert_with(|| f.clone());
            }
        });
        self.tracer.export(*seg);
    }

    /// The client went away while the upstream was still to answer.
    fn abandoned(self) {
        let failure = Failure {
            kind: "ClientAborted",
            message: "client went away before the response began".into(),
            remote: false,
            fault: false,
            client_aborted: true,
        };
        self.close(None, Some(failure));
    }
}

/// Waits for the upstream, then sets up the response body that finishes the record; dropped
/// before that (the client left), it finishes the record itself.
#[pin_project(PinnedDrop)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    finish: Option<Finish>,
}

#[pinned_drop]
impl<F> PinnedDrop for ResponseFuture<F> {
    fn drop(self: Pin<&mut Self>) {
        if let Some(finish) = self.project().finish.take() {
            finish.abandoned();
        }
    }
}

impl<F, RB> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, ProxyError>>,
    RB: Body<Data = Bytes>,
    RB::Error: Into<crate::BoxError>,
{
    type Output = Result<Response<ProxyBody<RB>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(mut finish) = this.finish.take() else {
            // Polled after completion: a caller bug, answered rather than panicking.
            return Poll::Ready(Ok(ProxyError { kind: super::error::ErrorKind::NoRoute, source: None }
                .response()
                .map(|b| TraceBody::new(Either::Right(b), None))));
        };
        let res = match result {
            Ok(res) => res.map(Either::Left),
            Err(e) => {
                finish.tracer.metrics.record_upstream_error(e.metric());
                tracing::debug!(error = %e, source = ?e.source, "upstream failed");
                if let Some(seg) = finish.trace.as_mut().and_then(|t| t.segment.as_mut()) {
                    let failure = e.failure();
                    seg.for_each_mut(|s| s.failure = Some(failure.clone()));
                }
                e.response().map(Either::Right)
            }
        };
        let (mut parts, body) = res.into_parts();
        finish.status = Some(parts.status.as_u16());
        if let Some(t) = finish.trace.as_mut() {
            // A downstream that answers with a trace header records its own segment.
            let traced = parts.headers.contains_key(&TRACE_HEADER);
            if t.echo {
                parts.headers.insert(TRACE_HEADER, trace_header::for_response(&t.root, t.sampled));
            }
            if let Some(seg) = t.segment.as_mut() {
                let (status, length) = (finish.status, content_length(&parts.headers));
                seg.for_each_mut(|s| {
                    s.http.status = status;
                    s.http.content_length = length;
                    s.traced = traced && s.kind != Kind::Segment;
                });
            }
        }
        Poll::Ready(Ok(Response::from_parts(parts, TraceBody::new(body, Some(finish)))))
    }
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
