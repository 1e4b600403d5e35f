//! Forwarding to the upstream: pooled HTTP/1.1 ([`super::pool`]) and HTTP/2 clients, hop-by-hop hygiene,
//! `X-Forwarded-*`, timeouts, and `Upgrade` tunnels.

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Builder, Client, ResponseFuture as ClientFuture, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pin_project::pin_project;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

use super::body_progress::{Progress, Waiting};
use super::error::{ErrorKind, ProxyError};
use super::grpc::SentCount;
use super::grpc_body::CountMessages;
use super::guard::{GuardedConnector, OwnListeners, Refusal};
use super::pool::H1Pool;
use super::relay;
use super::response_timer::ResponseTimers;
use super::stream_idle::{self, StreamIdle};
use super::{head, hop, target};
use crate::metrics::Metrics;
use xray_lifecycle::{Held, Lingering};

/// Timeouts and limits of the upstream side.
#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed for the response head; `None` waits for ever.
    pub response_timeout: Option<Duration>,
    /// Longest a response body may go with nothing moving either way; `None` waits for ever.
    pub stream_idle_timeout: Option<Duration>,
    /// How long an idle pooled connection is kept.
    pub idle_timeout: Duration,
    /// Largest response head accepted from the upstream.
    pub max_header_size: usize,
}

/// The shared upstream clients: a pool for HTTP/1.1, hyper-util's clients for HTTP/2 (prior
/// knowledge) and for HTTP/1.1 upgrades (which hand the connection over).
#[derive(Clone, Debug)]
pub struct Upstream {
    pool: H1Pool,
    upgrades: Client<GuardedConnector, CountMessages<Incoming>>,
    h2: H2Client,
    /// What builds [`Upstream::h2`], for the clients pinned to one destination.
    h2_builder: Builder,
    connector: GuardedConnector,
    response_timeout: Option<Duration>,
    stream_idle_timeout: Option<stream_idle::Limit>,
    /// `--max-header-size`, held to exactly for HTTP/1 heads both ways (see [`head`]).
    max_head: usize,
    own: OwnListeners,
    /// Upgraded connections, which outlive the HTTP connection they came on.
    lingering: Lingering,
}

type H2Client = Client<GuardedConnector, CountMessages<Incoming>>;

impl Upstream {
    /// Builds the pools; they never connect to `own` (nor to link-local addresses). `metrics`
    /// counts the pool's parked connections.
    pub fn new(s: &UpstreamSettings, own: OwnListeners, metrics: Arc<Metrics>, lingering: Lingering) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(s.connect_timeout));
        http.set_nodelay(true);
        let connector = GuardedConnector::new(http, own.clone());
        let mut b = Client::builder(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(s.idle_timeout)
            .http1_max_buf_size(s.max_header_size.max(8192))
            // Field names in lower case, as the pool sends them (`H1Pool::new`).
            .http1_title_case_headers(false);
        let pool = H1Pool::new(connector.clone(), s.max_header_size.max(8192), s.idle_timeout, metrics);
        let upgrades = b.build(connector.clone());
        b.http2_only(true);
        let h2 = b.build(connector.clone());
        let (response_timeout, stream_idle_timeout) =
            (s.response_timeout, s.stream_idle_timeout.map(stream_idle::Limit::new));
        let max_head = s.max_header_size;
        Upstream {
            pool,
            upgrades,
            h2,
            h2_builder: b,
            connector,
            response_timeout,
            stream_idle_timeout,
            max_head,
            own,
            lingering,
        }
    }

    /// An HTTP/2 client whose connections all go to `to`, whatever `:authority` its requests carry.
    fn h2_pinned_to(&self, to: &Authority) -> Option<H2Client> {
        match self.connector.pinned_to(to) {
            Ok(connector) => Some(self.h2_builder.build(connector)),
            Err(e) => {
                tracing::debug!(%to, error = %e, "no HTTP/2 client for this destination");
                None
            }
        }
    }

    /// The proxy's own listeners, which nothing is forwarded to.
    pub fn own(&self) -> &OwnListeners {
        &self.own
    }

    /// Where connections that outlive their HTTP connection (or were never HTTP) are held, so
    /// that the shutdown gives them its grace period too.
    pub fn lingering(&self) -> &Lingering {
        &self.lingering
    }
}

