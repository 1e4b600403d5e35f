//! Forwarding to the upstream: pooled HTTP/1.1 and HTTP/2 clients, hop-by-hop hygiene,
//! `X-Forwarded-*`, timeouts, and `Upgrade` tunnels.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, ResponseFuture as ClientFuture, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pin_project::pin_project;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Sleep;

use super::error::{ErrorKind, ProxyError};
use super::grpc::SentCount;
use super::grpc_body::CountMessages;
use super::guard::{GuardedConnector, OwnListeners};
use super::hop;

/// Timeouts and limits of the upstream side.
#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed for the response head; `None` waits for ever.
    pub response_timeout: Option<Duration>,
    /// How long an idle pooled connection is kept.
    pub idle_timeout: Duration,
    /// Largest response head accepted from the upstream.
    pub max_header_size: usize,
}

/// The shared upstream clients: one pool for HTTP/1.1, one for HTTP/2 (prior knowledge).
#[derive(Clone, Debug)]
pub struct Upstream {
    h1: Client<GuardedConnector, CountMessages<Incoming>>,
    h2: Client<GuardedConnector, CountMessages<Incoming>>,
    response_timeout: Option<Duration>,
    own: OwnListeners,
}

impl Upstream {
    /// Builds the pools; they never connect to `own` (nor to link-local addresses).
    pub fn new(s: &UpstreamSettings, own: OwnListeners) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(s.connect_timeout));
        http.set_nodelay(true);
        let connector = GuardedConnector::new(http, own.clone());
        let mut b = Client::builder(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(s.idle_timeout)
            .http1_max_buf_size(s.max_header_size.max(8192))
            // Headers as the upstream wrote them: some clients care about case.
            .http1_title_case_headers(false);
        let h1 = b.build(connector.clone());
        let h2 = b.http2_only(true).build(connector);
        Upstream { h1, h2, response_timeout: s.response_timeout, own }
    }

    /// The proxy's own listeners, which nothing is forwarded to.
    pub fn own(&self) -> &OwnListeners {
        &self.own
    }
}

/// Where one connection's requests go, and who they came from.
#[derive(Clone, Debug)]
pub struct Forward {
    upstream: Upstream,
    /// The destination; `None` takes it from each request (explicit proxy: absolute-form targets).
    authority: Option<Authority>,
    /// Added to `X-Forwarded-For` (inbound only: the application's own calls are not forwarded
    /// on anyone's behalf).
    forwarded_for: Option<IpAddr>,
}

impl Forward {
    /// Forwards to `authority` (or each request's own) on behalf of `forwarded_for`.
    pub fn new(upstream: Upstream, authority: Option<Authority>, forwarded_for: Option<IpAddr>) -> Self {
        Forward { upstream, authority, forwarded_for }
    }
}

impl Forward {
    /// Refuses what no application behind us should receive: an ambiguous or missing `Host`
    /// (two would let the proxy and the application disagree on the destination), and `CONNECT`
    /// where the destination is already fixed (it asks for a tunnel the application does not offer).
    fn acceptable<B>(&self, req: &Request<B>) -> Result<(), ProxyError> {
        let hosts = req.headers().get_all(header::HOST).iter().count();
        if hosts > 1 {
            return Err(ProxyError::new(ErrorKind::BadRequest, "more than one Host header"));
        }
        if hosts == 0 && req.version() == Version::HTTP_11 {
            return Err(ProxyError::new(ErrorKind::BadRequest, "an HTTP/1.1 request needs a Host header"));
        }
        if req.method() == http::Method::CONNECT && self.authority.is_some() {
            return Err(ProxyError::new(ErrorKind::MethodNotAllowed, "CONNECT is not served here"));
        }
        Ok(())
    }
}

