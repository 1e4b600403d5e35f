//! HTTP/1.1 connections to upstreams, kept open between requests.
//!
//! Nearly every request the proxy forwards is HTTP/1.1 to one of a handful of destinations (in a
//! pod, the application), so this pool is a short list scanned from its most recent end rather than
//! a map: no hashing of the destination, and no task spawned per request to wait for the connection
//! to become idle again. A connection goes back on the list as soon as its response head has
//! arrived and is taken again only once hyper says it is ready, that is once that response's body
//! has been read to the end; a connection whose body was abandoned is closed by hyper and dropped
//! from the list. HTTP/2 and upgrades keep hyper-util's client (see `forward`).
//!
//! A connection idle for [`QUIET`] is parked: hyper holds some 30 KB for each (an 8 KB read and an
//! 8 KB write buffer, its request channel, its task) whether or not it carries anything, so its
//! sender is dropped, hyper hands the bare socket back (`without_shutdown`) and the list keeps only
//! that. The next request for its destination runs a new hyper connection on it (no I/O: the
//! handshake of HTTP/1 is nothing on the wire). A parked socket the upstream has closed, or sent
//! anything on, is dropped when next looked at; the idle timeout counts from when it went idle.
//!
//! An upstream may still close an idle connection just as a request goes out on it (its own
//! keep-alive timeout striking then): a request that may be sent twice is kept, when its connection
//! had been idle a while, and sent again on a new one; one that may not never goes out on a
//! connection idle for a second or more.

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request, Response, Uri};
use http_body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tower::Service;

use super::error::{ProxyError, closed_before_answer};
use super::grpc_body::CountMessages;
use super::guard::GuardedConnector;
use crate::metrics::{GaugeHeld, Metrics};

/// What the proxy sends upstream.
pub type UpstreamBody = CountMessages<Incoming>;

/// Connections kept at most, busy or idle; beyond it a finished connection is closed instead. The
/// connection limit keeps the number in use far below it.
const MAX_KEPT: usize = 4096;

/// Idle time after which a connection is parked (see the module docs). Requests a second apart or
/// closer keep their connection live; one a second, a new hyper connection per request.
const QUIET: Duration = Duration::from_secs(1);

type Io = TokioIo<TcpStream>;

/// The pool; cheap to clone.
#[derive(Clone, Debug)]
pub struct H1Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    kept: Mutex<Vec<Kept>>,
    connector: GuardedConnector,
    builder: http1::Builder,
    idle_timeout: Duration,
    /// Names each connection, so that its socket finds its place again once hyper is done with it.
    next_id: AtomicU64,
    /// `idle_upstream_connections` counts the parked ones.
    metrics: Arc<Metrics>,
}

#[derive(Debug)]
struct Kept {
    id: u64,
    authority: Authority,
    link: Link,
    /// When it was last seen busy (or parked).
    since: Instant,
}

#[derive(Debug)]
enum Link {
    /// hyper serves it, on a task of its own.
    Live(http1::SendRequest<UpstreamBody>),
    /// Its sender dropped to park it; hyper is handing the socket back.
    Parking,
    /// Just the socket.
    Parked(Parked),
}

/// A parked socket, counted in `idle_upstream_connections` while it is one.
#[derive(Debug)]
struct Parked {
    io: Io,
    _counted: GaugeHeld,
}

/// A connection taken for a request, with its id.
enum Taken {
    Live(u64, http1::SendRequest<UpstreamBody>),
    Parked(u64, Io),
}

/// How long a connection must have been idle before a request sent on it is kept for a second
/// try (see [`H1Pool::send`]): under load connections go back to work within microseconds, and
/// the copy is not paid for.
const RACY_IDLE: Duration = Duration::from_millis(100);

/// Where a kept connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Closed, or idle for longer than the idle timeout.
    Gone,
    /// Still carrying its last response.
    Busy,
    /// Ready for a request.
    Idle,
}

impl Kept {
    /// Where the connection stands at `now`; a busy one's idle time starts afresh. One being
    /// parked counts as busy: it cannot be taken until hyper has handed it back.
    fn state(&mut self, now: Instant, idle_timeout: Duration) -> State {
        let expired = now.duration_since(self.since) > idle_timeout;
        match &self.link {
            Link::Live(sender) if sender.is_closed() => State::Gone,
            Link::Live(sender) if !sender.is_ready() => {
                self.since = now;
                State::Busy
            }
            Link::Parked(p) if !quiet(&p.io) => State::Gone,
            _ if expired => State::Gone,
            Link::Parking => State::Busy,
            Link::Live(_) | Link::Parked(_) => State::Idle,
        }
    }
}