/// Where one connection's requests go, and who they came from. Cloned for every request (hyper
/// calls a service by reference), so it is one shared pointer.
#[derive(Clone, Debug)]
pub struct Forward(Arc<Route>);

#[derive(Debug)]
struct Route {
    upstream: Arc<Upstream>,
    /// The destination; `None` takes it from each request (explicit proxy: absolute-form targets).
    authority: Option<Authority>,
    /// The client's address as added to `X-Forwarded-For` (inbound only: the application's own
    /// calls are not forwarded on anyone's behalf), formatted once per connection.
    forwarded_for: Option<HeaderValue>,
    /// Why the fixed destination is refused, if it is: checked once, not on every request (reading
    /// an authority's host and port costs some 700 instructions).
    refused: Option<Refusal>,
    /// HTTP/2 to the fixed destination, made on this connection's first HTTP/2 request: its
    /// requests keep the `:authority` the client gave, which the shared client would replace with
    /// the destination's address (it connects to what the request names).
    /// Boxed: most connections never make one, and every connection holds a `Route`.
    h2: OnceLock<Option<Box<H2Client>>>,
    /// The `--upstream-timeout` timer, re-armed for each HTTP/1 request.
    timers: ResponseTimers,
}

impl Forward {
    /// Forwards to `authority` (or each request's own) on behalf of `forwarded_for`.
    pub fn new(upstream: Arc<Upstream>, authority: Option<Authority>, forwarded_for: Option<IpAddr>) -> Self {
        let forwarded_for = forwarded_for.and_then(|ip| HeaderValue::from_str(&ip.to_string()).ok());
        let refused = authority.as_ref().and_then(|a| upstream.own.check_authority(a).err());
        let (h2, timers) = (OnceLock::new(), ResponseTimers::default());
        Forward(Arc::new(Route { upstream, authority, forwarded_for, refused, h2, timers }))
    }
}

impl Forward {
    /// Refuses what no application behind us should receive: an ambiguous, missing or malformed
    /// `Host` (two would let the proxy and the application disagree on the destination), `CONNECT`
    /// where the destination is already fixed (it asks for a tunnel the application does not offer),
    /// a target that would have to be reinterpreted (see [`target`]), and an HTTP/1 head larger
    /// than the limit (HTTP/2's is held by hyper, in `SETTINGS_MAX_HEADER_LIST_SIZE`).
    fn acceptable<B>(&self, req: &Request<B>, scan: &head::Scan) -> Result<(), ProxyError> {
        let max = self.0.upstream.max_head;
        if req.version() < Version::HTTP_2 && self.forwarded_head(req, scan) > max {
            let e = format!("the request head is larger than {max} bytes");
            return Err(ProxyError::new(ErrorKind::HeadTooLarge, e));
        }
        let hosts = scan.hosts;
        if hosts > 1 {
            return Err(ProxyError::new(ErrorKind::BadRequest, "more than one Host header"));
        }
        if hosts == 0 && req.version() == Version::HTTP_11 {
            return Err(ProxyError::new(ErrorKind::BadRequest, "an HTTP/1.1 request needs a Host header"));
        }
        if scan.bad_host {
            return Err(ProxyError::new(ErrorKind::BadRequest, "the Host header is not a host and port"));
        }
        if req.method() == http::Method::CONNECT && self.0.authority.is_some() {
            return Err(ProxyError::new(ErrorKind::MethodNotAllowed, "CONNECT is not served here"));
        }
        target::check(req, self.0.authority.is_some()).map_err(|e| ProxyError::new(ErrorKind::BadRequest, e))
    }

