//! Proxy failures: the one place that names every failure the proxy records, decides which become
//! 502 or 504, and what `cause` they write into the segment.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use std::borrow::Cow;
use std::fmt::Display;
use std::io;

use super::guard::Refusal;
use crate::metrics::UpstreamError;
use crate::xray::grpc;

/// Why the proxy could not get a response from the upstream.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct ProxyError {
    /// What went wrong, as far as the client and the segment are concerned.
    pub kind: ErrorKind,
    /// The underlying error, for logs.
    #[source]
    pub source: Option<crate::BoxError>,
}

/// The failures a client can tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The upstream refused the connection.
    #[error("upstream refused the connection")]
    ConnectRefused,
    /// Connecting took longer than the connect timeout.
    #[error("upstream connect timed out")]
    ConnectTimeout,
    /// The connection could not be made for another reason (unreachable, no address).
    #[error("cannot connect to the upstream")]
    ConnectFailed,
    /// No response head within the upstream timeout.
    #[error("upstream did not respond in time")]
    ResponseTimeout,
    /// The upstream closed or reset the connection before a response.
    #[error("upstream closed the connection before responding")]
    Reset,
    /// The upstream spoke something that is not valid HTTP.
    #[error("upstream sent an invalid response")]
    Protocol,
    /// The request cannot be forwarded (e.g. no destination known).
    #[error("request cannot be forwarded")]
    NoRoute,
    /// The destination is the proxy itself: forwarding would loop.
    #[error("loop detected: the destination is this proxy")]
    Loop,
    /// The destination is one the proxy never forwards to (link-local, instance metadata).
    #[error("destination not allowed through this proxy")]
    Forbidden,
    /// The request is malformed in a way the application must not see (its `Host`, its body's
    /// framing).
    #[error("bad request")]
    BadRequest,
    /// A method this listener does not serve (`CONNECT` to a fixed destination).
    #[error("method not allowed here")]
    MethodNotAllowed,
}

/// Every failure a segment can record as its `cause`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// No response from the upstream: answered by the proxy with 502 or 504.
    Upstream(ErrorKind),
    /// The upstream's response body broke off after its head was sent on.
    UpstreamBody,
    /// The client went away before the response was complete.
    ClientAborted,
    /// A tunnel's connection broke off midway.
    TunnelBroken,
    /// A gRPC call ended with a status other than OK; `remote` when the callee said so to us.
    Grpc {
        /// The `grpc-status` code.
        code: u32,
        /// Whether the status came from a service we called (outbound) rather than the application.
        remote: bool,
    },
}

impl FailureKind {
    /// The exception's `type` in the segment's `cause`.
    pub fn exception_type(self) -> &'static str {
        match self {
            FailureKind::Upstream(kind) => match kind {
                ErrorKind::ConnectRefused => "ConnectionRefused",
                ErrorKind::ConnectTimeout => "ConnectTimeout",
                ErrorKind::ConnectFailed => "ConnectError",
                ErrorKind::ResponseTimeout => "ResponseTimeout",
                ErrorKind::Reset => "ConnectionReset",
                ErrorKind::Protocol => "ProtocolError",
                ErrorKind::NoRoute => "NoRoute",
                ErrorKind::Loop => "LoopDetected",
                ErrorKind::Forbidden => "ForbiddenDestination",
                ErrorKind::BadRequest => "BadRequest",
                ErrorKind::MethodNotAllowed => "MethodNotAllowed",
            },
            FailureKind::UpstreamBody => "UpstreamBodyError",
            FailureKind::ClientAborted => "ClientAborted",
            FailureKind::TunnelBroken => "TunnelBroken",
            FailureKind::Grpc { code, .. } => grpc::status_name(code),
        }
    }

    /// Whether the failure is the server side's (`fault`) rather than the client's (`error`).
    pub fn is_fault(self) -> bool {
        match self {
            FailureKind::Grpc { code, .. } => grpc::flags(code).2,
            _ => !self.is_callers(),
        }
    }

    /// Whether the failure came from the remote side.
    pub fn is_remote(self) -> bool {
        match self {
            FailureKind::Grpc { remote, .. } => remote,
            _ => !self.is_callers(),
        }
    }

    /// The client went away, or asked for what the proxy never does (a refused destination).
    fn is_callers(self) -> bool {
        matches!(
            self,
            FailureKind::ClientAborted
                | FailureKind::Upstream(ErrorKind::Forbidden | ErrorKind::BadRequest | ErrorKind::MethodNotAllowed)
        )
    }
}

/// A failure the proxy itself observed, recorded as the segment's `cause`.
#[derive(Clone, Debug)]
pub struct Failure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// What happened, for a person.
    pub message: Cow<'static, str>,
}

impl Failure {
    /// The upstream's body broke off after `bytes` bytes, for the reason given.
    pub fn upstream_body(bytes: u64, why: &dyn Display) -> Self {
        let message = format!("upstream response body failed after {bytes} bytes: {why}");
        Failure { kind: FailureKind::UpstreamBody, message: message.into() }
    }

    /// The client left after `bytes` bytes of the response, or (`None`) before it began.
    pub fn client_left(bytes: Option<u64>) -> Self {
        let message = match bytes {
            Some(bytes) => format!("client went away after {bytes} bytes of the response").into(),
            None => Cow::Borrowed("client went away before the response began"),
        };
        Failure { kind: FailureKind::ClientAborted, message }
    }

