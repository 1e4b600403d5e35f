//! Idle HTTP/1.1 keep-alive connections without hyper's buffers.
//!
//! hyper gives every HTTP/1 connection an 8 KB read buffer and an 8 KB write buffer and keeps both
//! until the connection closes, idle or not: 10,000 idle keep-alive connections cost the sidecar
//! 12.8 KB of RSS each, where nginx, which frees its buffers between requests, needs 0.6 KB. So a
//! client connection that has moved no bytes for [`QUIET`], with no request in flight, no head
//! arriving and nothing waiting to be written, is taken apart (`into_parts`, which frees hyper's
//! state and buffers), and the bare socket waits for its next bytes; when they come, a new hyper
//! connection serves them. A busy connection never notices: the only cost per request is a count
//! (and the time its last request ended) kept by a wrapper around the service, and the
//! connection's task looks at it once every [`QUIET`].
//!
//! The timeouts between requests are kept here too, not by hyper: hyper's timer is a new timer,
//! armed and disarmed, for every request head (~1,300 instructions a request, 3 % of a traced one),
//! where this task already wakes once every [`QUIET`]. Two of them, as nginx has: an idle
//! connection, with no byte of a next request, is kept for the keep-alive timeout after the last
//! request in flight ended (the end is timed, one clock read a request); a head that has begun to
//! arrive must be whole within the header read timeout of when a look first saw it arriving. A
//! load balancer in front (an ALB keeps idle connections 60 s) must never send a request on a
//! connection the proxy is closing, hence a keep-alive timeout longer than its; a client that
//! trickles a head is still cut off soon. Each deadline is noticed at the next look, which then
//! comes at the deadline if that is sooner than [`QUIET`]: never early, and a head's at most one
//! look late. Neither idle time nor a head that trickles in renews them.
//!
//! The same looks bound a response the client has stopped taking (`--stream-idle-timeout`): with
//! a request in flight, nothing moved either way and hyper waiting to write, the client has read
//! nothing for a whole look. Once that has lasted the timeout, the connection is closed, which
//! the record tells as the client's leaving: otherwise a client that asks for a large response
//! and never reads it holds its slot of the connection limit, and the upstream connection behind
//! it, for as long as it likes. (An upstream that stops sending is timed by the response body
//! itself, `stream_idle`, which hyper then keeps asking for frames.)
//!
//! A head that has begun to arrive keeps its hyper connection (taken apart, its bytes would be
//! copied and read again, up to `--max-header-size` every second); only when pipelined requests
//! leave part of the next head in hyper's buffer is it carried over to the next hyper connection,
//! and its deadline with it.

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use pin_project::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use xray_lifecycle::Stopped;
use xray_lifecycle::shutdown::{Idle, Room};

use super::epoch::Epoch;
use super::rewind::Rewind;
use crate::metrics::{GaugeHeld, Metrics};

/// How long a connection must have been idle before hyper's buffers are handed back. Short enough
/// that a pod's idle keep-alive connections soon cost little, long enough that a connection
/// carrying a request every few hundred milliseconds keeps its hyper connection.
pub const QUIET: Duration = Duration::from_secs(1);

/// What a connection's task reads to tell idle from busy. Written by [`Watched`] and
/// [`InFlight`], on the connection's own task.
#[derive(Debug)]
pub struct Activity {
    /// What [`Activity::ended`] and [`Activity::head_seen`] count from.
    since: Epoch,
    /// When the last request in flight ended, in nanoseconds after `since`.
    ended: AtomicU64,
    /// Set by every read or write that moved bytes (or saw the end); cleared by each look.
    moved: AtomicBool,
    /// The last write waited for the socket: hyper may hold bytes not yet written.
    write_blocked: AtomicBool,
    /// Requests whose responses hyper has not finished with.
    in_flight: AtomicUsize,
    /// Bytes came in since the last request started: hyper holds (part of) the next head, which
    /// would have to be copied out and read again if the connection were taken apart.
    head_arriving: AtomicBool,
    /// When a look first saw that head arriving, in nanoseconds after `since`, plus one (0: not
    /// yet). Cleared as each request starts.
    head_seen: AtomicU64,
}

/// How long a client connection may wait between requests.
#[derive(Clone, Copy, Debug)]
pub struct Waits {
    /// From the end of the last request (or the connection's start) to the first byte of the next.
    pub keep_alive: Duration,
    /// From when a head is seen arriving to its end.
    pub header_read: Duration,
    /// How long a client may take nothing of a response waiting to be written; `None`: for ever.
    pub stream_idle: Option<Duration>,
}