    /// The size of a request's head as it will be forwarded: with the `X-Forwarded-` fields
    /// [`add_forwarded`] gives it. Worked out exactly only near the limit, where it matters: the
    /// look-ups it takes are not worth making for every request.
    fn forwarded_head<B>(&self, req: &Request<B>, scan: &head::Scan) -> usize {
        let size = head::request(req, scan);
        let Some(client) = &self.0.forwarded_for else { return size };
        // At most a whole `x-forwarded-for: client` and `x-forwarded-proto: http`.
        let most = head::field(&X_FORWARDED_FOR, client) + head::field(&X_FORWARDED_PROTO, &HTTP);
        if size + most <= self.0.upstream.max_head {
            return size;
        }
        let (before, after) = forwarded_fields(req.headers(), client);
        size - before + after
    }
}

impl tower::Service<Request<Incoming>> for Forward {
    type Response = Response<StreamIdle<Incoming>>;
    type Error = ProxyError;
    type Future = ForwardFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Incoming>) -> ForwardFuture {
        let scan = head::Scan::of(req.headers());
        if let Err(e) = self.acceptable(&req, &scan) {
            return ForwardFuture::failed(e);
        }
        let upgrade = hop::is_upgrade(req.headers(), &scan.hops)
            .then(|| Box::new((hyper::upgrade::on(&mut req), self.0.upstream.lingering.hold())));
        let keep_alive_10 = req.version() == Version::HTTP_10 && hop::asks_keep_alive(req.headers(), &scan.hops);
        hop::strip(req.headers_mut(), upgrade.is_some(), scan.hops);
        let mut has_host = scan.hosts > 0;
        if let Some(client) = &self.0.forwarded_for {
            add_forwarded(req.headers_mut(), client);
        }
        // An HTTP/1.0 absolute-form request may come without Host: the target's authority is the
        // one the client meant, and the application must hear it rather than our destination's.
        if req.version() < Version::HTTP_2 && !has_host {
            let host = req.uri().authority().map(|a| match a.port() {
                Some(port) => format!("{}:{port}", a.host()),
                None => a.host().to_owned(),
            });
            if let Some(v) = host.and_then(|h| HeaderValue::from_str(&h).ok()) {
                req.headers_mut().insert(header::HOST, v);
                has_host = true;
            }
        }
        let Some(authority) = self.0.authority.clone().or_else(|| request_authority(&req)) else {
            let e = "no destination: the request names no host";
            return ForwardFuture::failed(ProxyError::new(ErrorKind::NoRoute, e));
        };
        // Address literals are refused here, before any connection; names once connected.
        let refused = match self.0.authority {
            Some(_) => self.0.refused,
            None => self.0.upstream.own.check_authority(&authority).err(),
        };
        if let Some(refusal) = refused {
            return ForwardFuture::failed(ProxyError::new(refusal.kind(), refusal));
        }
        // A traced gRPC call counts the messages it sends on the way through.
        let sent = req.extensions_mut().remove::<SentCount>();
        // A body still to come moves the wait for the response along (see `body_progress`), and
        // keeps a quiet response's stream alive (see `stream_idle`).
        let waits = self.0.upstream.response_timeout.is_some() || self.0.upstream.stream_idle_timeout.is_some();
        let progress = (waits && !http_body::Body::is_end_stream(req.body())).then(|| Arc::new(Progress::new()));
        let mut req = req.map(|b| CountMessages::new(b, sent, progress.clone()));
        let version = req.version();
        let upstream = &self.0.upstream;
        let state = if version < Version::HTTP_2 && upgrade.is_none() {
            // One still without Host (HTTP/1.0, origin-form) gets the destination's.
            if !has_host {
                if let Ok(host) = HeaderValue::from_str(host_of(&authority)) {
                    req.headers_mut().insert(header::HOST, host);
                }
            }
            let pool = upstream.pool.clone();
            State::Pooled(Box::pin(pool.send(authority, req)))
        } else {
            // HTTP/2 to a fixed destination goes through this connection's pinned client, and the
            // application hears the authority the client named, as an HTTP/1.1 one hears its Host.
            let pinned = match &self.0.authority {
                Some(to) if version == Version::HTTP_2 => {
                    self.0.h2.get_or_init(|| upstream.h2_pinned_to(to).map(Box::new)).as_deref()
                }
                _ => None,
            };
            let named = pinned.and_then(|_| named_authority(&req));
            let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(Scheme::HTTP);
            parts.authority = Some(named.unwrap_or(authority));
            parts.path_and_query = Some(path);
            match Uri::from_parts(parts) {
                Ok(uri) => *req.uri_mut() = uri,
                Err(e) => return ForwardFuture::failed(ProxyError::new(ErrorKind::NoRoute, e)),
            }
            let client = match pinned {
                Some(client) => client,
                None if version == Version::HTTP_2 => &upstream.h2,
                None => &upstream.upgrades,
            };
            State::Waiting(client.request(req))
        };
        let wait = upstream.response_timeout.unwrap_or_default();
        let timeout = upstream.response_timeout.map(|w| {
            let deadline = Instant::now() + w;
            // An HTTP/2 stream runs in a task of its own: a timer kept after it would hold that
            // finished task's waker, and with it the task's memory, while the connection idles.
            if version < Version::HTTP_2 {
                Timeout { timer: self.0.timers.arm(deadline), kept_by: Some(self.0.clone()) }
            } else {
                Timeout { timer: Box::pin(tokio::time::sleep_until(deadline)), kept_by: None }
            }
        });
        let (max_head, stream_idle) = (upstream.max_head, upstream.stream_idle_timeout);
        ForwardFuture { version, keep_alive_10, state, timeout, wait, progress, stream_idle, upgrade, max_head }
    }
}

