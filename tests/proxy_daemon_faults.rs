//! The tracing sinks failing under the real binary, 5,000 requests each: a daemon port that answers
//! with ICMP port unreachable, a daemon address that does not resolve, a blackholed daemon (in a
//! network namespace: a blackhole route, and a route into nowhere), and an OTLP collector
//! that accepts and then reads slowly and never answers. No request may fail, and the counters
//! must account for every segment.
//!
//! The blackholed cases need root (network namespaces); without it they say so and skip.
#![allow(clippy::unwrap_used)]

mod support;

use http_body_util::{BodyExt, Empty};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::upstream::Upstream;
use support::{Launch, Sidecar, is_root, metric, sh};
use tokio::io::AsyncReadExt;

const REQUESTS: usize = 5_000;
const CLIENTS: usize = 8;

/// `REQUESTS` GETs through `proxy` from `CLIENTS` keep-alive clients at once: how many failed.
async fn load(proxy: SocketAddr) -> usize {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let url: http::Uri = format!("http://{proxy}/").parse().unwrap();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let mut failed = 0;
                for _ in 0..REQUESTS / CLIENTS {
                    let ok = match client.get(url.clone()).await {
                        Ok(res) => res.status() == 200 && res.into_body().collect().await.is_ok(),
                        Err(_) => false,
                    };
                    failed += usize::from(!ok);
                }
                failed
            })
        })
        .collect();
    let mut failed = 0;
    for t in tasks {
        failed += t.await.unwrap();
    }
    failed
}

