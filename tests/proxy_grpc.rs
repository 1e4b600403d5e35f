//! gRPC through the sidecar with the real `grpcio` client and server, inbound and outbound: each
//! call's outcome comes from `grpc-status` (trailers or a trailers-only response), with the flags,
//! cause, annotations and message counts X-Ray needs to show failing gRPC services as failing.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use support::{Daemon, Sidecar, free_port};

/// The `grpcio` server of `grpc_app.py`; killed on drop.
struct GrpcServer {
    child: Child,
    port: u16,
}

impl GrpcServer {
    fn start() -> GrpcServer {
        let mut child = Command::new("python3")
            .arg(support::repo_root().join("tests/support/grpc_app.py"))
            .args(["server", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        GrpcServer { child, port: line.trim().parse().expect("the server prints its port") }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs every kind of call through `target`; the client's view of each, in order.
fn client(target: &str, authority: Option<&str>) -> Vec<Value> {
    let mut cmd = Command::new("python3");
    cmd.arg(support::repo_root().join("tests/support/grpc_app.py")).args(["client", target]);
    cmd.args(authority);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// (call, method, status, flags error/throttle/fault, messages sent, messages received).
type Expected = (&'static str, &'static str, &'static str, [bool; 3], u64, u64);

/// What each call of `grpc_app.py client` must end as, on the client and in the record.
const EXPECTED: [Expected; 9] = [
    ("ok", "GetItem", "OK", [false, false, false], 1, 1),
    ("NOT_FOUND", "GetItem", "NOT_FOUND", [true, false, false], 1, 0),
    ("RESOURCE_EXHAUSTED", "GetItem", "RESOURCE_EXHAUSTED", [true, true, false], 1, 0),
    ("INTERNAL", "GetItem", "INTERNAL", [false, false, true], 1, 0),
    ("UNAVAILABLE", "GetItem", "UNAVAILABLE", [false, false, true], 1, 0),
    ("slow", "GetItem", "DEADLINE_EXCEEDED", [false, false, true], 1, 0),
    ("server_stream", "ListItems", "OK", [false, false, false], 1, 3),
    ("client_stream", "Upload", "OK", [false, false, false], 4, 1),
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
        if call != "slow" {
            // The call that outlives its deadline may be abandoned before any response.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_grpc_calls_take_their_outcome_from_grpc_status() {
    let (server, daemon) = (GrpcServer::start(), Daemon::start().await);
    let sc = Sidecar::sample_all_named("catalog", &format!("http://127.0.0.1:{}", server.port), daemon.addr, &[]);
    let seen = client(&sc.listen.to_string(), None);
    let docs = daemon.take(EXPECTED.len()).await;
    for d in &docs {
        assert_eq!((&d["name"], &d["annotations"]["direction"]), (&"catalog".into(), &"inbound".into()), "{d}");
    }
    check(&seen, &docs, |d| d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_grpc_calls_are_remote_subsegments_with_the_same_outcomes() {
    let (server, daemon) = (GrpcServer::start(), Daemon::start().await);
    let outbound = format!("127.0.0.1:{}", free_port());
    let sc = Sidecar::sample_all("http://127.0.0.1:9", daemon.addr, &["--outbound-listen", &outbound]);
    // The client dials the outbound listener and names the server as the call's authority, as an
    // explicit proxy client does.
    let authority = format!("127.0.0.1:{}", server.port);
    let seen = client(&sc.outbound.unwrap().to_string(), Some(&authority));
    let docs = daemon.take(EXPECTED.len()).await;
    for d in &docs {
        let sub = &d["subsegments"][0];
        assert_eq!((&sub["name"], &sub["namespace"]), (&"127.0.0.1".into(), &"remote".into()), "{d}");
        assert!(sub["cause"]["exceptions"][0].get("remote").and_then(Value::as_bool).unwrap_or(true), "{sub}");
    }
    check(&seen, &docs, |d| &d["subsegments"][0]);
}
