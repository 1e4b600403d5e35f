//! OTLP/HTTP export, received by a loopback collector that decodes every request with the official
//! protobuf definitions (PyPI `opentelemetry-proto`): attributes, ids and kinds match the X-Ray
//! segments sent beside them; spans are batched; nothing is lost at load; 503s are retried; a dead
//! or silent collector costs requests nothing; SIGTERM flushes.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::python::PythonApp;
use support::upstream::Upstream;
use support::{Daemon, Sidecar, http_get, sample_all_rules};

/// Short schedule delay so that batches leave quickly.
const FAST: &[(&str, &str)] = &[("OTEL_BSP_SCHEDULE_DELAY", "200")];

fn sidecar(upstream: &str, daemon: std::net::SocketAddr, extra: &[&str], env: &[(&str, &str)]) -> Sidecar {
    let rules = sample_all_rules();
    let mut args = vec!["--sampling-rules", rules.to_str().unwrap()];
    args.extend_from_slice(extra);
    Sidecar::with_env("front-end", upstream, daemon, &args, env)
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or_else(|| panic!("{name} in {text}"))
}

#[tokio::test]
async fn spans_carry_the_http_conventions_and_match_the_segments() {
    let daemon = Daemon::start().await;
    let upstream = Upstream::start().await;
    let receiver = PythonApp::otlp_receiver(0);
    let endpoint = receiver.url("");
    let sc = sidecar(
        &upstream.url(),
        daemon.addr,
        &[
            "--otlp-endpoint",
            &endpoint,
            "--outbound-listen",
            support::ANY_PORT,
            "--pod-name",
            "checkout-7d9",
            "--pod-namespace",
            "shop",
            "--cluster-name",
            "prod",
        ],
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s%3Dcret"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
        ],
    );
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    // A tracestate split over two fields is one list (RFC 9110 §5.3): the span's `traceState`.
    let headers = [
        ("traceparent", tp),
        ("tracestate", "congo=t61rcWkgMzE"),
        ("tracestate", "rojo=00f067aa0ba902b7"),
        ("user-agent", "otel-test/1"),
    ];
    let (status, _, _) = http_get(&sc.url("/status/503"), &headers).await;
    assert_eq!(status, 503);
    let inbound_doc = daemon.take(1).await.remove(0);
    // An outbound call through the explicit proxy, continuing the same trace.
    let parent =
        format!("Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent={};Sampled=1", inbound_doc["id"].as_str().unwrap());
    let req = http::Request::get(format!("http://{}/orders", upstream.addr))
        .header("host", upstream.addr.to_string())
        .header("x-amzn-trace-id", &parent)
        .body(http_body_util::Empty::new())
        .unwrap();
    let res = proxy_get(sc.outbound.unwrap(), req).await;
    assert_eq!(res, 200);
    let outbound_doc = daemon.take(1).await.remove(0);

    let (got, spans) = receiver.received_spans(2).await;
    assert_eq!(got["content_types"][0], "application/x-protobuf");
    let batch = &got["batches"][0];
    assert_eq!(batch["headers"]["x-api-key"], "s=cret");
    assert_eq!(batch["scope"], "xray-sidecar");
    let r = &batch["resource"];
    assert_eq!(r["service.name"], "front-end");
    assert_eq!(
        (&r["k8s.pod.name"], &r["k8s.namespace.name"], &r["k8s.cluster.name"]),
        (&"checkout-7d9".into(), &"shop".into(), &"prod".into())
    );
    assert_eq!((&r["cloud.provider"], &r["deployment.environment"]), (&"aws".into(), &"test".into()));
    assert_eq!((&r["telemetry.sdk.name"], &r["telemetry.sdk.language"]), (&"xray-sidecar".into(), &"rust".into()));
    assert!(r["telemetry.sdk.version"].is_string());

    let server = spans.iter().find(|s| s["kind"] == "SPAN_KIND_SERVER").expect("server span");
    assert_eq!(server["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(server["span_id"], inbound_doc["id"]);
    assert_eq!(server["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(server["trace_state"], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
    // Sampled, a remote parent, and no random-trace-id bit: the caller's `-01` did not claim it.
    assert_eq!(server["flags"], 0x301);
    let a = &server["attributes"];
    assert_eq!(
        (&a["http.request.method"], &a["url.path"], &a["url.scheme"]),
        (&"GET".into(), &"/status/503".into(), &"http".into())
    );
    assert_eq!((&a["client.address"], &a["user_agent.original"]), (&"127.0.0.1".into(), &"otel-test/1".into()));
    assert_eq!(a["http.response.status_code"], 503);
    assert_eq!(a["server.address"], "127.0.0.1");
    assert_eq!(server["status"], "STATUS_CODE_ERROR");
    let secs = |ns: &Value| ns.as_u64().unwrap() as f64 / 1e9;
    assert!((secs(&server["start"]) - inbound_doc["start_time"].as_f64().unwrap()).abs() < 1e-5);
    assert!(server["end"].as_u64() >= server["start"].as_u64());

    let call = spans.iter().find(|s| s["kind"] == "SPAN_KIND_CLIENT").expect("client span");
    assert_eq!(call["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(call["span_id"], outbound_doc["id"]);
    assert_eq!(call["parent_span_id"], inbound_doc["id"]);
    // The call came with X-Amzn-Trace-Id alone: no tracestate to carry on.
    assert_eq!(call["trace_state"], "");
    assert_eq!(call["attributes"]["url.full"], format!("http://{}/orders", upstream.addr));
    assert_eq!(call["attributes"]["http.response.status_code"], 200);
    assert_eq!(call["status"], "STATUS_CODE_UNSET");
}

/// A GET through the outbound listener as an explicit proxy (absolute-form request target).
async fn proxy_get(proxy: std::net::SocketAddr, req: http::Request<http_body_util::Empty<bytes::Bytes>>) -> u16 {
    let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    send.send_request(req).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn otlp_only_batches_and_loses_nothing_at_load() {
    let daemon = Daemon::start().await;
    let upstream = Upstream::start().await;
    let receiver = PythonApp::otlp_receiver(0);
    let sc = sidecar(&upstream.url(), daemon.addr, &["--exporter", "otlp", "--otlp-endpoint", &receiver.url("")], FAST);
    const N: usize = 2000;
    let url = sc.url("/load");
    let started = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                for _ in 0..N / 16 {
                    assert_eq!(http_get(&url, &[]).await.0, 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let rate = N as f64 / started.elapsed().as_secs_f64();
    let (got, spans) = receiver.received_spans(N).await;
    let requests = got["requests"].as_u64().unwrap();
    eprintln!("{N} requests at {rate:.0}/s -> {} spans in {requests} OTLP requests", spans.len());
    assert_eq!(spans.len(), N, "every sampled request is one span");
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s["span_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), N, "no span twice");
    assert!(requests * 10 <= N as u64, "batched: {requests} requests for {N} spans");
    daemon.nothing(Duration::from_millis(200)).await;
    let m = sc.metrics().await;
    assert_eq!(metric(&m, "xray_sidecar_otlp_spans_exported_total"), N as u64);
    assert_eq!(metric(&m, "xray_sidecar_otlp_spans_dropped_total"), 0);
}

#[tokio::test]
async fn refusals_with_503_are_retried() {
    let daemon = Daemon::start().await;
    let upstream = Upstream::start().await;
    let receiver = PythonApp::otlp_receiver(2);
    let sc = sidecar(&upstream.url(), daemon.addr, &["--exporter", "otlp", "--otlp-endpoint", &receiver.url("")], FAST);
    for _ in 0..5 {
        assert_eq!(http_get(&sc.url("/"), &[]).await.0, 200);
    }
    let (got, spans) = receiver.received_spans(5).await;
    assert_eq!(spans.len(), 5);
    assert_eq!(got["refused"], 2);
    let m = sc.metrics().await;
    assert!(metric(&m, "xray_sidecar_otlp_export_retries_total") >= 2, "{m}");
    assert_eq!(metric(&m, "xray_sidecar_otlp_spans_dropped_total"), 0);
}

#[tokio::test]
async fn a_dead_or_silent_collector_costs_requests_nothing() {
    let daemon = Daemon::start().await;
    let upstream = Upstream::start().await;
    // One collector refuses connections; the other accepts them and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let dead = support::ClosedPort::new();
    let dead_url = format!("http://{}", dead.addr);
    for endpoint in [dead_url, silent_url] {
        let env = [
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "1000"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
        ];
        let sc = sidecar(&upstream.url(), daemon.addr, &["--otlp-endpoint", &endpoint], &env);
        let mut slowest = Duration::ZERO;
        for _ in 0..300 {
            let t = Instant::now();
            assert_eq!(http_get(&sc.url("/"), &[]).await.0, 200);
            slowest = slowest.max(t.elapsed());
        }
        // A request held up by the export would wait out its 1 s timeout; below that is scheduling
        // on a busy 2-core machine.
        assert!(slowest < Duration::from_millis(900), "{endpoint}: slowest request {slowest:?}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let m = sc.metrics().await;
        let dropped = metric(&m, "xray_sidecar_otlp_spans_dropped_total");
        eprintln!("{endpoint}: slowest of 300 requests {slowest:?}, {dropped} spans dropped and counted");
        assert!(dropped >= 200, "{endpoint}: {m}");
        assert_eq!(metric(&m, "xray_sidecar_otlp_spans_exported_total"), 0);
        // X-Ray segments still flow beside the failing exporter.
        assert_eq!(metric(&m, "xray_sidecar_segments_emitted_total"), 300);
    }
}

#[tokio::test]
async fn sigterm_flushes_what_is_queued() {
    let daemon = Daemon::start().await;
    let upstream = Upstream::start().await;
    let receiver = PythonApp::otlp_receiver(0);
    let mut sc = sidecar(
        &upstream.url(),
        daemon.addr,
        &["--exporter", "otlp", "--otlp-endpoint", &receiver.url("")],
        &[("OTEL_BSP_SCHEDULE_DELAY", "60000")],
    );
    for _ in 0..7 {
        assert_eq!(http_get(&sc.url("/"), &[]).await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().await["requests"], 0, "held for the schedule delay");
    sc.terminate();
    let status = tokio::task::spawn_blocking(move || sc.child.wait().map(|s| s.success())).await.unwrap();
    assert_eq!(status.ok(), Some(true));
    let (got, spans) = receiver.received_spans(7).await;
    assert_eq!((spans.len(), got["requests"].as_u64()), (7, Some(1)));
}

#[tokio::test]
async fn gzip_compression_is_honoured_and_the_collector_decodes_every_span() {
    let daemon = Daemon::start().await;
    let upstream = Upstream::start().await;
    let receiver = PythonApp::otlp_receiver(0);
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "200"), ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")];
    let sc = sidecar(&upstream.url(), daemon.addr, &["--exporter", "otlp", "--otlp-endpoint", &receiver.url("")], &env);
    for i in 0..20 {
        assert_eq!(http_get(&sc.url(&format!("/orders/{i}")), &[]).await.0, 200);
    }
    let (got, spans) = receiver.received_spans(20).await;
    assert_eq!(spans.len(), 20);
    let encodings = got["content_encodings"].as_array().unwrap();
    assert!(!encodings.is_empty() && encodings.iter().all(|e| e == "gzip"), "{got:#}");
    let paths: std::collections::HashSet<&str> =
        spans.iter().map(|s| s["attributes"]["url.path"].as_str().unwrap()).collect();
    assert_eq!(paths.len(), 20, "every span decoded intact: {paths:?}");
    let (bytes, decoded) = (got["bytes"].as_u64().unwrap(), got["decoded_bytes"].as_u64().unwrap());
    eprintln!("20 spans: {decoded} bytes of protobuf sent as {bytes} gzip bytes over {} requests", encodings.len());
    assert!(bytes * 2 < decoded, "{bytes} bytes on the wire for {decoded} of protobuf");
}
