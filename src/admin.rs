//! The admin listener: `/live`, `/ready` and `/metrics` for kubelet probes and Prometheus.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use xray_lifecycle::shutdown::{self, AcceptSettings, ConnectionLimit, Stopped};

use crate::contract::{LIVE_PATH, READY_PATH};
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

/// Set once the proxy is told to stop, when its drain window begins: inbound HTTP/1.1 responses
/// then say `Connection: close`, so that callers still sending take new connections (to other
/// endpoints, once they hear of the change) rather than reuse one about to be closed, as Envoy's
/// drain does.
#[derive(Clone, Debug, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// The drain window begins.
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether it has begun.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Probes and scrapes come one or two at a time; more than this at once is not a prober.
const MAX_CONNECTIONS: usize = 64;

/// Serves the admin endpoints until `stopped`, then lets open requests finish within `grace`; a
/// client gets `header_read_timeout` to send each request head.
pub async fn serve(
    listeners: Vec<TcpListener>,
    metrics: Arc<Metrics>,
    ready: Readiness,
    header_read_timeout: Duration,
    stopped: Stopped,
    grace: Duration,
) {
    let limit = ConnectionLimit::new(MAX_CONNECTIONS);
    let room = limit.room().clone();
    let accept = AcceptSettings { server: "admin", max_connections: Some(limit), grace };
    let serve_http = move |stream, _, watcher: Watcher| {
        let (metrics, ready, room) = (metrics.clone(), ready.clone(), room.clone());
        let svc = service_fn(move |req| {
            let res = route(&req, &metrics, &ready);
            async move { Ok::<_, Infallible>(res) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(stream), svc);
        async move {
            // Every admin connection stands by to make room, the oldest first. Any pod can reach
            // this port: connections held open from elsewhere (each trickling a byte, within the
            // header timeout) would otherwise fill the limit, and the kubelet's probes, refused,
            // would take the pod out of service. A probe is answered within a millisecond of its
            // connection; to crowd it out, more than the limit of new connections would have to
            // come in that time.
            let _standing_by = room.idle();
            tokio::select! {
                _ = watcher.watch(conn) => {}
                () = room.wanted() => tracing::debug!("closed the oldest admin connection to make room for a new one"),
            }
        }
    };
    shutdown::serve_all(listeners, stopped, accept, serve_http, shutdown::close).await;
}

fn route(req: &Request<Incoming>, metrics: &Metrics, ready: &Readiness) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match req.uri().path() {
        LIVE_PATH => text(StatusCode::OK, "live\n"),
        READY_PATH if ready.get() => text(StatusCode::OK, "ready\n"),
        READY_PATH => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
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