/// Whether a socket at rest is still open and has received nothing; costs no system call unless
/// the upstream has sent something (tokio keeps the socket's readiness).
fn quiet(io: &Io) -> bool {
    matches!(io.inner().try_read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

impl H1Pool {
    /// A pool connecting through `connector`, whose responses may have heads up to
    /// `max_buf_size`, and which closes connections idle for `idle_timeout`.
    pub fn new(
        connector: GuardedConnector,
        max_buf_size: usize,
        idle_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut builder = http1::Builder::new();
        // Field names go out in lower case, as HTTP/2 has them and Envoy sends them: title case
        // would be a guess, and keeping each name's case would cost a map for every message.
        builder.max_buf_size(max_buf_size).title_case_headers(false);
        let kept = Mutex::new(Vec::new());
        let next_id = AtomicU64::new(0);
        let shared = Arc::new(Shared { kept, connector, builder, idle_timeout, next_id, metrics });
        // Idle connections are parked and closed on time even when no request comes to notice them.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(sweep(Arc::downgrade(&shared)));
        }
        H1Pool { shared }
    }

    /// Sends `req` to `authority` on an idle connection, or a new one, and returns the response
    /// head; the body streams from the connection. The future owns its handle on the pool, so the
    /// caller boxes it as it is rather than inside a wrapper holding a second copy of the request.
    pub async fn send(
        self,
        authority: Authority,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        prepare(&mut req);
        let shared = &self.shared;
        // Servers time idle keep-alive connections out (gunicorn after 2 s, Node.js after 5): one
        // may close a connection just as a request goes out on it, which then fails unanswered. A
        // request that may be sent twice is kept for a second try; one that may not is not sent on
        // a connection idle long enough to be near such a timeout.
        let may_resend = resendable(&req);
        let max_idle = if may_resend { None } else { Some(QUIET) };
        let taken = match shared.checkout(&authority, max_idle) {
            Some((Taken::Live(id, sender), idle)) => Some((id, sender, idle)),
            Some((Taken::Parked(id, io), idle)) => shared.run(id, io).await.ok().map(|sender| (id, sender, idle)),
            None => None,
        };
        if let Some((id, mut sender, idle)) = taken {
            // Boxed: rarely made, and inline its 312 bytes would be part of every request's
            // future (1,472 bytes then, 1,168 now), which is moved into its box whole.
            let again = (may_resend && idle >= RACY_IDLE).then(|| Box::new(copy(&req)));
            match sender.try_send_request(req).await {
                Ok(res) => {
                    shared.checkin(authority, id, sender);
                    return Ok(res);
                }
                // The connection closed before the request went out: a new one takes the request.
                Err(mut e) => match (e.take_message(), again) {
                    (Some(unsent), _) => req = unsent,
                    (None, Some(copy)) if closed_before_answer(e.error()) => {
                        tracing::debug!(error = %e.error(), ?idle, "an idle upstream connection closed under the request; sending it again");
                        req = *copy;
                    }
                    (None, _) => return Err(ProxyError::from_exchange(e.into_error())),
                },
            }
        }
        let id = shared.next_id.fetch_add(1, Relaxed);
        let mut sender = shared.connect(id, &authority).await?;
        let res = sender.send_request(req).await.map_err(ProxyError::from_exchange)?;
        shared.checkin(authority, id, sender);
        Ok(res)
    }
}

/// Whether `req` may be sent again on a new connection without doing what the client did not
/// ask for: an idempotent method (RFC 9110 §9.2.2) and no body.
fn resendable(req: &Request<UpstreamBody>) -> bool {
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    idempotent && req.body().is_end_stream()
}

/// A copy of a [`resendable`] request.
fn copy(req: &Request<UpstreamBody>) -> Request<UpstreamBody> {
    let mut copy = Request::new(UpstreamBody::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// The request as a connection to its destination sends it: an origin-form target, and a body
/// framed so that it arrives. (Its `Host` is the caller's: [`super::forward`] gives one to a
/// request that came without.)
fn prepare(req: &mut Request<UpstreamBody>) {
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
    }
    // A chunked body's `Transfer-Encoding` was this hop's framing and is gone; hyper chunks a
    // body of unknown length again, except on a GET or HEAD, which it sends bodiless ("almost
    // never have bodies"): the application would hear a request without the body the client
    // sent, and the body would be lost. Those say chunked themselves.
    if matches!(*req.method(), Method::GET | Method::HEAD)
        && !req.body().is_end_stream()
        && req.body().size_hint().exact().is_none()
        && !req.headers().contains_key(header::TRANSFER_ENCODING)
    {
        req.headers_mut().insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    }
}

impl Shared {
    /// The most recently used connection to `authority` that is ready for a request, and how long
    /// it has been idle; closed and expired ones met on the way are dropped, and so are those idle
    /// for `max_idle` or longer.
    fn checkout(&self, authority: &Authority, max_idle: Option<Duration>) -> Option<(Taken, Duration)> {
        let mut kept = self.kept.lock().ok()?;
        let now = Instant::now();
        let mut i = kept.len();
        while i > 0 {
            i -= 1;
            match kept[i].state(now, self.idle_timeout) {
                State::Gone => drop(kept.swap_remove(i)),
                State::Busy => {}
                State::Idle if kept[i].authority == *authority => {
                    let k = kept.swap_remove(i);
                    let idle = now.duration_since(k.since);
                    if max_idle.is_some_and(|max| idle >= max) {
                        // Too long idle for this request: closed, and a new one takes its place
                        // (kept, it would wait for another such request only to be passed over).
                        continue;
                    }
                    match k.link {
                        Link::Live(sender) => return Some((Taken::Live(k.id, sender), idle)),
                        Link::Parked(Parked { io, .. }) => return Some((Taken::Parked(k.id, io), idle)),
                        // Never idle: `state` counts it busy until hyper hands the socket back.
                        Link::Parking => {}
                    }
                }
                State::Idle => {}
            }
        }
        None
    }

    /// Keeps a connection that has just carried a request, to be taken again once it is idle.
    fn checkin(&self, authority: Authority, id: u64, sender: http1::SendRequest<UpstreamBody>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut kept) = self.kept.lock() {
            if kept.len() < MAX_KEPT {
                kept.push(Kept { id, authority, link: Link::Live(sender), since: Instant::now() });
            }
        }
    }

    /// Opens a connection to `authority` (refused destinations are refused by the connector) and
    /// runs it on a task of its own.
    async fn connect(
        self: &Arc<Self>,
        id: u64,
        authority: &Authority,
    ) -> Result<http1::SendRequest<UpstreamBody>, ProxyError> {
        let uri = Uri::builder()
            .scheme("http")
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| ProxyError::connecting_upstream(e.into()))?;
        let io = self.connector.clone().call(uri).await.map_err(ProxyError::connecting_upstream)?;
        self.run(id, io).await
    }

    /// Serves a connection, new or parked, with hyper on a task of its own; once its
    /// sender has been dropped hyper hands the socket back to [`Shared::park`].
    async fn run(self: &Arc<Self>, id: u64, io: Io) -> Result<http1::SendRequest<UpstreamBody>, ProxyError> {
        let (sender, conn) = self.builder.handshake(io).await.map_err(ProxyError::from_exchange)?;
        let shared = Arc::downgrade(self);
        tokio::spawn(async move {
            match conn.without_shutdown().await {
                Ok(parts) => match shared.upgrade() {
                    // Bytes the upstream sent unasked: not a connection to reuse.
                    Some(shared) if parts.read_buf.is_empty() => shared.park(id, parts.io),
                    _ => {}
                },
                Err(e) => tracing::debug!(error = %e, "upstream connection ended with an error"),
            }
        });
        Ok(sender)
    }

    /// Parks the connections idle for [`QUIET`] by dropping their senders (hyper then ends their
    /// tasks and hands the sockets to [`Shared::park`]), and drops the closed and expired ones.
    fn sweep(&self) {
        let Ok(mut kept) = self.kept.lock() else { return };
        let now = Instant::now();
        kept.retain_mut(|k| match k.state(now, self.idle_timeout) {
            State::Gone => false,
            State::Idle if matches!(k.link, Link::Live(_)) && now.duration_since(k.since) >= QUIET => {
                k.link = Link::Parking;
                true
            }
            State::Busy | State::Idle => true,
        });
    }

    /// Keeps the socket of a connection hyper has finished with, if the pool parked it: one
    /// dropped for any other reason (expired, the pool full) closes here.
    fn park(&self, id: u64, io: Io) {
        let Ok(mut kept) = self.kept.lock() else { return };
        let Some(k) = kept.iter_mut().find(|k| k.id == id && matches!(k.link, Link::Parking)) else {
            return;
        };
        let counted = GaugeHeld::new(&self.metrics, |m| &m.idle_upstream_connections);
        k.link = Link::Parked(Parked { io, _counted: counted });
    }
}

/// Parks idle connections and drops expired ones every [`QUIET`], until the pool is gone.
async fn sweep(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(QUIET).await;
        let Some(shared) = shared.upgrade() else { return };
        shared.sweep();
    }
}
