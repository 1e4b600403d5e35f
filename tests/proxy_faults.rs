//! Misbehaving upstreams, played by raw TCP servers, in front of the real binary: a reset mid-body,
//! a half-close, an answer after the timeout, a body shorter or longer than its `Content-Length`,
//! a `Content-Length` beside `Transfer-Encoding`, a body that stops without an end; trailers,
//! which end a body as its last frame; and a client that stops reading its response.
//! The client gets 502/504 before the head or a cut connection after it (never a truncated body
//! that looks complete), and the segment the daemon receives says what happened.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use std::time::Duration;
use support::{Daemon, Sidecar};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the upstream does once it has read a request's head.
#[derive(Clone, Copy)]
enum Misbehaviour {
    /// Sends a head promising 100,000 bytes and 1,000 of them, then resets the connection.
    ResetMidBody,
    /// Shuts its writing side down without answering, and keeps reading.
    HalfCloseBeforeHead,
    /// Sends a head promising 1,000 bytes, shuts its writing side down, and keeps reading.
    HalfCloseAfterHead,
    /// Answers correctly, 1.5 s late.
    Late,
    /// Promises 100 bytes, sends 50 and closes.
    Short,
    /// Promises 10 bytes and sends them followed by a whole second response.
    Long,
    /// Sends a chunked body with trailers.
    Trailers,
    /// Frames its body as chunked and also sends a Content-Length that cuts it.
    LengthAndChunked,
    /// Sends `Transfer-Encoding: identity` and a Content-Length, the body, and closes.
    LengthAndIdentity,
    /// Switches protocols though the request asked for no upgrade, then answers 200 all the same.
    UnaskedSwitch,
    /// Promises 100,000 bytes, sends 1,000, then nothing, holding the connection open for 30 s.
    Stalls,
    /// Promises 1 GB and sends it as fast as it is taken.
    Endless,
    /// Sends a chunked body of 8 chunks of 64 KB, one every 400 ms.
    Trickles,
}

/// A raw TCP upstream that misbehaves the same way on every connection.
async fn upstream(how: Misbehaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s, how));
        }
    });
    format!("http://{addr}")
}

async fn serve(mut s: TcpStream, how: Misbehaviour) {
    loop {
        if !read_head(&mut s).await {
            return;
        }
        match how {
            Misbehaviour::ResetMidBody => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n").await;
                let _ = s.write_all(&[b'x'; 1000]).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                // Linger 0: closing sends RST instead of FIN.
                let _ = s.set_zero_linger();
                return;
            }
            Misbehaviour::HalfCloseBeforeHead | Misbehaviour::HalfCloseAfterHead => {
                if matches!(how, Misbehaviour::HalfCloseAfterHead) {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n").await;
                }
                let _ = s.shutdown().await;
                let mut buf = [0u8; 1024];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                return;
            }
            Misbehaviour::Late => {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlate").await;
            }
            Misbehaviour::Short => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n").await;
                let _ = s.write_all(&[b's'; 50]).await;
                return;
            }
            Misbehaviour::Long => {
                let smuggled = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nEVIL!";
                let res = format!("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789{smuggled}");
                let _ = s.write_all(res.as_bytes()).await;
            }
            Misbehaviour::Trailers => {
                let res = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\n\r\n2\r\nok\r\n0\r\nx-t: 1\r\n\r\n";
                let _ = s.write_all(res.as_bytes()).await;
            }
            Misbehaviour::LengthAndChunked => {
                let res = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n9\r\nBODYBYTES\r\n0\r\n\r\n";
                let _ = s.write_all(res.as_bytes()).await;
            }
            Misbehaviour::UnaskedSwitch => {
                let res = "HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                let _ = s.write_all(res.as_bytes()).await;
                return;
            }
            Misbehaviour::Stalls => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n").await;
                let _ = s.write_all(&[b'x'; 1000]).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            Misbehaviour::Endless => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n").await;
                let chunk = vec![b'e'; 64 * 1024];
                while s.write_all(&chunk).await.is_ok() {}
                return;
            }
            Misbehaviour::Trickles => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await;
                for _ in 0..8 {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    let chunk = format!("10000\r\n{}\r\n", "t".repeat(0x10000));
                    if s.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                }
                let _ = s.write_all(b"0\r\n\r\n").await;
            }
            Misbehaviour::LengthAndIdentity => {
                let res = "HTTP/1.1 200 OK\r\ntransfer-encoding: identity\r\ncontent-length: 2\r\n\r\nBODYBYTES";
                let _ = s.write_all(res.as_bytes()).await;
                return;
            }
        }
    }
}