/// Polls the sidecar's metrics until `done` holds for them (20 s at most); the last page.
async fn metrics_until(sc: &Sidecar, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = sc.metrics().await;
        if done(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "{what}:\n{m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn count(m: &str, name: &str) -> usize {
    metric(m, name).unwrap_or(-1.0) as usize
}

/// Runs the load and checks that every request was served and every segment accounted for, as
/// sent or as failed to send; the metrics page at the end.
async fn every_request_served(sc: &Sidecar, what: &str) -> String {
    let started = Instant::now();
    let failed = load(sc.listen).await;
    let took = started.elapsed();
    let served = r#"xray_sidecar_requests_total{direction="inbound",status_class="2xx"}"#;
    let m = metrics_until(sc, "every segment accounted for", |m| {
        count(m, "xray_sidecar_segments_emitted_total")
            + count(m, "xray_sidecar_daemon_send_errors_total")
            + count(m, "xray_sidecar_segments_dropped_total")
            >= REQUESTS
    })
    .await;
    let names = ["segments_emitted", "daemon_send_errors", "segments_dropped", "daemon_resolve_errors"];
    let counters: Vec<_> =
        names.iter().map(|n| format!("{n} {}", count(&m, &format!("xray_sidecar_{n}_total")))).collect();
    eprintln!("{what}: {REQUESTS} requests in {took:.1?}, {failed} failed; {}", counters.join(", "));
    assert_eq!(failed, 0, "{what}: requests failed");
    assert_eq!(count(&m, served), REQUESTS, "{m}");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_port_answering_icmp_unreachable_fails_no_request() {
    let up = Upstream::start().await;
    // Nobody listens there: the kernel answers each datagram with ICMP port unreachable, which the
    // connected socket reports on a later send as ECONNREFUSED.
    let daemon = format!("127.0.0.1:{}", support::free_udp_port());
    let rules = support::sample_all_rules();
    let log = std::env::temp_dir().join(format!("xray-refused-daemon-{}.log", std::process::id()));
    let launch = Launch { log: Some(&log), ..Launch::default() };
    let sc = Sidecar::launch(&up.url(), &daemon, &["--sampling-rules", rules.to_str().unwrap()], launch);
    let m = every_request_served(&sc, "ICMP-refused daemon").await;
    assert!(count(&m, "xray_sidecar_daemon_send_errors_total") > 1, "{m}");
    // The operator is told, once for the whole run rather than once per burst, and of the
    // sampling API that does not answer either.
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(warnings(&log, "cannot send segments to the daemon"), 1, "{log}");
    assert_eq!(warnings(&log, "the sampling API does not answer"), 1, "{log}");
}

/// How many warnings in `log` say `what`.
fn warnings(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(" WARN ") && l.contains(what)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_daemon_fails_no_request() {
    let up = Upstream::start().await;
    let rules = support::sample_all_rules();
    let log = std::env::temp_dir().join(format!("xray-unresolvable-daemon-{}.log", std::process::id()));
    let daemon = "no-such-daemon.invalid:2000";
    let launch = Launch { log: Some(&log), ..Launch::default() };
    let sc = Sidecar::launch(&up.url(), daemon, &["--sampling-rules", rules.to_str().unwrap()], launch);
    let m = every_request_served(&sc, "unresolvable daemon").await;
    assert!(count(&m, "xray_sidecar_daemon_resolve_errors_total") > 0, "{m}");
    assert_eq!(count(&m, "xray_sidecar_daemon_send_errors_total"), REQUESTS, "{m}");
    assert_eq!(count(&m, "xray_sidecar_segments_emitted_total"), 0, "{m}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(warnings(&log, "cannot resolve the daemon;"), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_give_a_log_shipper_every_line_as_an_object() {
    let up = Upstream::start().await;
    let log = std::env::temp_dir().join(format!("xray-json-log-{}.log", std::process::id()));
    let launch = Launch { log: Some(&log), env: &[("XRAY_SIDECAR_LOG_FORMAT", "json")], ..Launch::default() };
    let sc = Sidecar::launch(&up.url(), "no-such-daemon.invalid:2000", &[], launch);
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON object ({e}): {l}")))
            .collect();
        if lines.iter().any(|l| l["level"] == "WARN") || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ready = lines.iter().find(|l| l["message"] == "proxy ready").unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(ready["level"], "INFO");
    assert_eq!(ready["inbound"], sc.listen.to_string());
    assert_eq!(ready["service"], "front-end");
    assert_eq!(ready["admin"], sc.admin.to_string());
    assert!(ready.get("outbound").is_none(), "no outbound listener, no field: {ready}");
    let unresolved =
        lines.iter().find(|l| l["message"].as_str().is_some_and(|m| m.starts_with("cannot resolve the daemon;")));
    let unresolved = unresolved.unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!((&unresolved["level"], &unresolved["daemon"]), (&"WARN".into(), &"no-such-daemon.invalid:2000".into()));
    assert!(unresolved["timestamp"].is_string() && unresolved["target"].is_string(), "{unresolved}");
}

/// A collector that accepts, reads a kilobyte every 100 ms and never answers.
async fn slow_collector() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_otlp_collector_fails_no_request_and_its_drops_are_counted() {
    let (up, daemon) = (Upstream::start().await, support::Daemon::start().await);
    let collector = format!("http://{}", slow_collector().await);
    let rules = support::sample_all_rules();
    let flags = ["--sampling-rules", rules.to_str().unwrap(), "--otlp-endpoint", &collector];
    // A short export timeout so that the test sees the batches given up.
    let env = [("OTEL_BSP_EXPORT_TIMEOUT", "1000"), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let sc = Sidecar::with_env("front-end", &up.url(), daemon.addr, &flags, &env);
    let m = every_request_served(&sc, "slow OTLP collector").await;
    // X-Ray segments were not held up by the OTLP side.
    assert_eq!(count(&m, "xray_sidecar_segments_emitted_total"), REQUESTS, "{m}");
    // Every span is dropped, for a full queue or a batch that timed out, and counted.
    let m = metrics_until(&sc, "every span counted as dropped", |m| {
        count(m, "xray_sidecar_otlp_spans_dropped_total") >= REQUESTS
    })
    .await;
    assert_eq!(count(&m, "xray_sidecar_otlp_spans_exported_total"), 0, "{m}");
    eprintln!("slow OTLP collector: {} spans dropped", count(&m, "xray_sidecar_otlp_spans_dropped_total"));
}

/// A network namespace joined to ours by a veth pair, with the daemon addresses blackholed in it:
/// `BLACKHOLE_ROUTE` by a blackhole route (the kernel refuses to address it), `VANISHING` sent to
/// a made-up MAC address on a link where no host has it (sends succeed and the datagrams vanish,
/// as to a host that is gone and answers nothing; an iptables DROP in OUTPUT would report EPERM to
/// the sender instead, an unanswered ARP a host unreachable). Removed on drop.
struct Blackholed {
    ns: String,
    /// Our end of the veth pair, and the namespace's.
    host: IpAddr,
    inside: IpAddr,
}

const BLACKHOLE_ROUTE: &str = "192.0.2.1:2000";
const VANISHING: &str = "192.0.2.2:2000";

impl Blackholed {
    fn new() -> Blackholed {
        let id = std::process::id() % 60_000;
        let ns = format!("xbh{id}");
        // A /30 of its own, apart from other tests' (interception_e2e uses 10.200-249.*).
        let (net, sub) = (id % 250, 4 * ((id / 250) % 60));
        let (host, inside) = (format!("10.190.{net}.{}", sub + 1), format!("10.190.{net}.{}", sub + 2));
        let (ours, theirs) = (format!("xbha{id}"), format!("xbhb{id}"));
        let _ = Command::new("ip").args(["netns", "del", &ns]).stderr(Stdio::null()).status();
        sh(&["ip", "netns", "add", &ns]);
        let this = Blackholed { ns: ns.clone(), host: host.parse().unwrap(), inside: inside.parse().unwrap() };
        sh(&["ip", "link", "add", &ours, "type", "veth", "peer", "name", &theirs, "netns", &ns]);
        sh(&["ip", "addr", "add", &format!("{host}/30"), "dev", &ours]);
        sh(&["ip", "link", "set", &ours, "up"]);
        let inside_ns = |args: &[&str]| sh(&[&["ip", "netns", "exec", &ns], args].concat());
        inside_ns(&["ip", "link", "set", "lo", "up"]);
        inside_ns(&["ip", "addr", "add", &format!("{inside}/30"), "dev", &theirs]);
        inside_ns(&["ip", "link", "set", &theirs, "up"]);
        inside_ns(&["ip", "route", "add", "default", "via", &host]);
        inside_ns(&["ip", "route", "add", "blackhole", "192.0.2.1/32"]);
        inside_ns(&["ip", "link", "add", "vanish", "type", "veth", "peer", "name", "void"]);
        inside_ns(&["ip", "link", "set", "vanish", "up"]);
        inside_ns(&["ip", "link", "set", "void", "up"]);
        inside_ns(&["ip", "route", "add", "192.0.2.2/32", "dev", "vanish"]);
        inside_ns(&[
            "ip",
            "neigh",
            "add",
            "192.0.2.2",
            "lladdr",
            "02:00:00:00:00:01",
            "dev",
            "vanish",
            "nud",
            "permanent",
        ]);
        this
    }

    /// A sidecar inside the namespace, reachable from here, reporting to `daemon`.
    fn sidecar(&self, upstream: &Upstream, daemon: &str) -> Sidecar {
        let rules = support::sample_all_rules();
        let (listen, admin) = (SocketAddr::new(self.inside, 15100), SocketAddr::new(self.inside, 15102));
        // `ip netns exec` execs in place: the child is the sidecar itself.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, env!("CARGO_BIN_EXE_xray-sidecar"), "proxy"])
            .args(["--listen", &listen.to_string(), "--admin-listen", &admin.to_string()])
            .args(["--upstream", &format!("http://{}", upstream.addr), "--service-name", "front-end"])
            .args(["--daemon-address", daemon, "--sampling-rules", rules.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let sc = Sidecar { child, listen, admin, outbound: None };
        sc.wait_ready();
        sc
    }
}

impl Drop for Blackholed {
    fn drop(&mut self) {
        // The veth pair goes with the namespace.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_daemon_fails_no_request() {
    if !is_root() {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let lab = Blackholed::new();
    let up = Upstream::start_at(lab.host).await;
    {
        let sc = lab.sidecar(&up, BLACKHOLE_ROUTE);
        let m = every_request_served(&sc, "daemon behind a blackhole route").await;
        assert_eq!(count(&m, "xray_sidecar_daemon_send_errors_total"), REQUESTS, "{m}");
    }
    let sc = lab.sidecar(&up, VANISHING);
    let m = every_request_served(&sc, "daemon whose datagrams vanish").await;
    // Nothing tells the sender: every datagram leaves, and is lost on the way.
    assert_eq!(count(&m, "xray_sidecar_segments_emitted_total"), REQUESTS, "{m}");
    // They reached the far end of the link, where no host took them. Counted in bytes: a UDP GSO
    // send crosses the veth pair as one packet however many datagrams it carries.
    let received = Command::new("ip")
        .args(["netns", "exec", &lab.ns, "cat", "/sys/class/net/void/statistics/rx_bytes"])
        .output()
        .unwrap();
    let received: usize = String::from_utf8_lossy(&received.stdout).trim().parse().unwrap_or(0);
    // A segment of this request is some 400 bytes; 250 each leaves room yet fails if a third is missing.
    assert!(received >= REQUESTS * 250, "only {received} bytes of segments went into the void");
}
