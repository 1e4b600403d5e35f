//! Centralized sampling end to end: the real binary polls a loopback server speaking the X-Ray
//! sampling API, samples by its rules and quotas, reports exactly what it saw, and keeps to the
//! rules it fetched last when the API dies (as the SDKs do, for up to an hour), never failing a
//! request.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::sampling_api::{ApiState, SamplingApi, rule};
use support::upstream::Upstream;
use support::{Daemon, Sidecar, http_get, metric, sample_all_rules, until};

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Sends `n` GETs to `path`, each answered 200, `gap` apart.
async fn send(sc: &Sidecar, path: &str, n: usize, gap: Duration) {
    for _ in 0..n {
        let (status, _, _) = http_get(&sc.url(path), &[]).await;
        assert_eq!(status, 200, "{path}");
        tokio::time::sleep(gap).await;
    }
}

/// Every segment that arrives until the daemon has been quiet for `quiet`, by request path.
async fn drain(daemon: &Daemon, quiet: Duration) -> Vec<Value> {
    let mut docs = Vec::new();
    while let Some(d) = daemon.next(quiet).await {
        docs.push(d);
    }
    docs
}

fn count(docs: &[Value], path: &str) -> usize {
    docs.iter().filter(|d| d["http"]["request"]["url"].as_str().unwrap().ends_with(path)).count()
}

/// The sums of one rule's reported (requests, sampled, borrowed).
fn reported(api: &SamplingApi, rule: &str) -> (u64, u64, u64) {
    api.statistics_for(rule).iter().fold((0, 0, 0), |(r, s, b), d| {
        let n = |k: &str| d[k].as_u64().unwrap();
        (r + n("RequestCount"), s + n("SampledCount"), b + n("BorrowCount"))
    })
}