    /// Whether the failure is the server side's (`fault`) rather than the client's (`error`).
    pub fn fault(&self) -> bool {
        self.kind.is_fault()
    }

    /// Whether the failure came from the remote side.
    pub fn remote(&self) -> bool {
        self.kind.is_remote()
    }

    /// A tunnel broke off after `sent` and `received` bytes, for the reason given.
    pub fn tunnel_broken(sent: u64, received: u64, why: &dyn Display) -> Self {
        let message = format!("tunnel broken after {sent} bytes sent, {received} received: {why}");
        Failure { kind: FailureKind::TunnelBroken, message: message.into() }
    }

    /// Whether the client went away before the response was complete.
    pub fn client_aborted(&self) -> bool {
        self.kind == FailureKind::ClientAborted
    }

    /// The counter a failure after the response head is reported under: a body that broke off
    /// is the upstream's connection failing, like a reset before the head.
    pub fn metric(&self) -> Option<UpstreamError> {
        (self.kind == FailureKind::UpstreamBody).then_some(UpstreamError::Broken)
    }
}

impl ProxyError {
    /// Wraps an error of a known kind.
    pub fn new(kind: ErrorKind, source: impl Into<crate::BoxError>) -> Self {
        ProxyError { kind, source: Some(source.into()) }
    }

    /// Classifies an error from the upstream client by what its sources say.
    pub fn from_client(e: hyper_util::client::legacy::Error) -> Self {
        let kind = if let Some(r) = find::<Refusal>(&e) {
            r.kind()
        } else if find::<hyper::Error>(&e).is_some_and(hyper::Error::is_user)
            && io_kind(&e) == Some(io::ErrorKind::InvalidData)
        {
            // The client's own body broke its framing (an impossible chunk size): its mistake.
            ErrorKind::BadRequest
        } else if e.is_connect() {
            match io_kind(&e) {
                Some(io::ErrorKind::ConnectionRefused) => ErrorKind::ConnectRefused,
                Some(io::ErrorKind::TimedOut) => ErrorKind::ConnectTimeout,
                // hyper-util reports its own connect timeout as a plain error with this text.
                _ if chain_mentions(&e, "timed out") => ErrorKind::ConnectTimeout,
                _ => ErrorKind::ConnectFailed,
            }
        } else if let Some(h) = find::<hyper::Error>(&e) {
            if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() {
                ErrorKind::Protocol
            } else {
                ErrorKind::Reset
            }
        } else {
            ErrorKind::Reset
        };
        ProxyError::new(kind, e)
    }

    /// Classifies a failed TCP connect made by the proxy itself (tunnels).
    pub fn connecting(e: io::Error) -> Self {
        let kind = match e.kind() {
            io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
            io::ErrorKind::TimedOut => ErrorKind::ConnectTimeout,
            _ => ErrorKind::ConnectFailed,
        };
        ProxyError::new(kind, e)
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::ConnectTimeout | ErrorKind::ResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Loop => StatusCode::LOOP_DETECTED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// The counter this failure is reported under; none for the client's own mistakes.
    pub fn metric(&self) -> Option<UpstreamError> {
        Some(match self.kind {
            ErrorKind::ConnectRefused
            | ErrorKind::ConnectFailed
            | ErrorKind::NoRoute
            | ErrorKind::Loop
            | ErrorKind::Forbidden => UpstreamError::Connect,
            ErrorKind::ConnectTimeout | ErrorKind::ResponseTimeout => UpstreamError::Timeout,
            ErrorKind::Reset | ErrorKind::Protocol => UpstreamError::Broken,
            ErrorKind::BadRequest | ErrorKind::MethodNotAllowed => return None,
        })
    }

    /// The segment's `cause`.
    pub fn failure(&self) -> Failure {
        let message = match &self.source {
            Some(s) => format!("{}: {}", self.kind, innermost(s.as_ref())),
            None => self.kind.to_string(),
        };
        Failure { kind: FailureKind::Upstream(self.kind), message: message.into() }
    }

    /// The short plain-text answer the client gets instead of the upstream's.
    pub fn response(&self) -> Response<Full<Bytes>> {
        let mut res = Response::new(Full::new(Bytes::from(format!("{}\n", self.kind))));
        *res.status_mut() = self.status();
        res.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
        res
    }
}

fn find<'a, T: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    find::<io::Error>(e).map(io::Error::kind)
}

fn chain_mentions(e: &(dyn std::error::Error + 'static), text: &str) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.to_string().contains(text) {
            return true;
        }
        cur = err.source();
    }
    false
}

fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_504_and_the_rest_502() {
        for (kind, status) in [
            (ErrorKind::ConnectTimeout, 504),
            (ErrorKind::ResponseTimeout, 504),
            (ErrorKind::ConnectRefused, 502),
            (ErrorKind::Reset, 502),
            (ErrorKind::Protocol, 502),
        ] {
            let e = ProxyError { kind, source: None };
            assert_eq!(e.status().as_u16(), status, "{kind:?}");
            assert_eq!(e.response().status().as_u16(), status);
            let f = e.failure();
            assert!(f.fault() && f.remote() && !f.client_aborted());
        }
    }

    #[test]
    fn the_cause_names_the_innermost_reason() {
        let io = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused (os error 111)");
        let e = ProxyError::new(ErrorKind::ConnectRefused, io);
        let f = e.failure();
        assert_eq!(f.kind.exception_type(), "ConnectionRefused");
        assert_eq!(f.message, "upstream refused the connection: connection refused (os error 111)");
    }
}
