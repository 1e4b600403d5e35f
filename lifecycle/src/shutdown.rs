//! Stopping gracefully: a `Shutdown` every part of a process is told to stop through, the `Stopped`
//! handle each part waits on, and the accept loop every TCP server of the project runs.

use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::latch::Latch;
pub use crate::latch::Wait;
use crate::logging::Throttle;

/// How long the accept loop waits after a failed accept (usually out of file descriptors) before
/// trying again, instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Refusals answered at once per server; beyond them a refused connection is closed without an
/// answer. Each answer holds its socket for up to a second, so without this bound a flood beyond
/// the connection limit would hold as many sockets (and tasks) as it opens.
const REFUSALS_AT_ONCE: usize = 64;

/// Refused connections are logged at most once per this period, with how many there were: a flood
/// of connections must not become a flood of log lines.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// How long a connection that finds the limit reached waits for the slot of the idle connection it
/// asked to close: that one closes at once, so the wait is short even on a busy machine.
const ROOM_WAIT: Duration = Duration::from_millis(20);

/// Tells every [`Stopped`] made from it to stop; dropping it does too.
#[derive(Debug)]
pub struct Shutdown(Arc<Latch>);

/// Waits for its [`Shutdown`]; cheap to clone, one per task, and cheap to poll while waiting.
#[derive(Clone, Debug)]
pub struct Stopped(Arc<Latch>);

impl Shutdown {
    /// A shutdown not yet triggered, and the first handle to wait on it.
    pub fn new() -> (Shutdown, Stopped) {
        let latch = Arc::new(Latch::default());
        (Shutdown(latch.clone()), Stopped(latch))
    }

    /// A shutdown triggered when `trigger` completes (e.g. [`crate::signal::terminated`]).
    pub fn on(trigger: impl Future<Output = ()> + Send + 'static) -> Stopped {
        let (shutdown, stopped) = Shutdown::new();
        tokio::spawn(async move {
            trigger.await;
            shutdown.trigger();
        });
        stopped
    }

    /// Another handle to wait on this shutdown.
    pub fn stopped(&self) -> Stopped {
        Stopped(self.0.clone())
    }

    /// Tells every handle to stop.
    pub fn trigger(&self) {
        self.0.set();
    }
}

impl Drop for Shutdown {
    fn drop(&mut self) {
        self.0.set();
    }
}

impl Stopped {
    /// Resolves once the shutdown is triggered (or its `Shutdown` is gone).
    pub fn wait(&mut self) -> Wait<'_> {
        self.0.wait()
    }
}

/// How many connections may be served at once, shared by every server given a clone: one
/// process-wide limit is what bounds the process's memory, however its listeners split the load.
#[derive(Clone, Debug)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: usize,
    room: Room,
}

/// Where connections that are only waiting for their next request (idle keep-alive connections)
/// stand by to give their slot up: at the limit, a new connection is served in place of the ones
/// idle longest rather than refused, as nginx does.
#[derive(Clone, Debug, Default)]
pub struct Room {
    wanted: Arc<Notify>,
    idle: Arc<AtomicUsize>,
}

/// An idle connection standing by (see [`Room::idle`]); counted until dropped.
#[derive(Debug)]
pub struct Idle(Room);

impl Room {
    /// Marks a connection idle until the guard is dropped; while idle, it waits on
    /// [`Room::wanted`] too.
    pub fn idle(&self) -> Idle {
        self.idle.fetch_add(1, Relaxed);
        Idle(self.clone())
    }

    /// Resolves when the connection should close to make room for a new one. Waiters are told in
    /// the order they began to wait: the longest idle first.
    pub async fn wanted(&self) {
        self.wanted.notified().await;
    }

    /// Passes a request to make room on to the connection standing by longest, for one that was
    /// asked as it turned busy and serves its request instead.
    pub fn pass_on(&self) {
        self.make();
    }

    /// Asks the longest idle connection to close; whether there was one. (Should it turn busy as
    /// it is asked, before its wait has seen the request, the request passes to the next.)
    fn make(&self) -> bool {
        let idle = self.idle.load(Relaxed) > 0;
        if idle {
            self.wanted.notify_one();
        }
        idle
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        self.0.idle.fetch_sub(1, Relaxed);
    }
}

