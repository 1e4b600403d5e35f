//! Black-box tests of `xray-sidecar proxy`: a real upstream, the real binary, and the real UDP
//! datagrams it sends, validated against AWS's segment schema.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::upstream::Upstream;
use support::{Daemon, Sidecar, http_get, pair, trace_pairs};

const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";

#[tokio::test]
async fn an_incoming_trace_is_continued_with_our_segment_as_parent() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    let header = format!("Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1;tenant=blue;Self=1-x");
    let (status, headers, _) =
        http_get(&sc.url("/orders?id=7"), &[("X-Amzn-Trace-Id", &header), ("User-Agent", "probe/1.0")]).await;
    assert_eq!(status, 200);
    let doc = &daemon.take(1).await[0];

    let saw = trace_pairs(headers["x-saw-trace"].to_str().unwrap());
    assert_eq!(pair(&saw, "Root"), Some(ROOT));
    assert_eq!(pair(&saw, "Parent"), doc["id"].as_str());
    assert_eq!(pair(&saw, "Sampled"), Some("1"));
    assert_eq!(pair(&saw, "Lineage"), Some("a87bd80c:1"));
    assert_eq!(pair(&saw, "tenant"), Some("blue"));
    assert_eq!(pair(&saw, "Self"), None);
    assert_eq!(headers["x-amzn-trace-id"], format!("Root={ROOT};Sampled=1").as_str());

    assert_eq!(doc["name"], "front-end");
    assert_eq!(doc["trace_id"], ROOT);
    assert_eq!(doc["parent_id"], "53995c3f42cd8ad8");
    assert_eq!(doc["http"]["request"]["method"], "GET");
    assert_eq!(doc["http"]["request"]["url"], format!("http://{}/orders", sc.listen).as_str());
    assert_eq!(doc["http"]["request"]["client_ip"], "127.0.0.1");
    assert_eq!(doc["http"]["request"]["user_agent"], "probe/1.0");
    assert_eq!(doc["http"]["response"]["status"], 200);
    assert_eq!(doc["http"]["response"]["content_length"], 3);
    assert_eq!(doc["annotations"]["direction"], "inbound");
    let (start, end) = (doc["start_time"].as_f64().unwrap(), doc["end_time"].as_f64().unwrap());
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(start <= end && now - start < 10.0, "{start} {end} {now}");
    assert_eq!(headers["x-saw-xff"], "127.0.0.1");
    assert_eq!(headers["x-saw-proto"], "http");
}

#[tokio::test]
async fn a_request_without_a_header_starts_a_trace() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    let (_, headers, _) = http_get(&sc.url("/"), &[("X-Forwarded-For", "203.0.113.9, 10.0.0.2")]).await;
    let doc = &daemon.take(1).await[0];
    let saw = trace_pairs(headers["x-saw-trace"].to_str().unwrap());
    let root = pair(&saw, "Root").unwrap();
    assert_eq!(doc["trace_id"], root);
    assert!(doc.get("parent_id").is_none());
    let secs = u64::from_str_radix(&root[2..10], 16).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(now.abs_diff(secs) < 10);
    assert_eq!(doc["http"]["request"]["client_ip"], "203.0.113.9");
    assert_eq!(doc["http"]["request"]["x_forwarded_for"], true);
    assert_eq!(headers["x-saw-xff"], "203.0.113.9, 10.0.0.2, 127.0.0.1");
}

