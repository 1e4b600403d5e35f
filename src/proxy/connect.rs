//! `CONNECT host:port` on the outbound listener: what `https_proxy` clients (and gRPC clients with a
//! proxy) send. The proxy opens the tunnel, relays it and records it; a `CONNECT` to the proxy's own
//! listeners or to a denied range is refused, so the explicit proxy opens no new way into the pod.
//! A tunnel whose client speaks plain HTTP/1 or h2c is served request by request instead (see
//! `plaintext`).

use bytes::Bytes;
use http::uri::Authority;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper_util::rt::TokioIo;
use pin_project::pin_project;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

use super::detect::{self, Protocol};
use super::error::ProxyError;
use super::guard::OwnListeners;
use super::opaque;
use super::plaintext::Plaintext;
use super::record::Tracer;
use super::rewind::Rewind;
use super::tunnel::{self, Opened, Target, TunnelRecord};
use crate::init::Cidr;
use crate::xray::tunnel::Ended;

/// Which tunnels may be opened, and how.
#[derive(Clone, Debug)]
pub struct ConnectPolicy {
    /// The proxy's own listeners (and link-local addresses): never a tunnel's destination.
    pub own: OwnListeners,
    /// Further destinations refused, wherever they are.
    pub deny: Vec<Cidr>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
}

/// Answers `CONNECT` itself and hands every other request to `inner`.
#[derive(Clone, Debug)]
pub struct Connect<S> {
    inner: S,
    policy: Arc<ConnectPolicy>,
    plaintext: Arc<Plaintext>,
    /// The application process's address, for the records of the requests inside a tunnel.
    peer: IpAddr,
}

impl<S> Connect<S> {
    /// Wraps `inner`, the traced forwarder of an explicit-proxy connection from `peer`.
    pub fn new(inner: S, policy: Arc<ConnectPolicy>, plaintext: Arc<Plaintext>, peer: IpAddr) -> Self {
        Connect { inner, policy, plaintext, peer }
    }
}

type Answer = Response<Full<Bytes>>;

impl<S, B, RB> tower::Service<Request<B>> for Connect<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
    B: Send + 'static,
{
    type Response = Response<Either<RB, Full<Bytes>>>;
    type Error = S::Error;
    type Future = ConnectFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if req.method() != Method::CONNECT {
            return ConnectFuture::Inner(self.inner.call(req));
        }
        ConnectFuture::Tunnel(Box::pin(open(req, self.policy.clone(), self.plaintext.clone(), self.peer)))
    }
}

/// The inner service's response, or the answer to a `CONNECT`.
#[pin_project(project = Projected)]
pub enum ConnectFuture<F> {
    /// Any request but `CONNECT`.
    Inner(#[pin] F),
    /// A `CONNECT` (boxed: rare next to plain requests, and its future is large).
    Tunnel(Pin<Box<dyn Future<Output = Answer> + Send>>),
}

impl<F, RB, E> Future for ConnectFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<Either<RB, Full<Bytes>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Projected::Inner(f) => f.poll(cx).map(|r| r.map(|res| res.map(Either::Left))),
            Projected::Tunnel(f) => f.as_mut().poll(cx).map(|res| Ok(res.map(Either::Right))),
        }
    }
}

/// Resolves and checks the destination, connects, answers 200 and, once the client's connection is
/// handed over, serves the HTTP it sends or relays whatever else it is.
async fn open<B>(mut req: Request<B>, policy: Arc<ConnectPolicy>, plaintext: Arc<Plaintext>, peer: IpAddr) -> Answer {
    let opened = Opened::now();
    let tracer = &plaintext.tracer;
    let (authority, host, port) = match destination(&req) {
        Ok(target) => target,
        Err(why) => return answer(StatusCode::BAD_REQUEST, why),
    };
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(policy.connect_timeout, tokio::net::lookup_host((host.as_str(), port))).await {
            Ok(Ok(addrs)) => addrs.collect(),
            _ => Vec::new(),
        };
    let refused = |a: &SocketAddr| policy.own.check(*a).is_err() || policy.deny.iter().any(|c| c.contains(a.ip()));
    if let Some(denied) = addrs.iter().find(|a| refused(a)) {
        return refuse(tracer, &authority, *denied);
    }
    let upstream = match connect_any(&addrs, &policy).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%authority, error = %e, "CONNECT destination unreachable");
            let (status, failure) = (e.status(), e.failure());
            let record = TunnelRecord::start(tracer, Target { host: &host, port, explicit: true }, opened);
            record.finish(0, 0, Ended::ConnectFailed, Some(failure));
            return answer(status, &format!("{}", e.kind));
        }
    };
    if is_self(&upstream, &policy) {
        let peer = upstream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], port)));
        return refuse(tracer, &authority, peer);
    }
    let upgrade = hyper::upgrade::on(&mut req);
    // What the tunnel carries outlives this request and its HTTP connection.
    let held = plaintext.upstream.lingering().hold();
    tokio::spawn(async move {
        let tracer = &plaintext.tracer;
        let client = match upgrade.await {
            Ok(client) => client,
            Err(e) => {
                tracing::debug!(error = %e, "CONNECT client left before the tunnel opened");
                let record = TunnelRecord::start(tracer, Target { host: &host, port, explicit: true }, opened);
                return record.finish(0, 0, Ended::Broken, None);
            }
        };
        let (protocol, client) = if plaintext.skip_ports.contains(&port) {
            (Protocol::Opaque, Rewind::new(Bytes::new(), TokioIo::new(client)))
        } else {
            detect::sniff(TokioIo::new(client), plaintext.detect_timeout).await
        };
        match (protocol, upstream.peer_addr()) {
            (Protocol::Http1 | Protocol::Http2, Ok(dst)) => {
                tracing::debug!(%host, %dst, ?protocol, "plain HTTP inside a tunnel: traced request by request");
                // The pooled upstream clients connect again, to the same checked address.
                drop(upstream);
                let version = if protocol == Protocol::Http2 { http::Version::HTTP_2 } else { http::Version::HTTP_11 };
                // Closed gracefully once the proxy stops, like any HTTP connection; cut with the
                // other tunnels should requests still run at the end of the grace period.
                tokio::select! {
                    () = plaintext.serve(client, version, dst, peer) => {}
                    () = held.cut() => tracing::debug!(%host, "HTTP inside a tunnel cut at the end of the grace period"),
                }
            }
            _ => {
                let record = TunnelRecord::start(tracer, Target { host: &host, port, explicit: true }, opened);
                tunnel::relay(client, upstream, record, held).await;
            }
        }
    });
    Response::new(Full::new(Bytes::new()))
}

