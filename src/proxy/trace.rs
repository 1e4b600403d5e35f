//! The tracing middleware: begins each request's record (see `record`), answers with the decision,
//! records the response head or the proxy's failure, and emits the segment when the response body
//! ends or the client leaves.

use bytes::Bytes;
use http::header::Entry;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version, header};
use http_body::Body;
use http_body_util::{Either, Full};
use pin_project::{pin_project, pinned_drop};
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use super::body::{End, OnEnd, TraceBody};
use super::error::{ErrorKind, Failure, ProxyError, failure_metric};
use super::grpc;
use super::record::{Record, Tracer};
use crate::xray::header::{self as trace_header, TRACE_HEADER};
use crate::xray::segment::{Direction, Kind};

/// The body clients receive: the upstream's, or the proxy's own short error text.
pub type ProxyBody<B> = TraceBody<Either<B, Full<Bytes>>, Completion>;

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
        let record = self.tracer.enabled().then(|| Record::begin(&self.tracer, self.direction, self.peer, &mut req));
        let recorded = record.as_ref().is_some_and(|r| r.segment.is_some());
        let grpc = recorded.then(|| grpc::Call::start(req.uri().path(), req.headers()).map(Box::new)).flatten();
        if let Some(call) = &grpc {
            // The forwarder counts the messages the request body carries into this.
            req.extensions_mut().insert(call.sent.clone());
        }
        // gRPC runs over HTTP/2 only: an HTTP/1 request costs no look-up.
        let grpc_request =
            req.version() == Version::HTTP_2 && (grpc.is_some() || (!recorded && grpc::is_grpc(req.headers())));
        let completion = Completion {
            tracer: self.tracer.clone(),
            start,
            direction: self.direction,
            status: None,
            grpc_request,
            http10: req.version() == Version::HTTP_10,
            record,
            grpc,
        };
        ResponseFuture { inner: self.inner.call(req), completion: Some(completion) }
    }
}

/// The end hook of a traced exchange: counts the request and completes its record, when the
/// response body ends or when the client leaves before the response begins.
#[derive(Debug)]
pub struct Completion {
    tracer: Arc<Tracer>,
    start: Instant,
    direction: Direction,
    /// The response status, once the head is known.
    status: Option<u16>,
    /// The request is a gRPC call (over HTTP/2), and once the head is known its response is a
    /// gRPC one: the proxy's own answer, or the end of a response that breaks off, is a gRPC
    /// status.
    grpc_request: bool,
    /// The client spoke HTTP/1.0.
    http10: bool,
    /// `None` when tracing is off.
    record: Option<Record>,
    /// The gRPC call, when the request is one and is recorded.
    /// Boxed: most requests are not gRPC, and this rides in every request's future.
    grpc: Option<Box<grpc::Call>>,
}

impl OnEnd for Completion {
    fn on_data(&mut self, chunk: &[u8]) {
        if let Some(call) = self.grpc.as_mut() {
            call.received.feed(chunk);
        }
    }

    fn on_trailers(&mut self, trailers: &HeaderMap) {
        if let Some(call) = self.grpc.as_mut() {
            call.read_status(trailers);
        }
    }

    fn trailers_for_failure(&mut self, bytes: u64, why: &(dyn std::error::Error + 'static)) -> Option<HeaderMap> {
        // A gRPC response that breaks off ends with the status its client would have seen from the
        // server (a reset passed on would read as INTERNAL whatever happened), and says why.
        if !self.grpc_request {
            return None;
        }
        let code = super::error::grpc_status_of_broken_body(why);
        let message = Failure::upstream_body(bytes, &why).message;
        let trailers = grpc::status_fields(code, &message);
        self.on_trailers(&trailers);
        Some(trailers)
    }

    fn on_end(self, bytes: u64, end: End) {
        let failure = match end {
            End::Complete => None,
            End::Failed(why) => Some(Failure::upstream_body(bytes, &why)),
            End::Aborted => Some(Failure::client_left(Some(bytes))),
        };
        if let Some(m) = failure.as_ref().and_then(failure_metric) {
            self.tracer.metrics.record_upstream_error(m);
        }
        self.close(Some(bytes), failure);
    }
}

impl Completion {
    /// Counts the request and emits its record: the one place a traced exchange ends, whether its
    /// body ended or it never got a response.
    fn close(self, bytes: Option<u64>, mut failure: Option<Failure>) {
        let elapsed = self.start.elapsed();
        self.tracer.metrics.record_request(self.direction, self.status, elapsed);
        let aborted = failure.as_ref().is_some_and(Failure::client_aborted);
        let grpc = self.grpc.map(|call| {
            // The body ended, whole, behind a 200: a gRPC response, which must have said its status.
            let answered = bytes.is_some() && failure.is_none() && self.status == Some(200);
            Box::new((*call).finish(elapsed, aborted, answered))
        });
        if aborted && grpc.as_ref().is_some_and(|g| g.status.is_some()) {
            // The call's own outcome (its trailers, or its deadline passing) says more than the
            // client's leaving.
            failure = None;
        }
        let Some(Record { segment: Some(mut seg), .. }) = self.record else {
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
            s.grpc.clone_from(&grpc);
        });
        self.tracer.export(seg);
    }

