//! W3C trace context with the real OpenTelemetry Python SDK, behind the proxy and in front of it:
//! its spans and our segments must form one trace with the right parents, with W3C `traceparent`
//! (the SDK's default) and with `opentelemetry-propagator-aws-xray`.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use std::time::Duration;
use support::python::{PythonApp, otel_call};
use support::{Daemon, Sidecar, http_get, pair, trace_pairs};

/// An X-Ray root in its W3C form.
fn w3c(root: &Value) -> String {
    root.as_str().unwrap().trim_start_matches("1-").replace('-', "")
}

/// The spans of `app` once `n` have finished.
async fn spans(app: &PythonApp, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let spans = app.spans().await;
        if spans.len() >= n {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the OpenTelemetry app did not finish {n} spans");
}

#[tokio::test]
async fn an_opentelemetry_app_behind_us_continues_our_segment() {
    for propagator in ["w3c", "xray"] {
        let daemon = Daemon::start().await;
        let app = PythonApp::otel(propagator);
        let sc = Sidecar::sample_all(&app.url(""), daemon.addr, &[]);
        let (status, headers, body) = http_get(&sc.url("/hello"), &[]).await;
        assert_eq!(status, 200);
        let ours = daemon.take(1).await.remove(0);
        let span = spans(&app, 1).await.remove(0);
        assert_eq!(span["kind"], "SERVER");
        assert_eq!(span["trace_id"], w3c(&ours["trace_id"]), "{propagator}: {span} vs {ours}");
        assert_eq!(span["parent_id"], ours["id"], "{propagator}");
        assert_eq!((span["parent_remote"].as_bool(), span["sampled"].as_bool()), (Some(true), Some(true)));
        // Both headers reached the application, saying the same thing.
        let seen: Value = serde_json::from_str(&body).unwrap();
        // A trace started here: sampled, and random in its right-most bytes (W3C Level 2's flag).
        let tp = format!("00-{}-{}-03", w3c(&ours["trace_id"]), ours["id"].as_str().unwrap());
        assert_eq!(seen["traceparent"], tp.as_str());
        let xray = trace_pairs(seen["x-amzn-trace-id"].as_str().unwrap());
        assert_eq!(pair(&xray, "Root"), ours["trace_id"].as_str());
        assert_eq!(pair(&xray, "Parent"), ours["id"].as_str());
        assert!(headers["x-amzn-trace-id"].to_str().unwrap().contains(ours["trace_id"].as_str().unwrap()));
    }
}

#[tokio::test]
async fn our_segment_continues_an_opentelemetry_clients_trace() {
    for propagator in ["w3c", "xray"] {
        let daemon = Daemon::start().await;
        let app = PythonApp::otel("w3c");
        let sc = Sidecar::sample_all(&app.url(""), daemon.addr, &[]);
        let call = tokio::task::spawn_blocking({
            let url = sc.url("/from-otel");
            move || otel_call(&url, propagator)
        })
        .await
        .unwrap();
        assert_eq!(call["answer"]["status"], 200);
        let client = &call["span"];
        let ours = daemon.take(1).await.remove(0);
        assert_eq!(w3c(&ours["trace_id"]), client["trace_id"].as_str().unwrap(), "{propagator}: {call}");
        assert_eq!(ours["parent_id"], client["span_id"], "{propagator}");
        // The app behind us is in the same trace, under our segment.
        let server = spans(&app, 1).await.remove(0);
        assert_eq!(server["trace_id"], client["trace_id"]);
        assert_eq!(server["parent_id"], ours["id"]);
    }
}

#[tokio::test]
async fn an_unsampled_traceparent_is_obeyed_and_passed_on() {
    let daemon = Daemon::start().await;
    let app = PythonApp::otel("w3c");
    let sc = Sidecar::sample_all(&app.url(""), daemon.addr, &[]);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let (status, _, body) =
        http_get(&sc.url("/quiet"), &[("traceparent", tp), ("tracestate", "congo=t61rcWkgMzE")]).await;
    assert_eq!(status, 200);
    daemon.nothing(Duration::from_millis(300)).await;
    let seen: Value = serde_json::from_str(&body).unwrap();
    let forwarded = seen["traceparent"].as_str().unwrap();
    assert!(forwarded.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && forwarded.ends_with("-00"), "{forwarded}");
    assert_ne!(forwarded, tp, "the application's parent is our segment, not our caller's span");
    assert_eq!(seen["tracestate"], "congo=t61rcWkgMzE");
    assert!(seen["x-amzn-trace-id"].as_str().unwrap().contains("Root=1-4bf92f35-77b34da6a3ce929d0e0e4736"));
    // The SDK's parent-based sampler follows the flag: nothing recorded there either.
    assert_eq!(app.spans().await, Vec::<Value>::new());
}

#[tokio::test]
async fn malformed_traceparents_start_a_new_trace_and_x_ray_wins_a_disagreement() {
    let daemon = Daemon::start().await;
    let app = PythonApp::otel("w3c");
    let sc = Sidecar::sample_all(&app.url(""), daemon.addr, &[]);
    for bad in [
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    ] {
        let (status, _, body) =
            http_get(&sc.url("/"), &[("traceparent", bad), ("tracestate", "congo=t61rcWkgMzE")]).await;
        assert_eq!(status, 200, "{bad}");
        let ours = daemon.take(1).await.remove(0);
        assert_ne!(w3c(&ours["trace_id"]), "4bf92f3577b34da6a3ce929d0e0e4736", "{bad}");
        assert!(ours.get("parent_id").is_none(), "{bad}");
        // The state of a context that does not go on is not handed to the new trace.
        let seen: Value = serde_json::from_str(&body).unwrap();
        assert!(seen.get("tracestate").is_none(), "{bad}: {seen}");
    }
    let xray = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let state = ("tracestate", "congo=t61rcWkgMzE");
    let (_, _, body) = http_get(&sc.url("/"), &[("x-amzn-trace-id", xray), ("traceparent", tp), state]).await;
    let ours = daemon.take(1).await.remove(0);
    assert_eq!(ours["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
    assert_eq!(ours["parent_id"], "53995c3f42cd8ad8");
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["traceparent"], format!("00-5759e988bd862e3fe1be46a994272793-{}-01", ours["id"].as_str().unwrap()));
    assert!(seen.get("tracestate").is_none(), "the overridden traceparent's state went on: {seen}");
    let metrics = sc.metrics().await;
    assert!(metrics.contains("malformed"), "{metrics}");
}

#[tokio::test]
async fn propagation_can_be_limited_to_one_format() {
    let daemon = Daemon::start().await;
    let app = PythonApp::otel("w3c");
    let sc = Sidecar::sample_all(&app.url(""), daemon.addr, &["--propagation", "xray"]);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (_, _, body) = http_get(&sc.url("/"), &[("traceparent", tp)]).await;
    let ours = daemon.take(1).await.remove(0);
    assert_ne!(w3c(&ours["trace_id"]), "4bf92f3577b34da6a3ce929d0e0e4736");
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["traceparent"], tp, "left as it came");

    let sc = Sidecar::sample_all(&app.url(""), daemon.addr, &["--propagation", "w3c"]);
    let (_, headers, body) = http_get(&sc.url("/"), &[("traceparent", tp)]).await;
    let ours = daemon.take(1).await.remove(0);
    assert_eq!(w3c(&ours["trace_id"]), "4bf92f3577b34da6a3ce929d0e0e4736");
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert!(seen.get("x-amzn-trace-id").is_none(), "{seen}");
    assert!(!headers.contains_key("x-amzn-trace-id"));
}

/// OTel client → sidecar → X-Ray SDK app → sidecar (outbound) → OTel app: one trace, each parent the
/// hop before it.
#[tokio::test]
async fn a_mixed_chain_is_one_trace() {
    let daemon = Daemon::start().await;
    let otel_app = PythonApp::otel("w3c");
    let flask = PythonApp::flask(daemon.addr, "sdk-middle");
    let sc = Sidecar::sample_all(&flask.url(""), daemon.addr, &["--outbound-listen", support::ANY_PORT]);
    let outbound = sc.outbound.unwrap();
    let url = sc.url(&format!("/call?proxy={outbound}&url={}", otel_app.url("/end")));
    let call = tokio::task::spawn_blocking(move || otel_call(&url, "w3c")).await.unwrap();
    assert_eq!(call["answer"]["status"], 200, "{call}");
    let client = &call["span"];
    let trace = client["trace_id"].as_str().unwrap();

    // Our inbound segment, the SDK's segment (with its http.client subsegment), our outbound
    // subsegment.
    let docs = daemon.take(3).await;
    let inbound = docs.iter().find(|d| d["name"] == "front-end").expect("inbound segment");
    let sdk = docs.iter().find(|d| d["name"] == "sdk-middle").expect("the SDK's segment");
    let remote =
        docs.iter().find(|d| d["type"] == "subsegment").unwrap_or_else(|| panic!("outbound subsegment: {docs:#?}"));
    for d in [inbound, sdk, remote] {
        assert_eq!(w3c(&d["trace_id"]), trace, "{d}");
    }
    assert_eq!(inbound["parent_id"], client["span_id"]);
    assert_eq!(sdk["parent_id"], inbound["id"]);
    let sdk_call = sdk["subsegments"]
        .as_array()
        .and_then(|s| s.first())
        .unwrap_or_else(|| panic!("the SDK's call subsegment: {docs:#?}"));
    assert_eq!(remote["parent_id"], sdk_call["id"]);
    let end = spans(&otel_app, 1).await.remove(0);
    assert_eq!(end["trace_id"], trace);
    assert_eq!(end["parent_id"], remote["id"]);
}
