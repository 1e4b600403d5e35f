//! The HTTP/1.1 upstream pool, seen from a raw upstream that counts its connections and can
//! misbehave: connections are reused across client connections, one closed by the upstream while
//! idle costs no request, nor does one it closes just as a request goes out on it (the request is
//! sent again when it may be, and one that may not is not sent on a connection idle that long),
//! idle ones are parked (hyper's buffers handed back) and used again, one the upstream closes
//! while parked costs no request either, idle ones are closed on time, and a response the client
//! abandoned does not leave a broken connection behind.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};
use support::{Daemon, Sidecar, http_get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the raw upstream treats each connection.
#[derive(Clone, Copy)]
enum Manner {
    /// Keep-alive: answers every request on it.
    KeepAlive,
    /// Answers one request, then closes without having said so (as a server whose keep-alive
    /// timeout is shorter than the proxy's does).
    CloseAfterOne,
    /// `/big` gets a 1 MiB body sent in slow pieces; anything else is answered as `KeepAlive`.
    SlowBig,
    /// Keep-alive, but a connection idle for this long is closed (a server's keep-alive timeout).
    IdleTimeout(Duration),
    /// Answers the first request of each connection; reads the next and closes unanswered, as a
    /// server does whose keep-alive timeout strikes just as that request arrives.
    ClosesUnderTheSecond,
}

struct RawUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Request heads received, answered or not.
    heads: Arc<AtomicUsize>,
    /// Connections the proxy has closed (the upstream read EOF).
    closed_by_proxy: Arc<AtomicUsize>,
}

