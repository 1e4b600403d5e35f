//! The server name of an intercepted TLS connection, read from the client's ClientHello by peeking:
//! nothing is consumed and TLS is never terminated, so the application's certificate checks see the
//! real server.

use std::time::Duration;
use tokio::net::TcpStream;

/// What the first bytes of a connection say about TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hello {
    /// More bytes are needed to tell.
    Incomplete,
    /// Not a TLS ClientHello.
    NotTls,
    /// A ClientHello, with the server name it asks for, if it names a valid host.
    Tls(Option<String>),
}

const HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 0x01;
const SERVER_NAME: u16 = 0x0000;
const MAX_RECORD: usize = 5 + 16 * 1024;

/// Parses the first TLS record of a connection.
pub fn parse(b: &[u8]) -> Hello {
    if b.is_empty() {
        return Hello::Incomplete;
    }
    if b[0] != HANDSHAKE || b.get(1).is_some_and(|&major| major != 3) {
        return Hello::NotTls;
    }
    if b.len() < 5 {
        return Hello::Incomplete;
    }
    let record_len = usize::from(u16::from_be_bytes([b[3], b[4]]));
    if b.len() < 6 {
        return Hello::Incomplete;
    }
    if b[5] != CLIENT_HELLO {
        return Hello::NotTls;
    }
    let record = &b[5..];
    if record.len() < record_len {
        return Hello::Incomplete;
    }
    // A hello split over several records (rare: over 16 KiB) is read as far as the first one goes.
    Hello::Tls(server_name(&record[..record_len]))
}

/// The `server_name` extension's host name in a handshake message, if present and well formed.
fn server_name(hs: &[u8]) -> Option<String> {
    let mut r = Reader(hs);
    r.skip(1 + 3 + 2 + 32)?; // type, length, legacy version, random
    let session = r.u8()?;
    r.skip(usize::from(session))?;
    let suites = r.u16()?;
    r.skip(usize::from(suites))?;
    let compression = r.u8()?;
    r.skip(usize::from(compression))?;
    let mut exts = Reader(r.prefixed()?);
    while let (Some(kind), Some(len)) = (exts.u16(), exts.u16()) {
        let data = exts.take(usize::from(len))?;
        if kind != SERVER_NAME {
            continue;
        }
        let mut list = Reader(data);
        let mut names = Reader(list.prefixed()?);
        while let Some(name_type) = names.u8() {
            let name = names.prefixed()?;
            if name_type == 0 {
                return valid_host(name).then(|| String::from_utf8_lossy(name).to_ascii_lowercase());
            }
        }
        return None;
    }
    None
}

/// A DNS name: what a peer can put here ends up in a segment name, so nothing else is taken.
fn valid_host(name: &[u8]) -> bool {
    (1..=253).contains(&name.len())
        && name.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-' || c == b'_')
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    /// A vector with a two-byte length in front.
    fn prefixed(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// Peeks at `stream` until [`parse`] decides or `timeout` passes; a connection that stays silent or
/// incomplete is not TLS as far as naming goes.
pub async fn peek(stream: &TcpStream, timeout: Duration) -> Hello {
    let mut buf = vec![0u8; MAX_RECORD];
    let decided = super::detect::peek_until(stream, timeout, &mut buf, |b| match parse(b) {
        Hello::Incomplete if b.len() < MAX_RECORD => None,
        Hello::Incomplete => Some(Hello::Tls(None)),
        decided => Some(decided),
    });
    decided.await.unwrap_or(Hello::NotTls)
}

#[cfg(test)]
#[path = "sni_tests.rs"]
mod tests;