/// What one look at a connection found.
#[derive(Debug, PartialEq, Eq)]
pub enum Look {
    /// Something happened since the last look, or is still under way.
    Busy,
    /// Nothing moved since the last look, no request is in flight or arriving, and nothing waits
    /// to be written.
    Idle,
    /// Nothing moved since the last look, and a request's response waits to be written: the
    /// client is taking none of it.
    Stuck,
}

impl Activity {
    /// A connection that starts now, with nothing moved yet.
    pub(super) fn new() -> Self {
        Activity {
            since: Epoch::now(),
            ended: AtomicU64::new(0),
            moved: AtomicBool::new(false),
            write_blocked: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            head_arriving: AtomicBool::new(false),
            head_seen: AtomicU64::new(0),
        }
    }

    /// When the last request in flight ended (the connection's start if none has).
    pub(super) fn ended_at(&self) -> Instant {
        self.since.at(self.ended.load(Relaxed))
    }

    /// Whether a request is in flight: its response not yet finished with.
    pub(super) fn in_flight(&self) -> bool {
        self.in_flight.load(Relaxed) > 0
    }

    /// The deadline for the next request, looked at `now`: none while a request is in flight; the
    /// header read timeout after its head was first seen arriving (noted now if this is the first
    /// look to see it); else the keep-alive timeout after the last request ended (the connection's
    /// start if none has). Idle time and bytes of a head that has not completed do not move it.
    fn next_deadline(&self, now: Instant, waits: Waits) -> Option<Instant> {
        if self.in_flight.load(Relaxed) > 0 {
            return None;
        }
        if !self.head_arriving.load(Relaxed) {
            return Some(self.ended_at() + waits.keep_alive);
        }
        let seen = match self.head_seen.load(Relaxed) {
            0 => {
                self.head_seen.store(self.since.nanos(now).min(u64::MAX - 1) + 1, Relaxed);
                now
            }
            at => self.since.at(at - 1),
        };
        Some(seen + waits.header_read)
    }

    /// Looks at the connection, and starts the next period of watching.
    pub fn look(&self) -> Look {
        let moved = self.moved.swap(false, Relaxed);
        let in_flight = self.in_flight.load(Relaxed) > 0;
        let blocked = self.write_blocked.load(Relaxed);
        if moved {
            Look::Busy
        } else if in_flight && blocked {
            Look::Stuck
        } else if in_flight || blocked || self.head_arriving.load(Relaxed) {
            Look::Busy
        } else {
            Look::Idle
        }
    }

    fn wrote<T>(&self, r: &Poll<io::Result<T>>) {
        match r {
            Poll::Ready(_) => {
                self.write_blocked.store(false, Relaxed);
                self.moved.store(true, Relaxed);
            }
            Poll::Pending => self.write_blocked.store(true, Relaxed),
        }
    }
}

/// A request whose response hyper has not finished with; counted in [`Activity`] until dropped,
/// with the slot of the connection budget it holds, if any.
#[derive(Debug)]
pub struct InFlight {
    activity: Arc<Activity>,
    /// Held, not read: dropped with the request.
    _slot: Option<StreamSlot>,
}

/// What an HTTP/2 stream holds of its connection's budget (see `idle_h2`): put in the request's
/// extensions, and held by its [`InFlight`] until the response is finished with.
#[derive(Clone)]
pub struct StreamSlot(pub Arc<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for StreamSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamSlot")
    }
}

impl InFlight {
    fn new(activity: &Arc<Activity>, slot: Option<StreamSlot>) -> Self {
        activity.in_flight.fetch_add(1, Relaxed);
        activity.head_arriving.store(false, Relaxed);
        activity.head_seen.store(0, Relaxed);
        InFlight { activity: activity.clone(), _slot: slot }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.activity.in_flight.fetch_sub(1, Relaxed) == 1 {
            // The wait for the next head starts now; saturates after 584 years.
            self.activity.ended.store(self.activity.since.nanos(Instant::now()), Relaxed);
        }
    }
}

/// The client's socket, noting in [`Activity`] when bytes move.
#[derive(Debug)]
pub struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        if r.is_ready() {
            self.activity.moved.store(true, Relaxed);
            if buf.filled().len() > before {
                self.activity.head_arriving.store(true, Relaxed);
            }
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.activity.wrote(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.activity.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The connection's service, counting its requests in flight.
#[derive(Clone, Debug)]
pub struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Counted<S> {
    /// `inner`, counting its requests in flight in `activity`.
    pub(super) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Counted { inner, activity }
    }
}

impl<S, B> tower::Service<Request<Incoming>> for Counted<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
{
    type Response = Response<CountedBody<B>>;
    type Error = Infallible;
    type Future = CountedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        let slot = req.extensions_mut().remove::<StreamSlot>();
        let in_flight = Some(InFlight::new(&self.activity, slot));
        CountedFuture { inner: self.inner.call(req), in_flight }
    }
}

