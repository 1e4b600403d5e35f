//! Hostile and unusual requests, sent as raw bytes through the real binary to an application that
//! answers with exactly what it received: what must be refused never reaches it, and what it must
//! see (our trace header, `te: trailers`, transfer codings) arrives. Over HTTP/2, the requests
//! RFC 9113 calls malformed (connection-specific fields, CR/LF/NUL in values, bad names and pseudo
//! fields, a content-length the DATA frames contradict) go out from a client whose checks are off,
//! to an application that would accept anything: none reaches it.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::python::PythonApp;
use support::{Daemon, Sidecar};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An application that answers every request with the raw bytes of its head, counts them, and
/// keeps every byte it ever received (heads, bodies, anything after them) to be asserted on.
struct Echo {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Echo {
    async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (requests, received) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
        let (count, log) = (requests.clone(), received.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(Echo::serve(s, count.clone(), log.clone()));
            }
        });
        Echo { addr, requests, received }
    }

    /// One request per connection: its head and body as the framing says, the answer, then
    /// whatever else arrives until the proxy closes (a request smuggled after it would show).
    async fn serve(mut s: TcpStream, count: Arc<AtomicUsize>, log: Arc<Mutex<Vec<u8>>>) {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let mut read = async |s: &mut TcpStream, got: &mut Vec<u8>| match tokio::time::timeout(
            Duration::from_secs(2),
            s.read(&mut buf),
        )
        .await
        {
            Ok(Ok(n)) if n > 0 => {
                got.extend_from_slice(&buf[..n]);
                log.lock().unwrap().extend_from_slice(&buf[..n]);
                true
            }
            _ => false,
        };
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            if !read(&mut s, &mut got).await {
                return;
            }
        }
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
        let length = head.lines().find_map(|l| l.strip_prefix("content-length:")?.trim().parse::<usize>().ok());
        let chunked = head.contains("transfer-encoding:") && head.contains("chunked");
        // The body as the forwarded framing says (a chunked one ends with the last chunk).
        while (chunked && !got.ends_with(b"0\r\n\r\n")) || length.is_some_and(|n| got.len() < head_end + n) {
            if !read(&mut s, &mut got).await {
                break;
            }
        }
        count.fetch_add(1, Ordering::SeqCst);
        let head = &got[..head_end];
        let res = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", head.len());
        let _ = s.write_all(res.as_bytes()).await;
        let _ = s.write_all(head).await;
        while read(&mut s, &mut got).await {}
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything the application has received so far, on every connection.
    fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
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
    // Nor the W3C context we write and pass on: the app's parent is our segment, tracestate as sent.
    let (_, a) = send(
        l,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: traceparent, TraceState, x-gone\r\nx-gone: 1\r\n\
          traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\ntracestate: rojo=00f067aa0ba902b7\r\n\r\n",
    )
    .await;
    let tp = has(&a, "traceparent").unwrap_or_default();
    assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && tp.ends_with("-01"), "{a}");
    assert!(!tp.contains("00f067aa0ba902b7"), "the parent is our segment, not the caller's: {a}");
    assert_eq!(has(&a, "tracestate").as_deref(), Some("rojo=00f067aa0ba902b7"), "{a}");
    assert_eq!(has(&a, "x-gone"), None, "{a}");

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
async fn a_get_or_head_with_a_chunked_body_arrives_with_it() {
    // Search APIs (Elasticsearch's `GET _search`) take a body on a GET; a chunked one must reach
    // the application framed, not be dropped with its framing header.
    let (app, daemon) = (Echo::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&app.url(), daemon.addr, &[]);
    for method in ["GET", "HEAD"] {
        let raw = format!(
            "{method} /q-{method} HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nbody-\r\n{:x}\r\n{method}\r\n0\r\n\r\n",
            method.len()
        );
        let (status, a) = send(sc.listen, raw.as_bytes()).await;
        assert_eq!(status, 200, "{method}: {a}");
        let received = app.received();
        let (_, request) = received.split_once(&format!("{method} /q-{method} ")).expect("the request");
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        assert!(head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
        let body: String = body.split("\r\n").skip(1).step_by(2).collect();
        assert!(body.starts_with(&format!("body-{method}")), "{method}: the application got {request:?}");
    }
    // With a Content-Length the body went through before, and still does.
    let (_, a) = send(sc.listen, b"GET /q-length HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc").await;
    assert_eq!(has(&a, "content-length").as_deref(), Some("3"), "{a}");
    assert!(app.received().contains("\r\n\r\nabc"), "{}", app.received());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_size_limit_holds_for_the_head_as_forwarded() {
    let (app, daemon) = (Echo::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&app.url(), daemon.addr, &["--max-header-size", "8192"]);
    // Heads around the limit (the least allowed), with and without X-Forwarded- fields of their
    // own: each reaches the application at most 8,192 bytes long, the trace context and the
    // X-Forwarded- fields the proxy adds included, and the largest that pass are exactly that.
    let mut largest = 0;
    for forwarded in ["", "X-Forwarded-For: 10.1.1.1\r\nX-Forwarded-For: 10.2.2.2\r\n"] {
        for pad in 7850..8100 {
            let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{forwarded}X-Pad: {}\r\n\r\n", "p".repeat(pad));
            let (status, answer) = send(sc.listen, raw.as_bytes()).await;
            // The application's answer: its head, then the request head it received.
            let Some((_, received)) = answer.split_once("\r\n\r\n") else { panic!("{answer:?}") };
            match status {
                200 => {
                    let Some(head) = received.find("\r\n\r\n").map(|end| end + 4) else { panic!("{answer:?}") };
                    assert!(head <= 8192, "{pad}: the application received a head of {head} bytes");
                    largest = largest.max(head);
                }
                431 => {}
                other => panic!("{pad}: {other} {answer:?}"),
            }
        }
    }
    assert_eq!(largest, 8192, "the limit is held exactly");
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
        // A Host that is not a host and port (RFC 9112 §3.2).
        (b"GET / HTTP/1.1\r\nHost: a/evil?x#y\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a<b>\r\n\r\n", 400),
    ] {
        let (status, answer) = send(l, raw).await;
        assert_eq!(status, expected, "{}\n{answer}", String::from_utf8_lossy(raw));
    }
    // The over-long chunk size is the one case whose head is already on its way when the body
    // turns out bad: it may have reached the application, but never its body.
    let reached = app.requests.load(Ordering::SeqCst);
    assert!(reached <= 1, "{reached} malformed requests reached the application");
    // The segments say what happened, as the client's error.
    let docs = daemon.take(7).await;
    for d in &docs {
        assert_eq!(d["error"], true, "{d}");
        assert!(d.get("fault").is_none(), "{d}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_breaks_off_is_the_clients_error_not_the_upstreams() {
    let (app, daemon) = (Echo::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&app.url(), daemon.addr, &[]);
    let l = sc.listen;
    // Chunked framing broken after the head has gone upstream: a size that is no number, data
    // longer than its size says.
    for raw in [
        &b"POST /no-size HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"[..],
        b"POST /too-long HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n0\r\n\r\n",
    ] {
        let (status, answer) = send(l, raw).await;
        assert_eq!(status, 400, "{}\n{answer}", String::from_utf8_lossy(raw));
    }
    // A body that stops short: the client half-closes (and still reads its answer), or resets.
    let short = |path| format!("POST /{path} HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n0123456789");
    let mut s = TcpStream::connect(l).await.unwrap();
    s.write_all(short("half-closed").as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.shutdown().await.unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut answer)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    let mut s = TcpStream::connect(l).await.unwrap();
    s.write_all(short("reset").as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.set_zero_linger().unwrap();
    drop(s);
    // The segments say it was the client's doing: a malformed body, or a client that went away.
    // No upstream failure is counted.
    for d in daemon.take(4).await {
        assert_eq!((&d["error"], d.get("fault")), (&serde_json::json!(true), None), "{d}");
        let url = d["http"]["request"]["url"].as_str().unwrap();
        let (cause, aborted) = if url.ends_with("/no-size") || url.ends_with("/too-long") {
            ("BadRequest", None)
        } else {
            ("ClientAborted", Some(&serde_json::json!(true)))
        };
        assert_eq!(d["cause"]["exceptions"][0]["type"], cause, "{d}");
        assert_eq!(d["annotations"].get("client_aborted"), aborted, "{d}");
    }
    let metrics = sc.metrics().await;
    for kind in ["connect", "timeout", "broken"] {
        let name = format!("xray_sidecar_upstream_errors_total{{kind=\"{kind}\"}}");
        assert_eq!(support::metric(&metrics, &name), Some(0.0), "{metrics}");
    }
}

/// Sends `raw` on a new connection and reads until the proxy closes it (or 5 s pass): everything
/// received, and whether the connection was closed.
async fn until_closed(addr: SocketAddr, raw: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// A request the application would see if a framing or target trick worked.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_and_malformed_heads_are_refused_before_the_application() {
    let (app, daemon) = (Echo::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&app.url(), daemon.addr, &[]);
    let l = sc.listen;
    #[rustfmt::skip]
    let refused: &[(&str, String)] = &[
        ("differing Content-Length", format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc{SMUGGLED}")),
        ("Content-Length list", format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 40\r\n\r\nabc{SMUGGLED}")),
        ("obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n".into()),
        ("obs-fold hiding chunked", format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc{SMUGGLED}")),
        ("NUL in a value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\0b\r\n\r\n".into()),
        ("bare CR in a value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n".into()),
        ("bare CR hiding a length", format!("POST / HTTP/1.1\r\nHost: a\r\nX-A: a\rContent-Length: 40\r\n\r\n{SMUGGLED}")),
        ("space before the colon", format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{SMUGGLED}")),
        ("chunked not last", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n".into()),
        ("unknown coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".into()),
        ("chunked in HTTP/1.0", format!("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}")),
        ("method with a separator", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n".into()),
        ("method with a NUL", "G\0T / HTTP/1.1\r\nHost: a\r\n\r\n".into()),
        ("no method", " / HTTP/1.1\r\nHost: a\r\n\r\n".into()),
        ("target without a slash", "GET foo HTTP/1.1\r\nHost: a\r\n\r\n".into()),
        ("authority-form GET", "GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n".into()),
        ("asterisk-form GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n".into()),
        ("absolute-form to another host", "GET http://evil.example:81/x HTTP/1.1\r\nHost: a\r\n\r\n".into()),
        ("absolute-form, another port", "GET http://a:81/x HTTP/1.1\r\nHost: a\r\n\r\n".into()),
        ("space in the target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n".into()),
        ("DEL in the target", "GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n".into()),
        ("unknown version", "GET / HTTP/1.2\r\nHost: a\r\n\r\n".into()),
    ];
    for (what, raw) in refused {
        let (status, answer) = send(l, raw.as_bytes()).await;
        assert_eq!(status, 400, "{what}: {answer:?}");
        assert_eq!(app.received(), "", "{what} reached the application");
    }
    assert_eq!(app.requests.load(Ordering::SeqCst), 0);
    // What the parser refuses forms no request, so no segment tells of it: the count does (and
    // only of those: a target the proxy refuses has its segment).
    let malformed = async || support::metric(&sc.metrics().await, "xray_sidecar_malformed_requests_total");
    let before = malformed().await.unwrap();
    assert!(before >= 1.0, "{before}");
    send(l, b"GET / HTTP/1.1\r\nHost : a\r\n\r\n").await;
    send(l, b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(malformed().await, Some(before + 1.0));

    // A chunk size too large to be one: refused, and neither its body nor what follows it is
    // passed on (the head may already be on its way when the size turns out impossible).
    let raw = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n99999999999999999999\r\nabc\r\n0\r\n\r\n{SMUGGLED}"
    );
    let (answer, _) = until_closed(l, raw.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = app.received();
    assert!(!seen.contains("abc") && !seen.contains("smuggled"), "{seen:?}");
    assert_eq!(app.requests.load(Ordering::SeqCst), 0, "{seen:?}");

    // Content-Length and Transfer-Encoding together, in either order: the body is read as chunked
    // (RFC 9112 §6.3), the length never reaches the application, and the connection is closed
    // after the answer, so the bytes after the chunked body are never taken for a request.
    for raw in [
        format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
        ),
        format!(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n{SMUGGLED}"
        ),
    ] {
        let before = app.requests.load(Ordering::SeqCst);
        let (answer, closed) = until_closed(l, raw.as_bytes()).await;
        assert!(closed, "connection kept open after CL + TE: {answer:?}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer:?}");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        assert_eq!(app.requests.load(Ordering::SeqCst), before + 1);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = app.received().to_ascii_lowercase();
    assert_eq!(seen.matches("transfer-encoding: chunked\r\n").count(), 2, "{seen}");
    assert!(!seen.contains("content-length") && !seen.contains("smuggled"), "{seen}");
    assert_eq!(seen.matches("\r\n\r\n0\r\n\r\n").count(), 2, "each body is the empty chunked one: {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusual_but_valid_requests_reach_the_application_unchanged() {
    let (app, daemon) = (Echo::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&app.url(), daemon.addr, &[]);
    let l = sc.listen;
    // Bare LF line endings (RFC 9112 §2.2 lets a recipient accept them): the application gets the
    // same fields, framed with CRLF, and the body framing the proxy read.
    let (status, a) = send(l, b"POST /lf HTTP/1.1\nHost: a\nX-A: 1\nContent-Length: 5\n\nhello").await;
    assert_eq!(status, 200, "{a}");
    assert!(a.contains("POST /lf HTTP/1.1\r\n"), "{a}");
    assert_eq!((has(&a, "x-a"), has(&a, "content-length")), (Some("1".into()), Some("5".into())), "{a}");
    // The same length twice is one length.
    let (status, a) = send(l, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc").await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(seen(&a).iter().filter(|(k, _)| k == "content-length").count(), 1, "{a}");
    // Dot segments, extension methods and OPTIONS * are the application's to judge: passed verbatim.
    for (raw, line) in [
        (&b"GET /a/../../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n"[..], "GET /a/../../etc/passwd HTTP/1.1"),
        (b"PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n", "PURGE /x HTTP/1.1"),
        (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "OPTIONS * HTTP/1.1"),
        // An absolute-form target naming the Host is sent on in origin form.
        (b"GET http://a/x?y HTTP/1.1\r\nHost: a\r\n\r\n", "GET /x?y HTTP/1.1"),
    ] {
        let (status, a) = send(l, raw).await;
        assert_eq!(status, 200, "{a}");
        assert!(a.contains(&format!("\r\n\r\n{line}\r\n")), "{line}: {a}");
    }
    // A userinfo in Host, as HTTP/2 stacks allow in `:authority`: passed on (the records drop it).
    let (status, a) = send(l, b"GET /x HTTP/1.1\r\nHost: user:pw@a\r\n\r\n").await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(has(&a, "host").as_deref(), Some("user:pw@a"), "{a}");
    // HTTP/1.0 in absolute form without Host: the application hears the host the client named.
    let (status, a) = send(l, b"GET http://named.example/x HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(has(&a, "host").as_deref(), Some("named.example"), "{a}");
    // Without Host and without a host in the target, the application hears its own address.
    let own = app.addr.to_string();
    let (status, a) = send(l, b"GET /x HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(has(&a, "host").as_deref(), Some(own.as_str()), "{a}");
    // A Host the client calls hop-by-hop stays: the application hears the client's, not its own
    // address (which the client could otherwise make it believe it was called by).
    let (status, a) = send(l, b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n").await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(seen(&a).iter().filter(|(k, _)| k == "host").count(), 1, "{a}");
    assert_eq!(has(&a, "host").as_deref(), Some("a"), "{a}");
    assert!(!app.received().contains("smuggled"));
}

/// An HTTP/2 application that accepts anything (`tests/support/h2_app.py`: the PyPI `h2` library
/// with its checks of received headers off), so that whatever the proxy forwards is seen as it
/// came; it logs every request's headers to a file, a JSON line each.
struct H2App {
    app: PythonApp,
    log: std::path::PathBuf,
}

impl H2App {
    fn start() -> H2App {
        let name = format!("xray-sidecar-h2-app-{}-{}.jsonl", std::process::id(), support::free_port());
        let log = std::env::temp_dir().join(name);
        let app = PythonApp::start("h2_app.py", &["{port}", log.to_str().unwrap()]);
        H2App { app, log }
    }

    /// Everything the application logged so far, in order.
    fn seen(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// The `:path` of every request received, in order.
    fn paths(&self) -> Vec<String> {
        let seen = self.seen();
        let headers = seen.iter().filter_map(|r| r["headers"].as_array());
        headers
            .filter_map(|h| h.iter().find(|kv| kv[0] == ":path").and_then(|kv| kv[1].as_str()).map(String::from))
            .collect()
    }
}

impl Drop for H2App {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http2_requests_are_refused_before_the_application() {
    let (app, daemon) = (H2App::start(), Daemon::start().await);
    let sc = Sidecar::sample_all(&app.app.url(""), daemon.addr, &[]);
    // Each case on a connection of its own, written as is by a client whose checks are off.
    let out = std::process::Command::new("python3")
        .arg(support::repo_root().join("tests/support/h2_hostile.py"))
        .arg(sc.listen.to_string())
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let results: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(results.len() > 10, "{results:?}");
    for r in &results {
        if r["case"] == "control" {
            assert_eq!(r["status"], 200, "{r}");
            continue;
        }
        // Refused: a stream reset, the connection closed, or a 4xx; never an answer of the application.
        let refused = !r["reset"].is_null() || !r["goaway"].is_null() || r["closed"] == true;
        let status = r["status"].as_u64();
        assert!(refused || status.is_some_and(|s| (400..500).contains(&s)), "{r}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Of them all, only the well-formed request reached the application, with the authority its
    // client named (not the address the proxy connected to).
    assert_eq!(app.paths(), ["/control"], "{results:?}");
    let seen = app.seen();
    assert!(
        seen[0]["headers"].as_array().unwrap().iter().any(|kv| kv[0] == ":authority" && kv[1] == "app"),
        "{seen:?}"
    );
    assert!(!format!("{seen:?}").contains("smuggled"), "{seen:?}");
}
