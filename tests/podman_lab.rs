//! The lab (`k8s/base/lab`) as real container pods: the images `scripts/images` builds, the pods
//! `xray-injector inject -f` describes, run by `podman kube play` on a bridge network (each pod one
//! shared network namespace, as in Kubernetes), and `xray-sidecar console` on the host in the X-Ray
//! daemon's place. The front-end calls the back-end by address once a second; requests also come
//! from the host.
//!
//! Needs rootful podman with runc; when podman is not usable it says why and skips. CI runs it.
#![allow(clippy::unwrap_used)]

#[path = "support/podman.rs"]
mod podman;
#[path = "support/podman_lab.rs"]
mod podman_lab;
mod support;

use podman::Podman;
use podman_lab::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The init container's exit code, user and capabilities.
const INIT_STATE: &str = "{{.State.ExitCode}} {{.Config.User}} {{.EffectiveCaps}}";

#[test]
fn the_injected_lab_runs_as_podman_pods_and_draws_client_front_end_back_end() {
    let id = std::process::id();
    let dir = std::env::temp_dir().join(format!("xray-podman-lab-{id}"));
    let mut podman = match Podman::usable(&dir) {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED: podman_lab: {why}");
            return;
        }
    };

    // The images, from the binaries this test run built, on the debootstrap base.
    let started = Instant::now();
    let (sidecar, injector) = build_images(&mut podman, &format!("lab-{id}"));
    eprintln!("podman_lab: images built in {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(podman.run(&["image", "inspect", &sidecar, "--format", "{{.Config.User}}"]), "2500:2500");
    let nft = podman.run(&["run", "--rm", "--entrypoint", "iptables-nft", &sidecar, "--version"]);
    let legacy = podman.run(&["run", "--rm", "--entrypoint", "iptables-legacy", &sidecar, "--version"]);
    assert!(nft.contains("nf_tables") && legacy.contains("legacy"), "{nft} / {legacy}");
    assert_eq!(podman.run(&["run", "--rm", &injector, "--version"]), "xray-injector 0.1.0");
    lab_image(&podman, &dir);

    // The network, the back-end pod, the console on the network's gateway, the front-end pod.
    let network = format!("xray-lab-{id}");
    let gateway = podman.network(&network);
    let (back, front) = (format!("back-end-{id}"), format!("front-end-{id}"));
    let console_port = support::free_udp_port();
    let daemon = format!("{gateway}:{console_port}");
    let lab = Lab { sidecar_image: &sidecar, daemon: &daemon, suffix: &format!("-{id}") };
    let back_yaml = lab.manifest("k8s/base/lab/back-end.yaml", "http://unused/");
    podman.play(&back_yaml, &network, &[&back]);
    let back_ip = podman.pod_ip(&back);
    let console = Console::start(&daemon);
    let front_yaml = lab.manifest("k8s/base/lab/front-end.yaml", &format!("http://{back_ip}:8080/"));
    podman.play(&front_yaml, &network, &[&front]);
    let front_ip = podman.pod_ip(&front);

    // Each sidecar's readiness endpoint turns ready; the users are the manifest's.
    for ip in [&back_ip, &front_ip] {
        wait_until(Duration::from_secs(30), &format!("{ip}:15102/ready"), || {
            get(&format!("{ip}:15102"), "/ready").map(|(s, _)| s == 200).unwrap_or(false)
        });
    }
    assert_eq!(podman.run(&["exec", &format!("{front}-xray-sidecar"), "id", "-u"]), "2500");
    assert_eq!(podman.run(&["exec", &format!("{front}-front-end"), "id", "-u"]), "1000");

    // The init container ran in each pod with the manifest's UID and capabilities; run again the
    // same way (as a restarted pod would), it leaves the rules exactly as they were.
    let init = init_container(&front_yaml);
    for pod in [&back, &front] {
        let ran = podman.run(&["inspect", &format!("{pod}-xray-sidecar-init"), "--format", INIT_STATE]);
        assert_eq!(ran, "0 0 [CAP_NET_ADMIN CAP_NET_RAW]", "{pod}: exit code, user, capabilities");
        let before = nat_rules(&podman, pod);
        assert!(before.contains("-A PREROUTING -p tcp -j XRAY_INBOUND"), "{pod}: {before}");
        assert!(before.contains("-A OUTPUT -p tcp -j XRAY_OUTBOUND"), "{pod}: {before}");
        let mut args = vec!["run".to_owned(), "--rm".into(), "--pod".into(), pod.clone()];
        args.extend(init.run_args());
        args.push(sidecar.clone());
        args.extend(init.args.iter().cloned());
        let out = podman.command(&args.iter().map(String::as_str).collect::<Vec<_>>()).output().unwrap();
        assert!(out.status.success(), "init again in {pod}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(nat_rules(&podman, pod), before, "{pod}: init run again changed the rules");
    }

    // Requests from the host: every one answered by the back-end through both sidecars.
    let mut host_ok = 0;
    for _ in 0..5 {
        let (status, body) = get(&format!("{front_ip}:8080"), "/").unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("hello from back-end"), "{body}");
        host_ok += 1;
    }

    // A restart of the front-end's sidecar: the application keeps running and its traffic is
    // back as soon as the proxy is.
    let app = format!("{front}-front-end");
    let app_started = podman.run(&["inspect", &app, "--format", "{{.State.StartedAt}}"]);
    let restart = Instant::now();
    podman.run(&["restart", "-t", "10", &format!("{front}-xray-sidecar")]);
    let restarted = restart.elapsed();
    let back_up = Instant::now();
    wait_until(Duration::from_secs(10), "a request after the sidecar's restart", || {
        let ok = get(&format!("{front_ip}:8080"), "/").map(|(s, _)| s == 200).unwrap_or(false);
        host_ok += usize::from(ok);
        ok
    });
    let gap = back_up.elapsed();
    eprintln!("podman_lab: sidecar restart took {restarted:?}; traffic back {gap:?} after it");
    assert!(gap < Duration::from_secs(3), "traffic broken {gap:?} beyond the restart");
    assert_eq!(podman.run(&["inspect", &app, "--format", "{{.State.StartedAt}}"]), app_started);
    for _ in 0..3 {
        assert_eq!(get(&format!("{front_ip}:8080"), "/").unwrap().0, 200);
        host_ok += 1;
    }

    // Let the front-end call the back-end a few more times, then stop it: nothing is in flight.
    std::thread::sleep(Duration::from_secs(3));
    podman.run(&["pod", "stop", "-t", "2", &front]);
    std::thread::sleep(Duration::from_millis(500));
    let docs = console.documents(Duration::from_secs(2));
    support::validate(&docs);
    let back_requests =
        podman.run(&["logs", &format!("{back}-back-end")]).lines().filter(|l| l.starts_with("request")).count();
    check_every_call_traced(&docs, host_ok, back_requests, &back_ip);

    // The service map, as the console draws it from these pods.
    let graph = console.service_graph();
    let artifact = support::repo_root().join("tests/artifacts/podman_lab_service_graph.json");
    std::fs::create_dir_all(artifact.parent().unwrap()).unwrap();
    std::fs::write(&artifact, serde_json::to_string_pretty(&graph).unwrap()).unwrap();
    assert_edge(&graph, "client", "front-end");
    assert_edge(&graph, "front-end", "back-end");
    let shot = artifact.with_file_name("podman_lab_service_map.png");
    if let Some(bytes) = console.screenshot(&shot) {
        assert!(bytes > 10_000, "{} is {bytes} bytes", shot.display());
    }
    let names: Vec<&str> = graph["Services"].as_array().unwrap().iter().filter_map(|s| s["Name"].as_str()).collect();
    eprintln!("podman_lab: service map {names:?} saved to {}", artifact.display());
}

