//! Hostile and unusual requests, sent as raw bytes through the real binary to an application that
//! answers with exactly what it received: what must be refused never reaches it, and what it must
//! see (our trace header, `te: trailers`, transfer codings) arrives.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::{Daemon, Sidecar};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An application that answers every request with the raw bytes of its head (and counts them).
struct Echo {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

impl Echo {
    async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let head = &got[..head_end];
                    let res = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", head.len());
                    let _ = s.write_all(res.as_bytes()).await;
                    let _ = s.write_all(head).await;
                });
            }
        });
        Echo { addr, requests }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Sends `raw` on a new connection; the status and the rest of the answer.
async fn send(addr: SocketAddr, raw: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    // Read until the connection closes or the answer is complete (the proxy keeps connections).
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
            });
            if length.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

/// The header names (lower case) the application saw, in the echoed head.
fn seen(answer: &str) -> Vec<(String, String)> {
    let head = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}

fn has(answer: &str, name: &str) -> Option<String> {
    seen(answer).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_follow_every_connection_header_and_ours_survive() {
    let (app, daemon) = (Echo::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&app.url(), daemon.addr, &[]);
    let l = sc.listen;

    let (status, a) = send(
        l,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x-one\r\nConnection: x-two, close\r\nx-one: 1\r\nx-two: 2\r\nx-kept: 3\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!((has(&a, "x-one"), has(&a, "x-two"), has(&a, "x-kept")), (None, None, Some("3".into())), "{a}");

    // A client cannot remove the header that tells the application its parent.
    let (_, a) = send(l, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Amzn-Trace-Id\r\n\r\n").await;
    let trace = has(&a, "x-amzn-trace-id").unwrap_or_default();
    assert!(trace.contains("Parent="), "{a}");

    // gRPC's `te: trailers` and a transfer coding other than chunked reach the application.
    let (_, a) = send(
        l,
        b"POST / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(has(&a, "te").as_deref(), Some("trailers"), "{a}");
    assert_eq!(has(&a, "transfer-encoding").as_deref(), Some("gzip, chunked"), "{a}");

    // An upgrade keeps what it needs and loses the other hop-by-hop headers.
    let (_, a) = send(
        l,
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, Keep-Alive\r\nUpgrade: websocket\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n\r\n",
    )
    .await;
    assert_eq!(has(&a, "upgrade").as_deref(), Some("websocket"), "{a}");
    assert_eq!((has(&a, "keep-alive"), has(&a, "proxy-authorization")), (None, None), "{a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_requests_get_a_4xx_and_never_reach_the_application() {
    let (app, daemon) = (Echo::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&app.url(), daemon.addr, &[]);
    let l = sc.listen;
    for (raw, expected) in [
        (&b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"[..], 400),
        (b"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n99999999999999999999\r\nabc\r\n0\r\n\r\n",
            400,
        ),
        (b"CONNECT app:443 HTTP/1.1\r\nHost: app:443\r\n\r\n", 405),
    ] {
        let (status, answer) = send(l, raw).await;
        assert_eq!(status, expected, "{}\n{answer}", String::from_utf8_lossy(raw));
    }
    // The over-long chunk size is the one case whose head is already on its way when the body
    // turns out bad: it may have reached the application, but never its body.
    let reached = app.requests.load(Ordering::SeqCst);
    assert!(reached <= 1, "{reached} malformed requests reached the application");
    // The segments say what happened, as the client's error.
    let docs = daemon.take(4).await;
    for d in &docs {
        assert_eq!(d["error"], true, "{d}");
        assert!(d.get("fault").is_none(), "{d}");
    }
}
