//! The HTTPS listener: `POST /mutate`, `GET /healthz`, `GET /metrics`.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use xray_lifecycle::Stopped;
use xray_lifecycle::shutdown;

use crate::config::InjectConfig;
use crate::metrics::Metrics;
use crate::review;

/// Reviews are small; anything near this is not one.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// What to inject.
    pub config: InjectConfig,
    /// Counters.
    pub metrics: Metrics,
}

/// How long reviews still in flight get to be answered once shutdown starts.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves until `stopped`, then answers the reviews still in flight (up to [`DRAIN`]) before
/// returning.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>, stopped: Stopped) {
    shutdown::serve(listener, stopped, DRAIN, "webhook", move |tcp, peer, watcher| {
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
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
    })
    .await;
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
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            shared.metrics.record(None, start.elapsed());
            return text(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}\n"));
        }
    };
    match review::answer(&body, namespace_opted_in, &shared.config) {
        Ok((json, result)) => {
            shared.metrics.record(Some(&result), start.elapsed());
            tracing::info!(?result, took = ?start.elapsed(), "review answered");
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
