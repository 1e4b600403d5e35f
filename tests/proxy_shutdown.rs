//! SIGTERM under load, against the real binary: readiness turns first, connections are still
//! served for the drain window, then new connections are refused while requests in flight
//! complete, and every segment is flushed before the process exits.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::upstream::Upstream;
use support::{Daemon, Sidecar};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// One request on a new connection: `Some(true)` for a 200, `Some(false)` for any failure after the
/// connection was accepted, `None` when the connection was refused.
async fn one(addr: SocketAddr, path: &str) -> Option<bool> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return Some(false);
    }
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    Some(matches!(read, Ok(Ok(_))) && out.starts_with(b"HTTP/1.1 200"))
}

/// Four clients each sending `/slow/100` on a new connection, again and again, until stopped.
struct Load {
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    gone: Arc<AtomicBool>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts the clients against `listen`. With `refusal_ends`, a refused connection ends a client
    /// (the listener has closed) rather than counting as a failure.
    fn start(listen: SocketAddr, refusal_ends: bool) -> Load {
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let gone = Arc::new(AtomicBool::new(false));
        let clients = (0..4)
            .map(|_| {
                let (ok, failed, gone) = (ok.clone(), failed.clone(), gone.clone());
                tokio::spawn(async move {
                    while !gone.load(Ordering::SeqCst) {
                        match one(listen, "/slow/100").await {
                            Some(true) => ok.fetch_add(1, Ordering::SeqCst),
                            None if refusal_ends => break,
                            _ => failed.fetch_add(1, Ordering::SeqCst),
                        };
                    }
                })
            })
            .collect();
        Load { ok, failed, gone, clients }
    }

    /// Stops the clients, as callers do once they have heard that the pod is leaving, and waits for
    /// their requests in flight.
    async fn stop(&mut self) {
        self.gone.store(true, Ordering::SeqCst);
        for c in self.clients.drain(..) {
            c.await.unwrap();
        }
    }
}

