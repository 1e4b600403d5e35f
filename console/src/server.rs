//! The HTTP servers: hyper 1 on one listener, HTTP/1 and HTTP/2, stopping gracefully.

use super::api;
use super::otlp;
use super::state::State;
use super::xray_api;
use super::xray_error::{ErrorKind, XrayError};
use bytes::Bytes;
use http::header::{HOST, ORIGIN};
use http::{HeaderValue, Method, Request, Response};
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
    if req.method() == Method::POST && from_another_site(&req) {
        return refused_cross_site();
    }
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

/// The answer to a call [`from_another_site`]. Any page a browser on this machine opens could
/// otherwise rewrite the sampling rules or post made-up traces: a form or a `no-cors` fetch needs
/// no preflight to send a body.
pub fn refused_cross_site() -> Response<Full<Bytes>> {
    let message = "calls from another site's web page are refused".to_owned();
    xray_api::error_response(&XrayError { kind: ErrorKind::AccessDenied, message })
}

/// Whether a browser sent `req` for a page of another site: its `Origin` (which browsers add to
/// every cross-origin request and every POST) names a host other than the one asked, or is `null`
/// (a sandboxed frame, a local file). The SDKs, the AWS CLI, OpenTelemetry exporters and curl send
/// none; the console's own page sends its own. Behind a reverse proxy that rewrites `Host`, the page's
/// host is the proxy's `X-Forwarded-Host`, a field a page of another site cannot add to a call it
/// sends without a preflight.
pub fn from_another_site<B>(req: &Request<B>) -> bool {
    let Some(origin) = req.headers().get(ORIGIN) else {
        return false;
    };
    let origin = origin.as_bytes();
    let Some(site) = origin.strip_prefix(b"http://").or_else(|| origin.strip_prefix(b"https://")) else {
        return true;
    };
    let host = req.headers().get(HOST).map(HeaderValue::as_bytes);
    let target = req.uri().authority().map(|a| a.as_str().as_bytes());
    let forwarded = req.headers().get(X_FORWARDED_HOST).and_then(|v| v.as_bytes().split(|&b| b == b',').next());
    ![host.or(target), forwarded.map(<[u8]>::trim_ascii)]
        .into_iter()
        .flatten()
        .any(|asked| site.eq_ignore_ascii_case(asked))
}

/// The host a client asked a reverse proxy for, when the proxy rewrote `Host`.
const X_FORWARDED_HOST: http::HeaderName = http::HeaderName::from_static("x-forwarded-host");

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

#[cfg(test)]
mod tests {
    use super::*;

    fn post(headers: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::post("/CreateSamplingRule");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(()).unwrap_or_default()
    }

    #[test]
    fn only_a_page_of_another_site_is_refused() {
        for (headers, refused) in [
            (&[("host", "127.0.0.1:2020")][..], false),
            (&[("host", "127.0.0.1:2020"), ("origin", "http://127.0.0.1:2020")], false),
            (&[("host", "Console.Local"), ("origin", "https://console.local")], false),
            (&[("host", "127.0.0.1:2020"), ("origin", "http://evil.example")], true),
            (&[("host", "127.0.0.1:2020"), ("origin", "http://127.0.0.1:8080")], true),
            (&[("host", "127.0.0.1:2020"), ("origin", "null")], true),
            (&[("origin", "http://127.0.0.1:2020")], true),
            (
                &[("host", "127.0.0.1:2020"), ("origin", "https://xray.example"), ("x-forwarded-host", "xray.example")],
                false,
            ),
            (
                &[("host", "127.0.0.1:2020"), ("origin", "https://evil.example"), ("x-forwarded-host", "xray.example")],
                true,
            ),
        ] {
            assert_eq!(from_another_site(&post(headers)), refused, "{headers:?}");
        }
        let h2 = Request::post("http://127.0.0.1:2020/TraceSegments").header("origin", "http://127.0.0.1:2020");
        assert!(!from_another_site(&h2.body(()).unwrap_or_default()), "HTTP/2 names the host in the target");
    }
}
