//! The tracing middleware: reads or starts the trace, decides sampling, passes the header on, answers
//! with the decision, and emits the segment when the response body ends.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use http_body::Body;
use http_body_util::{Either, Full};
use pin_project::pin_project;
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
use crate::xray::emitter::Emitter;
use crate::xray::header::{self as trace_header, Sampled, TRACE_HEADER, TraceHeader};
use crate::xray::id::{SegmentId, TraceId};
use crate::xray::sampling::Sampler;
use crate::xray::segment::{Direction, Failure, Http, Kind, Segment};

/// Process-wide tracing state, shared by every connection.
#[derive(Debug)]
pub struct Tracer {
    /// This service's name, sanitised.
    pub service_name: Arc<str>,
    /// Local sampling rules.
    pub sampler: Sampler,
    /// Where segments go; `None` turns tracing off (the proxy still forwards and counts).
    pub emitter: Option<Emitter>,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// The body clients receive: the upstream's, or the proxy's own short error text.
pub type ProxyBody<B> = TraceBody<Either<B, Full<Bytes>>, Finish>;

/// Traces the requests of one inbound connection.
#[derive(Clone, Debug)]
pub struct Trace<S> {
    inner: S,
    tracer: Arc<Tracer>,
    peer: IpAddr,
}

impl<S> Trace<S> {
    /// Wraps `inner` for a connection from `peer`.
    pub fn new(inner: S, tracer: Arc<Tracer>, peer: IpAddr) -> Self {
        Trace {
            inner,
            tracer,
            peer,
        }
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
        if self.tracer.emitter.is_none() {
            let finish = Finish {
                tracer: self.tracer.clone(),
                start,
                status: 0,
                trace: None,
            };
            return ResponseFuture {
                inner: self.inner.call(req),
                finish: Some(finish),
            };
        }
        let trace = self.start(&mut req);
        let finish = Finish {
            tracer: self.tracer.clone(),
            start,
            status: 0,
            trace: Some(trace),
        };
        ResponseFuture {
            inner: self.inner.call(req),
            finish: Some(finish),
        }
    }
}

impl<S> Trace<S> {
    /// Everything done before the request is forwarded.
    fn start<B>(&self, req: &mut Request<B>) -> Started {
        let t = &self.tracer;
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let incoming = match req.headers().get(&TRACE_HEADER) {
            Some(v) => {
                let (h, problem) = TraceHeader::parse(v);
                if let Some(problem) = problem {
                    t.metrics.malformed_headers.fetch_add(1, Relaxed);
                    tracing::debug!(header = ?v, %problem, "malformed trace header; starting a new trace where needed");
                }
                h
            }
            None => TraceHeader::EMPTY,
        };
        let root = incoming
            .root
            .unwrap_or_else(|| TraceId::new(wall.as_secs()));
        let parent = incoming.root.and(incoming.parent);
        let host = host(req);
        let sampled = match incoming.sampled {
            Sampled::Yes | Sampled::No => {
                let yes = incoming.sampled == Sampled::Yes;
                t.metrics.record_decision(DecisionSource::Caller, yes);
                yes
            }
            Sampled::Requested | Sampled::Unset => {
                let hs = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
                let yes =
                    t.sampler
                        .sample(hs, req.method().as_str(), req.uri().path(), wall.as_secs());
                t.metrics.record_decision(DecisionSource::Local, yes);
                yes
            }
        };
        let id = SegmentId::new();
        let segment = sampled.then(|| {
            let (client_ip, x_forwarded_for) = match forwarded_for(req.headers()) {
                Some(ip) => (ip, true),
                None => (self.peer, false),
            };
            Box::new(Segment {
                name: t.service_name.clone(),
                id,
                trace_id: root,
                parent_id: parent,
                start_time: wall.as_secs_f64(),
                end_time: 0.0,
                kind: Kind::Segment,
                direction: Direction::Inbound,
                traced: false,
                http: Http {
                    method: req.method().clone(),
                    scheme: "http",
                    host,
                    uri: req.uri().clone(),
                    client_ip: Some(client_ip),
                    x_forwarded_for,
                    user_agent: req.headers().get(header::USER_AGENT).cloned(),
                    status: None,
                    content_length: None,
                },
                failure: None,
                subsegments: Vec::new(),
            })
        });
        req.headers_mut()
            .insert(TRACE_HEADER, incoming.for_downstream(&root, &id, sampled));
        Started {
            root,
            sampled,
            segment,
        }
    }
}

fn host<B>(req: &Request<B>) -> Option<HeaderValue> {
    req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}

/// The first address in `X-Forwarded-For`: the original client, as far as proxies before us know.
fn forwarded_for(h: &HeaderMap) -> Option<IpAddr> {
    let first = h
        .get("x-forwarded-for")?
        .to_str()
        .ok()?
        .split(',')
        .next()?
        .trim();
    first.parse().ok().or_else(|| {
        // Some proxies write `ip:port` or `[v6]:port`.
        first.parse::<std::net::SocketAddr>().ok().map(|s| s.ip())
    })
}

/// What a traced request carries from its start to the end of its response.
#[derive(Debug)]
struct Started {
    root: TraceId,
    sampled: bool,
    segment: Option<Box<Segment>>,
}

/// Completes the request's record when the response body ends.
#[derive(Debug)]
pub struct Finish {
    tracer: Arc<Tracer>,
    start: Instant,
    status: u16,
    trace: Option<Started>,
}

impl OnEnd for Finish {
    fn on_end(self, bytes: u64, end: End) {
        let elapsed = self.start.elapsed();
        self.tracer
            .metrics
            .record_request(Direction::Inbound, Some(self.status), elapsed);
        let (
            Some(emitter),
            Some(Started {
                segment: Some(mut seg),
                ..
            }),
        ) = (&self.tracer.emitter, self.trace)
        else {
            return;
        };
        seg.end_time = seg.start_time + elapsed.as_secs_f64();
        seg.http.content_length.get_or_insert(bytes);
        match end {
            End::Complete => {}
            End::Failed(why) => {
                seg.failure = Some(Failure {
                    kind: "UpstreamBodyError",
                    message: format!("upstream response body failed after {bytes} bytes: {why}")
                        .into(),
                    remote: true,
                    fault: true,
                    client_aborted: false,
                })
            }
            End::Aborted => {
                seg.failure.get_or_insert(Failure {
                    kind: "ClientAborted",
                    message: format!("client went away after {bytes} bytes of the response").into(),
                    remote: false,
                    fault: false,
                    client_aborted: true,
                });
            }
        }
        emitter.emit(*seg);
    }
}

/// Waits for the upstream, then sets up the response body that finishes the record.
#[pin_project]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    finish: Option<Finish>,
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
            return Poll::Ready(Ok(ProxyError {
                kind: super::error::ErrorKind::NoRoute,
                source: None,
            }
            .response()
            .map(|b| TraceBody::new(Either::Right(b), None))));
        };
        let res = match result {
            Ok(res) => res.map(Either::Left),
            Err(e) => {
                finish.tracer.metrics.record_upstream_error(e.metric());
                tracing::debug!(error = %e, source = ?e.source, "upstream failed");
                if let Some(seg) = finish.trace.as_mut().and_then(|t| t.segment.as_mut()) {
                    seg.failure = Some(e.failure());
                }
                e.response().map(Either::Right)
            }
        };
        let (mut parts, body) = res.into_parts();
        finish.status = parts.status.as_u16();
        if let Some(t) = finish.trace.as_mut() {
            parts
                .headers
                .insert(TRACE_HEADER, trace_header::for_response(&t.root, t.sampled));
            if let Some(seg) = t.segment.as_mut() {
                seg.http.status = Some(finish.status);
                seg.http.content_length = content_length(&parts.headers);
            }
        }
        Poll::Ready(Ok(Response::from_parts(
            parts,
            TraceBody::new(body, Some(finish)),
        )))
    }
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
