//! HTTP/1.1 connections to upstreams, kept open between requests.
//!
//! Nearly every request the proxy forwards is HTTP/1.1 to one of a handful of destinations (in a
//! pod, the application), so this pool is a short list scanned from its most recent end rather than
//! a map: no hashing of the destination, and no task spawned per request to wait for the connection
//! to become idle again. A connection goes back on the list as soon as its response head has
//! arrived and is taken again only once hyper says it is ready, that is once that response's body
//! has been read to the end; a connection whose body was abandoned is closed by hyper and dropped
//! from the list. HTTP/2 and upgrades keep hyper-util's client (see `forward`).

use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Request, Response, Uri, header};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tower::Service;

use super::error::ProxyError;
use super::grpc_body::CountMessages;
use super::guard::GuardedConnector;

/// What the proxy sends upstream.
pub type UpstreamBody = CountMessages<Incoming>;

/// Connections kept at most, busy or idle; beyond it a finished connection is closed instead. The
/// connection limit keeps the number in use far below it.
const MAX_KEPT: usize = 4096;

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
}

#[derive(Debug)]
struct Kept {
    authority: Authority,
    sender: http1::SendRequest<UpstreamBody>,
    since: Instant,
}

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
    /// Where the connection stands at `now`; a busy one's idle time starts afresh.
    fn state(&mut self, now: Instant, idle_timeout: Duration) -> State {
        if self.sender.is_closed() {
            State::Gone
        } else if !self.sender.is_ready() {
            self.since = now;
            State::Busy
        } else if now.duration_since(self.since) > idle_timeout {
            State::Gone
        } else {
            State::Idle
        }
    }
}

impl H1Pool {
    /// A pool connecting through `connector`, whose responses may have heads up to
    /// `max_buf_size`, and which closes connections idle for `idle_timeout`.
    pub fn new(connector: GuardedConnector, max_buf_size: usize, idle_timeout: Duration) -> Self {
        let mut builder = http1::Builder::new();
        // Headers as the upstream wrote them: some clients care about case.
        builder.max_buf_size(max_buf_size).title_case_headers(false);
        let shared = Arc::new(Shared { kept: Mutex::new(Vec::new()), connector, builder, idle_timeout });
        // Idle connections are closed on time even when no request comes to notice them.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(sweep(Arc::downgrade(&shared)));
        }
        H1Pool { shared }
    }

    /// Sends `req` to `authority` on an idle connection, or a new one, and returns the response
    /// head; the body streams from the connection.
    pub async fn send(
        &self,
        authority: Authority,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        prepare(&mut req, &authority);
        let shared = &self.shared;
        if let Some(mut sender) = shared.checkout(&authority) {
            match sender.try_send_request(req).await {
                Ok(res) => {
                    shared.checkin(authority, sender);
                    return Ok(res);
                }
                // The connection closed before the request went out (the upstream timed it out
                // while it was idle): a new one takes the request.
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(ProxyError::from_exchange(e.into_error())),
                },
            }
        }
        let mut sender = shared.connect(&authority).await?;
        let res = sender.send_request(req).await.map_err(ProxyError::from_exchange)?;
        shared.checkin(authority, sender);
        Ok(res)
    }
}

/// The request as a connection to its destination sends it: an origin-form target, and a `Host`
/// when the client sent none (an HTTP/1.0 request).
fn prepare(req: &mut Request<UpstreamBody>, authority: &Authority) {
    if !req.headers().contains_key(header::HOST) {
        // The port is left out when it is HTTP's default, as clients write it.
        let host = if authority.port_u16() == Some(80) { authority.host() } else { authority.as_str() };
        if let Ok(host) = HeaderValue::from_str(host) {
            req.headers_mut().insert(header::HOST, host);
        }
    }
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
    }
}

impl Shared {
    /// The most recently used connection to `authority` that is ready for a request; closed and
    /// expired ones met on the way are dropped.
    fn checkout(&self, authority: &Authority) -> Option<http1::SendRequest<UpstreamBody>> {
        let mut kept = self.kept.lock().ok()?;
        let now = Instant::now();
        let mut i = kept.len();
        while i > 0 {
            i -= 1;
            match kept[i].state(now, self.idle_timeout) {
                State::Gone => drop(kept.swap_remove(i)),
                State::Busy => {}
                State::Idle if kept[i].authority == *authority => return Some(kept.swap_remove(i).sender),
                State::Idle => {}
            }
        }
        None
    }

    /// Keeps a connection that has just carried a request, to be taken again once it is idle.
    fn checkin(&self, authority: Authority, sender: http1::SendRequest<UpstreamBody>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut kept) = self.kept.lock() {
            if kept.len() < MAX_KEPT {
                kept.push(Kept { authority, sender, since: Instant::now() });
            }
        }
    }

    /// Opens a connection to `authority` (refused destinations are refused by the connector) and
    /// runs it on a task of its own.
    async fn connect(&self, authority: &Authority) -> Result<http1::SendRequest<UpstreamBody>, ProxyError> {
        let uri = Uri::builder()
            .scheme("http")
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| ProxyError::connecting_upstream(e.into()))?;
        let io = self.connector.clone().call(uri).await.map_err(ProxyError::connecting_upstream)?;
        let (sender, conn) = self.builder.handshake(io).await.map_err(ProxyError::from_exchange)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// Drops connections idle for longer than the idle timeout, until the pool is gone.
async fn sweep(shared: Weak<Shared>) {
    let every = shared.upgrade().map_or(Duration::from_secs(1), |s| s.idle_timeout.max(Duration::from_secs(1)));
    loop {
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else { return };
        if let Ok(mut kept) = shared.kept.lock() {
            let now = Instant::now();
            kept.retain_mut(|k| k.state(now, shared.idle_timeout) != State::Gone);
        }
    }
}
