//! Proxy failures: the one place that classifies what went wrong on the data path into the failure
//! kinds a segment records (`xray::cause`), and decides which become 502 or 504 (or which gRPC
//! status, for a gRPC call), which counter they go under, and what `cause` they write into the
//! segment.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use std::io;

use super::guard::Refusal;
use crate::metrics::UpstreamError;
pub use crate::xray::cause::{ErrorKind, Failure, FailureKind};
use crate::xray::grpc as grpc_code;

/// Why an HTTP/1 response head from the upstream was not read. hyper parses at most 100 header
/// fields in a head either way (as Envoy and HAProxy do by default; a request with more is answered
/// 431 by hyper itself): raising that would allocate the parser's arrays for every message.
const RESPONSE_HEAD_OVER_LIMIT: &str =
    "the response head is larger than --max-header-size or has more than 100 header fields";

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

impl Refusal {
    /// The failure kind the client and the segment see.
    pub fn kind(self) -> ErrorKind {
        match self {
            Refusal::Loop(_) => ErrorKind::Loop,
            Refusal::LinkLocal(_) => ErrorKind::Forbidden,
        }
    }
}

impl ProxyError {
    /// Wraps an error of a known kind.
    pub fn new(kind: ErrorKind, source: impl Into<crate::BoxError>) -> Self {
        ProxyError { kind, source: Some(source.into()) }
    }

    /// Classifies an error from the pooled upstream clients by what its sources say.
    pub fn from_client(e: hyper_util::client::legacy::Error) -> Self {
        let kind = if e.is_connect() { connect_kind(&e) } else { exchange_kind(&e) };
        ProxyError::new(kind, e)
    }

    /// Classifies a failed connection to the upstream (connector errors, refusals included).
    pub fn connecting_upstream(e: crate::BoxError) -> Self {
        ProxyError { kind: connect_kind(&*e), source: Some(e) }
    }

    /// Classifies a failed exchange on an upstream connection.
    pub fn from_exchange(e: hyper::Error) -> Self {
        if e.is_parse_too_large() {
            // hyper says "message head is too large" of a response head that fills its buffer
            // and of one with more fields than it parses, however short: say both, so that
            // whoever reads the segment looks at the field count too.
            return ProxyError::new(ErrorKind::Protocol, RESPONSE_HEAD_OVER_LIMIT);
        }
        ProxyError::new(exchange_kind(&e), e)
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
            // The client may have only half-closed: it can still read why.
            ErrorKind::BadRequest | ErrorKind::ClientLeft => StatusCode::BAD_REQUEST,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorKind::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
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
            ErrorKind::BadRequest
            | ErrorKind::MethodNotAllowed
            | ErrorKind::HeadTooLarge
            | ErrorKind::ClientLeft
            | ErrorKind::BodyTimeout => return None,
        })
    }

    /// The segment's `cause`.
    pub fn failure(&self) -> Failure {
        let message = match &self.source {
            Some(s) => format!("{}: {}", self.kind, innermost(s.as_ref())),
            None => self.kind.to_string(),
        };
        // A client that left is recorded as such wherever it left (see `trace`), not as a failure
        // to get a response.
        let kind = match self.kind {
            ErrorKind::ClientLeft => FailureKind::ClientAborted,
            kind => FailureKind::Upstream(kind),
        };
        Failure { kind, message: message.into() }
    }

    /// The short plain-text answer the client gets instead of the upstream's: its `reason`.
    pub fn response(&self) -> Response<Full<Bytes>> {
        let text = format!("{}\n", self.reason());
        let mut res = Response::new(Full::new(Bytes::from(text)));
        *res.status_mut() = self.status();
        res.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
        res
    }

    /// The gRPC status a gRPC client gets instead of `status()`: what gRPC makes of that HTTP
    /// status (502 and a connect timeout's 504 `UNAVAILABLE`, which clients may retry, 400
    /// `INTERNAL`, 403 `PERMISSION_DENIED`, the rest `UNKNOWN`), except that the two timeouts of a
    /// call under way, waiting for the answer (the upstream may have acted on the call) or for the
    /// client's own messages, are `DEADLINE_EXCEEDED`, and a client that left `CANCELLED`.
    pub fn grpc_status(&self) -> u32 {
        match self.kind {
            ErrorKind::ResponseTimeout | ErrorKind::BodyTimeout => grpc_code::DEADLINE_EXCEEDED,
            ErrorKind::ClientLeft => grpc_code::CANCELLED,
            ErrorKind::BadRequest => grpc_code::INTERNAL,
            ErrorKind::Forbidden => grpc_code::PERMISSION_DENIED,
            ErrorKind::Loop | ErrorKind::MethodNotAllowed | ErrorKind::HeadTooLarge => grpc_code::UNKNOWN,
            ErrorKind::ConnectRefused
            | ErrorKind::ConnectTimeout
            | ErrorKind::ConnectFailed
            | ErrorKind::Reset
            | ErrorKind::Protocol
            | ErrorKind::NoRoute => grpc_code::UNAVAILABLE,
        }
    }

    /// The answer a gRPC call gets: `grpc_status()` with `response()`'s reason, trailers-only.
    pub fn grpc_response(&self) -> Response<Full<Bytes>> {
        super::grpc::trailers_only(self.grpc_status(), &self.reason())
    }

    /// What the client is told: what went wrong, and for its own mistakes (no upstream counter)
    /// why, so that it can mend the request; an upstream's failure stays in the segment and the
    /// logs.
    fn reason(&self) -> String {
        match self.metric() {
            None => self.failure().message.into_owned(),
            Some(_) => self.kind.to_string(),
        }
    }
}