async fn ready(admin: SocketAddr) -> Option<bool> {
    let mut s = TcpStream::connect(admin).await.ok()?;
    s.write_all(b"GET /ready HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").await.ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.ok()?;
    Some(out.starts_with(b"HTTP/1.1 200"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_fails_no_request_and_flushes_every_segment() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &["--drain-delay", "1500ms"]);
    let (listen, admin) = (sc.listen, sc.admin);
    let mut load = Load::start(listen, true);
    let (ok, failed) = (load.ok.clone(), load.failed.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    sc.terminate();
    let signalled = Instant::now();
    // Readiness turns at once, while connections are still accepted and served.
    while ready(admin).await == Some(true) {
        assert!(signalled.elapsed() < Duration::from_secs(1), "/ready still 200 after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let served_before = ok.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(one(listen, "/").await, Some(true), "a new connection during the drain window is served");
    assert!(ok.load(Ordering::SeqCst) > served_before, "requests kept being served while draining");
    load.stop().await;
    // After the drain window the listener is closed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(one(listen, "/").await, None, "new connections are refused once the listeners close");

    let (ok, failed) = (ok.load(Ordering::SeqCst) + 1, failed.load(Ordering::SeqCst));
    eprintln!("SIGTERM under load: {ok} requests served, {failed} failed");
    assert_eq!(failed, 0);
    let docs = daemon.take(ok).await;
    assert_eq!(docs.len(), ok, "every served request's segment was flushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_still_running_when_the_listeners_close_finish_and_are_flushed() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &["--drain-delay", "1s"]);
    let listen = sc.listen;
    let mut load = Load::start(listen, false);
    let (ok, failed) = (load.ok.clone(), load.failed.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Requests that outlast the drain window by far: in flight when the listeners close.
    let long_done = Arc::new(AtomicUsize::new(0));
    let long: Vec<_> = (0..8)
        .map(|_| {
            let done = long_done.clone();
            tokio::spawn(async move {
                let answer = one(listen, "/slow/3000").await;
                done.fetch_add(1, Ordering::SeqCst);
                answer
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sc.terminate();
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(400)).await;
    load.stop().await;
    // The listeners close once the drain window is over...
    while let Some(served) = one(listen, "/").await {
        // A probe that races the close can be left in the listen backlog and reset with it: the
        // callers that matter stopped sending when readiness turned.
        if served {
            ok.fetch_add(1, Ordering::SeqCst);
        }
        assert!(signalled.elapsed() < Duration::from_secs(3), "still accepting 3 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...while the long requests are still running.
    assert_eq!(long_done.load(Ordering::SeqCst), 0, "the long requests ended before the listeners closed");
    let mut long_ok = 0;
    for l in long {
        assert_eq!(l.await.unwrap(), Some(true), "a request in flight at close failed");
        long_ok += 1;
    }
    let served = ok.load(Ordering::SeqCst) + long_ok;
    let failed = failed.load(Ordering::SeqCst);
    eprintln!("SIGTERM with {long_ok} requests in flight at close: {served} served, {failed} failed");
    assert_eq!(failed, 0);
    let docs = daemon.take(served).await;
    let slow = docs.iter().filter(|d| d["http"]["request"]["url"].as_str().is_some_and(|u| u.ends_with("/slow/3000")));
    assert_eq!(slow.count(), long_ok, "every long request's segment was flushed");
    daemon.nothing(Duration::from_millis(300)).await;
    // And the process then exits cleanly.
    let status = sc.exited().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_still_trickling_in_at_shutdown_does_not_hold_the_process_for_the_grace() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    // The head would be cut at 10 s; the grace would let requests run for 30.
    let args = ["--drain-delay", "0s", "--shutdown-grace", "30s"];
    let sc = Sidecar::start(&up.url(), daemon.addr, &args);
    let mut s = TcpStream::connect(sc.listen).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    // The next head starts and never ends, a byte every 200 ms; the pod is told to stop meanwhile.
    s.write_all(b"GET / HTTP/1.1\r\nhost: a\r\nx-slow: ").await.unwrap();
    let started = Instant::now();
    let (mut r, mut w) = s.into_split();
    let trickle = tokio::spawn(async move {
        while w.write_all(b"a").await.is_ok() && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    sc.terminate();
    let closed = tokio::time::timeout(Duration::from_secs(20), r.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the trickling connection was still open after 20 s: {closed:?}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "a head begun before shutdown was cut only after {took:?}");
    trickle.abort();
    let status = tokio::time::timeout(Duration::from_secs(10), sc.exited()).await;
    assert!(status.as_ref().is_ok_and(|s| s.success()), "the process did not exit cleanly soon after: {status:?}");
}

/// A loopback server that echoes whatever it reads, on every connection.
async fn echo_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Opens a `CONNECT` tunnel to `target` through `proxy` and returns it once answered 200.
async fn connect_tunnel(proxy: SocketAddr, target: &str) -> TcpStream {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "CONNECT answered: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    s
}

/// Sends `bytes` down a tunnel to the echo server and reads them back; false once it is closed.
async fn echoes(s: &mut TcpStream, bytes: &[u8]) -> bool {
    if s.write_all(bytes).await.is_err() {
        return false;
    }
    let mut back = vec![0u8; bytes.len()];
    matches!(tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut back)).await, Ok(Ok(_))) && back == bytes
}

/// Tunnels (a `CONNECT`, like every intercepted HTTPS call and upgraded WebSocket) outlive the
/// HTTP connection they came on: the shutdown gives them its grace period too, cuts those still
/// open at its end, and sends their records; HTTP inside a `CONNECT` finishes its requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_open_at_shutdown_get_the_grace_then_are_cut_and_recorded() {
    let (up, daemon, echo) = (Upstream::start().await, Daemon::start().await, echo_server().await);
    let args = ["--outbound-listen", support::ANY_PORT, "--drain-delay", "0s", "--shutdown-grace", "3s"];
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &args);
    let proxy = sc.outbound.unwrap();
    // A TLS record's first bytes: not HTTP, so relayed as a tunnel.
    const TLS: &[u8] = b"\x16\x03\x01\x00\x05hello";
    let (mut kept, mut closing) =
        (connect_tunnel(proxy, &echo.to_string()).await, connect_tunnel(proxy, &echo.to_string()).await);
    assert!(echoes(&mut kept, TLS).await && echoes(&mut closing, TLS).await);
    // Plain HTTP inside a CONNECT, a request in flight across the shutdown.
    let mut http = connect_tunnel(proxy, &up.addr.to_string()).await;
    http.write_all(b"GET /slow/1500 HTTP/1.1\r\nhost: back-end\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    sc.terminate();
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Past the drain window, the listeners closed: the tunnels still carry bytes.
    assert!(echoes(&mut kept, b"still there").await, "a tunnel was cut when the listeners closed");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), http.read_to_end(&mut answer)).await;
    assert!(matches!(read, Ok(Ok(_))), "{read:?}");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "the request inside the tunnel failed: {}",
        String::from_utf8_lossy(&answer)
    );
    // One tunnel ends within the grace period; the other is cut at its end, and the process exits.
    drop(closing);
    let mut buf = [0u8; 64];
    let cut = tokio::time::timeout(Duration::from_secs(10), kept.read(&mut buf)).await;
    assert!(matches!(cut, Ok(Ok(0)) | Ok(Err(_))), "the tunnel outlived the grace period: {cut:?}");
    let at = signalled.elapsed();
    assert!(at >= Duration::from_millis(2900) && at < Duration::from_secs(6), "cut {at:?} after SIGTERM");
    let status = tokio::time::timeout(Duration::from_secs(5), sc.exited()).await;
    assert!(status.as_ref().is_ok_and(|s| s.success()), "{status:?}");

    let docs = daemon.take(3).await;
    let ended = |d: &serde_json::Value| d["subsegments"][0]["metadata"]["tunnel"]["ended"].as_str().map(str::to_owned);
    let mut ends: Vec<String> = docs.iter().filter_map(ended).collect();
    ends.sort();
    assert_eq!(ends, ["broken", "closed"], "{docs:?}");
    let cut_one = docs.iter().find(|d| ended(d).as_deref() == Some("broken")).unwrap();
    assert_eq!(cut_one["subsegments"][0]["metadata"]["tunnel"]["bytes_sent"], 21, "{cut_one}");
    assert!(
        docs.iter()
            .any(|d| d["subsegments"][0]["http"]["request"]["url"].as_str().is_some_and(|u| u.ends_with("/slow/1500"))),
        "{docs:?}"
    );
}

/// The application is not drained, its callers are: while a request it serves is in flight after
/// the listeners close, its own new calls out still go through the outbound listener (where
/// iptables keeps sending them), which closes once the inbound requests are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_calls_out_until_its_requests_are_done() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let args = ["--outbound-listen", support::ANY_PORT, "--drain-delay", "0s", "--shutdown-grace", "10s"];
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &args);
    let (listen, proxy) = (sc.listen, sc.outbound.unwrap());
    let serving = tokio::spawn(async move { one(listen, "/slow/2000").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sc.terminate();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The inbound listener has closed; a new call out, on a new connection, goes through.
    assert_eq!(one(listen, "/").await, None, "the inbound listener still accepts");
    let mut s = TcpStream::connect(proxy).await.expect("the outbound listener accepts while a request is served");
    let call = format!("GET http://{}/ HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n", up.addr, up.addr);
    s.write_all(call.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(serving.await.unwrap(), Some(true), "the request in flight finished");
    // Then the outbound listener closes too, and the process exits well before the grace is out.
    let status = tokio::time::timeout(Duration::from_secs(5), sc.exited()).await;
    assert!(status.as_ref().is_ok_and(|s| s.success()), "{status:?}");
    assert!(TcpStream::connect(proxy).await.is_err(), "the outbound listener outlived the process");
    daemon.take(2).await;
}

/// In the drain window a keep-alive caller is told to take a new connection for its next request
/// (`Connection: close`, as Envoy's drain does) rather than reuse one that is about to be closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_of_the_drain_window_close_their_connection() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &["--drain-delay", "3s"]);
    let mut s = TcpStream::connect(sc.listen).await.unwrap();
    let ask = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
    let head = |buf: &[u8], n: usize| String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    let mut buf = [0u8; 4096];
    s.write_all(ask).await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(head(&buf, n).starts_with("http/1.1 200") && !head(&buf, n).contains("connection: close"));
    // An HTTP/1.0 caller that asked for keep-alive, and heard it, is told to close too.
    let mut old = TcpStream::connect(sc.listen).await.unwrap();
    let ask_10 = b"GET / HTTP/1.0\r\nhost: a\r\nconnection: keep-alive\r\n\r\n";
    old.write_all(ask_10).await.unwrap();
    let n = old.read(&mut buf).await.unwrap();
    assert!(head(&buf, n).starts_with("http/1.0 200") && head(&buf, n).contains("connection: keep-alive"));
    sc.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.write_all(ask).await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    let answer = head(&buf, n);
    assert!(answer.starts_with("http/1.1 200") && answer.contains("connection: close"), "{answer}");
    assert_eq!(s.read(&mut buf).await.unwrap(), 0, "the connection closes after its response");
    old.write_all(ask_10).await.unwrap();
    let n = old.read(&mut buf).await.unwrap();
    let answer = head(&buf, n);
    assert!(answer.contains("connection: close") && !answer.contains("keep-alive"), "{answer}");
    assert_eq!(old.read(&mut buf).await.unwrap(), 0, "the connection closes after its response");
    // So is one that gets the proxy's own answer (a response head over the limit: 502).
    let mut old = TcpStream::connect(sc.listen).await.unwrap();
    old.write_all(b"GET /big-head/80 HTTP/1.0\r\nhost: a\r\nconnection: keep-alive\r\n\r\n").await.unwrap();
    let n = old.read(&mut buf).await.unwrap();
    let answer = head(&buf, n);
    assert!(answer.starts_with("http/1.0 502"), "{answer}");
    assert!(answer.contains("connection: close") && !answer.contains("keep-alive"), "{answer}");
    assert_eq!(old.read(&mut buf).await.unwrap(), 0, "the connection closes after its response");
    // A new connection is still served in the drain window.
    assert_eq!(one(sc.listen, "/").await, Some(true));
    daemon.take(6).await;
}
