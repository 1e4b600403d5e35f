//! Protocol detection on intercepted connections and inside `CONNECT` tunnels: HTTP is traced,
//! everything else is passed through byte for byte. The decision peeks at the first bytes and
//! consumes nothing (a tunnel, which cannot be peeked at, gets the bytes read put back in front).

use bytes::{BufMut, BytesMut};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, Interest};
use tokio::net::TcpStream;

use super::rewind::Rewind;

/// What a connection speaks, as far as the proxy cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// An HTTP/1.x request line.
    Http1,
    /// The HTTP/2 connection preface (prior knowledge).
    Http2,
    /// Anything else: TLS, databases, a server that speaks first, or silence.
    Opaque,
}

/// Bytes looked at before deciding that a connection is not HTTP: a request line longer than this
/// is read as HTTP (see [`classify`]).
const LOOK_AHEAD: usize = 1100;

/// How intercepted connections are told apart and passed through.
#[derive(Clone, Debug)]
pub struct Interception {
    /// Destination ports never inspected (protocols where the server speaks first).
    pub skip_ports: Vec<u16>,
    /// How long to wait for a client's first bytes.
    pub detect_timeout: Duration,
    /// Connect timeout for passed-through connections.
    pub connect_timeout: Duration,
}

/// What the first bytes of a redirected connection said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstBytes {
    /// HTTP, to trace.
    Http,
    /// Something else (TLS among them), to pass through.
    Other,
    /// Nothing to go on: a port that skips detection, or a client silent for the detection timeout
    /// (a server that speaks first). Passed through at once: waiting again, to name a TLS server,
    /// would only delay the server's first words once more.
    Unread,
}