#[tokio::test]
async fn a_load_balancer_that_ended_tls_makes_the_url_https() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    let alb = [("Host", "shop.example.com"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-For", "203.0.113.9")];
    let (_, headers, _) = http_get(&sc.url("/cart?id=1"), &alb).await;
    let doc = &daemon.take(1).await[0];
    assert_eq!(doc["http"]["request"]["url"], "https://shop.example.com/cart");
    assert_eq!(headers["x-saw-proto"], "https");
    // The first proxy's word is the client's: it spoke plain HTTP there, whatever later hops spoke.
    let _ = http_get(&sc.url("/cart"), &[("Host", "shop.example.com"), ("X-Forwarded-Proto", "http, https")]).await;
    let doc = &daemon.take(1).await[0];
    assert_eq!(doc["http"]["request"]["url"], "http://shop.example.com/cart");
}

#[tokio::test]
async fn several_forwarded_for_lines_go_on_as_one_list() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    let xff = [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-For", "198.51.100.7, 10.0.0.2")];
    let (_, headers, _) = http_get(&sc.url("/"), &xff).await;
    let doc = &daemon.take(1).await[0];
    assert_eq!(doc["http"]["request"]["client_ip"], "203.0.113.9");
    assert_eq!(headers["x-saw-xff"], "203.0.113.9, 198.51.100.7, 10.0.0.2, 127.0.0.1");
}

#[tokio::test]
async fn a_malformed_header_starts_a_fresh_trace_and_keeps_the_request() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    for bad in ["Root=1-zz;Parent=53995c3f42cd8ad8;Sampled=1", "garbage", "Root=;;;=;Sampled=7"] {
        let (status, headers, _) = http_get(&sc.url("/"), &[("X-Amzn-Trace-Id", bad)]).await;
        assert_eq!(status, 200, "{bad}");
        let saw = trace_pairs(headers["x-saw-trace"].to_str().unwrap());
        let root = pair(&saw, "Root").unwrap();
        assert_eq!(root.len(), 35, "{bad}");
        let doc = &daemon.take(1).await[0];
        assert_eq!(doc["trace_id"], root);
        assert!(doc.get("parent_id").is_none(), "{bad}: {doc}");
    }
    assert!(sc.metrics().await.contains("xray_sidecar_malformed_trace_headers_total 3"));
}