/// The response future of [`Counted`]: the count moves into the response body.
#[pin_project]
#[derive(Debug)]
pub struct CountedFuture<F> {
    #[pin]
    inner: F,
    in_flight: Option<InFlight>,
}

impl<F, B> Future for CountedFuture<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    type Output = Result<Response<CountedBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx))?;
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(res.map(|inner| CountedBody { inner, _in_flight: in_flight })))
    }
}

/// A response body that keeps its request counted until hyper has finished with it.
#[pin_project]
#[derive(Debug)]
pub struct CountedBody<B> {
    #[pin]
    inner: B,
    _in_flight: Option<InFlight>,
}

impl<B: Body> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

type Io = TokioIo<Rewind<Watched>>;
type Conn<S> = http1::UpgradeableConnection<Io, TowerToHyperService<Counted<S>>>;

/// What bounds an idle connection, and where idle connections are counted.
#[derive(Debug)]
pub struct Limits<'a> {
    /// How long a client may wait between requests, and take over a head.
    pub waits: Waits,
    /// Where an idle connection gives its slot up to a new one at the connection limit.
    pub room: &'a Room,
    /// `idle_connections` is the number of connections waiting here without hyper's buffers.
    pub metrics: &'a Arc<Metrics>,
}

/// How driving one hyper connection ended.
enum Driven<C> {
    /// The connection closed (or upgraded, or was shut down gracefully).
    Closed(hyper::Result<()>),
    /// It went idle: hyper's parts.
    Idle(Box<C>),
}

/// Serves HTTP/1.1 (with upgrades) on a client's socket until the connection closes, handing
/// hyper's buffers back whenever it is idle. Once `stopped`, the requests in flight finish and the
/// connection closes (an idle one at once).
pub async fn serve<S, B>(
    http1: &http1::Builder,
    stream: TcpStream,
    service: S,
    mut stopped: Stopped,
    limits: Limits<'_>,
) -> hyper::Result<()>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + Unpin + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<crate::BoxError>,
{
    let activity = Arc::new(Activity::new());
    let mut service = TowerToHyperService::new(Counted::new(service, activity.clone()));
    let mut io = Rewind::new(Bytes::new(), Watched { stream, activity: activity.clone() });
    let waits = limits.waits;
    loop {
        let conn = Box::new(http1.serve_connection(TokioIo::new(io), service).with_upgrades());
        let conn = match drive(conn, Conn::<S>::graceful_shutdown, &activity, &mut stopped, waits, limits.room).await {
            Driven::Closed(done) => return done,
            Driven::Idle(conn) => conn,
        };
        let Some(parts) = conn.into_parts() else { return Ok(()) };
        service = parts.service;
        let (prefix, watched) = parts.io.into_inner().into_parts();
        let unread = unread(parts.read_buf, prefix);
        if unread.is_empty() {
            // Idle means no request in flight and no byte of the next: the keep-alive wait goes on
            // from the last one's end.
            let deadline = activity.ended_at() + waits.keep_alive;
            let _idle = GaugeHeld::new(limits.metrics, |m| &m.idle_connections);
            let _standing_by = limits.room.idle();
            tokio::select! {
                // The socket's own read-readiness slot rather than `readable()`, whose waiter
                // (152 bytes) would be part of every idle connection's task.
                ready = std::future::poll_fn(|cx| watched.stream.poll_read_ready(cx)) => if ready.is_err() { return Ok(()) },
                () = stopped.wait() => return Ok(()),
                () = limits.room.wanted() => {
                    tracing::debug!("closed an idle keep-alive connection to make room for a new one");
                    return Ok(());
                }
                () = tokio::time::sleep_until(deadline) => {
                    tracing::debug!(timeout = ?waits.keep_alive, "closed an idle keep-alive connection");
                    return Ok(());
                }
            }
        }
        io = Rewind::new(unread, watched);
    }
}

