//! The least an HTTP/1.1 keep-alive proxy on tokio costs: a measuring stick for `scripts/bench`,
//! not a proxy anyone should run.
//!
//! One current-thread runtime, as the sidecar runs with `--workers 1`; one task per client
//! connection, which opens its own upstream connection and keeps it; each request head is found
//! with httparse and forwarded as it was read, and so is each response. No tracing, no header
//! rewriting, no pool, no timeouts, no limits, no pipelining (a client sends its next request once
//! it has the answer, as wrk and oha do), and no framing but `Content-Length` (any other message
//! closes the connection). What the sidecar spends above this is what its HTTP machinery and its
//! tracing cost; what this spends is what any proxy built on tokio and the kernel's loopback TCP
//! pays.
//!
//! Usage: `floor LISTEN UPSTREAM` (addresses, e.g. `127.0.0.1:18130 127.0.0.1:18080`).

use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Room for a head and a small body; a message that does not fit closes the connection.
const BUF: usize = 16 * 1024;

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<SocketAddr>());
    let (Some(Ok(listen)), Some(Ok(upstream))) = (args.next(), args.next()) else {
        eprintln!("usage: floor LISTEN UPSTREAM");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        // The bench stops every process with SIGTERM and reports any other end as a failure.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            let (client, _) = tokio::select! {
                accepted = listener.accept() => accepted?,
                _ = term.recv() => return Ok(()),
            };
            tokio::spawn(async move {
                // A connection ends at the first thing it does not handle; nothing to report.
                let _ = serve(client, upstream).await;
            });
        }
    })
}

/// Forwards the connection's requests one at a time, each to completion.
async fn serve(mut client: TcpStream, upstream: SocketAddr) -> io::Result<()> {
    client.set_nodelay(true)?;
    let mut upstream = TcpStream::connect(upstream).await?;
    upstream.set_nodelay(true)?;
    let mut buf = vec![0u8; BUF];
    loop {
        let Some(len) = message(&mut client, &mut buf, Side::Request).await? else { return Ok(()) };
        upstream.write_all(&buf[..len]).await?;
        let Some(len) = message(&mut upstream, &mut buf, Side::Response).await? else { return Ok(()) };
        client.write_all(&buf[..len]).await?;
    }
}

#[derive(Clone, Copy)]
enum Side {
    Request,
    Response,
}

/// Reads one whole message into `buf` and returns its length; `None` when the peer closed, or the
/// message is one this stick does not measure.
async fn message(io: &mut TcpStream, buf: &mut [u8], side: Side) -> io::Result<Option<usize>> {
    let mut read = 0;
    let len = loop {
        let n = io.read(&mut buf[read..]).await?;
        if n == 0 {
            return Ok(None);
        }
        read += n;
        match framed(&buf[..read], side) {
            Framing::Partial if read < buf.len() => continue,
            Framing::Whole(len) if len <= buf.len() => break len,
            _ => return Ok(None),
        }
    };
    while read < len {
        let n = io.read(&mut buf[read..len]).await?;
        if n == 0 {
            return Ok(None);
        }
        read += n;
    }
    Ok(Some(len))
}

enum Framing {
    /// The head is not all in yet.
    Partial,
    /// Head and body come to this many bytes.
    Whole(usize),
    /// Malformed, or framed other than by `Content-Length`.
    Unhandled,
}

fn framed(bytes: &[u8], side: Side) -> Framing {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let parsed = match side {
        Side::Request => httparse::Request::new(&mut headers).parse(bytes),
        Side::Response => httparse::Response::new(&mut headers).parse(bytes),
    };
    let head = match parsed {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Framing::Partial,
        Err(_) => return Framing::Unhandled,
    };
    // A response without a length runs to the connection's end: not measured.
    let mut body = match side {
        Side::Request => Some(0),
        Side::Response => None,
    };
    for h in headers.iter().take_while(|h| !h.name.is_empty()) {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Framing::Unhandled;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok()) {
                Some(n) => body = Some(n),
                None => return Framing::Unhandled,
            }
        }
    }
    match body {
        Some(body) => Framing::Whole(head + body),
        None => Framing::Unhandled,
    }
}