/// Reads one request head (these tests send no bodies); false when the connection ended first.
async fn read_head(s: &mut TcpStream) -> bool {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => got.push(byte[0]),
            _ => return false,
        }
    }
    true
}

/// What a client saw of one response.
#[derive(Debug)]
struct Seen {
    status: u16,
    /// The body as received (chunked framing left in).
    body: Vec<u8>,
    /// Whether the response was complete by its own framing.
    complete: bool,
}

/// Sends one GET on `s` and reads its response until it is complete, the connection ends, or 5 s.
async fn get(s: &mut TcpStream, path: &str) -> Seen {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: app\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(seen) = parse(&out).filter(|s| s.complete) {
            return seen;
        }
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    parse(&out).unwrap_or(Seen { status: 0, body: out, complete: false })
}

fn parse(raw: &[u8]) -> Option<Seen> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let body = raw[end..].to_vec();
    let length = head.lines().find_map(|l| l.strip_prefix("content-length:")?.trim().parse::<usize>().ok());
    let complete = match length {
        Some(n) => body.len() >= n,
        None if head.contains("transfer-encoding: chunked") => body.ends_with(b"0\r\n\r\n"),
        None => false,
    };
    Some(Seen { status, body, complete })
}

/// A new connection to the sidecar, one GET on it.
async fn get_once(sc: &Sidecar, path: &str) -> Seen {
    get(&mut TcpStream::connect(sc.listen).await.unwrap(), path).await
}

/// The one segment for the request, schema-checked.
async fn segment(daemon: &Daemon) -> Value {
    daemon.take(1).await.remove(0)
}

fn cause(doc: &Value) -> (&str, &str) {
    let ex = &doc["cause"]["exceptions"][0];
    (ex["type"].as_str().unwrap_or_default(), ex["message"].as_str().unwrap_or_default())
}

fn metric(text: &str, line: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(line)?.trim().parse().ok()).unwrap_or_else(|| panic!("{line} in {text}"))
}

async fn start(how: Misbehaviour, extra: &[&str]) -> (Sidecar, Daemon) {
    let daemon = Daemon::start().await;
    let up = upstream(how).await;
    (Sidecar::sample_all(&up, daemon.addr, extra), daemon)
}

