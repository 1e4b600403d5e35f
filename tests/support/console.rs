//! Test support for the console: start one in-process, send it datagrams, query its HTTP API.
#![allow(dead_code)] // each test binary uses a different part

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
pub use xray_sidecar::console::{Console, ConsoleConfig};

/// A console on free loopback ports, stopped when `stop` is sent or dropped.
pub struct Running {
    pub console: Console,
    pub stop: oneshot::Sender<()>,
}

/// The config of a console on 127.0.0.1 port 0 for both sides.
pub fn loopback_config() -> ConsoleConfig {
    ConsoleConfig {
        udp: "127.0.0.1:0".parse().expect("literal address"),
        http: "127.0.0.1:0".parse().expect("literal address"),
        ..ConsoleConfig::default()
    }
}

/// Starts a console with `config`.
pub async fn start(config: ConsoleConfig) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let console = xray_sidecar::console::serve(config, async {
        let _ = stopped.await;
    })
    .await
    .expect("console starts");
    Running { console, stop }
}

/// The documents of one of `BatchGetTraces`' `Traces`, parsed.
pub fn documents(trace: &Value) -> Vec<Value> {
    let segments = trace["Segments"].as_array().expect("Segments");
    segments
        .iter()
        .map(|s| serde_json::from_str(s["Document"].as_str().expect("Document text")).expect("json"))
        .collect()
}

/// The daemon's datagram for one document.
pub fn datagram(document: &str) -> Vec<u8> {
    format!("{{\"format\": \"json\", \"version\": 1}}\n{document}").into_bytes()
}

/// Sends each document as one datagram to `addr`.
pub async fn send_documents<S: AsRef<str>>(addr: SocketAddr, documents: &[S]) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp socket");
    for (i, doc) in documents.iter().enumerate() {
        socket.send_to(&datagram(doc.as_ref()), addr).await.expect("udp send");
        if i % 64 == 63 {
            // Let the receiver keep up, as real emitters spread their datagrams.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Sends raw datagrams to `addr`.
pub async fn send_raw(addr: SocketAddr, datagrams: &[&[u8]]) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp socket");
    for d in datagrams {
        socket.send_to(d, addr).await.expect("udp send");
    }
}

/// GETs `path` from the console's HTTP address with a real HTTP client: status and JSON body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, _, body) = get_raw(addr, path).await;
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, json)
}

/// GETs `path`: status, content type and body bytes.
pub async fn get_raw(addr: SocketAddr, path: &str) -> (u16, String, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://{addr}{path}").parse().expect("valid uri");
    let resp = tokio::time::timeout(Duration::from_secs(20), client.get(uri))
        .await
        .expect("answer within 20 s")
        .expect("http request");
    let status = resp.status().as_u16();
    let content_type =
        resp.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, content_type, body)
}

/// POSTs a JSON body to `path` (an X-Ray API operation): status and JSON answer.
pub async fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::post(format!("http://{addr}{path}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid request");
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("answer within 20 s")
        .expect("http request");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Polls `/api/stats` until `done` holds (datagrams are handled asynchronously), at most 10 s.
pub async fn wait_for_stats(addr: SocketAddr, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, stats) = get(addr, "/api/stats").await;
        if done(&stats) {
            return stats;
        }
        assert!(tokio::time::Instant::now() < deadline, "stats never got there: {stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `/api/stats` until the received count stops moving for 300 ms (UDP may drop some of a
/// flood, so the count to wait for is not known), at most 20 s.
pub async fn wait_until_quiet(addr: SocketAddr) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = get(addr, "/api/stats").await.1;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, stats) = get(addr, "/api/stats").await;
        if stats["Received"] == last["Received"] || tokio::time::Instant::now() > deadline {
            return stats;
        }
        last = stats;
    }
}

/// The repository root.
/// A trace's timeline as (name, depth) rows, from `/api/traces/{id}`.
pub fn timeline_rows(trace: &Value) -> Vec<(String, u64)> {
    trace["Timeline"]["Rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["Name"].as_str().unwrap_or_default().to_owned(), r["Depth"].as_u64().unwrap_or(99)))
        .collect()
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The documents of a fixture in `tests/fixtures/console/`, one per line.
pub fn fixture_documents(name: &str) -> Vec<String> {
    let path = repo_root().join("tests/fixtures/console").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect()
}

/// The documents of a peer capture in `../shared/xray/peers/`.
pub fn peer_documents(name: &str) -> Vec<String> {
    let path = repo_root().join("../shared/xray/peers").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} (shared/ must be beside the repository): {e}", path.display()));
    text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect()
}

/// Now, epoch seconds.
pub fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn hex(n: usize) -> String {
    (0..n).map(|_| format!("{:x}", rand::random::<u8>() & 0xf)).collect()
}

/// The documents of one client → front-end → back-end request starting at `start`, answered with
/// `status` (the front-end passes the back-end's 5xx on; a 404 is the front-end's own).
pub fn three_tier(start: f64, status: u16, client_ip: &str) -> Vec<String> {
    let trace_id = format!("1-{:08x}-{}", start as u64, hex(24));
    let (front, call, back) = (hex(16), hex(16), hex(16));
    let back_status = if status >= 500 { status } else { 200 };
    let path = if status == 404 { "/missing" } else { "/" };
    // The back-end's work varies by up to 20 ms; every span stays inside its caller's.
    let j = rand::random::<f64>() * 0.02;
    let back_end = json!({
        "name": "back-end", "id": back, "trace_id": trace_id, "parent_id": call,
        "start_time": start + 0.004, "end_time": start + 0.017 + j, "origin": "AWS::EKS::Container",
        "fault": back_status >= 500,
        "http": {"request": {"method": "GET", "url": "http://back-end.default/api", "client_ip": "10.0.3.21"},
                 "response": {"status": back_status}},
        "subsegments": [{"name": "SELECT orders", "id": hex(16), "start_time": start + 0.006,
                         "end_time": start + 0.010 + j / 2.0, "sql": {"database_type": "PostgreSQL"}},
                        // A call to a service that sends no segments: an inferred node on the map.
                        {"name": "payments.example.com", "id": hex(16), "namespace": "remote",
                         "start_time": start + 0.011 + j / 2.0, "end_time": start + 0.015 + j,
                         "http": {"request": {"method": "POST", "url": "https://payments.example.com/charge"},
                                  "response": {"status": 200}}}],
    });
    let front_end = json!({
        "name": "front-end", "id": front, "trace_id": trace_id,
        "start_time": start, "end_time": start + 0.021 + j, "origin": "AWS::EKS::Container",
        "fault": status >= 500, "error": (400..500).contains(&status),
        "annotations": {"direction": "inbound"},
        "http": {"request": {"method": "GET", "url": format!("http://front-end.default{path}"),
                             "client_ip": client_ip, "user_agent": "curl/8.5.0"},
                 "response": {"status": status}},
        "subsegments": [{"name": "back-end", "id": call, "namespace": "remote", "traced": true,
                         "start_time": start + 0.002, "end_time": start + 0.019 + j, "fault": back_status >= 500,
                         "http": {"request": {"method": "GET", "url": "http://back-end.default/api"},
                                  "response": {"status": back_status}}}],
    });
    // The back-end answers first, so its segment usually arrives before its caller's.
    vec![back_end.to_string(), front_end.to_string()]
}
