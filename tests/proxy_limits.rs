//! Connection limits of the real binary: silent connections are closed, a connection limit answers
//! clearly beyond it, and the admin listener holds nobody for ever either.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::upstream::Upstream;
use support::{Daemon, Sidecar};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Waits for the server to close `stream`; the time it took, or `None` if still open after `max`.
async fn closed_within(stream: &mut TcpStream, max: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((start + max).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends one request on a new connection and returns the raw answer.
async fn raw_get(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_send_nothing_are_closed_at_the_header_timeout() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--header-read-timeout", "1s"]);
    // Nothing at all; the first byte of the HTTP/2 preface and nothing more; an admin connection
    // that sends nothing.
    let mut silent = TcpStream::connect(sc.listen).await.unwrap();
    let mut preface = TcpStream::connect(sc.listen).await.unwrap();
    preface.write_all(b"PRI").await.unwrap();
    let mut admin = TcpStream::connect(sc.admin).await.unwrap();
    for (what, s) in [("silent", &mut silent), ("partial preface", &mut preface), ("admin", &mut admin)] {
        let took = closed_within(s, Duration::from_secs(5)).await;
        let took = took.unwrap_or_else(|| panic!("{what} connection still open after 5 s"));
        assert!(took < Duration::from_secs(3), "{what}: closed after {took:?}");
    }
    // Real clients were never affected.
    assert!(raw_get(sc.listen).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_clients_get_a_clear_503() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--max-connections", "5"]);
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(sc.listen).await.unwrap());
    }
    // Let the proxy accept them all before the sixth arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = raw_get(sc.listen).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many connections"), "{answer}");
    // Freed slots serve again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = raw_get(sc.listen).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "still refused after the held connections closed: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
