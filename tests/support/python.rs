//! Python applications the tests run beside the proxy: the Flask app with the real X-Ray SDK and the
//! app or client with the real OpenTelemetry SDK.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{first_line, repo_root};

/// A Python server process, killed on drop.
pub struct PythonApp {
    child: Child,
    /// Where it listens.
    pub port: u16,
}

impl Drop for PythonApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PythonApp {
    /// Runs `tests/support/{script}` with `args`, where `{port}` stands for 0, and waits for the
    /// port it bound, which it prints on its first line. (A port found free here and bound later
    /// could be taken by another test in between, and the requests would reach that test's app.)
    pub fn start(script: &str, args: &[&str]) -> PythonApp {
        let args: Vec<String> = args.iter().map(|a| a.replace("{port}", "0")).collect();
        let mut child = Command::new("python3")
            .arg(repo_root().join("tests/support").join(script))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let line = first_line(&mut child);
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("{script} did not start (printed {line:?}): are tests/requirements.txt installed (scripts/setup)?")
        });
        PythonApp { child, port }
    }

    /// The Flask app with the X-Ray SDK, reporting to `daemon` as `name`.
    pub fn flask(daemon: SocketAddr, name: &str) -> PythonApp {
        PythonApp::start("flask_app.py", &["{port}", &daemon.to_string(), name])
    }

    /// The OpenTelemetry app reading context with `propagator` (`w3c` or `xray`).
    pub fn otel(propagator: &str) -> PythonApp {
        PythonApp::start("otel_app.py", &["serve", "{port}", propagator])
    }

    /// The OTLP receiver decoding with `opentelemetry-proto`; its first `fail_first` requests are
    /// answered with 503.
    pub fn otlp_receiver(fail_first: u32) -> PythonApp {
        PythonApp::start("otlp_receiver.py", &["{port}", &fail_first.to_string()])
    }

    /// What the OTLP receiver kept.
    pub async fn received(&self) -> serde_json::Value {
        let (_, _, body) = super::http_get(&self.url("/received"), &[]).await;
        serde_json::from_str(&body).expect("received is JSON")
    }

    /// What the OTLP receiver kept, and every span in it, once there are at least `n` (fails the
    /// test after 20 s).
    pub async fn received_spans(&self, n: usize) -> (serde_json::Value, Vec<serde_json::Value>) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.received().await;
            let spans: Vec<serde_json::Value> = got["batches"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|b| b["spans"].as_array().unwrap().clone())
                .collect();
            if spans.len() >= n {
                return (got, spans);
            }
            assert!(Instant::now() < deadline, "expected {n} spans, got {}: {got:#}", spans.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// The spans the OpenTelemetry app finished so far.
    pub async fn spans(&self) -> Vec<serde_json::Value> {
        let (_, _, body) = super::http_get(&self.url("/spans"), &[]).await;
        serde_json::from_str(&body).expect("span list is JSON")
    }
}

/// One request to `url` inside an OpenTelemetry CLIENT span using `propagator`: the span, the
/// headers sent, and the answer (status, headers).
pub fn otel_call(url: &str, propagator: &str) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(repo_root().join("tests/support/otel_app.py"))
        .args(["call", url, propagator])
        .stderr(Stdio::inherit())
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "the OpenTelemetry client failed");
    serde_json::from_slice(&out.stdout).expect("the client prints JSON")
}