#[tokio::test]
async fn sampled_zero_is_passed_on_and_nothing_is_sent() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    let header = format!("Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=0");
    let (status, headers, _) = http_get(&sc.url("/"), &[("x-amzn-trace-id", &header)]).await;
    assert_eq!(status, 200);
    let saw = trace_pairs(headers["x-saw-trace"].to_str().unwrap());
    assert_eq!(pair(&saw, "Sampled"), Some("0"));
    assert_eq!(pair(&saw, "Root"), Some(ROOT));
    assert_eq!(pair(&saw, "Parent").map(str::len), Some(16));
    assert_eq!(headers["x-amzn-trace-id"], format!("Root={ROOT};Sampled=0").as_str());
    daemon.nothing(Duration::from_millis(500)).await;
    let m = sc.metrics().await;
    assert!(m.contains(r#"xray_sidecar_sampling_decisions_total{source="caller",sampled="false"} 1"#), "{m}");
    assert!(m.contains(r#"xray_sidecar_requests_total{direction="inbound",status_class="2xx"} 1"#), "{m}");
}

#[tokio::test]
async fn sampled_question_mark_is_decided_locally_and_echoed() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let rules = std::env::temp_dir().join(format!("xray-none-{}.json", std::process::id()));
    std::fs::write(
        &rules,
        r#"{"version": 2, "default": {"fixed_target": 0, "rate": 0},
            "rules": [{"description": "api", "host": "*", "http_method": "GET", "url_path": "/api/*", "fixed_target": 0, "rate": 1}]}"#,
    )
    .unwrap();
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--sampling-rules", rules.to_str().unwrap()]);
    let header = format!("Root={ROOT};Sampled=?");
    let (_, headers, _) = http_get(&sc.url("/api/x"), &[("X-Amzn-Trace-Id", &header)]).await;
    assert_eq!(headers["x-amzn-trace-id"], format!("Root={ROOT};Sampled=1").as_str());
    assert_eq!(daemon.take(1).await[0]["trace_id"], ROOT);
    let (_, headers, _) = http_get(&sc.url("/other"), &[("X-Amzn-Trace-Id", &header)]).await;
    assert_eq!(headers["x-amzn-trace-id"], format!("Root={ROOT};Sampled=0").as_str());
    daemon.nothing(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn status_codes_set_error_throttle_and_fault() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    for (code, error, throttle, fault) in
        [(200, false, false, false), (404, true, false, false), (429, true, true, false), (500, false, false, true)]
    {
        let (status, _, _) = http_get(&sc.url(&format!("/status/{code}")), &[]).await;
        assert_eq!(status, code);
        let doc = &daemon.take(1).await[0];
        assert_eq!(doc["http"]["response"]["status"], code);
        let flag = |k: &str| doc.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
        assert_eq!((flag("error"), flag("throttle"), flag("fault")), (error, throttle, fault), "{code}: {doc}");
    }
}

#[tokio::test]
async fn an_upstream_that_is_down_gives_502_and_a_fault_with_its_cause() {
    let daemon = Daemon::start().await;
    let closed = support::ClosedPort::new();
    let dead = format!("http://{}", closed.addr);
    let sc = Sidecar::sample_all(&dead, daemon.addr, &[]);
    let (status, headers, body) = http_get(&sc.url("/"), &[]).await;
    assert_eq!(status, 502);
    assert!(body.contains("refused"), "{body}");
    assert!(headers.contains_key("x-amzn-trace-id"));
    let doc = &daemon.take(1).await[0];
    assert_eq!(doc["fault"], true);
    assert_eq!(doc["http"]["response"]["status"], 502);
    let ex = &doc["cause"]["exceptions"][0];
    assert_eq!(ex["type"], "ConnectionRefused");
    assert!(ex["message"].as_str().unwrap().contains("refused"), "{ex}");
    assert!(sc.metrics().await.contains(r#"xray_sidecar_upstream_errors_total{kind="connect"} 1"#));
}

#[tokio::test]
async fn a_slow_upstream_gives_504() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &["--upstream-timeout", "200ms"]);
    let (status, _, _) = http_get(&sc.url("/slow/2000"), &[]).await;
    assert_eq!(status, 504);
    let doc = &daemon.take(1).await[0];
    assert_eq!(doc["fault"], true);
    assert_eq!(doc["cause"]["exceptions"][0]["type"], "ResponseTimeout");
}

#[tokio::test]
async fn the_upstream_timeout_holds_for_every_request_of_a_keep_alive_connection() {
    use http_body_util::Empty;
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &["--upstream-timeout", "500ms"]);
    let stream = tokio::net::TcpStream::connect(sc.listen).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    // Requests within the timeout, one slower than it, and quick ones again, on the one
    // connection: the wait is measured afresh for each (also after the connection sat idle for
    // longer than the timeout, and after a timeout).
    let mut statuses = Vec::new();
    for (path, idle) in [("/slow/50", 0), ("/slow/50", 700), ("/slow/1500", 0), ("/slow/50", 0), ("/", 600)] {
        tokio::time::sleep(Duration::from_millis(idle)).await;
        send.ready().await.unwrap();
        let req = http::Request::get(path).header("host", "app").body(Empty::<bytes::Bytes>::new()).unwrap();
        let started = Instant::now();
        let res = send.send_request(req).await.unwrap();
        let status = res.status().as_u16();
        let _ = http_body_util::BodyExt::collect(res.into_body()).await;
        statuses.push((path, status, started.elapsed()));
    }
    let codes: Vec<u16> = statuses.iter().map(|s| s.1).collect();
    assert_eq!(codes, [200, 200, 504, 200, 200], "{statuses:?}");
    let timed_out = statuses[2].2;
    assert!(timed_out >= Duration::from_millis(480) && timed_out < Duration::from_millis(1300), "{statuses:?}");
    assert_eq!(daemon.take(5).await.len(), 5);
}

#[tokio::test]
async fn the_upstream_timeout_holds_for_every_stream_of_an_http2_connection() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &["--upstream-timeout", "500ms"]);
    let (send, _closed) = support::h2_connection(sc.listen).await;
    // Streams one after another and side by side, one slower than the timeout.
    let get = |path: &'static str| {
        let mut send = send.clone();
        async move {
            let started = Instant::now();
            (support::h2_get(&mut send, path).await, started.elapsed())
        }
    };
    let (first, _) = get("/slow/50").await;
    let (slow, quick) = tokio::join!(get("/slow/1500"), get("/slow/50"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (last, _) = get("/slow/50").await;
    assert_eq!([first, slow.0, quick.0, last], [200, 504, 200, 200], "{slow:?} {quick:?}");
    assert!(slow.1 >= Duration::from_millis(480) && slow.1 < Duration::from_millis(1300), "{slow:?}");
    assert_eq!(daemon.take(4).await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_timeout_waits_for_the_request_body_and_a_stalled_body_is_the_clients() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &["--upstream-timeout", "1s"]);
    let answer = |mut s: tokio::net::TcpStream| async move {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    // A steady upload that takes three times the timeout: no fault of the upstream's.
    let mut s = tokio::net::TcpStream::connect(sc.listen).await.unwrap();
    s.write_all(b"POST /drain/0 HTTP/1.1\r\nHost: app\r\nConnection: close\r\nContent-Length: 1200\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..6 {
        s.write_all(&[b'u'; 200]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let out = answer(s).await;
    assert!(out.starts_with("HTTP/1.1 200") && out.ends_with("1200 bytes\n"), "{out}");
    assert_eq!(daemon.take(1).await[0]["http"]["response"]["status"], 200);
    // A body that stops coming: the client's 408 after the timeout, an error and no fault.
    let mut s = tokio::net::TcpStream::connect(sc.listen).await.unwrap();
    s.write_all(b"POST /drain/0 HTTP/1.1\r\nHost: app\r\nContent-Length: 1200\r\n\r\nonly this").await.unwrap();
    let started = Instant::now();
    let out = answer(s).await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(3), "answered after {:?}", started.elapsed());
    let doc = &daemon.take(1).await[0];
    assert_eq!((&doc["error"], doc.get("fault")), (&serde_json::json!(true), None), "{doc}");
    assert_eq!(doc["cause"]["exceptions"][0]["type"], "RequestTimeout", "{doc}");
    // The whole body, then an upstream that is slow to answer: its 504, from the body's end.
    let mut s = tokio::net::TcpStream::connect(sc.listen).await.unwrap();
    s.write_all(b"POST /drain/3000 HTTP/1.1\r\nHost: app\r\nContent-Length: 4\r\n\r\nbody").await.unwrap();
    assert!(answer(s).await.starts_with("HTTP/1.1 504"));
    let doc = &daemon.take(1).await[0];
    assert_eq!(doc["fault"], true, "{doc}");
    assert_eq!(doc["cause"]["exceptions"][0]["type"], "ResponseTimeout", "{doc}");
}

#[tokio::test]
async fn a_streamed_body_ends_the_segment_after_its_last_byte() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    let size = 5 * 1024 * 1024 + 17;
    let (status, _, body) = http_get(&sc.url(&format!("/stream/{size}")), &[]).await;
    let received = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    assert_eq!((status, body.len()), (200, size));
    let doc = &daemon.take(1).await[0];
    assert_eq!(doc["http"]["response"]["content_length"], size as u64);
    let (start, end) = (doc["start_time"].as_f64().unwrap(), doc["end_time"].as_f64().unwrap());
    // The upstream holds the last chunk back 300 ms.
    assert!(end - start >= 0.3, "segment ended {:.3}s after start", end - start);
    assert!(end <= received + 0.005, "segment end {end} after the client had the body at {received}");
}

#[tokio::test]
async fn a_client_that_goes_away_midway_is_recorded() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(sc.listen).await.unwrap();
        s.write_all(b"GET /forever HTTP/1.1\r\nHost: app\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 100_000];
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
    }
    let doc = &daemon.take(1).await[0];
    assert_eq!(doc["annotations"]["client_aborted"], true);
    assert_eq!(doc["cause"]["exceptions"][0]["type"], "ClientAborted");
    assert_eq!(doc["error"], true);
    assert!(doc.get("fault").is_none());
}

#[tokio::test]
async fn http2_with_trailers_passes_through() {
    use http_body_util::{BodyExt, Empty};
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<bytes::Bytes>>();
    let req = http::Request::post(sc.url("/trailers"))
        .header("te", "trailers")
        .header("content-type", "application/grpc")
        .body(Empty::new())
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    let collected = res.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers arrive");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "fine");
    assert_eq!(&collected.to_bytes()[..], b"hello");
    let doc = &daemon.take(1).await[0];
    assert_eq!(doc["http"]["request"]["method"], "POST");
    assert_eq!(doc["http"]["response"]["content_length"], 5);
}

#[tokio::test]
async fn a_websocket_upgrade_is_tunnelled_and_its_handshake_traced() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    let mut s = tokio::net::TcpStream::connect(sc.listen).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: websocket"), "{head}");
    s.write_all(b"ping through the tunnel").await.unwrap();
    let mut echo = [0u8; 23];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echo)).await.unwrap().unwrap();
    assert_eq!(&echo, b"ping through the tunnel");
    let doc = &daemon.take(1).await[0];
    assert_eq!(doc["http"]["response"]["status"], 101);
}

