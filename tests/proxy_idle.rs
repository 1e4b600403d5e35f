//! Idle HTTP/1.1 keep-alive connections hand hyper's buffers back after a second of quiet
//! (`src/proxy/idle.rs`), against the real binary: they go on serving afterwards, a request head
//! that pauses half-way is not lost, a response the client is slow to take is not cut short, idle
//! time is bounded by the keep-alive timeout (which outlasts the header read timeout, as a load
//! balancer's next request needs) and a trickled head by the header read timeout. HTTP/2
//! connections without a stream open meet the keep-alive timeout too (`src/proxy/idle_h2.rs`).
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::upstream::Upstream;
use support::{Daemon, Sidecar, metric, until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads `n` responses with `content-length` bodies from `s`, as pipelined answers come: their
/// status lines.
async fn read_responses(s: &mut TcpStream, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    while out.len() < n {
        let parsed = got.windows(4).position(|w| w == b"\r\n\r\n").and_then(|i| {
            let head = String::from_utf8_lossy(&got[..i + 4]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or_else(|| panic!("no content-length in {head}"));
            (got.len() >= i + 4 + length).then_some((head, i + 4, length))
        });
        if let Some((head, start, length)) = parsed {
            got.drain(..start + length);
            out.push(head.lines().next().unwrap_or_default().to_owned());
            continue;
        }
        let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        let read = read.unwrap_or_else(|_| panic!("no answer {} of {n} in 10 s", out.len() + 1)).unwrap();
        assert!(read > 0, "closed before answer {} of {n}: {:?}", out.len() + 1, String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..read]);
    }
    out
}

/// The status code of one response read from `s`.
async fn status(s: &mut TcpStream) -> String {
    let line = read_responses(s, 1).await.remove(0);
    line.split(' ').nth(1).unwrap_or_default().to_owned()
}

async fn get(s: &mut TcpStream, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: a\r\n\r\n").as_bytes()).await.unwrap();
    status(s).await
}

async fn idle_gauge(sc: &Sidecar) -> f64 {
    metric(&sc.metrics().await, "xray_sidecar_idle_connections").unwrap()
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_give_their_buffers_back_and_go_on_serving() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--header-read-timeout", "30s"]);
    let mut conns = Vec::new();
    for _ in 0..50 {
        let mut s = connect(sc.listen).await;
        assert_eq!(get(&mut s, "/").await, "200");
        conns.push(s);
    }
    // A connection in use all along is never counted idle.
    let mut busy = connect(sc.listen).await;
    let started = Instant::now();
    let mut peak = 0.0f64;
    while started.elapsed() < Duration::from_secs(4) {
        assert_eq!(get(&mut busy, "/").await, "200");
        peak = peak.max(idle_gauge(&sc).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(idle_gauge(&sc).await, 50.0, "every quiet connection is idle, the busy one is not");
    assert!(peak <= 50.0, "the busy connection was counted idle: {peak}");

    // Every idle connection serves its next requests, pipelined ones too.
    for s in &mut conns {
        s.write_all(b"GET /status/201 HTTP/1.1\r\nhost: a\r\n\r\nGET /status/202 HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
    }
    for s in &mut conns {
        assert_eq!(read_responses(s, 2).await, ["HTTP/1.1 201 Created", "HTTP/1.1 202 Accepted"]);
    }
    assert!(idle_gauge(&sc).await < 50.0);
    until("the connections idle again", Duration::from_secs(5), async || idle_gauge(&sc).await == 51.0).await;

    // On SIGTERM idle connections close at once.
    sc.terminate();
    for s in &mut conns {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(6), s.read(&mut buf)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "an idle connection stayed open after SIGTERM: {n:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_pauses_half_way_is_served_whole() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--header-read-timeout", "4s"]);
    let mut s = connect(sc.listen).await;
    assert_eq!(get(&mut s, "/").await, "200");
    // Pipelined behind a whole request, the half head sits in hyper's buffer with nothing arriving.
    s.write_all(b"GET /status/201 HTTP/1.1\r\nhost: a\r\n\r\nGET /status/203 HTTP/1.1\r\nhost: a\r\nx-first: half")
        .await
        .unwrap();
    assert_eq!(status(&mut s).await, "201");
    // Long enough for the connection to be taken apart with the half head in hyper's buffer.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    s.write_all(b" and the rest\r\n\r\n").await.unwrap();
    assert_eq!(status(&mut s).await, "203");
    // The half head's deadline ended with its request: the connection idles on afresh.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(get(&mut s, "/").await, "200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_the_client_is_slow_to_take_is_not_cut_short() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &[]);
    let mut s = connect(sc.listen).await;
    let size = 32 * 1024 * 1024;
    s.write_all(format!("GET /stream/{size} HTTP/1.1\r\nhost: a\r\n\r\n").as_bytes()).await.unwrap();
    // Nothing is read for a while: the socket buffers fill and the proxy waits to write.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0usize;
    // The stream answer is chunked: read until its last chunk.
    while !got.ends_with(b"0\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed after {total} bytes");
        total += n;
        got.extend_from_slice(&buf[..n]);
        if got.len() > 16 {
            got.drain(..got.len() - 16);
        }
    }
    assert!(total > size, "{total} bytes for a {size}-byte body");
    // And the connection serves on.
    assert_eq!(get(&mut s, "/").await, "200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_meet_the_keep_alive_timeout_and_trickled_heads_the_header_timeout() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--header-read-timeout", "3s", "--keep-alive-timeout", "3s"]);
    let mut idle = connect(sc.listen).await;
    assert_eq!(get(&mut idle, "/").await, "200");
    let mut trickle = connect(sc.listen).await;
    assert_eq!(get(&mut trickle, "/").await, "200");
    let started = Instant::now();
    // One byte of a head every 2.5 s: each pause is long enough for the connection to be taken
    // apart with the partial head, and each new hyper connection starts its own header timer.
    let mut closed = None;
    for b in b"GET / HTTP/1.1\r\nhost: a\r\nx-slow: aaaaaaaa" {
        if started.elapsed() > Duration::from_secs(12) {
            break;
        }
        if trickle.write_all(&[*b]).await.is_err() {
            closed = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 64];
        if tokio::time::timeout(Duration::from_millis(2500), trickle.read(&mut buf)).await.is_ok() {
            // Closed, or answered (408): either way cut off.
            closed = Some(started.elapsed());
            break;
        }
    }
    let closed = closed.expect("a head trickled byte by byte was still open after 12 s");
    assert!(closed < Duration::from_secs(9), "the trickled head was cut off only after {closed:?}");

    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "an idle connection outlived the keep-alive timeout: {n:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_outlives_the_header_timeout_for_a_load_balancer_s_next_request() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    // A load balancer keeps connections idle for as long as its own timeout (an ALB's is 60 s):
    // the next request on one must not meet a connection the proxy closed meanwhile.
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--header-read-timeout", "1s"]);
    let mut s = connect(sc.listen).await;
    assert_eq!(get(&mut s, "/").await, "200");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(get(&mut s, "/").await, "200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keep_alive_timeout_counts_from_the_last_response_and_is_never_cut_short() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let timeout = Duration::from_secs(2);
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--keep-alive-timeout", "2s"]);
    // Each request comes most of a timeout after the last response: never cut off, whether the
    // connection waited under hyper or was taken apart meanwhile, as every request renews the wait.
    let mut steady = connect(sc.listen).await;
    for pause in [1500, 1700, 1500] {
        assert_eq!(get(&mut steady, "/").await, "200");
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    assert_eq!(get(&mut steady, "/").await, "200");

    // One that sends nothing more is closed once the timeout has passed since its response ended,
    // which is after the request was sent: never sooner than the timeout after that.
    let mut quiet = connect(sc.listen).await;
    let sent = Instant::now();
    assert_eq!(get(&mut quiet, "/").await, "200");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(6), quiet.read(&mut buf)).await;
    let took = sent.elapsed();
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "an idle connection stayed open: {n:?}");
    assert!(took >= timeout, "closed early, {took:?} after the request");
    assert!(took < timeout + Duration::from_millis(500), "closed late, {took:?} after the request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_without_a_stream_meet_the_keep_alive_timeout_and_open_streams_keep_theirs() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--keep-alive-timeout", "2s"]);
    let (mut idle, idle_closed) = support::h2_connection(sc.listen).await;
    assert_eq!(support::h2_get(&mut idle, "/").await, 200);
    let idle_since = Instant::now();
    // A stream that outlasts the timeout: its connection is not idle meanwhile.
    let (mut busy, busy_closed) = support::h2_connection(sc.listen).await;
    let slow = tokio::spawn(async move { support::h2_get(&mut busy, "/slow/3500").await });
    let closed = tokio::time::timeout(Duration::from_secs(6), idle_closed).await.expect("idle h2 connection closed");
    let after = closed.unwrap() - idle_since;
    assert!(after >= Duration::from_millis(1900) && after < Duration::from_millis(3500), "closed after {after:?}");
    assert_eq!(slow.await.unwrap(), 200, "the open stream was cut short");
    // Idle in its turn, it goes the same way.
    let closed = tokio::time::timeout(Duration::from_secs(4), busy_closed).await;
    assert!(closed.is_ok(), "the h2 connection stayed open after its stream ended");
}
