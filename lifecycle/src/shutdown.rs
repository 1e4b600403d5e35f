//! Stopping gracefully: a `Shutdown` every part of a process is told to stop through, the `Stopped`
//! handle each part waits on, and the accept loop every TCP server of the project runs.

use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// How long the accept loop waits after a failed accept (usually out of file descriptors) before
/// trying again, instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Tells every [`Stopped`] made from it to stop; dropping it does too.
#[derive(Debug)]
pub struct Shutdown(watch::Sender<bool>);

/// Waits for its [`Shutdown`]; cheap to clone, one per task.
#[derive(Clone, Debug)]
pub struct Stopped(watch::Receiver<bool>);

impl Shutdown {
    /// A shutdown not yet triggered, and the first handle to wait on it.
    pub fn new() -> (Shutdown, Stopped) {
        let (tx, rx) = watch::channel(false);
        (Shutdown(tx), Stopped(rx))
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
        Stopped(self.0.subscribe())
    }

    /// Tells every handle to stop.
    pub fn trigger(&self) {
        // No receiver left means nothing is waiting: nothing to tell.
        let _ = self.0.send(true);
    }
}

impl Stopped {
    /// Resolves once the shutdown is triggered (or its `Shutdown` is gone).
    pub async fn wait(&mut self) {
        // The guard `wait_for` returns must not be held across an await: drop it here.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Whether the shutdown has been triggered.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }
}

/// How a server accepts connections.
#[derive(Clone, Debug)]
pub struct AcceptSettings {
    /// Its name in logs.
    pub server: &'static str,
    /// Connections served at once; one beyond it goes to the refusal instead. `None`: no limit.
    pub max_connections: Option<usize>,
    /// How long open connections get to finish their requests once stopped.
    pub grace: Duration,
}

/// Accepts connections on `listener` until `stopped`, handing each (with `TCP_NODELAY` set) to
/// `handle` on its own task along with a [`Watcher`] to serve its HTTP connection through; one
/// beyond the connection limit goes to `refuse` instead (see [`close`]). A failed accept is logged
/// and retried after a short back-off. Once stopped, the listener is closed and the watched
/// connections get the grace period to finish their requests (idle ones close at once).
pub async fn serve<H, F, R, G>(
    listener: TcpListener,
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
    let AcceptSettings { server, max_connections, grace } = settings;
    let connections = max_connections.map(|n| Arc::new(Semaphore::new(n)));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
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
        let permit = match &connections {
            None => None,
            Some(limit) => match limit.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    tracing::warn!(server, %peer, limit = ?max_connections, "connection limit reached: refused");
                    tokio::spawn(refuse(stream));
                    continue;
                }
            },
        };
        let conn = handle(stream, peer, graceful.watcher());
        tokio::spawn(async move {
            conn.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(server, ?grace, "connections still open after the grace period were closed");
    }
}

/// The refusal that only closes the connection.
pub async fn close(stream: TcpStream) {
    drop(stream);
}
