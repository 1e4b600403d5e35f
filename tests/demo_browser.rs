//! The README's main command, end to end: `xray-sidecar demo` runs the lab, and headless Chromium
//! checks its console shows client → front-end → back-end, narrows the list by status, and nests
//! a trace's bars. Screenshots land in `tests/artifacts/demo-*.png`.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{http_get, is_root, printed_page, repo_root};

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_the_lab_in_the_console() {
    let chromium = std::path::Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        assert!(std::env::var_os("CI").is_none() && !is_root(), "chromium is missing: run scripts/setup");
        eprintln!("SKIPPED: chromium is missing and only root can install it");
        return;
    }
    // Ports it picks itself (a port only found free here could be taken before the demo binds
    // it); its first line names the page.
    let child = Command::new(env!("CARGO_BIN_EXE_xray-sidecar"))
        .args(["demo", "--rate", "20", "--http", "127.0.0.1:0", "--udp", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut demo = Demo(child);
    let page = printed_page(&mut demo.0, "demo");
    let base = format!("http://{page}");

    // Wait until the traffic has produced every kind of answer the list should show.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the demo produced no 200, 404 and 500 traces within a minute");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(Ok((200, _, body))) = tokio::time::timeout(Duration::from_secs(2), async {
            Ok::<_, ()>(http_get(&format!("{base}/api/trace-summaries?limit=500"), &[]).await)
        })
        .await
        .map_err(|_| ()) else {
            continue;
        };
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        let statuses: Vec<u64> = v["TraceSummaries"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t["Http"]["HttpStatus"].as_u64()).collect())
            .unwrap_or_default();
        if [200, 404, 500].iter().all(|s| statuses.contains(s)) {
            break;
        }
    }

    // The map's data first: the edges the page must draw.
    let (_, _, graph) = http_get(&format!("{base}/api/service-graph"), &[]).await;
    let graph: Value = serde_json::from_str(&graph).unwrap();
    let services = graph["Services"].as_array().unwrap();
    let id_of = |name: &str| services.iter().find(|s| s["Name"] == name).map(|s| s["ReferenceId"].clone());
    let edge = |from: &str, to: &str| {
        let to = id_of(to).unwrap();
        services.iter().find(|s| s["Name"] == from).unwrap()["Edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["ReferenceId"] == to)
    };
    assert!(edge("client", "front-end") && edge("front-end", "back-end"), "{graph:#}");

    let script = repo_root().join("tests/fixtures/console/browser_check.py");
    let artifacts = repo_root().join("tests/artifacts");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(&script)
            .arg(format!("{base}/"))
            .arg(&artifacts)
            .arg("/usr/bin/chromium")
            .arg("--demo")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser check failed:\n{stdout}\n{stderr}");
    println!("{stdout}");
    for shot in ["demo-map.png", "demo-traces-500.png", "demo-timeline.png", "demo-sampling.png"] {
        let size = std::fs::metadata(repo_root().join("tests/artifacts").join(shot)).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{shot} should be a real screenshot ({size} bytes)");
    }
}
