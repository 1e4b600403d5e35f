//! The HTTP server: hyper 1 on one listener, HTTP/1 and HTTP/2, stopping gracefully.

use super::api;
use super::state::State;
use super::xray_api;
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// How long open connections get to finish once shutdown starts.
const DRAIN: Duration = Duration::from_secs(5);

/// The X-Ray API for POSTs to its paths (their body read whole, within a bound), else the page.
pub async fn answer(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::POST || !xray_api::is_operation(req.uri().path()) {
        return api::handle(state, &req);
    }
    let (parts, body) = req.into_parts();
    match xray_api::read_body(body).await {
        Ok(body) => xray_api::handle(state, parts.uri.path(), &body),
        Err(e) => xray_api::error_response(&e),
    }
}

/// Serves `handler`'s answers until `shutdown` turns true, then drains open connections.
pub async fn run<H, F>(listener: TcpListener, handler: H, mut shutdown: watch::Receiver<bool>)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = super::stopped(&mut shutdown) => break,
        };
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let resp = handler(req);
            async move { Ok::<_, Infallible>(resp.await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => info!("http server stopped"),
        _ = tokio::time::sleep(DRAIN) => warn!("http connections still open after the drain time"),
    }
}
