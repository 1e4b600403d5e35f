//! The HTTP server: hyper 1 on one listener, HTTP/1 and HTTP/2, stopping gracefully.

use super::state::State;
use super::{api, otlp};
use http::{Method, Request};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{debug, info};
use xray_lifecycle::shutdown::{self, AcceptSettings, Stopped};

/// How long open connections get to finish once shutdown starts.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves the page and the API until `stopped`, then drains open connections.
pub async fn run(listener: TcpListener, state: Arc<State>, stopped: Stopped) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let accept = AcceptSettings { server: "console", max_connections: None, grace: DRAIN };
    let serve_http = move |stream, peer, watcher: Watcher| {
        let state = state.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let state = state.clone();
            async move {
                // OTLP/HTTP exporters post here, on the page's own address, as to a collector.
                if req.method() == Method::POST && req.uri().path() == "/v1/traces" {
                    return Ok::<_, Infallible>(otlp::ingest(&state, req).await);
                }
                Ok(api::handle(&state, &req))
            }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        async move {
            if let Err(e) = watcher.watch(conn).await {
                debug!(%peer, error = %e, "http connection ended with an error");
            }
        }
    };
    shutdown::serve(listener, stopped, accept, serve_http, shutdown::close).await;
    info!("http server stopped");
}
