//! Health checks stay off the service map: kubelet probes and requests to the probe paths are
//! forwarded and counted but produce no segment, unless tracing them is asked for.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;
use support::upstream::Upstream;
use support::{Daemon, Sidecar, http_get};

#[tokio::test]
async fn kube_probes_and_probe_paths_are_forwarded_but_never_recorded() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &["--probe-paths", "/healthz,/ready"]);
    for (path, ua) in [
        ("/", "kube-probe/1.33"),
        ("/healthz", "kube-probe/1.33"),
        ("/ready", "ELB-HealthChecker/2.0"),
        // An ALB's target health check on a path that is no probe's.
        ("/lb-check", "ELB-HealthChecker/2.0"),
    ] {
        let (status, headers, body) = http_get(&sc.url(path), &[("User-Agent", ua)]).await;
        assert_eq!((status, body.as_str()), (200, "ok\n"), "{path} is forwarded");
        assert!(headers["x-amzn-trace-id"].to_str().unwrap().ends_with("Sampled=0"), "{headers:?}");
    }
    daemon.nothing(Duration::from_millis(500)).await;

    // A caller's own decision still wins: its trace is not cut short.
    let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    http_get(&sc.url("/healthz"), &[("User-Agent", "kube-probe/1.33"), ("X-Amzn-Trace-Id", header)]).await;
    assert_eq!(daemon.take(1).await[0]["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");

    let (status, _, _) = http_get(&sc.url("/healthz/deep"), &[("User-Agent", "curl/8.5")]).await;
    assert_eq!(status, 200);
    assert_eq!(daemon.take(1).await[0]["http"]["request"]["url"], sc.url("/healthz/deep").as_str());
    let m = sc.metrics().await;
    assert!(m.contains("xray_sidecar_sampling_decisions_total{source=\"health_check\",sampled=\"false\"} 4"), "{m}");
    assert!(m.contains("xray_sidecar_requests_total{direction=\"inbound\",status_class=\"2xx\"} 6"), "{m}");
}

#[tokio::test]
async fn health_checks_are_traced_when_asked() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::sample_all(&up.url(), daemon.addr, &["--probe-paths", "/healthz", "--sample-health-checks"]);
    http_get(&sc.url("/healthz"), &[("User-Agent", "kube-probe/1.33")]).await;
    let doc = &daemon.take(1).await[0];
    assert_eq!(doc["http"]["request"]["user_agent"], "kube-probe/1.33");
}