/// Drives `conn` until it closes or goes idle for [`QUIET`], closing it if the next request does
/// not come in time ([`Activity::next_deadline`]). Once `stopped`, starts its graceful close with
/// `close` and drives it to the end. A head that has been arriving since an earlier look stands by
/// in `room` until it is whole, as an idle connection does: at the connection limit, clients
/// trickling heads (each within the header read timeout, and coming back) would otherwise keep
/// every new client out, the kubelet's probes of the application among them.
async fn drive<C>(
    mut conn: Box<C>,
    close: fn(Pin<&mut C>),
    activity: &Activity,
    stopped: &mut Stopped,
    waits: Waits,
    room: &Room,
) -> Driven<C>
where
    C: Future<Output = hyper::Result<()>> + Unpin,
{
    let now = Instant::now();
    let mut check = pin!(tokio::time::sleep_until(next_look(now, activity.next_deadline(now, waits))));
    // The last look, and since when every look has found the client taking nothing.
    let (mut looked, mut stuck_since) = (now, None);
    let mut stalled: Option<Stalled<'_>> = None;
    loop {
        tokio::select! {
            biased;
            done = &mut *conn => return Driven::Closed(done),
            () = stopped.wait() => break,
            () = Stalled::wanted(&mut stalled) => {
                if !activity.in_flight() {
                    tracing::debug!("closed a connection whose request head stalled, to make room for a new one");
                    return Driven::Closed(Ok(()));
                }
                // The head came whole as it was asked: its request is served, and the next
                // connection standing by makes the room.
                stalled = None;
                room.pass_on();
            }
            () = check.as_mut() => {
                let now = Instant::now();
                let seen_before = activity.head_seen.load(Relaxed) != 0;
                let deadline = activity.next_deadline(now, waits);
                if let Some(d) = deadline.filter(|d| now >= *d) {
                    if activity.head_arriving.load(Relaxed) {
                        tracing::debug!(timeout = ?waits.header_read, late = ?now - d, "closed a connection whose request head did not complete in time");
                    } else {
                        tracing::debug!(timeout = ?waits.keep_alive, late = ?now - d, "closed an idle keep-alive connection");
                    }
                    return Driven::Closed(Ok(()));
                }
                match activity.look() {
                    Look::Idle => return Driven::Idle(conn),
                    Look::Stuck => {
                        // Nothing has moved since the last look, at least.
                        let since = *stuck_since.get_or_insert(looked);
                        if let Some(limit) = waits.stream_idle.filter(|limit| now - since >= *limit) {
                            tracing::debug!(timeout = ?limit, "closed a connection whose client took nothing of its response in time");
                            return Driven::Closed(Ok(()));
                        }
                    }
                    Look::Busy => stuck_since = None,
                }
                let stalls = seen_before && activity.head_arriving.load(Relaxed) && !activity.in_flight();
                if !stalls {
                    stalled = None;
                } else if stalled.is_none() {
                    stalled = Some(Stalled { _standing_by: room.idle(), wanted: Box::pin(room.wanted()) });
                }
                looked = now;
                check.as_mut().reset(next_look(now, deadline));
            }
        }
    }
    close(Pin::new(&mut *conn));
    Driven::Closed(conn.await)
}

/// A connection whose request head has been arriving since an earlier look, standing by to make
/// room. Made only then (its wait boxed), so that it costs the connections that send their heads
/// whole nothing.
struct Stalled<'a> {
    _standing_by: Idle,
    wanted: Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
}

impl Stalled<'_> {
    /// Resolves when a stalled connection should close to make room; never when there is none.
    async fn wanted(stalled: &mut Option<Stalled<'_>>) {
        match stalled {
            Some(s) => s.wanted.as_mut().await,
            None => std::future::pending().await,
        }
    }
}

/// When to look at the connection next: after [`QUIET`], or at the head's deadline if sooner.
fn next_look(now: Instant, deadline: Option<Instant>) -> Instant {
    let quiet = now + QUIET;
    deadline.map_or(quiet, |d| d.min(quiet))
}

/// The bytes hyper had read but not used, then those it had not yet read of the last carry-over.
/// Copied out of hyper's read buffer, which would otherwise stay allocated for their sake.
fn unread(read_buf: Bytes, prefix: Bytes) -> Bytes {
    match (read_buf.is_empty(), prefix.is_empty()) {
        (true, true) => Bytes::new(),
        (true, false) => prefix,
        _ => {
            let mut all = BytesMut::with_capacity(read_buf.len() + prefix.len());
            all.extend_from_slice(&read_buf);
            all.extend_from_slice(&prefix);
            all.freeze()
        }
    }
}

#[cfg(test)]
#[path = "idle_tests.rs"]
mod tests;
