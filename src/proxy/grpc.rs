//! gRPC on the data path: recognising a call, reading its status from the trailers (or a
//! trailers-only response), and counting its length-prefixed messages as they stream, without
//! holding any of their bytes.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use http_body_util::Full;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::xray::grpc::{self, Grpc};

/// Whether a request or response is gRPC (`application/grpc`, `application/grpc+proto`...).
pub fn is_grpc(h: &HeaderMap) -> bool {
    h.get(http::header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= 16
            && v[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(v.get(16), None | Some(b'+' | b';'))
    })
}

/// The answer of a call the proxy fails itself: a trailers-only response (HTTP 200, `grpc-status`
/// and the percent-encoded `grpc-message` in its head, no body), as a gRPC server fails a call, so
/// that the client sees a status of the call's own with the reason rather than one guessed from
/// an HTTP status and a text body it cannot read.
pub fn trailers_only(code: u32, message: &str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.headers_mut() = status_fields(code, message);
    res.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    res
}

/// `grpc-status` and the percent-encoded `grpc-message`: the trailers that end a call.
pub fn status_fields(code: u32, message: &str) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(3);
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(grpc::encode_message(message))) {
        h.insert("grpc-message", v);
    }
    h
}

/// The `grpc-status` and decoded `grpc-message` in `h`, if it carries a status.
pub fn status(h: &HeaderMap) -> Option<(u32, Option<String>)> {
    let code = std::str::from_utf8(h.get("grpc-status")?.as_bytes()).ok()?.trim().parse().ok()?;
    let message = h.get("grpc-message").map(|m| grpc::decode_message(m.as_bytes())).filter(|m| !m.is_empty());
    Some((code, message))
}