#[tokio::test]
async fn a_reset_mid_body_cuts_the_client_and_is_a_fault() {
    let (sc, daemon) = start(Misbehaviour::ResetMidBody, &[]).await;
    let seen = get_once(&sc, "/").await;
    assert_eq!(seen.status, 200, "the head was already sent on");
    assert!(!seen.complete, "a cut body must not look complete: {} bytes", seen.body.len());
    let doc = segment(&daemon).await;
    assert_eq!(doc["fault"], true, "{doc:#}");
    let (kind, message) = cause(&doc);
    assert_eq!(kind, "UpstreamBodyError", "{doc:#}");
    assert!(message.contains("after 1000 bytes"), "{message}");
    assert_eq!(metric(&sc.metrics().await, r#"xray_sidecar_upstream_errors_total{kind="broken"}"#), 1);
}

#[tokio::test]
async fn a_half_close_before_the_head_is_a_502() {
    let (sc, daemon) = start(Misbehaviour::HalfCloseBeforeHead, &[]).await;
    let seen = get_once(&sc, "/").await;
    assert_eq!(seen.status, 502, "{seen:?}");
    let doc = segment(&daemon).await;
    assert_eq!((doc["fault"].clone(), doc["http"]["response"]["status"].clone()), (true.into(), 502.into()));
    assert_eq!(cause(&doc).0, "ConnectionReset", "{doc:#}");
    assert_eq!(metric(&sc.metrics().await, r#"xray_sidecar_upstream_errors_total{kind="broken"}"#), 1);
}

#[tokio::test]
async fn a_half_close_after_the_head_cuts_the_client() {
    let (sc, daemon) = start(Misbehaviour::HalfCloseAfterHead, &[]).await;
    let seen = get_once(&sc, "/").await;
    // The upstream's head and its end reach the proxy together, so the client may see the
    // connection cut before the head or just after it; never a response that looks complete.
    assert!(matches!(seen.status, 0 | 200) && !seen.complete, "{seen:?}");
    let doc = segment(&daemon).await;
    assert_eq!(doc["fault"], true, "{doc:#}");
    let (kind, message) = cause(&doc);
    assert_eq!(kind, "UpstreamBodyError", "{doc:#}");
    assert!(message.contains("after 0 bytes"), "{message}");
    assert_eq!(metric(&sc.metrics().await, r#"xray_sidecar_upstream_errors_total{kind="broken"}"#), 1);
}

#[tokio::test]
async fn an_answer_after_the_timeout_is_a_504_and_never_reaches_the_client() {
    let (sc, daemon) = start(Misbehaviour::Late, &["--upstream-timeout", "1s"]).await;
    let mut s = TcpStream::connect(sc.listen).await.unwrap();
    let started = std::time::Instant::now();
    let seen = get(&mut s, "/").await;
    let waited = started.elapsed();
    assert_eq!(seen.status, 504, "{seen:?}");
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_millis(1400), "{waited:?}");
    let doc = segment(&daemon).await;
    assert_eq!(doc["fault"], true);
    assert_eq!(doc["http"]["response"]["status"], 504);
    assert_eq!(cause(&doc).0, "ResponseTimeout", "{doc:#}");
    // The late answer arrives on a connection the proxy has given up: the next request on the
    // same client connection gets its own answer (504 again), not the stale "late".
    tokio::time::sleep(Duration::from_millis(700)).await;
    let again = get(&mut s, "/").await;
    assert_eq!(again.status, 504, "{again:?}");
    assert!(!String::from_utf8_lossy(&again.body).contains("late"), "{again:?}");
    assert_eq!(metric(&sc.metrics().await, r#"xray_sidecar_upstream_errors_total{kind="timeout"}"#), 2);
}

#[tokio::test]
async fn a_body_shorter_than_its_length_cuts_the_client() {
    let (sc, daemon) = start(Misbehaviour::Short, &[]).await;
    let seen = get_once(&sc, "/").await;
    assert_eq!(seen.status, 200);
    assert!(!seen.complete, "a short body must not look complete: {seen:?}");
    assert!(seen.body.len() <= 50, "{seen:?}");
    let doc = segment(&daemon).await;
    assert_eq!(doc["fault"], true, "{doc:#}");
    let (kind, message) = cause(&doc);
    assert_eq!(kind, "UpstreamBodyError", "{doc:#}");
    assert!(message.contains("after 50 bytes"), "{message}");
    assert_eq!(metric(&sc.metrics().await, r#"xray_sidecar_upstream_errors_total{kind="broken"}"#), 1);
}

#[tokio::test]
async fn bytes_beyond_the_length_are_never_taken_for_the_next_response() {
    let (sc, daemon) = start(Misbehaviour::Long, &[]).await;
    let mut s = TcpStream::connect(sc.listen).await.unwrap();
    for round in 0..3 {
        let seen = get(&mut s, "/").await;
        assert_eq!(seen.status, 200, "round {round}: {seen:?}");
        assert!(seen.complete, "round {round}: {seen:?}");
        assert_eq!(seen.body, b"0123456789", "round {round}: the smuggled response leaked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for doc in daemon.take(3).await {
        assert_eq!(doc["http"]["response"]["status"], 200, "{doc:#}");
        assert_eq!(doc["http"]["response"]["content_length"], 10, "{doc:#}");
    }
}

#[tokio::test]
async fn trailers_end_a_response_rather_than_look_like_the_client_leaving() {
    let (sc, daemon) = start(Misbehaviour::Trailers, &[]).await;
    let mut s = TcpStream::connect(sc.listen).await.unwrap();
    let seen = get(&mut s, "/").await;
    assert_eq!((seen.status, seen.complete), (200, true), "{seen:?}");
    let doc = segment(&daemon).await;
    assert_eq!(doc.get("error"), None, "{doc:#}");
    assert_eq!(doc.get("cause"), None, "{doc:#}");
    // The connection goes on serving.
    assert_eq!(get(&mut s, "/").await.status, 200);
}

#[tokio::test]
async fn a_length_beside_the_upstreams_transfer_encoding_never_cuts_the_body() {
    for how in [Misbehaviour::LengthAndChunked, Misbehaviour::LengthAndIdentity] {
        let (sc, daemon) = start(how, &[]).await;
        let seen = get_once(&sc, "/").await;
        assert_eq!((seen.status, seen.complete), (200, true), "{seen:?}");
        let body = String::from_utf8_lossy(&seen.body);
        assert!(body.contains("BODYBYTES"), "the whole body, re-framed: {body:?}");
        let doc = segment(&daemon).await;
        assert_eq!(doc.get("error"), None, "{doc:#}");
        assert_eq!(doc.get("fault"), None, "{doc:#}");
    }
}

/// A 101 to a request that named no protocol in `Upgrade` (RFC 9110 §15.2.2) is no answer to pass
/// on: the client would get a switch, then nothing.
#[tokio::test]
async fn a_switch_nobody_asked_for_is_a_502_and_a_fault() {
    let (sc, daemon) = start(Misbehaviour::UnaskedSwitch, &[]).await;
    let seen = get_once(&sc, "/").await;
    assert_eq!(seen.status, 502, "{seen:?}");
    let doc = segment(&daemon).await;
    assert_eq!(doc["fault"], true, "{doc:#}");
    assert_eq!(doc["cause"]["exceptions"][0]["type"], "ProtocolError", "{doc:#}");
}

/// A body that stops without ending would hold the client (and the record) as long as the upstream
/// keeps its connection: after `--stream-idle-timeout` with nothing from it, the client's
/// connection is cut and the record says why, as the upstream's fault.
#[tokio::test]
async fn a_body_that_stops_coming_is_cut_at_the_stream_idle_timeout() {
    let (sc, daemon) = start(Misbehaviour::Stalls, &["--stream-idle-timeout", "1s"]).await;
    let started = std::time::Instant::now();
    let seen = get_once(&sc, "/").await;
    let waited = started.elapsed();
    assert_eq!(seen.status, 200, "the head was already sent on");
    assert!(!seen.complete && seen.body.len() == 1000, "{} bytes", seen.body.len());
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_millis(3000), "{waited:?}");
    let doc = segment(&daemon).await;
    assert_eq!(doc["fault"], true, "{doc:#}");
    let (kind, message) = cause(&doc);
    assert_eq!(kind, "UpstreamBodyError", "{doc:#}");
    assert!(message.contains("after 1000 bytes") && message.contains("idle for 1s"), "{message}");
    assert_eq!(metric(&sc.metrics().await, r#"xray_sidecar_upstream_errors_total{kind="broken"}"#), 1);
}

/// A client that asks for a large response and never reads it would hold its connection, its
/// slot of the connection limit and the upstream connection for ever: after
/// `--stream-idle-timeout` without taking a byte its connection is closed, and the record is the
/// client's leaving.
#[tokio::test]
async fn a_client_that_stops_reading_is_let_go_at_the_stream_idle_timeout() {
    let (sc, daemon) = start(Misbehaviour::Endless, &["--stream-idle-timeout", "2s"]).await;
    let mut s = TcpStream::connect(sc.listen).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: app\r\n\r\n").await.unwrap();
    let mut head = [0u8; 1024];
    let n = s.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&head[..n]));
    // Reads nothing more: the socket buffers fill and the proxy's writes wait.
    let started = std::time::Instant::now();
    let doc = daemon.next(Duration::from_secs(10)).await.expect("the record, once the connection is let go");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(6), "{waited:?}");
    let (kind, message) = cause(&doc);
    assert_eq!(kind, "ClientAborted", "{doc:#}");
    assert!(message.contains("client went away after"), "{message}");
    // What the client had not read is followed by the end of the connection.
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the connection ends after {} bytes", rest.len());
    assert!(rest.len() < 1_000_000_000, "{}", rest.len());
}

/// What `tests/support/h2_slow_reader.py` (arguments after the sidecar's address) saw.
async fn h2_slow_reader(sc: &Sidecar, args: &[&str]) -> Value {
    let script = support::repo_root().join("tests/support/h2_slow_reader.py");
    let mut command = std::process::Command::new("python3");
    command.arg(script).arg(sc.listen.to_string()).args(args);
    // Off the runtime: the upstream serves on it.
    let out = tokio::task::spawn_blocking(move || command.output()).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}{}", String::from_utf8_lossy(&out.stderr)))
}

/// An HTTP/2 client stops otherwise: it leaves the stream's flow-control window shut (and answers
/// the connection's pings). After `--stream-idle-timeout` with its response waiting on it, the
/// stream is reset and recorded as the client's leaving; the connection serves on.
#[tokio::test]
async fn an_http2_client_that_stops_taking_its_response_is_reset_at_the_stream_idle_timeout() {
    let (up, daemon) = (support::upstream::Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &["--stream-idle-timeout", "1s"]);
    let got = h2_slow_reader(&sc, &["/forever", "/", "8"]).await;
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["reset"], 8, "reset with CANCEL: {got}");
    let after = got["reset_after"].as_f64().unwrap_or(f64::MAX);
    assert!((1.0..4.0).contains(&after), "{got}");
    assert_eq!(got["second"], 200, "the connection serves on: {got}");
    let mut docs = [segment(&daemon).await, segment(&daemon).await];
    docs.sort_by_key(|d| d["http"]["request"]["url"].as_str().map(str::len));
    let (kind, message) = cause(&docs[1]);
    assert_eq!(kind, "ClientAborted", "{:#}", docs[1]);
    assert!(message.contains("client went away after"), "{message}");
    assert_eq!(docs[0]["http"]["response"]["status"], 200, "{:#}", docs[0]);
}

/// An HTTP/2 client that keeps taking its response, slowly (64 KB every 300 ms, 4 s in all
/// against a 1 s limit), is never cut.
#[tokio::test]
async fn a_slow_http2_reader_is_never_cut_by_the_stream_idle_timeout() {
    let (up, daemon) = (support::upstream::Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &["--stream-idle-timeout", "1s"]);
    let got = h2_slow_reader(&sc, &["/forever", "/", "4", "trickle", "300"]).await;
    assert_eq!((&got["status"], &got["reset"]), (&200.into(), &Value::Null), "{got}");
    assert!(got["received"].as_u64().is_some_and(|n| n > 8 * 65_535), "{got}");
}

/// Nor is a stream whose client, while it takes nothing of the response, is still sending its
/// request body (100 bytes every 300 ms for 4 s against a 1 s limit): the call is not idle, and is
/// not ended (nor recorded) while the upload goes on.
#[tokio::test]
async fn an_http2_client_still_uploading_is_not_cut_by_the_stream_idle_timeout() {
    let (up, daemon) = (support::upstream::Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &["--stream-idle-timeout", "1s"]);
    let client = h2_slow_reader(&sc, &["/forever", "/", "4", "upload", "300"]);
    let (got, early) = tokio::join!(client, daemon.next(Duration::from_millis(3500)));
    assert!(early.is_none(), "a record while the client was still sending: {early:?}");
    assert_eq!((&got["status"], &got["reset"]), (&200.into(), &Value::Null), "{got}");
    assert_eq!(got["second"], 200, "{got}");
}

/// The limit is on silence, not on length: a body that keeps coming, slower than the limit in all
/// (3.2 s against 1 s), to a client that keeps reading, slowly, is never cut.
#[tokio::test]
async fn a_slow_body_to_a_slow_reader_is_never_cut_by_the_stream_idle_timeout() {
    let (sc, daemon) = start(Misbehaviour::Trickles, &["--stream-idle-timeout", "1s"]).await;
    let mut s = TcpStream::connect(sc.listen).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: app\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !got.ends_with(b"0\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            other => panic!("cut after {} bytes: {other:?}", got.len()),
        }
        // 16 KB every 100 ms: the client takes as long as the upstream.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(got.len() > 8 * 0x10000, "{}", got.len());
    let doc = segment(&daemon).await;
    assert_eq!((doc.get("fault"), doc.get("error")), (None, None), "{doc:#}");
    assert_eq!(doc["http"]["response"]["content_length"], 8 * 0x10000, "{doc:#}");
}

#[tokio::test]
async fn a_dead_sampling_api_and_otlp_collector_fail_no_request() {
    let daemon = Daemon::start().await;
    let up = support::upstream::Upstream::start().await;
    let (api, collector) = (support::ClosedPort::new(), support::ClosedPort::new());
    let address = format!("tcp:{} udp:{}", api.addr, daemon.addr);
    let collector = format!("http://{}", collector.addr);
    let sc = Sidecar::start(&up.url(), &address, &["--centralized-sampling", "true", "--otlp-endpoint", &collector]);
    let mut failed = 0;
    for _ in 0..50 {
        let (status, _, _) = support::http_get(&sc.url("/"), &[]).await;
        failed += usize::from(status != 200);
    }
    assert_eq!(failed, 0);
    let metrics = sc.metrics().await;
    // The local default rule (1 a second, then 5 %) decided, as the API could not be reached.
    let local = metric(&metrics, r#"xray_sidecar_sampling_decisions_total{source="local",sampled="true"}"#)
        + metric(&metrics, r#"xray_sidecar_sampling_decisions_total{source="local",sampled="false"}"#);
    assert_eq!(local, 50, "{metrics}");
    let sampled = metric(&metrics, r#"xray_sidecar_sampling_decisions_total{source="local",sampled="true"}"#);
    assert!(sampled >= 1, "{metrics}");
    // Spans to the dead collector are dropped and counted, after their retries.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = sc.metrics().await;
        if metric(&m, "xray_sidecar_otlp_spans_dropped_total") >= sampled {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "spans never counted as dropped:\n{m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(daemon.take(sampled as usize).await.len() as u64, sampled);
}