#[tokio::test]
async fn console_rules_decide_quotas_hold_statistics_match_and_the_rules_outlive_the_api() {
    let mut with_attributes = rule("with-attributes", 2, 1.0, "*", "*", "*");
    with_attributes["Attributes"] = json!({"customer": "gold"});
    let api = SamplingApi::start(ApiState {
        pages: vec![
            vec![rule("Default", 10000, 0.0, "*", "*", "*"), rule("never-api", 10, 0.0, "front-*", "GET", "/api/*")],
            vec![
                rule("always-items", 5, 1.0, "FRONT-END", "*", "/API/ITEMS/?"),
                rule("other-service", 1, 1.0, "back-end", "*", "*"),
                with_attributes,
            ],
        ],
        targets: vec![json!({
            "RuleName": "Default", "FixedRate": 0.0, "ReservoirQuota": 2,
            "ReservoirQuotaTTL": now() + 300.0, "Interval": 1
        })],
        ..Default::default()
    })
    .await;
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let local = sample_all_rules();
    let sc = Sidecar::start(
        &up.url(),
        format!("udp:{} tcp:{}", daemon.addr, api.addr),
        &["--sampling-rules", local.to_str().unwrap()],
    );

    // Rules fetched at start, every page, and only those for this service applied.
    until("the rules", Duration::from_secs(5), async || {
        metric(&sc.metrics().await, "xray_sidecar_sampling_rules_applied") == Some(3.0)
    })
    .await;
    assert_eq!(api.state.lock().unwrap().rules_requests, [Value::Null, json!("page-1")]);

    // Sampling follows them (the local rules would sample everything).
    let started = now() as u64;
    send(&sc, "/api/items/7", 5, Duration::ZERO).await;
    send(&sc, "/api/orders", 20, Duration::ZERO).await;
    send(&sc, "/web", 10, Duration::ZERO).await;
    // One borrowed a second, for each second the requests spanned.
    let seconds = (now() as u64 - started + 1) as usize;
    let first = drain(&daemon, Duration::from_millis(700)).await;
    let (items, orders, web) = (count(&first, "/api/items/7"), count(&first, "/api/orders"), count(&first, "/web"));
    assert_eq!(items, 5);
    assert!((1..=seconds).contains(&orders), "borrowed one a second: {orders} in {seconds} s");
    assert!((1..=seconds).contains(&web), "borrowed one a second: {web} in {seconds} s");

    // The statistics reported are what the sidecar saw; as in the SDKs, a borrowed request counts in
    // `BorrowCount`, not in `SampledCount`.
    until("the first report", Duration::from_secs(15), async || reported(&api, "Default").0 == 10).await;
    let (requests, sampled, borrowed) = reported(&api, "always-items");
    assert_eq!((requests, sampled + borrowed), (5, 5));
    assert!((1..=seconds as u64).contains(&borrowed), "{borrowed} borrowed in {seconds} s");
    assert_eq!(reported(&api, "never-api"), (20, 0, orders as u64));
    assert_eq!(reported(&api, "Default"), (10, 0, web as u64));
    let docs = api.state.lock().unwrap().statistics.clone();
    assert!(docs.iter().all(|d| d["RuleName"] != "other-service" && d["RuleName"] != "with-attributes"));
    let client = docs[0]["ClientID"].as_str().unwrap();
    assert!(client.len() == 24 && client.bytes().all(|b| b.is_ascii_hexdigit()), "{client}");
    assert!(docs.iter().all(|d| d["ClientID"] == client && d["Timestamp"].as_f64().unwrap() > 1.7e9));

    // The quota the service assigned (2 a second) holds, and while it does nothing is borrowed.
    send(&sc, "/web", 120, Duration::from_millis(25)).await;
    let second = drain(&daemon, Duration::from_millis(700)).await;
    let mut per_second: BTreeMap<u64, usize> = BTreeMap::new();
    for d in &second {
        *per_second.entry(d["start_time"].as_f64().unwrap() as u64).or_default() += 1;
    }
    assert!(per_second.values().all(|&n| n <= 2), "{per_second:?}");
    assert!(second.len() >= 4, "the quota is used: {per_second:?}");
    until("the quota's report", Duration::from_secs(5), async || reported(&api, "Default").0 == 130).await;
    let (_, sampled, borrowed) = reported(&api, "Default");
    assert_eq!(sampled + borrowed, (web + second.len()) as u64);
    // The quota's requests count as sampled (one may have been borrowed just before the quota came).
    assert!(sampled + 1 >= second.len() as u64, "{sampled} sampled, {borrowed} borrowed");

    // A rule changed on the service: the next report makes the sidecar fetch the rules again.
    api.state.lock().unwrap().last_rule_modification = now() + 1000.0;
    until("a rules refresh", Duration::from_secs(5), async || {
        send(&sc, "/web", 1, Duration::ZERO).await;
        api.state.lock().unwrap().rules_requests.len() > 2
    })
    .await;
    api.state.lock().unwrap().last_rule_modification = 0.0;

    // The API dies: the rules fetched last go on deciding (a daemon restarting must not turn the
    // operators' rules off), and no request fails meanwhile.
    api.stop();
    until("a failed call", Duration::from_secs(10), async || {
        send(&sc, "/web", 1, Duration::ZERO).await;
        metric(&sc.metrics().await, "xray_sidecar_sampling_poll_failures_total{call=\"SamplingTargets\"}")
            .is_some_and(|n| n > 0.0)
    })
    .await;
    let _ = drain(&daemon, Duration::from_millis(300)).await;
    let started = now() as u64;
    send(&sc, "/after", 10, Duration::ZERO).await;
    let seconds = (now() as u64 - started + 1) as usize;
    let after = drain(&daemon, Duration::from_millis(700)).await;
    // `Default`'s quota (2 a second, its TTL not yet past), then its rate of 0: the local rules
    // would have recorded all ten.
    let recorded = count(&after, "/after");
    assert!(recorded <= 2 * seconds && recorded < 10, "{recorded} of 10 in {seconds} s");
    let m = sc.metrics().await;
    assert!(metric(&m, "xray_sidecar_sampling_rule_requests_total{rule=\"never-api\"}") == Some(20.0), "{m}");
    assert!(
        metric(&m, "xray_sidecar_sampling_decisions_total{source=\"centralized\",sampled=\"true\"}").unwrap() > 0.0
    );
    support::validate(&[first, second, after].concat());
}