#[tokio::test]
async fn an_h2c_upgrade_is_answered_as_plain_http1() {
    // `curl --http2` asks a plain-text server to switch to HTTP/2 (`Upgrade: h2c`, with its
    // settings in `HTTP2-Settings`). Passed on, an upstream that takes it would turn the connection
    // into an opaque tunnel with nothing traced after the first request (and the proxy drops
    // `HTTP2-Settings`, which the upgrade needs): it is an ordinary request, as RFC 9113 leaves it.
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    let urls = [sc.url("/one"), sc.url("/status/404")];
    // Off the runtime: the upstream serves on it.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl").args(["-s", "--http2", "-D", "-", "--max-time", "10"]).args(urls).output()
    })
    .await
    .unwrap()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("HTTP/1.1 404"), "{text}");
    assert!(!text.to_ascii_lowercase().contains("x-saw-upgrade"), "{text}");
    let mut statuses: Vec<_> = daemon.take(2).await.iter().map(|d| d["http"]["response"]["status"].as_u64()).collect();
    statuses.sort();
    assert_eq!(statuses, [Some(200), Some(404)]);
}

#[tokio::test]
async fn oversized_headers_get_431_and_the_proxy_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    // 60 KiB of headers fits the 64 KiB default; 200 KiB does not.
    let ok_big = "a".repeat(60 * 1024);
    let (status, _, _) = http_get(&sc.url("/"), &[("x-big", &ok_big)]).await;
    assert_eq!(status, 200);
    daemon.take(1).await;
    let mut s = tokio::net::TcpStream::connect(sc.listen).await.unwrap();
    let huge = format!("GET / HTTP/1.1\r\nHost: app\r\nx-huge: {}\r\n\r\n", "b".repeat(200 * 1024));
    let _ = s.write_all(huge.as_bytes()).await;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{}", &out[..out.len().min(200)]);
    let (status, _, _) = http_get(&sc.url("/"), &[]).await;
    assert_eq!(status, 200);
    daemon.take(1).await;
    // Heads up to about twice the limit can arrive whole in the reads that fill hyper's buffer:
    // they are held to the limit all the same, and recorded as the client's error.
    for kib in [70, 100] {
        let big = "c".repeat(kib * 1024);
        let (status, _, _) = http_get(&sc.url("/"), &[("x-big", &big)]).await;
        assert_eq!(status, 431, "{kib} KiB");
        let doc = &daemon.take(1).await[0];
        assert_eq!(
            (&doc["http"]["response"]["status"], &doc["error"]),
            (&serde_json::json!(431), &serde_json::json!(true))
        );
        assert_eq!(doc["cause"]["exceptions"][0]["type"], "RequestHeaderFieldsTooLarge", "{doc}");
    }
    // So are the upstream's response heads: one over the limit is not passed on, nor a short one
    // with more than the 100 fields hyper reads, whose cause says it may be the count.
    for (fits, over) in [("/big-head/40", "/big-head/70"), ("/fields/90", "/fields/150")] {
        let (status, _, _) = http_get(&sc.url(fits), &[]).await;
        assert_eq!(status, 200, "{fits}");
        daemon.take(1).await;
        let (status, _, body) = http_get(&sc.url(over), &[]).await;
        assert_eq!(status, 502, "{over}: {body}");
        let doc = &daemon.take(1).await[0];
        assert_eq!(doc["fault"], true, "{doc}");
        assert_eq!(doc["cause"]["exceptions"][0]["type"], "ProtocolError", "{doc}");
        let message = doc["cause"]["exceptions"][0]["message"].as_str().unwrap_or_default();
        assert!(over.starts_with("/big-head") || message.contains("more than 100 header fields"), "{doc}");
    }
}

