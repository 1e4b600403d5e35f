//! The admin listener: `/live`, `/ready` and `/metrics` for kubelet probes and Prometheus.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use xray_lifecycle::shutdown::{self, Stopped};

use crate::metrics::Metrics;

/// Whether the proxy wants traffic: true once listening, false again once shutting down.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Sets the state.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Serves the admin endpoints until `stopped`, then lets open requests finish within `grace`.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, ready: Readiness, stopped: Stopped, grace: Duration) {
    shutdown::serve(listener, stopped, grace, "admin", move |stream, _, watcher| {
        let (metrics, ready) = (metrics.clone(), ready.clone());
        let svc = service_fn(move |req| {
            let res = route(&req, &metrics, &ready);
            async move { Ok::<_, Infallible>(res) }
        });
        let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
        async move {
            let _ = watcher.watch(conn).await;
        }
    })
    .await;
}

fn route(req: &Request<Incoming>, metrics: &Metrics, ready: &Readiness) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match req.uri().path() {
        "/live" => text(StatusCode::OK, "live\n"),
        "/ready" if ready.get() => text(StatusCode::OK, "ready\n"),
        "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/metrics" => {
            let mut res = Response::new(Full::new(Bytes::from(metrics.render())));
            res.headers_mut()
                .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; version=0.0.4"));
            res
        }
        _ => text(StatusCode::NOT_FOUND, "not found: try /live, /ready or /metrics\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    res
}
