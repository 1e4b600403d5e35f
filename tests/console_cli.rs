//! The `xray-sidecar console` command: prints where it listens, serves, and stops cleanly on Ctrl-C.

#[path = "support/console.rs"]
mod console_support;

use console_support::*;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn console_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xray-sidecar"));
    cmd.arg("console").args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Waits for the child to exit, at most `limit`.
fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the console did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn serves_until_ctrl_c() {
    let mut child = console_command(&["--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--max-traces", "5"])
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("reader task")
    .expect("a line on stdout");
    // "xray-sidecar console: send segments to udp 127.0.0.1:P and open http://127.0.0.1:Q/"
    let words: Vec<&str> = line.split_whitespace().collect();
    let udp: SocketAddr =
        words[words.iter().position(|w| *w == "udp").expect("udp word") + 1].parse().expect("udp address");
    let url = words.last().expect("url");
    let http: SocketAddr = url.trim_start_matches("http://").trim_end_matches('/').parse().expect("http address");

    let docs: Vec<String> = (0..8).flat_map(|i| three_tier(now() - 10.0 + f64::from(i), 200, "10.0.0.1")).collect();
    send_documents(udp, &docs).await;
    let stats = wait_for_stats(http, |s| s["Received"] == 16).await;
    assert_eq!((stats["Traces"].as_u64(), stats["MaxTraces"].as_u64()), (Some(5), Some(5)));

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status().expect("kill runs");
    assert!(killed.success());
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(15))).await.expect("wait task");
    assert!(status.success(), "Ctrl-C is a clean stop: {status}");
}

#[test]
fn bad_arguments_and_taken_ports_fail_with_a_message() {
    let out = console_command(&["--max-traces", "0"]).output().expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-traces"));

    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = console_command(&["--udp", &addr, "--http", "127.0.0.1:0"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("cannot listen for segments on udp {addr}")), "{stderr}");
}