/// The upstream's response, a timeout, or the failure.
#[pin_project]
pub struct ForwardFuture {
    /// The client's HTTP version: the response goes back in it whatever the upstream spoke.
    version: Version,
    /// An HTTP/1.0 client asked to keep its connection.
    keep_alive_10: bool,
    state: State,
    /// Fires `wait` after the request, or (see `progress`) after its body last moved.
    timeout: Option<Timeout>,
    /// `--upstream-timeout`.
    wait: Duration,
    /// How far the request body has come, when it had one to send.
    progress: Option<Arc<Progress>>,
    /// `--stream-idle-timeout`, for the response body.
    stream_idle: Option<stream_idle::Limit>,
    /// The client's side of an upgrade, held from the request on (boxed: rare, and every request's
    /// future would otherwise carry it and drop it).
    upgrade: Option<Box<(hyper::upgrade::OnUpgrade, Held)>>,
    /// The largest HTTP/1 response head passed on.
    max_head: usize,
}

/// The wait for a response, and the route that keeps its timer for the next request (HTTP/1).
struct Timeout {
    timer: Pin<Box<Sleep>>,
    kept_by: Option<Arc<Route>>,
}

enum State {
    /// On a connection of the HTTP/1.1 pool.
    Pooled(Pin<Box<dyn Future<Output = Result<Response<Incoming>, ProxyError>> + Send>>),
    /// On hyper-util's client: HTTP/2, and HTTP/1.1 upgrades.
    Waiting(ClientFuture),
    Failed(Option<ProxyError>),
}

impl ForwardFuture {
    fn failed(e: ProxyError) -> Self {
        let state = State::Failed(Some(e));
        let (timeout, wait, progress, stream_idle) = (None, Duration::ZERO, None, None);
        let (version, keep_alive_10, upgrade, max_head) = (Version::HTTP_11, false, None, usize::MAX);
        ForwardFuture { version, keep_alive_10, state, timeout, wait, progress, stream_idle, upgrade, max_head }
    }
}

