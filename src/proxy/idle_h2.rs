//! Idle HTTP/2 client connections: closed like idle HTTP/1.1 ones.
//!
//! An HTTP/2 connection with no stream open is idle. hyper keeps it for as long as the client
//! answers its pings, so without a limit of our own a client could hold every connection slot with
//! connections that never open a stream, and every new client would be answered 503; an idle
//! HTTP/1.1 connection is closed at the keep-alive timeout, and at the connection limit gives its
//! slot up to a new one ([`super::idle`]). An idle HTTP/2 connection now does both: GOAWAY once
//! the keep-alive timeout has passed since its last stream ended (or since it began), and first to
//! go at the limit, in the order connections went idle. A connection with a stream open (a gRPC
//! stream, a long download) is never closed for idleness.
//!
//! Requests are counted as HTTP/1.1's are, by [`Counted`]: one count a stream. The connection's
//! task looks at the count once every [`QUIET`] while streams are open.
//!
//! A connection may also carry up to 200 streams at once (hyper's default), each as costly as an
//! HTTP/1.1 connection's request, so `--max-connections` alone would not bound the process's
//! memory: 20 connections of 200 stalled streams took it from 7 to 45 MB, and some 70 would fill
//! a 128 MiB limit. The first stream in flight on a connection rides on the connection's own slot;
//! each further one takes a slot of the same budget until its response is finished with
//! ([`Budgeted`]), and with none left is answered `503` at once (a gRPC call `UNAVAILABLE`), before
//! any upstream is asked.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use pin_project::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use xray_lifecycle::Stopped;
use xray_lifecycle::shutdown::{ConnectionLimit, Room};

use super::client_wait::StreamExecutor;
use super::grpc;
use super::idle::{Activity, Counted, CountedBody, QUIET, StreamSlot, Waits};
use crate::metrics::Metrics;
use crate::xray::grpc as grpc_code;

/// How long a connection idle past the keep-alive timeout gets to complete hyper's graceful close
/// (GOAWAY, a ping and its answer: a round trip in a cluster) before it is dropped. It has no
/// stream open, so nothing is lost either way, and a client that never answers the ping must not
/// keep the connection. One asked to make room waits for nothing: its GOAWAY is written and it is
/// dropped, as the new connection waits only briefly for the slot (`xray_lifecycle::shutdown`).
const CLOSE_WAIT: Duration = Duration::from_millis(10);

type Conn<I, S> = http2::Connection<TokioIo<I>, TowerToHyperService<Budgeted<Counted<S>>>, StreamExecutor>;

/// Where a connection's streams beyond its first take their slots (see the module's comment).
#[derive(Clone, Debug)]
pub struct Budget {
    /// The process's connection limit.
    pub limit: ConnectionLimit,
    /// `streams_refused` counts the streams answered 503.
    pub metrics: Arc<Metrics>,
}

/// A connection's service: each stream opened while another is in flight takes a slot of the
/// [`Budget`] for its [`Counted`] to hold, or is answered 503.
#[derive(Clone, Debug)]
pub struct Budgeted<S> {
    inner: S,
    /// The connection's streams in flight. Counted here, when a stream is let in, rather than read
    /// from the connection's [`Activity`]: hyper calls the service of each stream on that stream's
    /// own task, so two streams opening at once on two workers could otherwise both find none in
    /// flight and both ride on the connection's slot.
    streams: Arc<AtomicUsize>,
    budget: Budget,
}

/// A stream let in: counted among its connection's until dropped, with its slot of the budget if
/// it needed one.
struct Stream {
    streams: Arc<AtomicUsize>,
    /// Held, not read.
    slot: Option<OwnedSemaphorePermit>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.streams.fetch_sub(1, AcqRel);
    }
}

impl<S, B> tower::Service<Request<Incoming>> for Budgeted<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<CountedBody<B>>, Error = Infallible>,
    B: Body<Data = Bytes>,
{
    type Response = Response<Either<CountedBody<B>, Full<Bytes>>>;
    type Error = Infallible;
    type Future = BudgetedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        // Counted first, so that a stream opening meanwhile sees this one; dropped (and so
        // uncounted) if refused.
        let mut stream = Stream { streams: self.streams.clone(), slot: None };
        if self.streams.fetch_add(1, AcqRel) > 0 {
            let Some(permit) = self.budget.limit.try_stream() else {
                self.budget.metrics.streams_refused.fetch_add(1, Relaxed);
                return BudgetedFuture::Refused { grpc: grpc::is_grpc(req.headers()) };
            };
            stream.slot = Some(permit);
        }
        req.extensions_mut().insert(StreamSlot(Arc::new(stream)));
        BudgetedFuture::Called(self.inner.call(req))
    }
}

