//! The demo's two applications: a back-end that answers (and sometimes fails), and a front-end
//! that calls it for every request it gets. Neither knows anything of X-Ray: the front-end only
//! forwards the `X-Amzn-Trace-Id` it received and uses an HTTP proxy, as many apps already do.

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use xray_lifecycle::shutdown::{self, AcceptSettings, Stopped};

use crate::xray::header::TRACE_HEADER;

/// How long an app's open requests get once the demo stops.
const GRACE: Duration = Duration::from_secs(1);

/// Serves `handler` on a free loopback port until `stopped`.
pub async fn serve<F, Fut>(handler: F, stopped: Stopped) -> std::io::Result<SocketAddr>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let accept = AcceptSettings { server: "demo app", max_connections: None, grace: GRACE };
    let serve_http = move |stream, _, watcher: Watcher| {
        let handler = handler.clone();
        let svc = hyper::service::service_fn(move |req| {
            let fut = handler(req);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
        async move {
            let _ = watcher.watch(conn).await;
        }
    };
    tokio::spawn(shutdown::serve(listener, stopped, accept, serve_http, shutdown::close));
    Ok(addr)
}

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    res
}

/// The back-end: `/checkout` fails with 500, `/busy` throttles with 429, the rest answers 200 after
/// a little work.
pub async fn back_end(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let work = Duration::from_millis(5 + rand::random::<u64>() % 25);
    tokio::time::sleep(work).await;
    match req.uri().path() {
        "/checkout" => respond(StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":"payment service unavailable"}"#),
        "/busy" => respond(StatusCode::TOO_MANY_REQUESTS, r#"{"error":"slow down"}"#),
        path => respond(StatusCode::OK, format!(r#"{{"path":"{path}","items":[1,2,3]}}"#)),
    }
}

/// The front-end: answers `/missing` itself with 404, and calls the back-end for everything else
/// through `proxy` (its sidecar's outbound listener, as `HTTP_PROXY` would name it).
pub async fn front_end(req: Request<Incoming>, proxy: SocketAddr, back_end: SocketAddr) -> Response<Full<Bytes>> {
    if req.uri().path() == "/missing" {
        return respond(StatusCode::NOT_FOUND, r#"{"error":"no such page"}"#);
    }
    let trace = req.headers().get(&TRACE_HEADER).cloned();
    match call(proxy, back_end, req.uri().path(), trace).await {
        Ok((status, body)) => respond(status, body),
        Err(e) => respond(StatusCode::BAD_GATEWAY, format!(r#"{{"error":"{e}"}}"#)),
    }
}

/// What the front-end answers before its sidecar is ready.
pub fn unavailable() -> Response<Full<Bytes>> {
    respond(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"starting"}"#)
}

/// One call to the back-end through the proxy: absolute-form target, Service name as Host.
async fn call(
    proxy: SocketAddr,
    back_end: SocketAddr,
    path: &str,
    trace: Option<header::HeaderValue>,
) -> Result<(StatusCode, Bytes), crate::BoxError> {
    let stream = TcpStream::connect(proxy).await?;
    stream.set_nodelay(true)?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = Request::get(format!("http://{back_end}{path}"))
        .header(header::HOST, "back-end")
        .header(header::USER_AGENT, "front-end/1.0")
        .body(Empty::<Bytes>::new())?;
    if let Some(t) = trace {
        // Forwarding the header we received joins both hops into one trace.
        req.headers_mut().insert(TRACE_HEADER, t);
    }
    let res = send.send_request(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, body))
}