impl tower::Service<Request<Incoming>> for Forward {
    type Response = Response<Incoming>;
    type Error = ProxyError;
    type Future = ForwardFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Incoming>) -> ForwardFuture {
        if let Err(e) = self.acceptable(&req) {
            return ForwardFuture::failed(e);
        }
        let upgrade = hop::is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
        hop::strip(req.headers_mut(), upgrade.is_some());
        if let Some(ip) = self.forwarded_for {
            add_forwarded(req.headers_mut(), ip);
        }
        let Some(authority) = self.authority.clone().or_else(|| request_authority(&req)) else {
            let e = "no destination: the request names no host";
            return ForwardFuture::failed(ProxyError::new(ErrorKind::NoRoute, e));
        };
        // Address literals are refused here, before any connection; names once connected.
        if let Err(refusal) = self.upstream.own.check_authority(&authority) {
            return ForwardFuture::failed(ProxyError::new(refusal.kind(), refusal));
        }
        let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(authority);
        parts.path_and_query = Some(path);
        match Uri::from_parts(parts) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(e) => return ForwardFuture::failed(ProxyError::new(ErrorKind::NoRoute, e)),
        }
        // A traced gRPC call counts the messages it sends on the way through.
        let sent = req.extensions_mut().remove::<SentCount>();
        let req = req.map(|b| CountMessages::new(b, sent));
        let version = req.version();
        let client = if version == Version::HTTP_2 { &self.upstream.h2 } else { &self.upstream.h1 };
        ForwardFuture {
            version,
            state: State::Waiting(client.request(req)),
            timeout: self.upstream.response_timeout.map(tokio::time::sleep),
            upgrade,
        }
    }
}

/// The upstream's response, a timeout, or the failure.
#[pin_project]
pub struct ForwardFuture {
    /// The client's HTTP version: the response goes back in it whatever the upstream spoke.
    version: Version,
    state: State,
    #[pin]
    timeout: Option<Sleep>,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
}

enum State {
    Waiting(ClientFuture),
    Failed(Option<ProxyError>),
}

impl ForwardFuture {
    fn failed(e: ProxyError) -> Self {
        ForwardFuture { version: Version::HTTP_11, state: State::Failed(Some(e)), timeout: None, upgrade: None }
    }
}

impl Future for ForwardFuture {
    type Output = Result<Response<Incoming>, ProxyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let fut = match this.state {
            State::Waiting(fut) => fut,
            State::Failed(e) => {
                return Poll::Ready(Err(e.take().unwrap_or(ProxyError { kind: ErrorKind::NoRoute, source: None })));
            }
        };
        if let Poll::Ready(res) = Pin::new(fut).poll(cx) {
            let mut res = res.map_err(ProxyError::from_client)?;
            *res.version_mut() = *this.version;
            if res.status() == StatusCode::SWITCHING_PROTOCOLS {
                if let Some(client_side) = this.upgrade.take() {
                    tokio::spawn(tunnel(client_side, hyper::upgrade::on(&mut res)));
                }
            } else {
                hop::strip(res.headers_mut(), false);
            }
            return Poll::Ready(Ok(res));
        }
        if let Some(t) = this.timeout.as_pin_mut() {
            ready!(t.poll(cx));
            return Poll::Ready(Err(ProxyError { kind: ErrorKind::ResponseTimeout, source: None }));
        }
        Poll::Pending
    }
}

/// Copies bytes both ways between the client and the upstream once both sides have switched.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let (mut c, mut u) = (TokioIo::new(client), TokioIo::new(upstream));
    match tokio::io::copy_bidirectional(&mut c, &mut u).await {
        Ok((up, down)) => tracing::trace!(up, down, "upgraded connection closed"),
        Err(e) => tracing::debug!(error = %e, "upgraded connection failed"),
    }
}

/// An explicit proxy client names the destination in the target (`GET http://svc/x`) or, failing
/// that, in Host; the port defaults to 80.
fn request_authority<B>(req: &Request<B>) -> Option<Authority> {
    let a = match req.uri().authority() {
        Some(a) => a.clone(),
        None => req.headers().get(header::HOST)?.to_str().ok()?.parse().ok()?,
    };
    if a.port().is_some() {
        return Some(a);
    }
    format!("{}:80", a.host()).parse().ok()
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

fn add_forwarded(h: &mut HeaderMap, client: IpAddr) {
    let value = match h.get(&X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
        Some(prev) if !prev.is_empty() => {
            let mut v = Vec::with_capacity(prev.len() + 42);
            v.extend_from_slice(prev);
            v.extend_from_slice(b", ");
            v.extend_from_slice(client.to_string().as_bytes());
            HeaderValue::from_bytes(&v).ok()
        }
        _ => HeaderValue::from_str(&client.to_string()).ok(),
    };
    if let Some(v) = value {
        h.insert(X_FORWARDED_FOR, v);
    }
    if !h.contains_key(&X_FORWARDED_PROTO) {
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_appended_and_proto_kept() {
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, [10, 0, 0, 1].into());
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        add_forwarded(&mut h, "::1".parse().expect("ip"));
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, ::1");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
    }
}
