//! OTLP/HTTP into the console: spans from the real OpenTelemetry Python SDK (with its OTLP/HTTP
//! protobuf exporter, uncompressed, gzip or deflate) and the real OpenTelemetry JS SDK (whose
//! default OTLP/HTTP exporter sends OTLP JSON) show as traces and as nodes and edges in the service
//! map; bad requests get a clear answer.

#[path = "support/console.rs"]
mod console_support;

use bytes::Bytes;
use console_support::*;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;

async fn post(addr: SocketAddr, content_type: &str, body: &'static [u8]) -> (u16, Bytes) {
    post_encoded(addr, content_type, None, Bytes::from_static(body)).await
}

async fn post_encoded(addr: SocketAddr, content_type: &str, encoding: Option<&str>, body: Bytes) -> (u16, Bytes) {
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = http::Request::post(format!("http://{addr}/v1/traces")).header("content-type", content_type);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let req = req.body(Full::new(body)).expect("request");
    let res = client.request(req).await.expect("the console answers");
    let status = res.status().as_u16();
    (status, res.into_body().collect().await.expect("body").to_bytes())
}

#[tokio::test]
async fn opentelemetry_only_services_appear_in_the_map_and_the_traces() {
    otel_services_appear("none").await;
}

/// What the ADOT collector and the CloudWatch agent send by default.
#[tokio::test]
async fn gzip_bodies_from_the_opentelemetry_exporter_are_read() {
    otel_services_appear("gzip").await;
}

#[tokio::test]
async fn deflate_bodies_from_the_opentelemetry_exporter_are_read() {
    otel_services_appear("deflate").await;
}

async fn otel_services_appear(compression: &'static str) {
    let running = start(loopback_config()).await;
    let http = running.console.http_addr();
    let script = repo_root().join("tests/fixtures/console/otel_client.py");
    let trace_id = run_exporter("python3", script, http, &[compression]).await;
    expect_two_services(http, &trace_id, ("otel-front", "otel-back"), "10.0.7.7").await;
}

/// OpenTelemetry JS's `@opentelemetry/exporter-trace-otlp-http` sends OTLP JSON.
#[tokio::test]
async fn json_bodies_from_the_opentelemetry_js_exporter_are_read() {
    let running = start(loopback_config()).await;
    let http = running.console.http_addr();
    // scripts/setup installs the pinned SDK (`npm ci` in that directory).
    let script = repo_root().join("tests/fixtures/console/node-otel/otel_json_client.js");
    let trace_id = run_exporter("node", script, http, &[]).await;
    expect_two_services(http, &trace_id, ("js-front", "js-back"), "10.0.7.8").await;
}

/// Runs an exporter script against the console and returns the trace id it printed.
async fn run_exporter(program: &'static str, script: std::path::PathBuf, http: SocketAddr, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(program).arg(&script).arg(http.to_string()).args(&args).output()
    })
    .await
    .expect("the script's task")
    .unwrap_or_else(|e| panic!("{program} runs (scripts/setup installs what the scripts use): {e}"));
    assert!(out.status.success(), "the OpenTelemetry script failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let trace_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(trace_id.len(), 35, "a trace id: {trace_id:?}");
    trace_id
}

/// The script's trace: a front service that answered 500 to `client_ip`, calling a back service,
/// in the trace list and on the map.
async fn expect_two_services(http: SocketAddr, trace_id: &str, (front, back): (&str, &str), client_ip: &str) {
    wait_for_stats(http, |s| s["Accepted"] == 3).await;
    let (status, body) = get(http, &format!("/api/traces/{trace_id}")).await;
    assert_eq!(status, 200, "{body}");
    let trace = &body["Traces"][0];
    // Three spans: two segments, the CLIENT span back inside its SERVER span's segment, where the
    // back service's parent is found.
    let docs = documents(trace);
    assert_eq!(docs.len(), 2, "{trace}");
    let (outer, inner) = if docs[0]["subsegments"].is_array() { (&docs[0], &docs[1]) } else { (&docs[1], &docs[0]) };
    assert_eq!(outer["subsegments"][0]["id"], inner["parent_id"], "{trace}");
    let summary = &trace["Summary"];
    assert_eq!(summary["Http"]["HttpStatus"], 500);
    assert_eq!(summary["Http"]["ClientIp"], client_ip);
    assert_eq!(summary["HasFault"], true);

    let (_, graph) = get(http, "/api/service-graph").await;
    let services = graph["Services"].as_array().expect("services");
    let node =
        |name: &str| services.iter().find(|s| s["Name"] == name).unwrap_or_else(|| panic!("no node {name}: {graph}"));
    let front = node(front);
    let back = node(back);
    assert_eq!(front["Edges"][0]["ReferenceId"], back["ReferenceId"], "{graph}");
    assert_eq!(node("client")["Edges"][0]["ReferenceId"], front["ReferenceId"]);
}

#[tokio::test]
async fn bad_export_requests_get_a_clear_answer() {
    let running = start(loopback_config()).await;
    let http = running.console.http_addr();
    let (status, body) = post(http, "application/x-protobuf", b"\xff\xff\xff not protobuf").await;
    assert_eq!(status, 400, "{body:?}");
    assert!(String::from_utf8_lossy(&body).contains("OTLP"), "{body:?}");
    let (status, body) = post(http, "application/json", b"{\"resourceSpans\": 7}").await;
    assert_eq!(status, 400, "{body:?}");
    assert!(String::from_utf8_lossy(&body).contains("JSON"), "{body:?}");
    let (status, _) = post(http, "text/plain", b"{}").await;
    assert_eq!(status, 415);
    // An empty JSON request has no spans, and is answered in JSON.
    let (status, body) = post(http, "application/json; charset=utf-8", b"{}").await;
    assert_eq!((status, &body[..]), (200, &b"{}"[..]));
    // An empty request is valid protobuf with no spans.
    let (status, _) = post(http, "application/x-protobuf", b"").await;
    assert_eq!(status, 200);
    let (_, stats) = get(http, "/api/stats").await;
    assert_eq!(stats["Accepted"], 0);
}

#[tokio::test]
async fn bad_or_oversized_compressed_bodies_are_refused_clearly() {
    use std::io::Write;
    let running = start(loopback_config()).await;
    let http = running.console.http_addr();
    let gzip = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).expect("in memory");
        Bytes::from(e.finish().expect("in memory"))
    };
    let protobuf = "application/x-protobuf";
    let (status, body) = post_encoded(http, protobuf, Some("gzip"), Bytes::from_static(b"not gzip at all")).await;
    assert_eq!(status, 400, "{body:?}");
    assert!(String::from_utf8_lossy(&body).contains("gzip"), "{body:?}");
    // 64 MiB of zeros is about 64 KiB of gzip: refused without holding it all in memory.
    let bomb = gzip(&vec![0u8; 64 * 1024 * 1024]);
    assert!(bomb.len() < 1024 * 1024);
    let (status, body) = post_encoded(http, protobuf, Some("gzip"), bomb).await;
    assert_eq!(status, 413, "{body:?}");
    let (status, body) = post_encoded(http, protobuf, Some("br"), Bytes::from_static(b"")).await;
    assert_eq!(status, 415, "{body:?}");
    // A valid gzip body of an empty request: accepted, nothing stored.
    let (status, _) = post_encoded(http, protobuf, Some("gzip"), gzip(b"")).await;
    assert_eq!(status, 200);
    let (_, stats) = get(http, "/api/stats").await;
    assert_eq!(stats["Accepted"], 0);
}
