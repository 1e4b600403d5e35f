//! End to end in a real browser: headless Chromium opens the console's page fed with
//! client → front-end → back-end traces and checks the map, the status filter, the timeline and the
//! sampling rules view (a rule created, listed with the statistics a client reports, edited, deleted),
//! and that markup a client or an application put in a document or a rule is shown, never run.
//! Screenshots of each view land in `tests/artifacts/`.

#[path = "support/console.rs"]
mod console_support;

use console_support::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's Chromium, which `scripts/setup` installs; `CHROMIUM` overrides the path.
fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_shows_map_filtered_list_and_timeline() {
    let browser = chromium();
    if !browser.exists() {
        // CI and root can install it (scripts/setup does): there its absence is a failure.
        assert!(
            std::env::var_os("CI").is_none() && !is_root(),
            "{} is missing: run scripts/setup (it installs Debian's chromium)",
            browser.display()
        );
        eprintln!("skipping: {} is missing and only root can install it", browser.display());
        return;
    }
    let running = start(loopback_config()).await;
    let (udp, http) = (running.console.udp_addr(), running.console.http_addr());

    // A minute of traffic at one request a second: mostly 200, some 500s from the back-end, some 404s.
    let begin = now() - 60.0;
    let ips = ["10.0.3.17", "10.0.3.99", "192.168.7.5"];
    let docs: Vec<String> = (0..60u32)
        .flat_map(|i| {
            let status = match i % 10 {
                3 | 8 => 500,
                5 => 404,
                _ => 200,
            };
            three_tier(begin + f64::from(i), status, ips[i as usize % ips.len()])
        })
        .collect();
    send_documents(udp, &docs).await;
    wait_for_stats(http, |s| s["Accepted"] == docs.len()).await;

    let script = repo_root().join("tests/fixtures/console/browser_check.py");
    let artifacts = repo_root().join("tests/artifacts");
    let url = running.console.url();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(&url)
            .arg(&artifacts)
            .arg(&browser)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs (scripts/setup installs playwright from tests/requirements.txt)");
        let deadline = Instant::now() + Duration::from_secs(180);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        child.wait_with_output()
    })
    .await
    .expect("the browser task")
    .expect("the browser script's output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the browser check failed:\n{stdout}\n{stderr}");
    println!("{stdout}");
    for shot in ["console-map.png", "console-traces-500.png", "console-timeline.png", "console-sampling.png"] {
        let path = repo_root().join("tests/artifacts").join(shot);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} should be a real screenshot ({size} bytes)", path.display());
    }
}
