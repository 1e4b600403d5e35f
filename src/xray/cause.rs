//! What went wrong in a traced exchange, as a segment records it: the failure kinds, their
//! exception types in the `cause`, and whether each is a fault, an error, and the remote side's.
//! Which proxy error becomes which kind is decided in `proxy::error`.

use std::borrow::Cow;
use std::fmt::Display;

use super::grpc;

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
    /// No response head within the upstream timeout of the request's end.
    #[error("upstream did not respond in time")]
    ResponseTimeout,
    /// The client's request body stopped coming for the upstream timeout: the upstream could not
    /// answer a request it did not have.
    #[error("client stopped sending its request body")]
    BodyTimeout,
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
    /// A request head larger than `--max-header-size`.
    #[error("request head too large")]
    HeadTooLarge,
    /// The client stopped sending its request body (closed or reset its connection, or its
    /// stream) before the end: recorded as the client going away.
    #[error("client went away before its request was complete")]
    ClientLeft,
}

/// Every failure a segment can record as its `cause`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// No response from the upstream: answered by the proxy (502 or 504, or a gRPC status).
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
                ErrorKind::BodyTimeout => "RequestTimeout",
                ErrorKind::Reset => "ConnectionReset",
                ErrorKind::Protocol => "ProtocolError",
                ErrorKind::NoRoute => "NoRoute",
                ErrorKind::Loop => "LoopDetected",
                ErrorKind::Forbidden => "ForbiddenDestination",
                ErrorKind::BadRequest => "BadRequest",
                ErrorKind::MethodNotAllowed => "MethodNotAllowed",
                ErrorKind::HeadTooLarge => "RequestHeaderFieldsTooLarge",
                ErrorKind::ClientLeft => "ClientAborted",
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
            FailureKind::Grpc { code, .. } => grpc::flags(code).fault,
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
                | FailureKind::Upstream(
                    ErrorKind::Forbidden
                        | ErrorKind::BadRequest
                        | ErrorKind::MethodNotAllowed
                        | ErrorKind::HeadTooLarge
                        | ErrorKind::ClientLeft
                        | ErrorKind::BodyTimeout
                )
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
}
