//! Accepting connections and serving HTTP/1.1 (with upgrades) and HTTP/2 on them, with limits and
//! graceful shutdown.

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
use xray_lifecycle::shutdown::{self, Stopped};

/// Limits applied to every client connection.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Time a client has to send a request head.
    pub header_read_timeout: Duration,
    /// Largest request head accepted (a larger one gets 431).
    pub max_header_size: usize,
    /// How long in-flight requests may run on after shutdown starts.
    pub shutdown_grace: Duration,
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
        let conn = self.builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
        if let Err(e) = self.watcher.watch(conn).await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// Accepts on `listener` (named `server` in logs) until `stopped`, then lets open HTTP connections
/// finish for the grace period. `handle` runs each connection (detection, HTTP or a tunnel) on its
/// own task.
pub async fn serve<H, F>(
    listener: TcpListener,
    server: &'static str,
    settings: ServerSettings,
    handle: H,
    stopped: Stopped,
) where
    H: Fn(TcpStream, SocketAddr, HttpServer) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let builder = Arc::new(builder(&settings));
    shutdown::serve(listener, stopped, settings.shutdown_grace, server, move |stream, peer, watcher| {
        handle(stream, peer, HttpServer { builder: builder.clone(), watcher })
    })
    .await;
}