    /// The proxy's own answer to the client for `e`: a gRPC status to a gRPC call, text otherwise.
    fn answer(&self, e: &ProxyError) -> Response<Full<Bytes>> {
        if self.grpc_request { e.grpc_response() } else { e.response() }
    }

    /// The client went away while the upstream was still to answer.
    fn abandoned(self) {
        self.close(None, Some(Failure::client_left(None)));
    }
}

/// Waits for the upstream, then sets up the response body that finishes the record; dropped
/// before that (the client left), it finishes the record itself.
#[pin_project(PinnedDrop)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    completion: Option<Completion>,
}

#[pinned_drop]
impl<F> PinnedDrop for ResponseFuture<F> {
    fn drop(self: Pin<&mut Self>) {
        if let Some(completion) = self.project().completion.take() {
            completion.abandoned();
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
        let Some(mut completion) = this.completion.take() else {
            // Polled after completion: a caller bug, answered rather than panicking.
            return Poll::Ready(Ok(ProxyError { kind: ErrorKind::NoRoute, source: None }
                .response()
                .map(|b| TraceBody::new(Either::Right(b), None))));
        };
        let res = match result {
            Ok(res) => res.map(Either::Left),
            Err(e) if e.kind == ErrorKind::ClientLeft => {
                // The client went away mid-request: recorded as if it had left before the response
                // began (no status); the answer still goes to a client that only half-closed.
                tracing::debug!(error = %e, source = ?e.source, "client went away mid-request");
                let answer = completion.answer(&e);
                completion.close(None, Some(e.failure()));
                return Poll::Ready(Ok(answer.map(|b| TraceBody::new(Either::Right(b), None))));
            }
            Err(e) => {
                if let Some(m) = e.metric() {
                    completion.tracer.metrics.record_upstream_error(m);
                }
                tracing::debug!(error = %e, source = ?e.source, "upstream failed");
                if let Some(seg) = completion.record.as_mut().and_then(|t| t.segment.as_mut()) {
                    let failure = e.failure();
                    seg.for_each_mut(|s| s.failure = Some(failure.clone()));
                }
                completion.answer(&e).map(Either::Right)
            }
        };
        let (mut parts, body) = res.into_parts();
        completion.status = Some(parts.status.as_u16());
        let http1 = parts.version < Version::HTTP_2 && parts.status != StatusCode::SWITCHING_PROTOCOLS;
        if completion.direction == Direction::Inbound && http1 && completion.tracer.draining.is_on() {
            // The drain window: the caller takes a new connection for its next request, to an
            // endpoint that is staying, rather than reuse this one until it is closed under it.
            parts.headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            if completion.http10 {
                // hyper adds `keep-alive` to an HTTP/1.1 answer for an HTTP/1.0 client that asked
                // for it, whatever the answer says: the proxy's own answers are made HTTP/1.1.
                parts.version = Version::HTTP_10;
            }
        }
        let grpc_head = (completion.grpc_request || completion.grpc.is_some()) && grpc::is_grpc(&parts.headers);
        // A broken response is ended with a gRPC status only when it is a gRPC one.
        completion.grpc_request &= grpc_head;
        if let Some(call) = completion.grpc.as_mut() {
            if grpc_head {
                // A trailers-only response carries the status in its head.
                call.read_status(&parts.headers);
            } else {
                // An HTML error page from whatever stood in for the server: its bytes are no gRPC
                // messages. (The proxy's own answer to a call is a gRPC status, read above.)
                call.received.stop();
            }
        }
        if let Some(t) = completion.record.as_mut() {
            // A downstream that answers with a trace header records its own segment. One look-up
            // finds it and puts the echo in its place (each costs a hash of the name).
            let echo = t.echo.then(|| trace_header::for_response(&t.root, t.sampled));
            let traced = match (parts.headers.entry(TRACE_HEADER), echo) {
                (Entry::Occupied(mut theirs), Some(ours)) => {
                    theirs.insert(ours);
                    true
                }
                (Entry::Occupied(_), None) => true,
                (Entry::Vacant(slot), Some(ours)) => {
                    slot.insert(ours);
                    false
                }
                (Entry::Vacant(_), None) => false,
            };
            if let Some(seg) = t.segment.as_mut() {
                let (status, length) = (completion.status, content_length(&parts.headers));
                seg.for_each_mut(|s| {
                    s.http.status = status;
                    s.http.content_length = length;
                    s.traced = traced && s.kind != Kind::Segment;
                });
            }
        }
        Poll::Ready(Ok(Response::from_parts(parts, TraceBody::new(body, Some(completion)))))
    }
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

#[cfg(test)]
#[path = "trace_tests.rs"]
mod tests;
