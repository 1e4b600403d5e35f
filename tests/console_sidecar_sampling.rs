//! The sidecar's centralized sampling against the console: given only the console's daemon address,
//! the sidecar takes the console's rules over TCP, samples by them, and reports its statistics back,
//! which the console's page then shows per rule.
#![allow(clippy::unwrap_used)]

#[path = "support/console.rs"]
mod console_support;
mod support;

use console_support::{get, loopback_config, post, start, wait_for_stats};
use serde_json::{Value, json};
use std::time::Duration;
use support::upstream::Upstream;
use support::{Sidecar, http_get, metric, sample_all_rules, until};

async fn rule_statistics(http: std::net::SocketAddr, rule: &str) -> Value {
    let (_, stats) = post(http, "/SamplingStatisticSummaries", &json!({})).await;
    stats["SamplingStatisticSummaries"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["RuleName"] == rule))
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_samples_by_the_console_s_rules() {
    let running = start(loopback_config()).await;
    let (udp, http) = (running.console.udp_addr(), running.console.http_addr());
    let (status, _) =
        post(http, "/UpdateSamplingRule", &json!({"SamplingRuleUpdate": {"RuleName": "Default", "FixedRate": 1.0}}))
            .await;
    assert_eq!(status, 200);
    let quiet = json!({"SamplingRule": {
        "RuleName": "quiet", "ResourceARN": "*", "Priority": 1, "FixedRate": 0.0, "ReservoirSize": 0,
        "ServiceName": "front-end", "ServiceType": "*", "Host": "*", "HTTPMethod": "GET", "URLPath": "/quiet*",
        "Version": 1}});
    let (status, body) = post(http, "/CreateSamplingRule", &quiet).await;
    assert_eq!(status, 200, "{body}");

    // Its local rules would record everything: what it leaves out, the console's rule left out.
    let up = Upstream::start().await;
    let local = sample_all_rules();
    let sc = Sidecar::start(&up.url(), udp, &["--sampling-rules", local.to_str().unwrap()]);
    until("the console's rules", Duration::from_secs(10), async || {
        metric(&sc.metrics().await, "xray_sidecar_sampling_rules_applied") == Some(2.0)
    })
    .await;
    for path in ["/quiet", "/loud"] {
        for _ in 0..10 {
            let (status, _, _) = http_get(&sc.url(path), &[]).await;
            assert_eq!(status, 200, "{path}");
        }
    }
    wait_for_stats(http, |s| s["Accepted"].as_u64().is_some_and(|n| n >= 10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, loud) = get(http, "/api/trace-summaries?url=%2Floud").await;
    let (_, quiet) = get(http, "/api/trace-summaries?url=%2Fquiet").await;
    assert_eq!(loud["MatchedCount"], 10, "{loud}");
    // A rule with `ReservoirSize` 0 never borrows, even before its first quota: rate 0 records none.
    assert_eq!(quiet["MatchedCount"], 0, "{quiet}");

    // Its next target poll (every 10 s) reports what each rule saw.
    until("the sidecar's statistics", Duration::from_secs(25), async || {
        rule_statistics(http, "quiet").await["RequestCount"] == 10
    })
    .await;
    let quiet = rule_statistics(http, "quiet").await;
    assert_eq!((&quiet["SampledCount"], &quiet["BorrowCount"], &quiet["Clients"]), (&json!(0), &json!(0), &json!(1)));
    // Default (rate 1, no quota yet) borrowed the first of each second and sampled the rest by its
    // rate: the SDKs count the two apart, together every request.
    let default = rule_statistics(http, "Default").await;
    let count = |k: &str| default[k].as_u64().unwrap();
    assert_eq!(count("RequestCount"), 10, "{default}");
    assert_eq!(count("SampledCount") + count("BorrowCount"), 10, "{default}");
    assert!(count("BorrowCount") >= 1, "{default}");
}