/// The authority a `CONNECT` asks for, with its host (an IPv6 address without brackets) and port:
/// `host:port` and nothing else (RFC 9110 §9.3.6, RFC 9112 §3.2.3), so that what is checked
/// against the deny list, dialled and recorded is one reading of it; and no content, whose bytes
/// would otherwise be taken from the tunnel's.
fn destination<B>(req: &Request<B>) -> Result<(Authority, String, u16), &'static str> {
    let uri = req.uri();
    let Some(authority) = uri.authority().filter(|_| uri.scheme().is_none()) else {
        return Err("CONNECT takes host:port, not a URL");
    };
    if authority.as_str().contains('@') {
        return Err("CONNECT takes host:port, without a userinfo");
    }
    let port = authority
        .as_str()
        .rsplit_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let Some(port) = port.and_then(|p| p.parse::<u16>().ok()).filter(|p| *p != 0) else {
        return Err("CONNECT needs host:port, with a port from 1 to 65535");
    };
    let host = authority.host();
    let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) if v6.parse::<std::net::Ipv6Addr>().is_ok() => v6,
        Some(_) => return Err("CONNECT takes an IPv6 address in brackets, and nothing else"),
        None => host,
    };
    let framed = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req.headers().get(header::CONTENT_LENGTH).is_some_and(|l| l.as_bytes() != b"0");
    if framed && req.version() < http::Version::HTTP_2 {
        return Err("a CONNECT request has no content");
    }
    Ok((authority.clone(), host.to_owned(), port))
}

/// Tries each resolved address in turn.
async fn connect_any(addrs: &[SocketAddr], policy: &ConnectPolicy) -> Result<TcpStream, ProxyError> {
    let mut last = ProxyError::connecting(std::io::Error::new(std::io::ErrorKind::NotFound, "host not found"));
    for a in addrs {
        match opaque::connect(*a, policy.connect_timeout).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Whether a connected destination turned out to be one of the proxy's own listeners: a name that
/// resolved to this pod, reached on one of its ports.
fn is_self(s: &TcpStream, policy: &ConnectPolicy) -> bool {
    s.peer_addr().is_ok_and(|peer| policy.own.contains(peer))
}

fn refuse(tracer: &Tracer, authority: &Authority, addr: SocketAddr) -> Answer {
    tracer.metrics.connects_denied.fetch_add(1, Relaxed);
    tracing::info!(%authority, %addr, "CONNECT refused: the proxy itself or a denied range");
    answer(StatusCode::FORBIDDEN, "CONNECT to this destination is not allowed")
}

fn answer(status: StatusCode, text: &str) -> Answer {
    let mut res = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(target: &str, headers: &[(&str, &str)]) -> Result<(String, u16), &'static str> {
        let mut req = Request::builder().method(Method::CONNECT).uri(target);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(()).expect("request");
        destination(&req).map(|(_, host, port)| (host, port))
    }

    #[test]
    fn a_connect_target_is_host_and_port_and_the_request_has_no_content() {
        assert_eq!(connect("example.com:443", &[]), Ok(("example.com".to_owned(), 443)));
        assert_eq!(connect("[::1]:8443", &[]), Ok(("::1".to_owned(), 8443)));
        assert_eq!(connect("10.0.0.1:443", &[("content-length", "0")]), Ok(("10.0.0.1".to_owned(), 443)));
        for bad in ["example.com", "example.com:0", "example.com:+443", "example.com:99999", "[10.0.0.1]:443"] {
            assert!(connect(bad, &[]).is_err(), "{bad}");
        }
        for bad in ["user:pw@example.com:443", "http://example.com:443"] {
            if let Ok(req) = Request::builder().method(Method::CONNECT).uri(bad).body(()) {
                assert!(destination(&req).is_err(), "{bad}");
            }
        }
        assert!(connect("example.com:443", &[("content-length", "5")]).is_err());
        assert!(connect("example.com:443", &[("transfer-encoding", "chunked")]).is_err());
    }
}