impl Future for ForwardFuture {
    type Output = Result<Response<StreamIdle<Incoming>>, ProxyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = match this.state {
            State::Pooled(fut) => fut.as_mut().poll(cx),
            State::Waiting(fut) => Pin::new(fut).poll(cx).map_err(ProxyError::from_client),
            State::Failed(e) => {
                return Poll::Ready(Err(e.take().unwrap_or(ProxyError { kind: ErrorKind::NoRoute, source: None })));
            }
        };
        if let Poll::Ready(res) = polled {
            if let Some(Timeout { timer, kept_by: Some(route) }) = this.timeout.take() {
                route.timers.keep(timer);
            }
            let mut res = res?;
            let max = *this.max_head;
            let scan = head::Scan::of(res.headers());
            if res.version() < Version::HTTP_2 && head::response(&res, &scan) > max {
                let e = format!("the response head is larger than {max} bytes");
                return Poll::Ready(Err(ProxyError::new(ErrorKind::Protocol, e)));
            }
            *res.version_mut() = *this.version;
            if res.status() == StatusCode::SWITCHING_PROTOCOLS {
                let Some((client_side, held)) = this.upgrade.take().map(|u| *u) else {
                    // RFC 9110 §15.2.2: only to a protocol the client named in `Upgrade`.
                    let e = "101 Switching Protocols to a request that asked for no upgrade";
                    return Poll::Ready(Err(ProxyError::new(ErrorKind::Protocol, e)));
                };
                tokio::spawn(relay_upgraded(client_side, hyper::upgrade::on(&mut res), held));
            } else {
                hop::strip(res.headers_mut(), false, scan.hops);
                // An HTTP/1.0 client that asked to keep its connection keeps it when the answer
                // says so (hyper closes it otherwise); a body without a length can only end with
                // the connection. The drain window's `Connection: close` replaces it.
                if *this.keep_alive_10 && http_body::Body::size_hint(res.body()).exact().is_some() {
                    res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
                }
            }
            let (limit, request) = (*this.stream_idle, this.progress.take());
            return Poll::Ready(Ok(res.map(|body| StreamIdle::new(body, limit, request))));
        }
        let Some(Timeout { timer: t, .. }) = this.timeout else { return Poll::Pending };
        let timed_out = |kind| Poll::Ready(Err(ProxyError { kind, source: None }));
        loop {
            ready!(t.as_mut().poll(cx));
            let Some(progress) = this.progress else { return timed_out(ErrorKind::ResponseTimeout) };
            match progress.waiting(Instant::now(), *this.wait) {
                Waiting::Until(deadline) => t.as_mut().reset(deadline),
                Waiting::ForBody => return timed_out(ErrorKind::BodyTimeout),
                Waiting::ForResponse => return timed_out(ErrorKind::ResponseTimeout),
            }
        }
    }
}

/// Copies bytes both ways between the client and the upstream once both sides have switched.
async fn relay_upgraded(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade, held: Held) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let (mut c, mut u) = (TokioIo::new(client), TokioIo::new(upstream));
    match relay::copy_until_cut(&mut c, &mut u, &held).await {
        Ok((up, down)) => tracing::trace!(up, down, "upgraded connection closed"),
        Err(e) => tracing::debug!(error = %e, "upgraded connection failed"),
    }
}

/// The authority a request names, as the client wrote it: in the target (or `:authority`), else
/// in `Host`.
fn named_authority<B>(req: &Request<B>) -> Option<Authority> {
    match req.uri().authority() {
        Some(a) => Some(a.clone()),
        None => req.headers().get(header::HOST)?.to_str().ok()?.parse().ok(),
    }
}

/// `authority` as a client writes it in `Host`: without the port when it is HTTP's default.
fn host_of(authority: &Authority) -> &str {
    if authority.port_u16() == Some(80) { authority.host() } else { authority.as_str() }
}

/// An explicit proxy client names the destination in the target (`GET http://svc/x`) or, failing
/// that, in Host; the port defaults to 80.
fn request_authority<B>(req: &Request<B>) -> Option<Authority> {
    let a = named_authority(req)?;
    if a.port().is_some() {
        return Some(a);
    }
    format!("{}:80", a.host()).parse().ok()
}

pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The `X-Forwarded-Proto` the proxy adds when none came.
const HTTP: HeaderValue = HeaderValue::from_static("http");

/// The bytes of the `X-Forwarded-` fields `h` has, and of those [`add_forwarded`] leaves it with:
/// [`add_forwarded`] itself run on a copy of those fields alone, so that the two cannot disagree.
fn forwarded_fields(h: &HeaderMap, client: &HeaderValue) -> (usize, usize) {
    let mut fields = HeaderMap::new();
    for name in [X_FORWARDED_FOR, X_FORWARDED_PROTO] {
        for value in h.get_all(&name) {
            fields.append(name.clone(), value.clone());
        }
    }
    let size = |h: &HeaderMap| h.iter().map(|(name, value)| head::field(name, value)).sum::<usize>();
    let before = size(&fields);
    add_forwarded(&mut fields, client);
    (before, size(&fields))
}

fn add_forwarded(h: &mut HeaderMap, client: &HeaderValue) {
    // One look-up a name (each hashes the name, on every request): the entry reads what came
    // and takes what goes on. Several `X-Forwarded-For` lines are one list (RFC 9110 §5.3), so
    // they go on joined, in order, with the client last; empty ones add nothing.
    match h.entry(X_FORWARDED_FOR) {
        Entry::Occupied(mut e) => {
            let prevs = || e.iter().map(HeaderValue::as_bytes).filter(|p| !p.is_empty());
            let mut v = Vec::with_capacity(prevs().map(|p| p.len() + 2).sum::<usize>() + client.len());
            for prev in prevs() {
                v.extend_from_slice(prev);
                v.extend_from_slice(b", ");
            }
            v.extend_from_slice(client.as_bytes());
            // Each part is a valid value, and so is ", ": the joined one is too.
            e.insert(HeaderValue::from_bytes(&v).unwrap_or_else(|_| client.clone()));
        }
        Entry::Vacant(e) => {
            e.insert(client.clone());
        }
    }
    h.entry(X_FORWARDED_PROTO).or_insert_with(|| HTTP);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_fields_measure_what_add_forwarded_leaves() {
        let size = |h: &HeaderMap| {
            h.iter()
                .filter(|(n, _)| n.as_str().starts_with("x-forwarded-"))
                .map(|(n, v)| n.as_str().len() + v.len() + 4)
                .sum::<usize>()
        };
        let client = HeaderValue::from_static("10.0.0.1");
        let xff = "x-forwarded-for";
        for prior in [
            &[][..],
            &[(xff, "1.2.3.4")],
            &[(xff, "1.2.3.4"), (xff, ""), (xff, "5.6.7.8, 9.9.9.9"), ("x-forwarded-proto", "https")],
        ] {
            let mut h = HeaderMap::new();
            for (n, v) in prior {
                h.append(*n, HeaderValue::from_static(v));
            }
            let (before, after) = forwarded_fields(&h, &client);
            assert_eq!(before, size(&h), "{prior:?}");
            add_forwarded(&mut h, &client);
            assert_eq!(after, size(&h), "{prior:?}");
        }
    }

    #[test]
    fn forwarded_for_is_appended_and_proto_kept() {
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, &HeaderValue::from_static("10.0.0.1"));
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        add_forwarded(&mut h, &HeaderValue::from_static("::1"));
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, ::1");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        // An empty header is replaced; several go on as one list, in order, the client last.
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static(""));
        add_forwarded(&mut h, &HeaderValue::from_static("10.0.0.2"));
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().collect::<Vec<_>>(), ["10.0.0.2"]);
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.9.9.9, 10.9.9.8"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static(""));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.8.8.8"));
        add_forwarded(&mut h, &HeaderValue::from_static("10.0.0.3"));
        let joined = "10.0.0.2, 10.9.9.9, 10.9.9.8, 10.8.8.8, 10.0.0.3";
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().collect::<Vec<_>>(), [joined]);
    }
}