/// The gRPC status of a call whose response broke off after its head, as its client would have
/// seen it on its own connection to the server: a stream the server reset maps as gRPC maps
/// RST_STREAM codes (`CANCEL` `CANCELLED`, `REFUSED_STREAM` `UNAVAILABLE`, `ENHANCE_YOUR_CALM`
/// `RESOURCE_EXHAUSTED`, `INADEQUATE_SECURITY` `PERMISSION_DENIED`, the rest `INTERNAL`); a
/// connection that closed, reset or went away is `UNAVAILABLE`.
pub fn grpc_status_of_broken_body(e: &(dyn std::error::Error + 'static)) -> u32 {
    match find::<h2::Error>(e).filter(|h| h.is_reset() && h.is_remote()).and_then(h2::Error::reason) {
        Some(h2::Reason::CANCEL) => grpc_code::CANCELLED,
        Some(h2::Reason::REFUSED_STREAM) => grpc_code::UNAVAILABLE,
        Some(h2::Reason::ENHANCE_YOUR_CALM) => grpc_code::RESOURCE_EXHAUSTED,
        Some(h2::Reason::INADEQUATE_SECURITY) => grpc_code::PERMISSION_DENIED,
        Some(_) => grpc_code::INTERNAL,
        None => grpc_code::UNAVAILABLE,
    }
}

/// The counter a failure after the response head is reported under: a body that broke off is the
/// upstream's connection failing, like a reset before the head.
pub fn failure_metric(failure: &Failure) -> Option<UpstreamError> {
    (failure.kind == FailureKind::UpstreamBody).then_some(UpstreamError::Broken)
}

/// Whether an exchange on a kept connection failed because the upstream closed or reset the
/// connection before answering (it timed the idle connection out as the request went out).
pub fn closed_before_answer(e: &hyper::Error) -> bool {
    e.is_incomplete_message()
        || matches!(
            io_kind(e),
            Some(io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted)
        )
}

/// What a failed connection attempt means.
fn connect_kind(e: &(dyn std::error::Error + 'static)) -> ErrorKind {
    if let Some(r) = find::<Refusal>(e) {
        return r.kind();
    }
    match io_kind(e) {
        Some(io::ErrorKind::ConnectionRefused) => ErrorKind::ConnectRefused,
        Some(io::ErrorKind::TimedOut) => ErrorKind::ConnectTimeout,
        // hyper-util reports its own connect timeout as a plain error with this text.
        _ if chain_mentions(e, "timed out") => ErrorKind::ConnectTimeout,
        _ => ErrorKind::ConnectFailed,
    }
}

/// What a failure after connecting means: the client's own request body failing, a response that
/// is not HTTP, or a connection that went away.
fn exchange_kind(e: &(dyn std::error::Error + 'static)) -> ErrorKind {
    match find::<hyper::Error>(e) {
        // The client's body broke its framing (a chunk size that is not one), or stopped short (the
        // client closed or reset its connection or its stream mid-body): the request was the
        // client's to finish, so it is the client's error, not the upstream's fault.
        Some(h) if from_request_body(h) => match io_kind(e) {
            Some(io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput) => ErrorKind::BadRequest,
            _ => ErrorKind::ClientLeft,
        },
        // Over HTTP/2, hyper's client does not hand the body's failure back: it resets the upstream
        // stream itself (with the reason the client's own stream ended with) and the exchange
        // fails with that reset. While the answer is still awaited, nothing else makes the proxy
        // reset a stream it opened.
        _ if find::<h2::Error>(e).is_some_and(|r| r.is_reset() && !r.is_remote() && !r.is_library()) => {
            ErrorKind::ClientLeft
        }
        Some(h) if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() => ErrorKind::Protocol,
        _ => ErrorKind::Reset,
    }
}

/// Whether hyper's client gave up because the body it was sending failed: a user error whose
/// cause is the error of the client's own body, which is hyper's (`Incoming`) too. A failure to
/// write to the upstream is an I/O error instead, and stays the upstream's.
fn from_request_body(h: &hyper::Error) -> bool {
    h.is_user() && std::error::Error::source(h).is_some_and(|s| s.is::<hyper::Error>())
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
    fn grpc_calls_get_a_trailers_only_status_with_the_reason() {
        for (kind, code, message) in [
            (ErrorKind::ConnectRefused, "14", "upstream refused the connection"),
            (ErrorKind::ConnectTimeout, "14", "upstream connect timed out"),
            (ErrorKind::ResponseTimeout, "4", "upstream did not respond in time"),
            (ErrorKind::Forbidden, "7", "destination not allowed through this proxy"),
            (ErrorKind::BadRequest, "13", "bad request"),
        ] {
            let res = ProxyError { kind, source: None }.grpc_response();
            assert_eq!(res.status(), StatusCode::OK, "{kind:?}");
            let h = res.headers();
            assert_eq!(h["content-type"], "application/grpc");
            assert_eq!(
                (h["grpc-status"].as_bytes(), h["grpc-message"].as_bytes()),
                (code.as_bytes(), message.as_bytes())
            );
            assert!(http_body::Body::is_end_stream(res.body()), "no body: the head ends the stream");
        }
        // The client's own mistakes say why, percent-encoded as gRPC asks.
        let e = ProxyError::new(ErrorKind::BadRequest, "100% \u{2713}");
        assert_eq!(e.grpc_response().headers()["grpc-message"], "bad request: 100%25 %E2%9C%93");
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
