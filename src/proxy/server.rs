//! Accepting connections and serving HTTP/1.1 (with upgrades) and HTTP/2 on them, with limits and
//! graceful shutdown.

use crate::metrics::Metrics;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use xray_lifecycle::shutdown::{self, AcceptSettings, ConnectionLimit, Stopped};

/// Limits applied to every client connection.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Time a client has to send a request head.
    pub header_read_timeout: Duration,
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

/// The HTTP/1 + HTTP/2 connection builder with the limits applied.
pub fn builder(s: &ServerSettings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_read_timeout)
        .max_buf_size(s.max_header_size.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(s.max_header_size).unwrap_or(u32::MAX))
        // Idle h2 connections are probed so that dead clients do not hold streams for ever.
        .keep_alive_interval(Some(Duration::from_secs(60)));
    b
}

/// Serves HTTP on one accepted connection; handed to the connection's handler, which drops it
/// unused when the connection turns out not to be HTTP.
pub struct HttpServer {
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    header_read_timeout: Duration,
}

impl HttpServer {
    /// Serves HTTP/1.1 (with upgrades) or HTTP/2 on `stream` until the connection closes or a
    /// graceful shutdown completes it.
    pub async fn serve<S, B>(self, stream: TcpStream, peer: SocketAddr, service: S)
    where
        S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<crate::BoxError>,
    {
        // Telling HTTP/2 from HTTP/1 waits for the client's first bytes, and the header timer
        // only starts after that: a client that says nothing must not hold the connection for ever.
        if !version_known(&stream, self.header_read_timeout).await {
            tracing::debug!(%peer, timeout = ?self.header_read_timeout, "closed a connection that sent no request");
            return;
        }
        let conn = self.builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
        if let Err(e) = self.watcher.watch(conn).await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// Accepts on `listener` (named `server` in logs) until `stopped`, then lets open HTTP connections
/// finish for the grace period. `handle` runs each connection (detection, HTTP or a tunnel) on its
/// own task; a connection beyond `limit` (shared with the process's other listeners) is answered
/// 503 and closed.
pub async fn serve<H, F>(
    listener: TcpListener,
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
    let builder = Arc::new(builder(&settings));
    let header_read_timeout = settings.header_read_timeout;
    let accept = AcceptSettings { server, max_connections: Some(limit), grace: settings.shutdown_grace };
    let serve_http = move |stream, peer, watcher| {
        handle(stream, peer, HttpServer { builder: builder.clone(), watcher, header_read_timeout })
    };
    let too_many = move |stream| {
        metrics.connections_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        refuse(stream, http::StatusCode::SERVICE_UNAVAILABLE, "too many connections: try again later")
    };
    shutdown::serve(listener, stopped, accept, serve_http, too_many).await;
}

/// Waits until the first bytes of `stream` tell HTTP/2's preface from anything else (what the
/// connection builder needs to choose), at most `timeout`; false if the client said nothing in time
/// or closed.
async fn version_known(stream: &TcpStream, timeout: Duration) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let wait = async {
        let mut buf = [0u8; PREFACE.len()];
        loop {
            match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) if n == buf.len() || buf[..n] != PREFACE[..n] => return true,
                // A prefix of the preface: the rest is on its way.
                Ok(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    };
    tokio::time::timeout(timeout, wait).await.unwrap_or(false)
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