impl ConnectionLimit {
    /// At most `max` connections at once.
    pub fn new(max: usize) -> Self {
        ConnectionLimit { permits: Arc::new(Semaphore::new(max)), max, room: Room::default() }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Slots taken now: connections, and HTTP/2 streams beside others ([`ConnectionLimit::try_stream`]).
    pub fn in_use(&self) -> usize {
        self.max.saturating_sub(self.permits.available_permits())
    }

    /// Where idle connections under this limit stand by to give their slot up.
    pub fn room(&self) -> &Room {
        &self.room
    }

    /// A slot for one more request in flight on a connection already counted (an HTTP/2 stream
    /// beside others), held until its response is finished with: from the same budget, so that a
    /// connection's streams cannot multiply what the limit bounds. `None` at the limit; no idle
    /// connection is closed for it.
    pub fn try_stream(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// A slot for one connection, held until it closes: at the limit, one that idle connections
    /// asked to close have given up; `None` when there is none.
    async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        if !self.room.make() {
            return None;
        }
        tokio::time::timeout(ROOM_WAIT, self.permits.clone().acquire_owned()).await.ok()?.ok()
    }
}

/// How a server accepts connections.
#[derive(Clone, Debug)]
pub struct AcceptSettings {
    /// Its name in logs.
    pub server: &'static str,
    /// Connections served at once (with every server sharing the limit); one beyond it goes to the
    /// refusal instead. `None`: no limit.
    pub max_connections: Option<ConnectionLimit>,
    /// How long open connections get to finish their requests once stopped.
    pub grace: Duration,
}

/// Accepts connections on `listener` until `stopped`, handing each (with `TCP_NODELAY` set) to
/// `handle` on its own task along with a [`Watcher`] to serve its HTTP connection through; one
/// beyond the connection limit goes to `refuse` instead (see [`close`]), at most
/// [`REFUSALS_AT_ONCE`] at a time. A failed accept is logged and retried after a short back-off.
/// Once stopped, the listener is closed and the watched connections get the grace period to finish
/// their requests (idle ones close at once).
pub async fn serve<H, F, R, G>(listener: TcpListener, stopped: Stopped, settings: AcceptSettings, handle: H, refuse: R)
where
    H: Fn(TcpStream, SocketAddr, Watcher) -> F,
    F: Future<Output = ()> + Send + 'static,
    R: Fn(TcpStream) -> G,
    G: Future<Output = ()> + Send + 'static,
{
    serve_all(vec![listener], stopped, settings, handle, refuse).await;
}

/// [`serve`] for one server listening on several sockets (an address of each IP family): each
/// connection is accepted from whichever has one, and they close together.
pub async fn serve_all<H, F, R, G>(
    listeners: Vec<TcpListener>,
    mut stopped: Stopped,
    settings: AcceptSettings,
    handle: H,
    refuse: R,
) where
    H: Fn(TcpStream, SocketAddr, Watcher) -> F,
    F: Future<Output = ()> + Send + 'static,
    R: Fn(TcpStream) -> G,
    G: Future<Output = ()> + Send + 'static,
{
    let AcceptSettings { server, max_connections: limit, grace } = settings;
    let refusing = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let graceful = GracefulShutdown::new();
    let mut refusals = RefusalLog(Throttle::new(REFUSAL_LOG_EVERY));
    let mut first = 0;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = accept_any(&listeners, &mut first) => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(server, error = %e, "accept failed; backing off");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = stopped.wait() => break,
        };
        let _ = stream.set_nodelay(true);
        let permit = match &limit {
            None => None,
            Some(limit) => match limit.acquire().await {
                Some(permit) => Some(permit),
                None => {
                    refusals.refused(server, peer, limit.max);
                    // The refusal is made either way (it may count itself); when too many are
                    // already being answered, dropping it unstarted closes the connection at once.
                    let answer = refuse(stream);
                    if let Ok(slot) = refusing.clone().try_acquire_owned() {
                        tokio::spawn(async move {
                            answer.await;
                            drop(slot);
                        });
                    }
                    continue;
                }
            },
        };
        tokio::spawn(Holding { conn: handle(stream, peer, graceful.watcher()), _permit: permit });
    }
    drop(listeners);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(server, ?grace, "connections still open after the grace period were closed");
    }
}

/// The next connection on any of `listeners`, asking from `first` on and the next one first next
/// time, so that a busy one cannot keep the others waiting.
async fn accept_any(listeners: &[TcpListener], first: &mut usize) -> std::io::Result<(TcpStream, SocketAddr)> {
    std::future::poll_fn(|cx| {
        let n = listeners.len();
        for i in 0..n {
            let at = (*first + i) % n;
            if let Poll::Ready(accepted) = listeners[at].poll_accept(cx) {
                *first = (at + 1) % n;
                return Poll::Ready(accepted);
            }
        }
        Poll::Pending
    })
    .await
}

/// A connection's task: its future, and its slot under the connection limit until it ends.
///
/// A named future rather than `async move { conn.await; drop(permit) }`: such a block keeps the
/// captured future and the one it awaits side by side, twice the connection's state in every task.
#[pin_project::pin_project]
struct Holding<F> {
    #[pin]
    conn: F,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<F: Future<Output = ()>> Future for Holding<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().conn.poll(cx)
    }
}

/// Counts refused connections and logs them once per [`REFUSAL_LOG_EVERY`].
struct RefusalLog(Throttle);

impl RefusalLog {
    fn refused(&mut self, server: &'static str, peer: SocketAddr, limit: usize) {
        match self.0.count(1) {
            Some(since) => tracing::warn!(
                server, %peer, limit, refused_since_last = since,
                "connection limit reached: refusing connections"
            ),
            None => tracing::debug!(server, %peer, "connection limit reached: refused"),
        }
    }
}

/// The refusal that only closes the connection.
pub async fn close(stream: TcpStream) {
    drop(stream);
}