#[tokio::test]
async fn keep_alive_connections_are_reused_upstream() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    for _ in 0..20 {
        let (status, _, _) = http_get(&sc.url("/"), &[]).await;
        assert_eq!(status, 200);
    }
    assert_eq!(daemon.take(20).await.len(), 20);
    let m = sc.metrics().await;
    assert!(m.contains(r#"xray_sidecar_requests_total{direction="inbound",status_class="2xx"} 20"#), "{m}");
    assert!(m.contains("xray_sidecar_segments_emitted_total 20"), "{m}");
    assert!(m.contains(r#"xray_sidecar_request_duration_seconds_count{direction="inbound"} 20"#), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_client_that_asks_for_keep_alive_keeps_its_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    // One answer with a Content-Length: its head (lower case) once its body is in, or what came
    // before the connection closed.
    let answer = async |s: &mut tokio::net::TcpStream| {
        let (mut out, mut buf) = (Vec::new(), [0u8; 4096]);
        loop {
            let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head.lines().find_map(|l| l.strip_prefix("content-length:")?.trim().parse::<usize>().ok());
                if length.is_some_and(|n| body.len() >= n) {
                    return head.to_owned();
                }
            }
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
                _ => return format!("closed after {text:?}"),
            }
        }
    };
    // ApacheBench's `-k` and older health checkers speak HTTP/1.0 and ask to keep the connection:
    // told it is kept, they send the next request on it.
    let mut s = tokio::net::TcpStream::connect(sc.listen).await.unwrap();
    for _ in 0..3 {
        s.write_all(b"GET /status/200 HTTP/1.0\r\nHost: app\r\nConnection: keep-alive\r\n\r\n").await.unwrap();
        let head = answer(&mut s).await;
        assert!(head.starts_with("http/1.0 200") && head.contains("\r\nconnection: keep-alive"), "{head}");
    }
    // A body without a length can only end with the connection, and the answer says nothing else.
    s.write_all(b"GET /stream/10 HTTP/1.0\r\nHost: app\r\nConnection: keep-alive\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await.unwrap().unwrap();
    let out = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(out.starts_with("http/1.0 200") && out.ends_with("\r\n\r\nxxxxxxxxxx"), "{out}");
    assert!(!out.contains("keep-alive"), "{out}");
    // Not asked, the connection closes after the answer, as HTTP/1.0 has it.
    let mut s = tokio::net::TcpStream::connect(sc.listen).await.unwrap();
    s.write_all(b"GET /status/200 HTTP/1.0\r\nHost: app\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.0 200"));
    assert_eq!(daemon.take(5).await.len(), 5);
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_flushes_segments() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    let url = sc.url("/slow/500");
    let inflight = tokio::spawn(async move { http_get(&url, &[]).await.0 });
    tokio::time::sleep(Duration::from_millis(150)).await;
    sc.terminate();
    assert_eq!(inflight.await.unwrap(), 200);
    assert_eq!(daemon.take(1).await[0]["http"]["response"]["status"], 200);
    let status = sc.exited().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn our_datagram_header_is_byte_for_byte_the_daemons() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    http_get(&sc.url("/"), &[]).await;
    let mut buf = vec![0u8; 70_000];
    let n = tokio::time::timeout(Duration::from_secs(5), daemon.socket.recv(&mut buf)).await.unwrap().unwrap();
    assert!(buf[..n].starts_with(b"{\"format\": \"json\", \"version\": 1}\n{"));
}

#[tokio::test]
async fn in_a_pod_segments_carry_the_eks_origin_and_namespace() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let extra = ["--cluster-name", "demo", "--pod-name", "front-end-7d4b9-x2x", "--pod-namespace", "shop"];
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &extra);
    http_get(&sc.url("/"), &[]).await;
    let doc = &daemon.take(1).await[0];
    assert_eq!(doc["origin"], "AWS::EKS::Container");
    assert_eq!(doc["aws"]["eks"]["cluster_name"], "demo");
    assert_eq!(doc["aws"]["eks"]["pod"], "front-end-7d4b9-x2x");
    assert_eq!(doc["annotations"]["k8s_namespace"], "shop");
    assert_eq!(doc["annotations"]["direction"], "inbound");
}

