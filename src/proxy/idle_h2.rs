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

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use xray_lifecycle::Stopped;
use xray_lifecycle::shutdown::Room;

use super::idle::{Activity, Counted, QUIET, Waits};

/// How long a connection closed for idleness gets to complete hyper's graceful close (GOAWAY, a
/// ping and its answer: a round trip in a cluster) before it is dropped. It has no stream open, so
/// nothing is lost either way; the wait must be shorter than the one a new connection makes for the
/// slot it asked an idle connection for (20 ms, `xray_lifecycle::shutdown`), and a client that
/// never answers the ping must not keep the connection.
const CLOSE_WAIT: Duration = Duration::from_millis(10);

type Conn<I, S> = http2::Connection<TokioIo<I>, TowerToHyperService<Counted<S>>, TokioExecutor>;

/// Why the connection is being closed.
enum Close {
    /// Idle past the keep-alive timeout, or asked to make room: GOAWAY, and the connection dropped
    /// after [`CLOSE_WAIT`] unless a stream opened meanwhile.
    Idle,
    /// The process is stopping: GOAWAY, and the streams open finish (the shutdown grace bounds it).
    Stopped,
}

/// Serves HTTP/2 on a client's connection until it closes, closing it when idle (see above). Once
/// `stopped`, the streams in flight finish and the connection closes.
pub async fn serve<I, S, B>(
    http2: &http2::Builder<TokioExecutor>,
    io: I,
    service: S,
    mut stopped: Stopped,
    waits: Waits,
    room: &Room,
) -> hyper::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<crate::BoxError>,
{
    let activity = Arc::new(Activity::new());
    let service = TowerToHyperService::new(Counted::new(service, activity.clone()));
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
                break 'serve Close::Idle;
            }
            tokio::select! {
                biased;
                done = conn.as_mut() => return done,
                () = stopped.wait() => break 'serve Close::Stopped,
                () = wanted.as_mut() => {
                    tracing::debug!("closed an idle HTTP/2 connection to make room for a new one");
                    break 'serve Close::Idle;
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
        // waited for.
        Close::Idle => match tokio::time::timeout(CLOSE_WAIT, conn.as_mut()).await {
            Ok(done) => done,
            Err(_) if activity.in_flight() => conn.await,
            Err(_) => Ok(()),
        },
    }
}
