//! The HTTP servers: hyper 1 on one listener, HTTP/1 and HTTP/2, stopping gracefully.

use super::api;
use super::otlp;
use super::state::State;
use super::xray_api;
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{debug, info};
use xray_lifecycle::shutdown::{self, AcceptSettings, Stopped};

/// How long open connections get to finish once shutdown starts.
const DRAIN: Duration = Duration::from_secs(5);

/// OTLP/HTTP spans and the X-Ray API for POSTs (their body read whole, within a bound), else the
/// page.
pub async fn answer(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    // OTLP/HTTP exporters post here, on the page's own address, as to a collector.
    if req.method() == Method::POST && req.uri().path() == "/v1/traces" {
        return otlp::ingest(state, req).await;
    }
    if req.method() != Method::POST {
        return api::handle(state, &req);
    }
    // Any other POST is an X-Ray API call; one to a path no operation has is told so in X-Ray's
    // error shape, its body left unread.
    if !xray_api::is_operation(req.uri().path()) {
        return xray_api::handle(state, req.uri().path(), &[]);
    }
    let (parts, body) = req.into_parts();
    match xray_api::read_body(body).await {
        Ok(body) => xray_api::handle(state, parts.uri.path(), &body),
        Err(e) => xray_api::error_response(&e),
    }
}

/// Serves `handler`'s answers until `stopped`, then drains open connections; `server` names it in logs.
pub async fn run<H, F>(server: &'static str, listener: TcpListener, handler: H, stopped: Stopped)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let accept = AcceptSettings { server, max_connections: None, grace: DRAIN };
    let serve_http = move |stream, peer, watcher: Watcher| {
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let resp = handler(req);
            async move { Ok::<_, Infallible>(resp.await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        async move {
            if let Err(e) = watcher.watch(conn).await {
                debug!(%peer, error = %e, "http connection ended with an error");
            }
        }
    };
    shutdown::serve(listener, stopped, accept, serve_http, shutdown::close).await;
    info!(server, "http server stopped");
}