#[tokio::test]
async fn a_client_that_leaves_before_the_response_is_recorded_and_counted() {
    use tokio::io::AsyncWriteExt;
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    {
        let mut s = tokio::net::TcpStream::connect(sc.listen).await.unwrap();
        s.write_all(b"GET /slow/1500 HTTP/1.1\r\nHost: app\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let doc = &daemon.take(1).await[0];
    assert_eq!(doc["annotations"]["client_aborted"], true, "{doc}");
    assert_eq!(doc["cause"]["exceptions"][0]["type"], "ClientAborted");
    assert!(doc["http"].get("response").is_none(), "no response was sent: {doc}");
    let (start, end) = (doc["start_time"].as_f64().unwrap(), doc["end_time"].as_f64().unwrap());
    assert!(end - start < 1.0, "the segment ends when the client left, not when the upstream answered");
    let m = sc.metrics().await;
    assert!(m.contains(r#"xray_sidecar_requests_total{direction="inbound",status_class="none"} 1"#), "{m}");
}

#[tokio::test]
async fn an_ipv4_loopback_or_wildcard_listener_has_an_ipv6_twin_on_the_same_port() {
    use std::net::{Ipv6Addr, SocketAddr};
    if std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_err() {
        eprintln!("no IPv6 on this host: nothing to check");
        return;
    }
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &[]);
    // In an IPv6 cluster every connection the init container redirects, and the kubelet's probes,
    // come over IPv6.
    let v6 = |a: SocketAddr| format!("http://[::1]:{}", a.port());
    let (status, _, body) = http_get(&format!("{}/", v6(sc.listen)), &[]).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let doc = &daemon.take(1).await[0];
    assert_eq!(doc["http"]["request"]["client_ip"], "::1", "{doc}");
    let (status, _, _) = http_get(&format!("{}/ready", v6(sc.admin)), &[]).await;
    assert_eq!(status, 200);
}