impl Interception {
    /// What a redirected connection to `dst` speaks: ports that skip detection are not looked at,
    /// the rest are peeked at.
    pub async fn first_bytes(&self, stream: &TcpStream, dst: SocketAddr) -> FirstBytes {
        if self.skip_ports.contains(&dst.port()) {
            return FirstBytes::Unread;
        }
        match detect(stream, self.detect_timeout).await {
            Some(Protocol::Http1 | Protocol::Http2) => FirstBytes::Http,
            Some(Protocol::Opaque) => FirstBytes::Other,
            None => FirstBytes::Unread,
        }
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const METHODS: [&[u8]; 9] = [b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE"];

/// Classifies the first bytes; `None` means more bytes are needed to tell.
pub fn classify(b: &[u8]) -> Option<Protocol> {
    if b.is_empty() {
        return None;
    }
    if H2_PREFACE.starts_with(b) {
        return if b.len() >= H2_PREFACE.len() { Some(Protocol::Http2) } else { None };
    }
    if b.starts_with(H2_PREFACE) {
        return Some(Protocol::Http2);
    }
    // `METHOD SP target SP HTTP/1.x CRLF`: the method, the space and the target's first byte
    // are enough to tell HTTP from the binary protocols we must not touch; the version is checked
    // when the line is complete.
    let Some(sp) = b.iter().position(|&c| c == b' ') else {
        let could_be = METHODS.iter().any(|m| m.starts_with(b));
        return if could_be { None } else { Some(Protocol::Opaque) };
    };
    if !METHODS.contains(&&b[..sp]) {
        return Some(Protocol::Opaque);
    }
    let rest = &b[sp + 1..];
    match rest.iter().position(|&c| c == b'\n') {
        Some(eol) => {
            let line = rest[..eol].strip_suffix(b"\r").unwrap_or(&rest[..eol]);
            let ok = line.windows(9).last().is_some_and(|v| v.starts_with(b" HTTP/1."));
            Some(if ok { Protocol::Http1 } else { Protocol::Opaque })
        }
        // A long request target: decide on what is there rather than wait for the whole line.
        None if rest.len() >= 1024 => Some(Protocol::Http1),
        None => None,
    }
}

/// Peeks at `stream` until [`classify`] decides; `None` when `timeout` passes first or the client
/// closes (opaque: a protocol where the server speaks first waits for nobody).
pub async fn detect(stream: &TcpStream, timeout: Duration) -> Option<Protocol> {
    // On the heap for the detection only: in the future it would be part of every connection's
    // task for the connection's whole life.
    let mut buf = vec![0u8; LOOK_AHEAD];
    let cap = buf.len();
    let decided =
        peek_until(stream, timeout, &mut buf, |b| classify(b).or_else(|| (b.len() == cap).then_some(Protocol::Opaque)));
    decided.await
}

/// Reads the first bytes of `io` until [`classify`] decides, or `timeout` passes, or the client
/// closes (then it is opaque, as for [`detect`]); the stream comes back with those bytes in front.
pub async fn sniff<T: AsyncRead + Unpin>(mut io: T, timeout: Duration) -> (Protocol, Rewind<T>) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = BytesMut::with_capacity(LOOK_AHEAD);
    let protocol = loop {
        if let Some(p) = classify(&seen) {
            break p;
        }
        if seen.len() >= LOOK_AHEAD {
            break Protocol::Opaque;
        }
        let left = LOOK_AHEAD - seen.len();
        let mut room = (&mut seen).limit(left);
        match tokio::time::timeout_at(deadline, io.read_buf(&mut room)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break Protocol::Opaque,
        }
    };
    (protocol, Rewind::new(seen.freeze(), io))
}

/// Peeks at `stream` into `buf` until `decide` answers for the bytes so far; `None` when the peer
/// closes, fails or stays silent past `timeout`. Nothing is consumed.
pub async fn peek_until<T>(
    stream: &TcpStream,
    timeout: Duration,
    buf: &mut [u8],
    mut decide: impl FnMut(&[u8]) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        if let Some(decided) = decide(&buf[..n]) {
            return Some(decided);
        }
        if n == buf.len() {
            // More bytes would not fit: there is nothing more to look at.
            return None;
        }
        if !arrived_since(stream, n) {
            let ready = tokio::time::timeout_at(deadline, stream.ready(Interest::READABLE)).await.ok()?.ok()?;
            if ready.is_read_closed() && !arrived_since(stream, n) {
                // The client closed after part of what decides (a closed socket stays readable):
                // nothing more will come.
                return None;
            }
        }
    }
}

/// Whether more than the `seen` bytes are waiting on `stream`. When not, its read readiness is
/// cleared, so that waiting for it waits for the next byte: the bytes already there keep the
/// socket readable, and peeking again at once would return them again and again, a client that
/// sends part of a line and stops keeping the proxy busy until the timeout. (A byte that arrives
/// as the readiness is cleared sets it again.)
fn arrived_since(stream: &TcpStream, seen: usize) -> bool {
    let mut probe = vec![std::mem::MaybeUninit::<u8>::uninit(); seen + 1];
    let more = stream.try_io(Interest::READABLE, || match socket2::SockRef::from(stream).peek(&mut probe)? {
        n if n > seen || n == 0 => Ok(()),
        _ => Err(std::io::ErrorKind::WouldBlock.into()),
    });
    // More bytes, the end of the stream or an error: the next peek tells which.
    more.is_ok() || more.is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_requests_are_recognised_from_their_first_line() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"POST http://svc/x HTTP/1.0\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"OPTIONS * HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(H2_PREFACE), Some(Protocol::Http2));
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"GET /partial"), None);
        assert_eq!(classify(&H2_PREFACE[..10]), None);
    }

    #[tokio::test]
    async fn sniffing_a_stream_decides_and_gives_every_byte_back() {
        use tokio::io::AsyncWriteExt;
        for (first, want) in [
            (&b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"[..], Protocol::Http1),
            (H2_PREFACE, Protocol::Http2),
            (&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..], Protocol::Opaque),
        ] {
            let (near, mut far) = tokio::io::duplex(4096);
            // Sent in two pieces, as a slow client would.
            let (a, b) = first.split_at(first.len() / 2);
            far.write_all(a).await.expect("write");
            let writer = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                far.write_all(b).await.expect("write");
                far
            });
            let (got, mut stream) = sniff(near, Duration::from_secs(5)).await;
            assert_eq!(got, want, "{first:?}");
            drop(writer.await.expect("writer"));
            let mut all = Vec::new();
            stream.read_to_end(&mut all).await.expect("read");
            assert_eq!(all, first);
        }
        // A client that says nothing (a protocol where the server speaks first) is opaque in time.
        let (near, _far) = tokio::io::duplex(64);
        assert_eq!(sniff(near, Duration::from_millis(50)).await.0, Protocol::Opaque);
    }

    #[test]
    fn other_protocols_are_opaque() {
        // TLS ClientHello, a PostgreSQL startup message, Redis, and text that is not HTTP.
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02, 0x00]), Some(Protocol::Opaque));
        assert_eq!(classify(&[0, 0, 0, 8, 4, 210, 22, 47]), Some(Protocol::Opaque));
        assert_eq!(classify(b"*1\r\n$4\r\nPING\r\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"GET key\r\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"HELLO world"), Some(Protocol::Opaque));
    }
}