/// The call's deadline from `grpc-timeout` (`100m`, `5S`, `1H`...).
pub fn timeout(h: &HeaderMap) -> Option<Duration> {
    let v = std::str::from_utf8(h.get("grpc-timeout")?.as_bytes()).ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Counts length-prefixed messages (`flag`, 4-byte big-endian length, payload) across DATA chunks
/// split anywhere.
#[derive(Debug, Default)]
pub struct MessageCounter {
    header: [u8; 5],
    filled: usize,
    remaining: u64,
    /// Messages whose prefix has passed.
    pub count: u64,
    /// The stream turned out not to be gRPC: nothing more is counted.
    stopped: bool,
}

impl MessageCounter {
    /// Counts nothing more: the stream is not gRPC's.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Takes the next chunk of the stream.
    pub fn feed(&mut self, mut b: &[u8]) {
        while !b.is_empty() && !self.stopped {
            if self.remaining > 0 {
                let n = b.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                self.remaining -= n as u64;
                b = &b[n..];
                continue;
            }
            let n = (5 - self.filled).min(b.len());
            self.header[self.filled..self.filled + n].copy_from_slice(&b[..n]);
            self.filled += n;
            b = &b[n..];
            if self.filled == 5 {
                self.count += 1;
                self.filled = 0;
                let h = self.header;
                self.remaining = u64::from(u32::from_be_bytes([h[1], h[2], h[3], h[4]]));
            }
        }
    }
}

/// The request side's count, shared between the request body (on the connection's task) and the
/// record that reads it when the call ends.
#[derive(Clone, Debug, Default)]
pub struct SentCount(Arc<AtomicU64>);

impl SentCount {
    /// Adds messages.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    /// Messages so far.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// One traced gRPC call, from its request to its trailers.
#[derive(Debug)]
pub struct Call {
    /// Service, method, and what the trailers say.
    pub facts: Grpc,
    /// The deadline the client set.
    pub timeout: Option<Duration>,
    /// Messages the server sent.
    pub received: MessageCounter,
    /// Messages the client sent.
    pub sent: SentCount,
    /// A `grpc-status` came that is no status code.
    unreadable_status: bool,
}

impl Call {
    /// The call a request starts, when it is gRPC.
    pub fn start(path: &str, headers: &HeaderMap) -> Option<Call> {
        if !is_grpc(headers) {
            return None;
        }
        let (service, method) = grpc::service_and_method(path).unwrap_or(("unknown", "unknown"));
        let facts = Grpc { service: service.to_owned(), method: method.to_owned(), ..Grpc::default() };
        let (received, sent) = (MessageCounter::default(), SentCount::default());
        Some(Call { facts, timeout: timeout(headers), received, sent, unreadable_status: false })
    }

    /// Takes the status from a trailers-only response head or the trailers.
    pub fn read_status(&mut self, h: &HeaderMap) {
        match status(h) {
            Some((code, message)) => {
                self.facts.status = Some(code);
                self.facts.message = message;
            }
            None => self.unreadable_status |= h.contains_key("grpc-status"),
        }
    }

    /// The facts to record once the call is over. A call the client abandoned after its deadline
    /// ended as `DEADLINE_EXCEEDED`, as the client reports it. A response that `answered` (HTTP 200,
    /// to its end) without a status it could read is the `UNKNOWN` or `INTERNAL` its client saw:
    /// the status is mandatory, and a client fails the call without one.
    pub fn finish(mut self, elapsed: Duration, abandoned: bool, answered: bool) -> Grpc {
        if answered && self.facts.status.is_none() {
            let (code, why) = if self.unreadable_status {
                (grpc::INTERNAL, "the response's grpc-status is not a status code")
            } else {
                (grpc::UNKNOWN, "the response ended without a grpc-status")
            };
            self.facts.status = Some(code);
            self.facts.message = Some(why.to_owned());
        }
        // `grpc-timeout` is what was left when the client sent the request, so the deadline fell a
        // little before `timeout` after the request reached us: allow for that transit.
        let past_deadline = |t: Duration| elapsed + t / 10 + Duration::from_millis(20) >= t;
        if abandoned && self.facts.status.is_none() && self.timeout.is_some_and(past_deadline) {
            self.facts.status = Some(grpc::DEADLINE_EXCEEDED);
            self.facts.message = Some("deadline exceeded before the server answered".to_owned());
        }
        self.facts.sent = self.sent.get();
        self.facts.received = self.received.count;
        self.facts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn messages_are_counted_however_the_stream_is_split() {
        let mut stream = Vec::new();
        for payload in [&b"hello"[..], b"", &[7u8; 300][..]] {
            stream.push(0);
            stream.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            stream.extend_from_slice(payload);
        }
        for step in [1, 2, 3, 5, 7, 64, stream.len()] {
            let mut c = MessageCounter::default();
            stream.chunks(step).for_each(|chunk| c.feed(chunk));
            assert_eq!(c.count, 3, "chunks of {step}");
        }
    }

    #[test]
    fn a_call_abandoned_at_its_deadline_exceeded_it_and_one_abandoned_early_did_not() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        h.insert("grpc-timeout", HeaderValue::from_static("500m"));
        let call = || Call::start("/shop.v1.Catalog/GetItem", &h).expect("a gRPC call");
        // The client's deadline passed a few milliseconds before ours would: still the deadline.
        assert_eq!(call().finish(Duration::from_millis(495), true, false).status, Some(grpc::DEADLINE_EXCEEDED));
        assert_eq!(call().finish(Duration::from_millis(100), true, false).status, None);
        assert_eq!(call().finish(Duration::from_millis(600), false, false).status, None);
    }

    #[test]
    fn a_response_without_a_readable_status_is_what_its_client_saw() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        let call = || Call::start("/shop.v1.Catalog/GetItem", &h).expect("a gRPC call");
        assert_eq!(call().finish(Duration::ZERO, false, true).status, Some(grpc::UNKNOWN), "no grpc-status");
        for bad in ["abc", "-1", ""] {
            let mut c = call();
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static(bad));
            c.read_status(&trailers);
            assert_eq!(c.finish(Duration::ZERO, false, true).status, Some(grpc::INTERNAL), "grpc-status: {bad:?}");
        }
        // A status read, or a response that never ended whole, is left as it is.
        let mut c = call();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        c.read_status(&trailers);
        assert_eq!(c.finish(Duration::ZERO, false, true).status, Some(0));
        assert_eq!(call().finish(Duration::ZERO, false, false).status, None);
    }

    #[test]
    fn grpc_headers_are_read() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/grpc+proto"));
        h.insert("grpc-status", HeaderValue::from_static("5"));
        h.insert("grpc-message", HeaderValue::from_static("no%20such%20item"));
        h.insert("grpc-timeout", HeaderValue::from_static("250m"));
        assert!(is_grpc(&h));
        assert_eq!(status(&h), Some((5, Some("no such item".to_owned()))));
        assert_eq!(timeout(&h), Some(Duration::from_millis(250)));
        h.insert("content-type", HeaderValue::from_static("application/grpc-web"));
        assert!(!is_grpc(&h));
        h.insert("grpc-timeout", HeaderValue::from_static("x"));
        assert_eq!(timeout(&h), None);
    }
}
