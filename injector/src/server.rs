//! The HTTPS listener: `POST /mutate`, `GET /healthz`, `GET /metrics`.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use xray_lifecycle::shutdown::{self, AcceptSettings, ConnectionLimit, Stopped};

use crate::config::InjectConfig;
use crate::metrics::Metrics;
use crate::review;

/// Reviews are small; anything near this is not one (the API server's own request limit is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// The API server gives up after the webhook's `timeoutSeconds` (5): a request head or body that
/// has not arrived well before then never will in time.
const READ_TIMEOUT: Duration = Duration::from_secs(4);

/// Reviews read and answered at once. With the body limit this bounds the memory they take
/// (16 × 3 MiB); one beyond it is answered 503 at once, and `failurePolicy: Ignore` admits the pod
/// untouched rather than holding it up.
const MAX_REVIEWS: usize = 16;

/// Open connections at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 256;

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// What to inject.
    pub config: InjectConfig,
    /// Counters.
    pub metrics: Metrics,
    reviews: Semaphore,
}

impl Shared {
    /// The shared state for `config`.
    pub fn new(config: InjectConfig) -> Self {
        Shared { config, metrics: Metrics::default(), reviews: Semaphore::new(MAX_REVIEWS) }
    }
}

/// How long reviews still in flight get to be answered once shutdown starts.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves until `stopped`, then answers the reviews still in flight (up to [`DRAIN`]) before
/// returning.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>, stopped: Stopped) {
    let accept = AcceptSettings {
        server: "webhook",
        max_connections: Some(ConnectionLimit::new(MAX_CONNECTIONS)),
        grace: DRAIN,
    };
    let serve_https = move |tcp, peer, watcher: Watcher| {
        let (acceptor, shared) = (acceptor.clone(), shared.clone());
        async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(req, &shared).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .serve_connection(TokioIo::new(tls), svc);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
    };
    shutdown::serve(listener, stopped, accept, serve_https, shutdown::close).await;
}

/// Routes one request.
pub async fn route(req: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/mutate") => mutate(req, shared).await,
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into()),
        (&Method::GET, "/metrics") => text(StatusCode::OK, shared.metrics.render()),
        (_, "/mutate") => text(StatusCode::METHOD_NOT_ALLOWED, "POST an AdmissionReview to /mutate\n".into()),
        _ => text(StatusCode::NOT_FOUND, "not found: /mutate, /healthz, /metrics\n".into()),
    }
}

async fn mutate(req: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let start = Instant::now();
    // `?namespace=enabled`: the webhook entry that only matches labelled namespaces calls with it.
    let namespace_opted_in = req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "namespace=enabled"));
    let Ok(_permit) = shared.reviews.try_acquire() else {
        shared.metrics.record(None, start.elapsed());
        tracing::warn!(limit = MAX_REVIEWS, "too many reviews at once: answered 503, the pod is admitted untouched");
        return text(StatusCode::SERVICE_UNAVAILABLE, "too many reviews at once\n".into());
    };
    let body = match tokio::time::timeout(READ_TIMEOUT, Limited::new(req.into_body(), MAX_BODY).collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            shared.metrics.record(None, start.elapsed());
            let status = if e.is::<http_body_util::LengthLimitError>() {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return text(status, format!("cannot read the body: {e}\n"));
        }
        Err(_) => {
            shared.metrics.record(None, start.elapsed());
            return text(StatusCode::REQUEST_TIMEOUT, format!("the body did not arrive within {READ_TIMEOUT:?}\n"));
        }
    };
    match review::answer(&body, namespace_opted_in, &shared.config) {
        Ok((json, verdict)) => {
            shared.metrics.record(Some(&verdict), start.elapsed());
            tracing::info!(?verdict, took = ?start.elapsed(), "review answered");
            let mut res = Response::new(Full::new(Bytes::from(json)));
            res.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
            res
        }
        Err(why) => {
            shared.metrics.record(None, start.elapsed());
            tracing::warn!(%why, "bad admission request");
            text(StatusCode::BAD_REQUEST, format!("{why}\n"))
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    res
}