#[tokio::test]
async fn garbage_from_the_api_or_none_at_all_leaves_the_local_rules_deciding() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    // A TCP server that answers every call with garbage.
    let garbage = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp = garbage.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = garbage.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"Sampli").await;
        }
    });
    let local = sample_all_rules();
    let sc = Sidecar::start(
        &up.url(),
        format!("udp:{} tcp:{tcp}", daemon.addr),
        &["--sampling-rules", local.to_str().unwrap()],
    );
    until("a failed poll", Duration::from_secs(5), async || {
        metric(&sc.metrics().await, "xray_sidecar_sampling_poll_failures_total{call=\"GetSamplingRules\"}")
            .is_some_and(|n| n > 0.0)
    })
    .await;
    send(&sc, "/", 5, Duration::ZERO).await;
    assert_eq!(daemon.take(5).await.len(), 5);
    drop(sc);

    // Turned off: no call at all.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sc = Sidecar::start(
        &up.url(),
        format!("udp:{} tcp:{}", daemon.addr, silent.local_addr().unwrap()),
        &["--sampling-rules", local.to_str().unwrap(), "--centralized-sampling", "false"],
    );
    send(&sc, "/", 3, Duration::ZERO).await;
    assert_eq!(daemon.take(3).await.len(), 3);
    assert!(tokio::time::timeout(Duration::from_millis(500), silent.accept()).await.is_err());
    assert!(!sc.metrics().await.contains("sampling_rule"));
}

#[tokio::test]
async fn with_otlp_export_only_the_console_rules_still_decide() {
    let mut never = rule("never-internal", 1, 0.0, "*", "*", "/internal*");
    never["ReservoirSize"] = json!(0);
    let api = SamplingApi::start(ApiState {
        pages: vec![vec![never, rule("Default", 10000, 1.0, "*", "*", "*")]],
        ..Default::default()
    })
    .await;
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    // Spans go over OTLP to a collector that is not there; nothing goes to the daemon's UDP side.
    let closed = support::ClosedPort::new();
    let collector = format!("http://{}", closed.addr);
    let local = sample_all_rules();
    let sc = Sidecar::start(
        &up.url(),
        format!("udp:{} tcp:{}", daemon.addr, api.addr),
        &["--exporter", "otlp", "--otlp-endpoint", &collector, "--sampling-rules", local.to_str().unwrap()],
    );
    until("the rules", Duration::from_secs(5), async || {
        metric(&sc.metrics().await, "xray_sidecar_sampling_rules_applied") == Some(2.0)
    })
    .await;
    // The local rules would record everything: the console's rule records none of /internal.
    send(&sc, "/internal/metrics", 10, Duration::ZERO).await;
    send(&sc, "/public", 5, Duration::ZERO).await;
    let m = sc.metrics().await;
    let decisions = |sampled: &str| {
        metric(&m, &format!("xray_sidecar_sampling_decisions_total{{source=\"centralized\",sampled=\"{sampled}\"}}"))
    };
    assert_eq!((decisions("false"), decisions("true")), (Some(10.0), Some(5.0)), "{m}");
    assert_eq!(metric(&m, "xray_sidecar_sampling_rule_requests_total{rule=\"never-internal\"}"), Some(10.0), "{m}");
    // And its statistics reach the sampling API.
    until("the report", Duration::from_secs(15), async || reported(&api, "never-internal").0 == 10).await;
    assert_eq!(reported(&api, "never-internal"), (10, 0, 0));
    assert_eq!(reported(&api, "Default").0, 5);
    daemon.nothing(Duration::from_millis(300)).await;
}

