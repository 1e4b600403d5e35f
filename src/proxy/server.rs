//! Accepting connections and serving HTTP/1.1 (with upgrades) and HTTP/2 on them, with limits and
//! graceful shutdown.

use super::client_wait::StreamExecutor;
use super::{idle, idle_h2};
use crate::metrics::Metrics;
use http::{Request, Response, Version};
use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use xray_lifecycle::logging::Throttle;
use xray_lifecycle::shutdown::{self, AcceptSettings, ConnectionLimit, Stopped};

/// Limits applied to every client connection.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Time a client has to send a request head, once it has begun.
    pub header_read_timeout: Duration,
    /// How long an idle connection (no request in flight, no HTTP/2 stream open) is kept for its
    /// next request.
    pub keep_alive_timeout: Duration,
    /// How long a client may take nothing of a response waiting to be written (an HTTP/1.1
    /// connection is closed, an HTTP/2 stream reset).
    pub stream_idle_timeout: Option<Duration>,
    /// Largest request head accepted (a larger one gets 431).
    pub max_header_size: usize,
    /// How long in-flight requests may run on after the listeners close.
    pub shutdown_grace: Duration,
    /// How long connections are still accepted after readiness has turned, before the listeners
    /// close.
    pub drain_delay: Duration,
    /// Connections served at once, by every listener of the process together; more are answered
    /// 503 and closed.
    pub max_connections: usize,
}

/// The HTTP/1.1 and HTTP/2 servers, with the limits applied.
///
/// Which of the two a connection speaks is known before it is served (peeked at on the socket, or
/// sniffed inside a tunnel), so hyper's own builders serve it. hyper-util's `auto` builder reads
/// the first 24 bytes itself to tell the versions apart and hands them back as a read of their
/// own: hyper's read buffer, 8 KB, then had to grow to 16 KB on every connection to take the rest
/// of the first request head, and kept that size for the connection's life.
#[derive(Debug)]
pub struct Http {
    /// HTTP/1.1 for the connections [`idle::serve`] serves, which times request heads itself.
    http1: http1::Builder,
    /// HTTP/1.1 with hyper's header read timeout, for connections served by [`Http::serve`] (HTTP
    /// inside a `CONNECT`).
    http1_timed: http1::Builder,
    http2: http2::Builder<StreamExecutor>,
}

/// A connection's service, as hyper calls it.
type Hyper<S> = TowerToHyperService<S>;

impl Http {
    /// The servers with the limits of `s`.
    pub fn new(s: &ServerSettings) -> Http {
        let mut http1 = http1::Builder::new();
        // hyper would otherwise time every request head itself, 30 s by default.
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(s.max_header_size.max(8192))
            .keep_alive(true);
        let mut http1_timed = http1.clone();
        // hyper's timer runs from the end of one request to the whole head of the next, idle time
        // included: the header read timeout alone would close an idle keep-alive connection after
        // 10 s, where a client pooling it expects the keep-alive timeout (and may send a request
        // as it closes). Only the pod's own processes reach a tunnel, so the longer of the two
        // bounds a head there too.
        http1_timed.header_read_timeout(s.header_read_timeout.max(s.keep_alive_timeout));
        let mut http2 = http2::Builder::new(StreamExecutor::new(s.stream_idle_timeout));
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(s.max_header_size).unwrap_or(u32::MAX))
            // Idle h2 connections are probed so that dead clients do not hold streams for ever.
            .keep_alive_interval(Some(Duration::from_secs(60)));
        Http { http1, http1_timed, http2 }
    }

    /// Serves `io`, which speaks `version` (HTTP/2 with prior knowledge, else HTTP/1.1 with
    /// upgrades), until the connection closes. Once `stopped`, the requests in flight finish and the
    /// connection closes (an idle one at once).
    pub async fn serve<I, S, B>(&self, io: I, version: Version, service: S, stopped: Stopped) -> hyper::Result<()>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<crate::BoxError>,
    {
        let (io, service) = (TokioIo::new(io), TowerToHyperService::new(service));
        // The connection lives in an allocation of its own, sized for the version it speaks: inside
        // the connection's task it would cost every connection the larger (HTTP/2's) size, and an
        // idle keep-alive connection is mostly this state and hyper's buffers.
        if version == Version::HTTP_2 {
            let conn = Box::pin(self.http2.serve_connection(io, service));
            until_closed(conn, stopped, http2::Connection::<TokioIo<I>, Hyper<S>, StreamExecutor>::graceful_shutdown)
                .await
        } else {
            let conn = Box::pin(self.http1_timed.serve_connection(io, service).with_upgrades());
            until_closed(conn, stopped, http1::UpgradeableConnection::<TokioIo<I>, Hyper<S>>::graceful_shutdown).await
        }
    }
}

/// Drives `conn` until it closes; once `stopped`, starts its graceful close with `close` first.
async fn until_closed<C>(mut conn: Pin<Box<C>>, mut stopped: Stopped, close: fn(Pin<&mut C>)) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
{
    tokio::select! {
        done = conn.as_mut() => return done,
        () = stopped.wait() => close(conn.as_mut()),
    }
    conn.await
}

/// Serves HTTP on one accepted connection; handed to the connection's handler, which drops it
/// unused when the connection turns out not to be HTTP.
pub struct HttpServer {
    /// What the listener's connections share, behind one pointer: every connection's task holds
    /// this for its whole life, so each byte here is a byte of every idle connection.
    listener: Arc<Listener>,
    /// Held while the connection is served: the listener's graceful shutdown waits for it.
    watcher: Watcher,
    stopped: Stopped,
}