/// The response of [`Budgeted`]: the inner service's, or 503 for a stream refused a slot (to a gRPC
/// call, `UNAVAILABLE`).
#[pin_project(project = BudgetedProj)]
#[derive(Debug)]
pub enum BudgetedFuture<F> {
    /// The stream has its slot.
    Called(#[pin] F),
    /// No slot was left; `grpc` when the stream is a gRPC call, answered in gRPC's terms.
    Refused { grpc: bool },
}

/// Why a stream was refused, as the text of its `503`.
const REFUSED: &str = "too many requests in flight: try again later\n";

impl<F, B> Future for BudgetedFuture<F>
where
    F: Future<Output = Result<Response<CountedBody<B>>, Infallible>>,
    B: Body<Data = Bytes>,
{
    type Output = Result<Response<Either<CountedBody<B>, Full<Bytes>>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            BudgetedProj::Called(f) => f.poll(cx).map_ok(|res| res.map(Either::Left)),
            BudgetedProj::Refused { grpc: true } => {
                Poll::Ready(Ok(grpc::trailers_only(grpc_code::UNAVAILABLE, REFUSED.trim_end()).map(Either::Right)))
            }
            BudgetedProj::Refused { grpc: false } => {
                let mut res = Response::new(Either::Right(Full::new(Bytes::from_static(REFUSED.as_bytes()))));
                *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                Poll::Ready(Ok(res))
            }
        }
    }
}

/// Why the connection is being closed.
enum Close {
    /// Idle past the keep-alive timeout ([`CLOSE_WAIT`]), or asked to make room (no wait): GOAWAY,
    /// and the connection dropped after the wait unless a stream opened meanwhile.
    Idle(Duration),
    /// The process is stopping: GOAWAY, and the streams open finish (the shutdown grace bounds it).
    Stopped,
}

/// Serves HTTP/2 on a client's connection until it closes, closing it when idle (see above). Once
/// `stopped`, the streams in flight finish and the connection closes.
pub async fn serve<I, S, B>(
    http2: &http2::Builder<StreamExecutor>,
    io: I,
    service: S,
    mut stopped: Stopped,
    waits: Waits,
    room: &Room,
    budget: Budget,
) -> hyper::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::BoxError>,
{
    let activity = Arc::new(Activity::new());
    let counted = Counted::new(service, activity.clone());
    let streams = Arc::new(AtomicUsize::new(0));
    let service = TowerToHyperService::new(Budgeted { inner: counted, streams, budget });
    // Boxed at HTTP/2's size, as `Http::serve` does, rather than inside the connection's task.
    let mut conn: Pin<Box<Conn<I, S>>> = Box::pin(http2.serve_connection(TokioIo::new(io), service));
    let why = 'serve: loop {
        if activity.in_flight() {
            tokio::select! {
                biased;
                done = conn.as_mut() => return done,
                () = stopped.wait() => break 'serve Close::Stopped,
                () = tokio::time::sleep(QUIET) => continue,
            }
        }
        // Idle: standing by for the connection limit until a stream opens. The same wait is kept
        // throughout, so that the connection idle longest is the first asked.
        let _standing_by = room.idle();
        let mut wanted = pin!(room.wanted());
        loop {
            let now = Instant::now();
            let deadline = activity.ended_at() + waits.keep_alive;
            if now >= deadline {
                tracing::debug!(timeout = ?waits.keep_alive, "closed an idle HTTP/2 connection");
                break 'serve Close::Idle(CLOSE_WAIT);
            }
            tokio::select! {
                biased;
                done = conn.as_mut() => return done,
                () = stopped.wait() => break 'serve Close::Stopped,
                () = wanted.as_mut() => {
                    tracing::debug!("closed an idle HTTP/2 connection to make room for a new one");
                    break 'serve Close::Idle(Duration::ZERO);
                }
                () = tokio::time::sleep_until(deadline.min(now + QUIET)) => {
                    if activity.in_flight() {
                        continue 'serve;
                    }
                }
            }
        }
    };
    conn.as_mut().graceful_shutdown();
    match why {
        Close::Stopped => conn.await,
        // A stream that opened as the GOAWAY went out is let finish; a silent client is not
        // waited for. A zero wait still polls the connection once, which writes the GOAWAY.
        Close::Idle(wait) => match tokio::time::timeout(wait, conn.as_mut()).await {
            Ok(done) => done,
            Err(_) if activity.in_flight() => conn.await,
            Err(_) => Ok(()),
        },
    }
}