impl RawUpstream {
    async fn start(manner: Manner) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(AtomicUsize::new(0));
        let closed_by_proxy = Arc::new(AtomicUsize::new(0));
        let (a, h, c) = (accepted.clone(), heads.clone(), closed_by_proxy.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                a.fetch_add(1, SeqCst);
                tokio::spawn(serve(stream, manner, h.clone(), c.clone()));
            }
        });
        RawUpstream { addr, accepted, heads, closed_by_proxy }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn serve(mut stream: TcpStream, manner: Manner, heads: Arc<AtomicUsize>, closed_by_proxy: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    let mut answered = 0;
    loop {
        // Requests here have no body: a head ends at the blank line.
        let head = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end + 4);
                break head;
            }
            let mut chunk = [0u8; 4096];
            let read = match manner {
                Manner::IdleTimeout(after) => match tokio::time::timeout(after, stream.read(&mut chunk)).await {
                    Ok(read) => read,
                    Err(_) => return,
                },
                _ => stream.read(&mut chunk).await,
            };
            match read {
                Ok(0) | Err(_) => {
                    closed_by_proxy.fetch_add(1, SeqCst);
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        heads.fetch_add(1, SeqCst);
        if matches!(manner, Manner::ClosesUnderTheSecond) && answered == 1 {
            return;
        }
        answered += 1;
        if matches!(manner, Manner::SlowBig) && head.starts_with("GET /big ") {
            let piece = vec![b'x'; 64 * 1024];
            let mut sent = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n").await;
            for _ in 0..16 {
                if sent.is_err() {
                    // The proxy closed the connection under the body.
                    closed_by_proxy.fetch_add(1, SeqCst);
                    return;
                }
                sent = stream.write_all(&piece).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        }
        if stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.is_err() {
            return;
        }
        if matches!(manner, Manner::CloseAfterOne) {
            return;
        }
    }
}

#[tokio::test]
async fn requests_from_many_client_connections_share_one_upstream_connection() {
    let (up, daemon) = (RawUpstream::start(Manner::KeepAlive).await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &[]);
    // Each http_get is a client connection of its own.
    for _ in 0..20 {
        let (status, _, body) = http_get(&sc.url("/"), &[]).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    assert_eq!(up.accepted.load(SeqCst), 1, "one upstream connection for 20 requests in turn");

    // Concurrent requests need a connection each, and no more than that.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let url = sc.url("/");
            tokio::spawn(async move {
                for _ in 0..10 {
                    let (status, _, _) = http_get(&url, &[]).await;
                    assert_eq!(status, 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let accepted = up.accepted.load(SeqCst);
    assert!((1..=9).contains(&accepted), "{accepted} upstream connections for 8 concurrent clients");
}

#[tokio::test]
async fn an_upstream_closing_idle_connections_costs_no_request() {
    let (up, daemon) = (RawUpstream::start(Manner::CloseAfterOne).await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &[]);
    for i in 0..10 {
        let (status, _, body) = http_get(&sc.url("/"), &[]).await;
        assert_eq!((status, body.as_str()), (200, "ok"), "request {i}");
        // The close reaches the proxy before the next request: that connection must not be used.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(up.accepted.load(SeqCst), 10);
    let m = sc.metrics().await;
    assert!(m.contains(r#"xray_sidecar_requests_total{direction="inbound",status_class="5xx"} 0"#), "{m}");
}

/// Sends a request without a body as raw bytes on a new connection; the status.
async fn request(addr: SocketAddr, method: &str) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!("{method} / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut answer)).await;
    answer.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn an_upstream_closing_a_connection_as_a_request_goes_out_costs_no_request() {
    let (up, daemon) = (RawUpstream::start(Manner::ClosesUnderTheSecond).await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &[]);
    assert_eq!(request(sc.listen, "GET").await, 200);
    // The connection has been idle a while: the upstream closes it under the next request, which
    // may be sent again and is, on a new connection.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for method in ["GET", "OPTIONS", "DELETE"] {
        assert_eq!(request(sc.listen, method).await, 200, "{method}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!((up.accepted.load(SeqCst), up.heads.load(SeqCst)), (4, 7), "each retry on a connection of its own");
    // A POST may not be sent twice: it is not sent on a connection idle for a second or more.
    assert_eq!(request(sc.listen, "GET").await, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(request(sc.listen, "POST").await, 200);
    assert_eq!((up.accepted.load(SeqCst), up.heads.load(SeqCst)), (6, 10));
    let m = sc.metrics().await;
    assert!(m.contains(r#"xray_sidecar_requests_total{direction="inbound",status_class="5xx"} 0"#), "{m}");
}

/// The sidecar's count of parked upstream connections.
async fn parked(sc: &Sidecar) -> u64 {
    let m = sc.metrics().await;
    let line =
        m.lines().find(|l| l.starts_with("xray_sidecar_idle_upstream_connections ")).unwrap_or_else(|| panic!("{m}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

async fn wait_until_parked(sc: &Sidecar, n: u64) {
    let started = Instant::now();
    while parked(sc).await != n {
        assert!(started.elapsed() < Duration::from_secs(5), "not {n} parked upstream connections");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_idle_upstream_connection_is_parked_and_used_again() {
    let (up, daemon) = (RawUpstream::start(Manner::KeepAlive).await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &[]);
    assert_eq!(parked(&sc).await, 0);
    for round in 0..3 {
        let (status, _, body) = http_get(&sc.url("/"), &[]).await;
        assert_eq!((status, body.as_str()), (200, "ok"), "round {round}");
        // Taken again for the request, it is live and no longer counted.
        assert_eq!(parked(&sc).await, 0, "round {round}");
        // Some 1-2 s later it is parked, and the socket stays open.
        wait_until_parked(&sc, 1).await;
    }
    assert_eq!(up.accepted.load(SeqCst), 1, "the parked connection was used again");
    assert_eq!(up.closed_by_proxy.load(SeqCst), 0);
}

#[tokio::test]
async fn an_upstream_closing_a_parked_connection_costs_no_request() {
    let up = RawUpstream::start(Manner::IdleTimeout(Duration::from_millis(2500))).await;
    let daemon = Daemon::start().await;
    let sc = Sidecar::start(&up.url(), daemon.addr, &[]);
    for i in 0..2 {
        let (status, _, body) = http_get(&sc.url("/"), &[]).await;
        assert_eq!((status, body.as_str()), (200, "ok"), "request {i}");
        wait_until_parked(&sc, 1).await;
        // The upstream closes it while it is parked; the close has reached the proxy by the next
        // request, which must go on a new connection, and the closed one is no longer counted.
        tokio::time::sleep(Duration::from_millis(2000)).await;
    }
    let (status, _, body) = http_get(&sc.url("/"), &[]).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(up.accepted.load(SeqCst), 3);
    assert_eq!(parked(&sc).await, 0);
    let m = sc.metrics().await;
    assert!(m.contains(r#"xray_sidecar_requests_total{direction="inbound",status_class="5xx"} 0"#), "{m}");
}

#[tokio::test]
async fn idle_upstream_connections_are_closed_after_the_idle_timeout() {
    let (up, daemon) = (RawUpstream::start(Manner::KeepAlive).await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--idle-timeout", "1s"]);
    let (status, _, _) = http_get(&sc.url("/"), &[]).await;
    assert_eq!(status, 200);
    let started = Instant::now();
    while up.closed_by_proxy.load(SeqCst) == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "the idle connection was not closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Not before its time.
    assert!(started.elapsed() >= Duration::from_millis(900), "closed after {:?}", started.elapsed());
    // And a request after that opens a new one.
    let (status, _, _) = http_get(&sc.url("/"), &[]).await;
    assert_eq!((status, up.accepted.load(SeqCst)), (200, 2));
}

#[tokio::test]
async fn a_response_the_client_abandoned_leaves_no_broken_connection_behind() {
    let (up, daemon) = (RawUpstream::start(Manner::SlowBig).await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &[]);
    // Read the head and a little of the body, then go away.
    let mut client = TcpStream::connect(sc.listen).await.unwrap();
    client.write_all(b"GET /big HTTP/1.1\r\nHost: app\r\n\r\n").await.unwrap();
    let mut first = [0u8; 1024];
    let n = client.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first[..n]));
    drop(client);
    // Requests right after must all be answered, whatever happened to that connection.
    for _ in 0..5 {
        let (status, _, body) = http_get(&sc.url("/"), &[]).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    // The abandoned connection is closed, not returned half-read.
    let started = Instant::now();
    while up.closed_by_proxy.load(SeqCst) == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "the abandoned connection stayed open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up.accepted.load(SeqCst), 2);
}
