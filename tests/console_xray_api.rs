//! The console as an X-Ray backend for real AWS clients: boto3 and the AWS CLI call its X-Ray API,
//! and its daemon port answers the sampling API over TCP (relaying to a real daemon when asked).

#[path = "support/console.rs"]
mod console_support;

use console_support::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

/// Dummy credentials and no config file of the machine: the console checks no signature.
fn aws_env(cmd: &mut Command) -> &mut Command {
    cmd.env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "not-a-secret")
        .env("AWS_DEFAULT_REGION", "eu-west-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
}

async fn run(mut cmd: Command) -> Output {
    let what = format!("{cmd:?}");
    let out = tokio::task::spawn_blocking(move || aws_env(&mut cmd).output())
        .await
        .expect("the command's task")
        .unwrap_or_else(|e| panic!("{what} does not run ({e}); scripts/setup installs boto3 and awscli"));
    assert!(out.status.success(), "{what} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn json_out(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not json ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test]
async fn boto3_drives_every_operation() {
    let running = start(loopback_config()).await;
    let http = running.console.http_addr();
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("tests/fixtures/console/boto3_xray.py")).arg(http.to_string());
    let got = json_out(&run(cmd).await);
    let id = |name: &str| got["ids"][name].as_str().expect("trace id");
    let (cart, pay, missing) = (id("cart"), id("pay"), id("missing"));

    assert_eq!(
        got["unprocessed_segments"],
        json!(["d000000000000001", "e000000000000001"]),
        "the document without a trace id, and the one over 64 kB"
    );
    let summaries = |expression: &str| -> Vec<&str> {
        got["summaries"][expression]
            .as_array()
            .unwrap_or_else(|| panic!("no answer for {expression:?}: {got}"))
            .iter()
            .filter_map(Value::as_str)
            .collect()
    };
    assert_eq!(summaries(""), [cart, pay, missing]);
    assert_eq!(summaries("http.status = 500"), [pay]);
    assert_eq!(summaries("http.status >= 400 AND http.status < 500"), [missing]);
    assert_eq!(summaries("fault OR error"), [pay, missing]);
    assert_eq!(summaries("service(\"back-end\")"), [cart]);
    assert_eq!(summaries("responsetime > 1"), [pay]);
    assert_eq!(summaries("annotation.tier = \"gold\""), [cart]);
    assert_eq!(summaries("http.url CONTAINS \"/pay\""), [pay]);
    assert_eq!(summaries("(fault OR error) AND http.method = \"GET\""), [missing]);
    assert_eq!(summaries("!fault AND !error"), [cart]);
    let node = r#"service(id(name: "back-end", type: "AWS::EKS::Container")) { ok = true AND responsetime <= 1 }"#;
    assert_eq!(summaries(node), [cart]);
    assert_eq!(summaries("edge(\"front-end\", \"back-end\")"), [cart]);
    assert_eq!(summaries("edge(id(type: \"client\"), \"front-end\") { fault }"), [pay]);
    assert_eq!(got["bad_expression"], json!(["InvalidRequestException", 400]));
    // Each TimeRangeType holds its own time of a trace against the window: its id's, its start,
    // a segment's end.
    let old = id("old");
    for (query, found) in [
        ("TraceId id", true),
        ("TraceId start", false),
        ("TraceId end", false),
        ("Event id", false),
        ("Event start", true),
        ("Event end", false),
        ("Service id", false),
        ("Service start", false),
        ("Service end", true),
    ] {
        let want = if found { json!([old]) } else { json!([]) };
        assert_eq!(got["by_time"][query], want, "{query}");
    }
    assert_eq!(got["bad_time_range"], json!(["InvalidRequestException", 400]));
    let pay_summary = &got["summary_of_pay"][0];
    assert_eq!((&pay_summary["HasFault"], &pay_summary["HttpStatus"]), (&json!(true), &json!(500)));
    assert!(pay_summary["ResponseTime"].as_f64().is_some_and(|r| (r - 1.2).abs() < 1e-3), "{pay_summary}");
    assert!(pay_summary["StartTime"].as_f64().is_some_and(|t| (t - now()).abs() < 120.0), "{pay_summary}");

    assert_eq!(got["batch"]["ids"], json!([cart]));
    assert_eq!(got["batch"]["segments"], json!(["back-end", "front-end"]));
    assert_eq!(got["batch"]["unprocessed"], json!(["1-00000000-000000000000000000000000"]));
    assert_eq!(got["graph_edges"], json!(["client->front-end", "front-end->back-end"]));
    assert_eq!(got["trace_graph"], json!(["client", "front-end"]));
    // Per-minute counts as the consoles chart them: every entry, one node, one edge.
    assert_eq!(got["time_series"], json!({"entries": 3, "back_end": 1, "edge": 1}));
    assert_eq!(got["groups"], json!(["Default"]));
    assert_eq!(got["unknown_operation"], json!(["UnknownOperationException", 404]));

    assert_eq!(got["rules_at_start"], json!(["Default"]));
    assert_eq!(
        got["created"],
        json!({"RuleName": "checkout", "RuleARN": "arn:aws:xray:local::sampling-rule/checkout", "URLPath": "/pay*"})
    );
    for refused in ["duplicate", "bad_version", "update_missing", "delete_default"] {
        assert_eq!(got[refused], json!(["InvalidRequestException", 400]), "{refused}");
    }
    assert_eq!(got["over_limit"], json!(["RuleLimitExceededException", 400]));
    assert_eq!(got["updated_rate"], 0.25);
    let target = &got["target"];
    assert_eq!(
        (&target["RuleName"], &target["FixedRate"], &target["ReservoirQuota"], &target["Interval"]),
        (&json!("checkout"), &json!(0.25), &json!(1), &json!(10))
    );
    assert!(target["TTLAhead"].as_f64().is_some_and(|t| t > 5.0 && t < 30.0), "{target}");
    assert_eq!(got["statistics"]["checkout"], json!([40, 10, 1]));
    assert_eq!(got["deleted"], "checkout");
    assert_eq!(got["rules_at_end"], json!(["Default"]));

    let stats = wait_for_stats(http, |s| s["TelemetryRecords"] == 2).await;
    assert_eq!(stats["PutSegments"], 5, "{stats}");
}

#[tokio::test]
async fn boto3_pages_through_every_trace_once_while_traces_arrive() {
    let running = start(loopback_config()).await;
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("tests/fixtures/console/boto3_xray.py"))
        .arg(running.console.http_addr().to_string())
        .arg("paging");
    let got = json_out(&run(cmd).await);
    let list = |v: &Value| -> Vec<String> {
        v.as_array().expect("a list").iter().map(|s| s.as_str().expect("an id").to_owned()).collect()
    };
    let pages: Vec<Vec<String>> = got["pages"].as_array().expect("pages").iter().map(list).collect();
    let (first, older, newer) = (list(&got["first"]), list(&got["older"]), list(&got["newer"]));
    assert!(
        pages.len() >= 3 && pages.iter().all(|p| p.len() <= 100),
        "{:?}",
        pages.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(pages[0].len(), 100);

    let seen: Vec<&String> = pages.iter().flatten().collect();
    let mut once = seen.clone();
    once.sort();
    once.dedup();
    assert_eq!(once.len(), seen.len(), "a trace came back on two pages");
    // Every trace there from the start, and every older one that arrived while paging (it sorts
    // after the rows already read), exactly once; the newer ones sort before them and are for the
    // next listing.
    let missing: Vec<&String> = first.iter().chain(&older).filter(|t| !seen.contains(t)).collect();
    assert_eq!(missing, Vec::<&String>::new(), "{} seen", seen.len());
    assert!(!older.is_empty() && newer.iter().all(|t| !seen.contains(&t)));
    assert_eq!(seen.len(), first.len() + older.len());
}

#[tokio::test]
async fn aws_cli_reads_the_graph_and_the_daemon_port_serves_sampling_rules() {
    let running = start(loopback_config()).await;
    let (udp, http) = (running.console.udp_addr(), running.console.http_addr());
    let start_time = now();
    let docs = three_tier(start_time, 200, "10.0.3.17");
    send_documents(udp, &docs).await;
    wait_for_stats(http, |s| s["Accepted"] == docs.len()).await;

    let mut cmd = Command::new("aws");
    cmd.args(["xray", "get-service-graph", "--output", "json", "--endpoint-url", &format!("http://{http}")])
        .args(["--start-time", &format!("{}", start_time as u64 - 60)])
        .args(["--end-time", &format!("{}", start_time as u64 + 60)]);
    let graph = json_out(&run(cmd).await);
    let mut names: Vec<&str> =
        graph["Services"].as_array().expect("services").iter().filter_map(|s| s["Name"].as_str()).collect();
    names.sort_unstable();
    assert!(names.contains(&"front-end") && names.contains(&"back-end"), "{graph}");

    // The daemon's TCP side, on the UDP port's number: what SDKs reach through AWS_XRAY_DAEMON_ADDRESS.
    let mut cmd = Command::new("aws");
    cmd.args(["xray", "get-sampling-rules", "--output", "json", "--endpoint-url", &format!("http://{udp}")]);
    let rules = json_out(&run(cmd).await);
    assert_eq!(rules["SamplingRuleRecords"][0]["SamplingRule"]["RuleName"], "Default");
    assert_eq!(rules["SamplingRuleRecords"][0]["SamplingRule"]["FixedRate"], 0.05);

    // It serves the sampling API only.
    let (status, body) = get(udp, "/api/stats").await;
    assert_eq!(status, 404);
    assert!(body["message"].as_str().is_some_and(|m| m.contains("/GetSamplingRules")), "{body}");
}

#[tokio::test]
async fn forward_relays_sampling_calls_to_the_real_daemon() {
    // The "real daemon" is another console, with a rule of its own.
    let upstream = start(loopback_config()).await;
    let rule = json!({"SamplingRule": {
        "RuleName": "upstream-only", "ResourceARN": "*", "Priority": 1, "FixedRate": 1.0, "ReservoirSize": 0,
        "ServiceName": "*", "ServiceType": "*", "Host": "*", "HTTPMethod": "*", "URLPath": "*", "Version": 1}});
    let (status, _) = post(upstream.console.http_addr(), "/CreateSamplingRule", &rule).await;
    assert_eq!(status, 200);
    let upstream_daemon = upstream.console.udp_addr();
    let local =
        start(console_support::ConsoleConfig { forward: Some(upstream_daemon.to_string()), ..loopback_config() }).await;
    let (status, rules) = post(local.console.udp_addr(), "/GetSamplingRules", &json!({})).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = rules["SamplingRuleRecords"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["SamplingRule"]["RuleName"].as_str())
        .collect();
    assert_eq!(names, ["upstream-only", "Default"], "the real daemon's rules");

    let report = json!({"SamplingStatisticsDocuments": [{"RuleName": "Default", "ClientID": "0123456789abcdef01234567",
        "Timestamp": now(), "RequestCount": 7, "SampledCount": 2, "BorrowCount": 0}]});
    let (status, targets) = post(local.console.udp_addr(), "/SamplingTargets", &report).await;
    assert_eq!(status, 200, "{targets}");
    assert_eq!(targets["SamplingTargetDocuments"][0]["RuleName"], "Default");
    // Both the real daemon and the console's own page saw the statistics.
    for console in [&upstream.console, &local.console] {
        let (_, stats) = post(console.http_addr(), "/SamplingStatisticSummaries", &json!({})).await;
        let default = stats["SamplingStatisticSummaries"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["RuleName"] == "Default"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(default["RequestCount"], 7, "{stats}");
    }

    // The real daemon gone: the console answers with its own rules.
    drop(upstream);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, rules) = post(local.console.udp_addr(), "/GetSamplingRules", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(rules["SamplingRuleRecords"].as_array().map(Vec::len), Some(1), "{rules}");
}

/// A "real daemon" that answers every call with `status` and `body`; counts the calls.
async fn canned_daemon(status: &str, body: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let answer = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 8192];
            let _ = s.read(&mut buf).await;
            counted.fetch_add(1, SeqCst);
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    (addr, calls)
}

#[tokio::test]
async fn forward_answers_locally_when_the_real_daemon_errs_or_answers_garbage() {
    let answers = [
        ("500 Internal Server Error", "{}"),
        // An error status with a body shaped like a good answer is still an error.
        ("403 Forbidden", r#"{"SamplingRuleRecords": [], "SamplingTargetDocuments": [], "Message": "not yours"}"#),
        ("200 OK", "<html></html>"),
        ("200 OK", r#"{"message": "hello"}"#),
    ];
    for (status, body) in answers {
        let (daemon, calls) = canned_daemon(status, body).await;
        let local = start(ConsoleConfig { forward: Some(daemon.to_string()), ..loopback_config() }).await;
        let udp = local.console.udp_addr();

        let (code, rules) = post(udp, "/GetSamplingRules", &json!({})).await;
        assert_eq!(code, 200, "{status} {body}: {rules}");
        assert_eq!(rules["SamplingRuleRecords"][0]["SamplingRule"]["RuleName"], "Default", "{status} {body}: {rules}");

        let report = json!({"SamplingStatisticsDocuments": [{"RuleName": "Default",
            "ClientID": "0123456789abcdef01234567", "Timestamp": now(), "RequestCount": 3, "SampledCount": 1,
            "BorrowCount": 0}]});
        let (code, targets) = post(udp, "/SamplingTargets", &report).await;
        assert_eq!(code, 200, "{status} {body}: {targets}");
        let target = &targets["SamplingTargetDocuments"][0];
        assert_eq!((&target["RuleName"], &target["ReservoirQuota"]), (&json!("Default"), &json!(1)), "{targets}");
        assert_eq!(calls.load(SeqCst), 2, "both calls were relayed first: {status} {body}");
    }
}

#[tokio::test]
async fn python_sdk_follows_rules_created_through_boto3() {
    let running = start(loopback_config()).await;
    let (udp, http) = (running.console.udp_addr(), running.console.http_addr());
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("tests/fixtures/console/sdk_sampling.py")).arg(udp.to_string()).arg(http.to_string());
    let got = json_out(&run(cmd).await);
    // Before: the SDK fetched the console's rules over TCP and sampled by its Default rule.
    assert!(got["before"]["checkout"].as_array().is_some_and(|d| d.contains(&json!("Default"))), "{got}");
    // After: every /checkout by the new rule (rate 1), no /health (rate 0), within about one target poll.
    let followed =
        got["followed_after"].as_f64().unwrap_or_else(|| panic!("the SDK never followed the new rules: {got}"));
    assert!(followed < 25.0, "{got}");

    // The SDK reported its statistics for the new rules: one client, everything sampled on one, nothing on the other.
    let (status, stats) = post(http, "/SamplingStatisticSummaries", &json!({})).await;
    assert_eq!(status, 200);
    let rule = |name: &str| {
        stats["SamplingStatisticSummaries"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["RuleName"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no statistics for {name}: {stats}"))
    };
    let (checkout, health) = (rule("all-checkout"), rule("quiet-health"));
    assert!(checkout["RequestCount"].as_u64().is_some_and(|n| n > 0), "{stats}");
    assert_eq!(checkout["SampledCount"], checkout["RequestCount"], "{stats}");
    assert!(health["RequestCount"].as_u64().is_some_and(|n| n > 0), "{stats}");
    assert_eq!(health["SampledCount"], 0, "{stats}");
    assert_eq!(checkout["Clients"], 1, "{stats}");
}