/// A sampling API that accepts connections and reads the calls, then answers each with valid rules
/// only after `delay` (never, when `None`); counts the calls it got.
async fn stalling_api(delay: Option<Duration>) -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = s.read(&mut buf).await;
                counted.fetch_add(1, SeqCst);
                let Some(delay) = delay else {
                    // Hold the connection open, silent, until the client gives up.
                    let _ = s.read(&mut buf).await;
                    return;
                };
                tokio::time::sleep(delay).await;
                let body =
                    json!({"SamplingRuleRecords": [{"SamplingRule": rule("Default", 10000, 0.0, "*", "*", "*")}]})
                        .to_string();
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = s.write_all(format!("{head}{body}").as_bytes()).await;
            });
        }
    });
    (addr, calls)
}

#[tokio::test]
async fn a_silent_or_slow_api_slows_no_request_and_leaves_the_local_rules_deciding() {
    let failures = "xray_sidecar_sampling_poll_failures_total{call=\"GetSamplingRules\"}";
    let local_true = "xray_sidecar_sampling_decisions_total{source=\"local\",sampled=\"true\"}";
    let local = sample_all_rules();
    // Never answers; answers, but after the sidecar's 5 s limit on a call.
    for delay in [None, Some(Duration::from_secs(8))] {
        let (api, calls) = stalling_api(delay).await;
        let (up, daemon) = (Upstream::start().await, Daemon::start().await);
        let sc = Sidecar::start(
            &up.url(),
            format!("udp:{} tcp:{api}", daemon.addr),
            &["--sampling-rules", local.to_str().unwrap()],
        );
        until("the first call", Duration::from_secs(5), async || calls.load(SeqCst) > 0).await;

        // While that call hangs, requests go through at once and the local rules record them all.
        let asked = Instant::now();
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let url = sc.url("/");
            requests.spawn(async move { http_get(&url, &[]).await.0 });
        }
        assert_eq!(requests.join_all().await, [200; 20]);
        let m = sc.metrics().await;
        // The call has not failed yet (it gets 5 s), so no request waited for it.
        assert!(asked.elapsed() < Duration::from_secs(4), "{:?} for 20 requests", asked.elapsed());
        assert_eq!(metric(&m, failures), Some(0.0), "{delay:?}: {m}");
        assert_eq!(metric(&m, local_true), Some(20.0), "{m}");
        assert_eq!(daemon.take(20).await.len(), 20);

        // The call times out: a counted failure, no rules from a late answer, still the local rules.
        until("a counted failure", Duration::from_secs(15), async || {
            metric(&sc.metrics().await, failures).is_some_and(|n| n >= 1.0)
        })
        .await;
        send(&sc, "/after", 5, Duration::ZERO).await;
        assert_eq!(daemon.take(5).await.len(), 5);
        let m = sc.metrics().await;
        assert_eq!(metric(&m, "xray_sidecar_sampling_rules_age_seconds"), Some(-1.0), "{delay:?}: {m}");
        assert_eq!(metric(&m, local_true), Some(25.0), "{m}");
    }
}

// Two workers: the stalling API keeps accepting while the harness blocks starting the sidecar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_hanging_at_shutdown_does_not_hold_the_process_up() {
    let (api, calls) = stalling_api(None).await;
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let mut sc = Sidecar::start(&up.url(), format!("udp:{} tcp:{api}", daemon.addr), &["--drain-delay", "0s"]);
    until("the first call", Duration::from_secs(10), async || calls.load(SeqCst) > 0).await;
    sc.terminate();
    let signalled = Instant::now();
    // The call would hang for its whole 5 s timeout.
    while sc.child.try_wait().unwrap().is_none() {
        assert!(signalled.elapsed() < Duration::from_secs(3), "shutdown waited for the sampling API");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
