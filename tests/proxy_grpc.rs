//! gRPC through the sidecar with the real `grpcio` client and server, inbound and outbound (named
//! as the call's authority, or through `grpc_proxy` as gRPC clients do by default): each call's
//! outcome comes from `grpc-status` (trailers or a trailers-only response), with the flags, cause,
//! annotations and message counts X-Ray needs to show failing gRPC services as failing, and the
//! OTLP span's RPC attributes and status.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use support::python::PythonApp;
use support::{Daemon, Sidecar, sample_all_rules};

/// The `grpcio` server of `grpc_app.py`; killed on drop.
fn grpc_server() -> PythonApp {
    PythonApp::start("grpc_app.py", &["server", "{port}"])
}

/// Runs every kind of call through `target` (through `proxy` as `grpc_proxy`, when given); the
/// client's view of each, in order.
fn client(target: &str, authority: Option<&str>, proxy: Option<SocketAddr>) -> Vec<Value> {
    let mut cmd = Command::new("python3");
    cmd.arg(support::repo_root().join("tests/support/grpc_app.py")).args(["client", target]);
    cmd.args(authority);
    for var in ["grpc_proxy", "https_proxy", "http_proxy", "no_proxy", "no_grpc_proxy", "NO_PROXY"] {
        cmd.env_remove(var);
    }
    if let Some(p) = proxy {
        cmd.env("grpc_proxy", format!("http://{p}"));
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// (call, method, status, flags error/throttle/fault, messages sent, messages received).
type Expected = (&'static str, &'static str, &'static str, [bool; 3], u64, u64);

/// What each call of `grpc_app.py client` must end as, on the client and in the record.
const EXPECTED: [Expected; 10] = [
    ("ok", "GetItem", "OK", [false, false, false], 1, 1),
    ("NOT_FOUND", "GetItem", "NOT_FOUND", [true, false, false], 1, 0),
    ("RESOURCE_EXHAUSTED", "GetItem", "RESOURCE_EXHAUSTED", [true, true, false], 1, 0),
    ("INTERNAL", "GetItem", "INTERNAL", [false, false, true], 1, 0),
    ("UNAVAILABLE", "GetItem", "UNAVAILABLE", [false, false, true], 1, 0),
    ("slow", "GetItem", "DEADLINE_EXCEEDED", [false, false, true], 1, 0),
    ("server_stream", "ListItems", "OK", [false, false, false], 1, 3),
    ("client_stream", "Upload", "OK", [false, false, false], 4, 1),
    // Cancelled by the client mid-stream: its request body breaks off before any answer.
    ("slow_upload", "Upload", "DEADLINE_EXCEEDED", [false, false, true], 1, 0),
    ("bidi_stream", "Chat", "OK", [false, false, false], 2, 2),
];

/// Checks the client's outcomes and the records (`records[i]` the document holding the call's
/// annotations, `calls[i]` the one carrying its flags and cause).
fn check(seen: &[Value], tops: &[Value], pick: impl Fn(&Value) -> &Value) {
    assert_eq!(seen.len(), EXPECTED.len(), "{seen:#?}");
    for (got, (call, _, status, ..)) in seen.iter().zip(EXPECTED) {
        assert_eq!((got["call"].as_str(), got["code"].as_str()), (Some(call), Some(status)), "{got}");
    }
    let mut unmatched: Vec<&Value> = tops.iter().collect();
    for (call, method, status, [error, throttle, fault], sent, received) in EXPECTED {
        let at = unmatched
            .iter()
            .position(|d| {
                let a = &d["annotations"];
                let g = &pick(d)["metadata"]["grpc"];
                a["grpc_method"] == method
                    && a["grpc_status"] == status
                    && g["messages_sent"] == sent
                    && g["messages_received"] == received
            })
            .unwrap_or_else(|| panic!("no record of {call} ({method} {status} {sent}/{received}): {unmatched:#?}"));
        let doc = unmatched.remove(at);
        let a = &doc["annotations"];
        assert_eq!(a["grpc_service"], "shop.v1.Catalog");
        let code = a["grpc_status_code"].as_u64().unwrap();
        assert!(code <= 16 && (code == 0) == (status == "OK"), "{a}");
        let rec = pick(doc);
        let flag = |k: &str| rec.get(k).and_then(Value::as_bool).unwrap_or(false);
        assert_eq!([flag("error"), flag("throttle"), flag("fault")], [error, throttle, fault], "{call}: {rec}");
        if !call.starts_with("slow") {
            // A call that outlives its deadline may be abandoned before any response.
            assert_eq!(rec["http"]["response"]["status"], 200, "gRPC answers 200 whatever the outcome: {rec}");
        }
        let cause = &rec["cause"]["exceptions"][0];
        if status == "OK" {
            assert!(rec.get("cause").is_none(), "{rec}");
        } else {
            assert_eq!(cause["type"], status, "{rec}");
        }
        if ["NOT_FOUND", "INTERNAL"].contains(&status) {
            let message = format!("{} for item 42: 100% sure", status.to_lowercase());
            assert_eq!(cause["message"], message.as_str(), "the status message, percent-decoded: {rec}");
        }
    }
}

/// The gRPC code of a status name the tests use.
fn code(status: &str) -> u64 {
    let codes = [("OK", 0), ("DEADLINE_EXCEEDED", 4), ("NOT_FOUND", 5), ("RESOURCE_EXHAUSTED", 8)];
    let more = [("INTERNAL", 13), ("UNAVAILABLE", 14)];
    codes.iter().chain(&more).find(|(n, _)| *n == status).map(|(_, c)| *c).unwrap()
}

/// A sidecar recording every request, exporting spans to `receiver` beside the UDP segments.
fn sidecar(name: &str, upstream: &str, daemon: SocketAddr, receiver: &PythonApp, extra: &[&str]) -> Sidecar {
    let rules = sample_all_rules();
    let endpoint = receiver.url("");
    let mut args = vec!["--sampling-rules", rules.to_str().unwrap(), "--otlp-endpoint", &endpoint];
    args.extend_from_slice(extra);
    Sidecar::with_env(name, upstream, daemon, &args, &[("OTEL_BSP_SCHEDULE_DELAY", "200")])
}

/// Checks the OTLP span of each call: OpenTelemetry's RPC conventions, and its status as the gRPC
/// conventions judge it from the `kind` side (a SERVER fails only for the server's own codes).
fn check_spans(spans: &[Value], kind: &str) {
    assert_eq!(spans.len(), EXPECTED.len(), "{spans:#?}");
    for (call, method, status, ..) in EXPECTED {
        let name = format!("shop.v1.Catalog/{method}");
        let span = spans
            .iter()
            .find(|s| s["name"] == name.as_str() && s["attributes"]["rpc.grpc.status_code"] == code(status))
            .unwrap_or_else(|| panic!("no span for {call} ({name} {status}): {spans:#?}"));
        assert_eq!(span["kind"], kind, "{span}");
        let a = &span["attributes"];
        assert_eq!(
            (&a["rpc.system"], &a["rpc.service"], &a["rpc.method"]),
            (&"grpc".into(), &"shop.v1.Catalog".into(), &method.into()),
            "{span}"
        );
        let server_failed = ["UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"];
        let failed = status != "OK" && (kind == "SPAN_KIND_CLIENT" || server_failed.contains(&status));
        if failed {
            assert_eq!(
                (&span["status"], &a["error.type"]),
                (&"STATUS_CODE_ERROR".into(), &status.into()),
                "{call}: {span}"
            );
        } else {
            assert_eq!(span["status"], "STATUS_CODE_UNSET", "{call}: {span}");
            assert!(a.get("error.type").is_none(), "{call}: {span}");
        }
        if failed && ["NOT_FOUND", "INTERNAL"].contains(&status) {
            let message = format!("{} for item 42: 100% sure", status.to_lowercase());
            assert_eq!(span["status_message"], message.as_str(), "{span}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_grpc_calls_take_their_outcome_from_grpc_status() {
    let (server, daemon, receiver) = (grpc_server(), Daemon::start().await, PythonApp::otlp_receiver(0));
    let sc = sidecar("catalog", &format!("http://127.0.0.1:{}", server.port), daemon.addr, &receiver, &[]);
    let seen = client(&sc.listen.to_string(), None, None);
    let docs = daemon.take(EXPECTED.len()).await;
    for d in &docs {
        assert_eq!((&d["name"], &d["annotations"]["direction"]), (&"catalog".into(), &"inbound".into()), "{d}");
    }
    check(&seen, &docs, |d| d);
    check_spans(&receiver.received_spans(EXPECTED.len()).await.1, "SPAN_KIND_SERVER");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_grpc_calls_are_remote_subsegments_with_the_same_outcomes() {
    let (server, daemon) = (grpc_server(), Daemon::start().await);
    let sc = Sidecar::sample_all("http://127.0.0.1:9", daemon.addr, &["--outbound-listen", support::ANY_PORT]);
    // The client dials the outbound listener and names the server as the call's authority, as an
    // explicit proxy client does.
    let authority = format!("127.0.0.1:{}", server.port);
    let seen = client(&sc.outbound.unwrap().to_string(), Some(&authority), None);
    let docs = daemon.take(EXPECTED.len()).await;
    for d in &docs {
        let sub = &d["subsegments"][0];
        assert_eq!((&sub["name"], &sub["namespace"]), (&"127.0.0.1".into(), &"remote".into()), "{d}");
        assert!(sub["cause"]["exceptions"][0].get("remote").and_then(Value::as_bool).unwrap_or(true), "{sub}");
    }
    check(&seen, &docs, |d| &d["subsegments"][0]);
}

/// What gRPC clients do by default with `grpc_proxy` (or `http_proxy`) set: `CONNECT host:port`, then
/// plaintext h2 inside the tunnel. Each call is still its own record, with its outcome and the trace
/// headers written, and no per-connection tunnel record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_through_grpc_proxy_are_traced_one_by_one_inside_the_connect_tunnel() {
    let (server, daemon, receiver) = (grpc_server(), Daemon::start().await, PythonApp::otlp_receiver(0));
    let sc =
        sidecar("front-end", "http://127.0.0.1:9", daemon.addr, &receiver, &["--outbound-listen", support::ANY_PORT]);
    let proxy = sc.outbound.unwrap();
    let seen = client(&format!("localhost:{}", server.port), None, Some(proxy));
    let docs = daemon.take(EXPECTED.len()).await;
    for d in &docs {
        let sub = &d["subsegments"][0];
        assert_eq!((&sub["name"], &sub["namespace"]), (&"localhost".into(), &"remote".into()), "{d}");
        assert!(sub["metadata"].get("tunnel").is_none(), "a call, not a tunnel: {sub}");
    }
    check(&seen, &docs, |d| &d["subsegments"][0]);
    daemon.nothing(Duration::from_millis(500)).await;
    let m = sc.metrics().await;
    assert!(m.contains("xray_sidecar_tunnels_total 0"), "{m}");

    // The server got the headers naming the call's subsegment as its parent.
    let ok = &docs
        .iter()
        .find(|d| d["annotations"]["grpc_status"] == "OK" && d["annotations"]["grpc_method"] == "GetItem")
        .unwrap();
    let (root, sub_id) = (ok["trace_id"].as_str().unwrap(), ok["subsegments"][0]["id"].as_str().unwrap());
    let trace = seen[0]["trace"].as_str().unwrap();
    assert!(trace.contains(&format!("Root={root}")) && trace.contains(&format!("Parent={sub_id}")), "{trace}");
    let traceparent = seen[0]["traceparent"].as_str().unwrap();
    // Sampled, and random in its right-most bytes: the trace started here (W3C Level 2's flag).
    assert!(traceparent.contains(&format!("-{sub_id}-03")), "{traceparent}");

    check_spans(&receiver.received_spans(EXPECTED.len()).await.1, "SPAN_KIND_CLIENT");
}

/// `h2_app.py` (the PyPI `h2` library answering as a broken gRPC server would, logging what it got to
/// the file returned) behind a sidecar recording every request to the daemon returned.
async fn broken_server(name: &str, extra: &[&str]) -> (std::path::PathBuf, PythonApp, Daemon, Sidecar) {
    let log = std::env::temp_dir().join(format!("xray-sidecar-h2-{name}-{}.jsonl", std::process::id()));
    let app = PythonApp::start("h2_app.py", &["{port}", log.to_str().unwrap()]);
    let daemon = Daemon::start().await;
    let sc = Sidecar::sample_all(&format!("http://127.0.0.1:{}", app.port), daemon.addr, extra);
    (log, app, daemon, sc)
}

/// A gRPC response must end with its status: one that ends without (or with one that is no status
/// code) fails at the client (`UNKNOWN`, `INTERNAL`), and is recorded as the fault it was, not as
/// a success. The server is the PyPI `h2` library answering as such a broken server would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_response_without_a_readable_status_is_a_fault() {
    use http_body_util::BodyExt;
    let (log, _app, daemon, sc) = broken_server("grpc", &[]).await;
    let (mut send, _closed) = support::h2_connection(sc.listen).await;
    for (path, code, name) in [("no-status", 2, "UNKNOWN"), ("bad-status", 13, "INTERNAL")] {
        let req = http::Request::post(format!("http://catalog/shop.v1.Catalog/{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(http_body_util::Empty::new())
            .unwrap();
        let res = send.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap();
        let status = body.trailers().and_then(|t| t.get("grpc-status")).map(|v| v.to_str().unwrap().to_owned());
        assert_ne!(status.as_deref(), Some("0"), "{path}: the client saw no status to read");
        let doc = daemon.take(1).await.remove(0);
        assert_eq!(doc["fault"], true, "{path}: {doc}");
        assert_eq!(doc["annotations"]["grpc_status"], name, "{path}: {doc}");
        assert_eq!(doc["annotations"]["grpc_status_code"], code, "{path}: {doc}");
        assert_eq!(doc["metadata"]["grpc"]["messages_received"], 1, "{path}: {doc}");
    }
    let _ = std::fs::remove_file(log);

    // A server that is not there: the proxy's own 502 is no gRPC message received.
    let sc = Sidecar::sample_all("http://127.0.0.1:9", daemon.addr, &[]);
    let (mut send, _closed) = support::h2_connection(sc.listen).await;
    let req = http::Request::post("http://catalog/shop.v1.Catalog/GetItem")
        .header("content-type", "application/grpc")
        .body(http_body_util::Empty::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    // The proxy fails the call as a gRPC server would: a trailers-only response.
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/grpc");
    assert_eq!(res.headers()["grpc-status"], "14");
    assert_eq!(res.headers()["grpc-message"], "upstream refused the connection");
    let body = res.into_body().collect().await.unwrap();
    assert!(body.trailers().is_none() && body.to_bytes().is_empty());
    let doc = daemon.take(1).await.remove(0);
    assert_eq!(doc["metadata"]["grpc"]["messages_received"], 0, "{doc}");
    assert_eq!(doc["fault"], true, "{doc}");
    assert_eq!(doc["annotations"]["grpc_status"], "UNAVAILABLE", "{doc}");
    // The cause is the proxy's own, which says more than the status.
    let cause = doc["cause"]["exceptions"][0]["message"].as_str().unwrap();
    assert!(cause.starts_with("upstream refused the connection: "), "{doc}");
}

/// One `GetItem` call with `request` from the real `grpcio` client to `target`: its code and details.
fn one_call(target: SocketAddr, request: &str) -> (String, String) {
    call_method(target, request, "GetItem")
}

/// One call of `method` with `request` from the real `grpcio` client to `target`: its code and
/// details.
fn call_method(target: SocketAddr, request: &str, method: &str) -> (String, String) {
    let out = Command::new("python3")
        .arg(support::repo_root().join("tests/support/grpc_app.py"))
        .args(["call", &target.to_string(), request, method])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    (line["code"].as_str().unwrap().to_owned(), line["details"].as_str().unwrap_or_default().to_owned())
}

/// A response that breaks off after its head (the server's connection closes, or it resets the
/// stream) ends, through the proxy, with the status the client would have seen from the server
/// itself, and the reason: passed on as a reset, every one of them read as `INTERNAL` ("Received
/// RST_STREAM with error code 2"). The record is the upstream's broken body, a fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_response_that_breaks_off_ends_with_the_status_the_server_gave() {
    let (log, app, daemon, sc) = broken_server("broken", &[]).await;
    let direct = SocketAddr::from(([127, 0, 0, 1], app.port));
    // The connection closing under the call, and the stream reset with CANCEL and INTERNAL_ERROR.
    for (method, status) in [("drop", "UNAVAILABLE"), ("reset-8", "CANCELLED"), ("reset-2", "INTERNAL")] {
        let (code, _) = call_method(direct, "x", method);
        assert_eq!(code, status, "{method}, directly");
        let (code, details) = call_method(sc.listen, "x", method);
        assert_eq!(code, status, "{method}, through the sidecar: {details}");
        assert!(details.starts_with("upstream response body failed after 7 bytes"), "{method}: {details}");
        let doc = daemon.take(1).await.remove(0);
        assert_eq!((&doc["fault"], &doc["annotations"]["grpc_status"]), (&true.into(), &status.into()), "{doc}");
        assert_eq!(doc["cause"]["exceptions"][0]["type"], "UpstreamBodyError", "{doc}");
    }
    let _ = std::fs::remove_file(log);
}

/// A response stream that stops without ending (the server sends a message, then nothing) is cut
/// after `--stream-idle-timeout`, and the call ends `UNAVAILABLE` saying so, rather than at its
/// deadline (10 s) with nothing said; the record is the upstream's fault, sent when it is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_response_that_stops_coming_is_unavailable_at_the_stream_idle_timeout() {
    let (log, _app, daemon, sc) = broken_server("stall", &["--stream-idle-timeout", "1s"]).await;
    let started = std::time::Instant::now();
    let (code, details) = call_method(sc.listen, "x", "stall");
    let waited = started.elapsed();
    assert_eq!(code, "UNAVAILABLE", "{details}");
    assert!(details.contains("after 7 bytes") && details.contains("idle for 1s"), "{details}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    let doc = daemon.take(1).await.remove(0);
    assert_eq!((&doc["fault"], &doc["annotations"]["grpc_status"]), (&true.into(), &"UNAVAILABLE".into()), "{doc}");
    assert_eq!(doc["cause"]["exceptions"][0]["type"], "UpstreamBodyError", "{doc}");
    let _ = std::fs::remove_file(log);
}

/// Calls beyond the connection limit's budget for HTTP/2 streams are refused as gRPC refuses them:
/// `UNAVAILABLE` (which clients may retry), with the reason, rather than an HTTP 503 they guess from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_beyond_the_stream_budget_are_unavailable() {
    let (server, daemon) = (grpc_server(), Daemon::start().await);
    let sc =
        Sidecar::sample_all(&format!("http://127.0.0.1:{}", server.port), daemon.addr, &["--max-connections", "2"]);
    let out = Command::new("python3")
        .arg(support::repo_root().join("tests/support/grpc_app.py"))
        .args(["burst", &sc.listen.to_string(), "6"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // One call rides on the connection's own slot, one takes the slot left; the rest are refused.
    let refused: Vec<_> = seen.iter().filter(|c| c["code"] != "OK").collect();
    assert_eq!((seen.len(), refused.len()), (6, 4), "{seen:#?}");
    for c in refused {
        assert_eq!(
            (&c["code"], &c["details"]),
            (&"UNAVAILABLE".into(), &"too many requests in flight: try again later".into()),
            "{c}"
        );
    }
}

/// A gRPC client told "502" or "504" can only guess (`UNAVAILABLE` either way, "Received http2
/// header with status: 502"): the proxy's own failures reach it as gRPC statuses with the reason,
/// with and without tracing, and a timeout waiting for the answer as `DEADLINE_EXCEEDED`, which
/// retry policies do not retry as they do `UNAVAILABLE` (the server may have acted on the call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_own_failures_reach_grpc_clients_as_grpc_statuses() {
    let (server, daemon) = (grpc_server(), Daemon::start().await);
    for tracing in [&[][..], &["--disable-tracing"]] {
        let sc = Sidecar::sample_all("http://127.0.0.1:9", daemon.addr, tracing);
        let (code, details) = one_call(sc.listen, "ok");
        assert_eq!(
            (code.as_str(), details.as_str()),
            ("UNAVAILABLE", "upstream refused the connection"),
            "{tracing:?}"
        );
        let mut args = vec!["--upstream-timeout", "300ms"];
        args.extend_from_slice(tracing);
        let sc = Sidecar::sample_all(&format!("http://127.0.0.1:{}", server.port), daemon.addr, &args);
        let (code, details) = one_call(sc.listen, "slow");
        assert_eq!(
            (code.as_str(), details.as_str()),
            ("DEADLINE_EXCEEDED", "upstream did not respond in time"),
            "{tracing:?}"
        );
    }
    let docs = daemon.take(2).await;
    let statuses: Vec<_> = docs.iter().map(|d| d["annotations"]["grpc_status"].clone()).collect();
    assert_eq!(statuses, ["UNAVAILABLE", "DEADLINE_EXCEEDED"], "{docs:#?}");
}
