//! Interoperability with the real AWS X-Ray SDK for Python: an instrumented Flask app behind the
//! proxy must nest its segment under ours, in the same trace.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Daemon, Sidecar, free_port, http_get, repo_root};

struct Flask(Child);

impl Drop for Flask {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_flask(port: u16, daemon: std::net::SocketAddr) -> Flask {
    let child = Command::new("python3")
        .arg(repo_root().join("tests/support/flask_app.py"))
        .args([&port.to_string(), &daemon.to_string(), "sdk-backend"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the Flask app did not start: is aws-xray-sdk installed (scripts/setup)?");
        std::thread::sleep(Duration::from_millis(100));
    }
    Flask(child)
}

#[tokio::test]
async fn the_python_sdk_nests_its_segment_under_ours() {
    let daemon = Daemon::start().await;
    let port = free_port();
    let _flask = start_flask(port, daemon.addr);
    let sc = Sidecar::sample_all(&format!("http://127.0.0.1:{port}"), daemon.addr, &[]);

    for (path, status) in [("/", 200), ("/boom", 500)] {
        let (got, headers, _) = http_get(&sc.url(path), &[]).await;
        assert_eq!(got, status);
        let docs = daemon.take(2).await;
        let ours = docs.iter().find(|d| d["name"] == "front-end").expect("our segment");
        let sdk = docs.iter().find(|d| d["name"] == "sdk-backend").expect("the SDK's segment");
        assert_eq!(sdk["parent_id"], ours["id"], "SDK segment must nest under ours");
        assert_eq!(sdk["trace_id"], ours["trace_id"]);
        assert!(ours.get("parent_id").is_none());
        assert_eq!(sdk["http"]["response"]["status"], status);
        assert_eq!(ours["http"]["response"]["status"], status);
        let root = headers["x-amzn-trace-id"].to_str().unwrap();
        assert!(root.starts_with(&format!("Root={}", ours["trace_id"].as_str().unwrap())), "{root}");
        // The SDK's segment starts inside ours.
        assert!(sdk["start_time"].as_f64() >= ours["start_time"].as_f64());
        assert!(sdk["end_time"].as_f64() <= ours["end_time"].as_f64());
    }
}