/// Every request the back-end's application received has a back-end segment under a front-end
/// segment of the same trace, and every request from the host has its front-end segment.
fn check_every_call_traced(docs: &[Value], host_ok: usize, back_requests: usize, back_ip: &str) {
    let fronts: Vec<&Value> = docs.iter().filter(|d| d["name"] == "front-end").collect();
    let backs: Vec<&Value> = docs.iter().filter(|d| d["name"] == "back-end").collect();
    let inbound = fronts.iter().filter(|f| f["annotations"]["direction"] == "inbound").count();
    assert_eq!(inbound, host_ok, "a front-end segment per request from the host");
    assert!(back_requests >= host_ok + 3, "the front-end's own calls once a second: {back_requests}");
    assert_eq!(backs.len(), back_requests, "a back-end segment per request its application got");
    // The front-end's calls: subsegments inside its segments, or sent on their own under them.
    let front_ids: Vec<&Value> = fronts.iter().map(|f| &f["id"]).collect();
    let calls: Vec<&Value> = fronts
        .iter()
        .flat_map(|f| f["subsegments"].as_array().into_iter().flatten())
        .chain(docs.iter().filter(|d| d["type"] == "subsegment" && front_ids.contains(&&d["parent_id"])))
        .collect();
    for b in &backs {
        assert_eq!(b["annotations"]["direction"], "inbound", "{b}");
        assert_eq!(b["http"]["response"]["status"], 200, "{b}");
        let call = calls.iter().find(|c| c["id"] == b["parent_id"]).unwrap_or_else(|| {
            let same: Vec<&Value> = docs.iter().filter(|d| d["trace_id"] == b["trace_id"]).collect();
            panic!("no front-end call above {b}: {same:#?}")
        });
        assert_eq!(call["name"], back_ip, "{call}");
        assert_eq!(call["namespace"], "remote", "{call}");
        assert_eq!(call["http"]["response"]["status"], 200, "{call}");
    }
}

fn assert_edge(graph: &Value, from: &str, to: &str) {
    let service = |name: &str| {
        graph["Services"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["Name"] == name))
            .unwrap_or_else(|| panic!("no node {name} in {graph}"))
            .clone()
    };
    let to_ref = service(to)["ReferenceId"].clone();
    let edges = service(from)["Edges"].clone();
    assert!(
        edges.as_array().is_some_and(|e| e.iter().any(|e| e["ReferenceId"] == to_ref)),
        "no edge {from} -> {to} in {graph}"
    );
}

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