/// The servers, waits and limits every connection of one listener is served with.
#[derive(Debug)]
struct Listener {
    http: Http,
    waits: idle::Waits,
    /// The process's connection limit: where idle connections stand by to make room, and what
    /// HTTP/2 streams beyond a connection's first share.
    limit: ConnectionLimit,
    metrics: Arc<Metrics>,
    /// Its name in logs.
    server: &'static str,
    /// When to tell of request heads the HTTP/1 parser refused: a hostile client can send many.
    malformed: Mutex<Throttle>,
}

/// How often request heads refused as malformed are told of, with their count.
const MALFORMED_LOG_EVERY: Duration = Duration::from_secs(10);

impl HttpServer {
    /// Serves HTTP/1.1 (with upgrades) or HTTP/2 on `stream` until the connection closes or a
    /// graceful shutdown completes it. An idle HTTP/1.1 connection gives hyper's buffers back
    /// ([`idle`]); idle connections of either version close at the keep-alive timeout and make
    /// room at the connection limit ([`idle_h2`] for HTTP/2).
    pub async fn serve<S, B>(self, stream: TcpStream, peer: SocketAddr, service: S)
    where
        S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + Unpin
            + 'static,
        S::Future: Send + 'static,
        B: Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<crate::BoxError>,
    {
        // Telling HTTP/2 from HTTP/1 waits for the client's first bytes, and the header timer
        // only starts after that: a client that says nothing must not hold the connection for ever.
        let l = &*self.listener;
        let Some(version) = version(&stream, l.waits.header_read).await else {
            tracing::debug!(%peer, timeout = ?l.waits.header_read, "closed a connection that sent no request");
            return;
        };
        let served = if version == Version::HTTP_2 {
            let budget = idle_h2::Budget { limit: l.limit.clone(), metrics: l.metrics.clone() };
            idle_h2::serve(&l.http.http2, stream, service, self.stopped, l.waits, l.limit.room(), budget).await
        } else {
            let limits = idle::Limits { waits: l.waits, room: l.limit.room(), metrics: &l.metrics };
            idle::serve(&l.http.http1, stream, service, self.stopped, limits).await
        };
        match served {
            // hyper's parser answered `400` (or `431`) and closed: no request was formed, so no
            // record tells of it; the count and the log do.
            Err(e) if e.is_parse() => {
                l.metrics.malformed_requests.fetch_add(1, Relaxed);
                let server = l.server;
                match l.malformed.lock().ok().and_then(|mut log| log.count(1)) {
                    Some(count) => {
                        tracing::info!(server, %peer, error = %e, count, "refused malformed request heads (count since last told; this one's peer and error)")
                    }
                    None => tracing::debug!(server, %peer, error = %e, "refused a malformed request head"),
                }
            }
            Err(e) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
            Ok(()) => {}
        }
        drop(self.watcher);
    }
}

/// Accepts on `listener` (named `server` in logs) until `stopped`, then lets open HTTP connections
/// finish for the grace period. `handle` runs each connection (detection, HTTP or a tunnel) on its
/// own task; a connection beyond `limit` (shared with the process's other listeners) is answered
/// 503 and closed.
pub async fn serve<H, F>(
    listeners: Vec<TcpListener>,
    server: &'static str,
    settings: ServerSettings,
    limit: ConnectionLimit,
    metrics: Arc<Metrics>,
    handle: H,
    stopped: Stopped,
) where
    H: Fn(TcpStream, SocketAddr, HttpServer) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let listener = Arc::new(Listener {
        http: Http::new(&settings),
        waits: idle::Waits {
            keep_alive: settings.keep_alive_timeout,
            header_read: settings.header_read_timeout,
            stream_idle: settings.stream_idle_timeout,
        },
        limit: limit.clone(),
        metrics: metrics.clone(),
        server,
        malformed: Mutex::new(Throttle::new(MALFORMED_LOG_EVERY)),
    });
    let accept = AcceptSettings { server, max_connections: Some(limit), grace: settings.shutdown_grace };
    let watching = stopped.clone();
    let serve_http = move |stream, peer, watcher| {
        handle(stream, peer, HttpServer { listener: listener.clone(), watcher, stopped: watching.clone() })
    };
    let too_many = move |stream| {
        metrics.connections_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        refuse(stream, http::StatusCode::SERVICE_UNAVAILABLE, "too many connections: try again later")
    };
    shutdown::serve_all(listeners, stopped, accept, serve_http, too_many).await;
}

/// Which HTTP the client speaks, from its first bytes (peeked, not read): HTTP/2 when they are
/// its connection preface, HTTP/1.1 otherwise. Waits for them at most `timeout`; `None` if the
/// client said nothing in time or closed.
async fn version(stream: &TcpStream, timeout: Duration) -> Option<Version> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; PREFACE.len()];
    super::detect::peek_until(stream, timeout, &mut buf, |seen| {
        if seen != &PREFACE[..seen.len()] {
            Some(Version::HTTP_11)
        } else {
            // A prefix of the preface: the rest is on its way.
            (seen.len() == PREFACE.len()).then_some(Version::HTTP_2)
        }
    })
    .await
}

/// Answers a connection the proxy will not serve with a short HTTP/1.1 response and closes it, so
/// that the client learns why instead of seeing a bare reset.
pub async fn refuse(mut stream: TcpStream, status: http::StatusCode, why: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let reason = status.canonical_reason().unwrap_or("");
    let body = format!("{why}\n");
    let head = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        body.len()
    );
    // Unread request bytes at close would turn the close into a reset that can destroy the answer
    // before the client reads it, so the request is read (and dropped) until the client closes,
    // within a bound.
    let answer = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}
