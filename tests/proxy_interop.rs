//! Interoperability with the real AWS X-Ray SDK for Python: an instrumented Flask app behind the
//! proxy must nest its segment under ours, in the same trace.
#![allow(clippy::unwrap_used)]

mod support;

use support::python::PythonApp;
use support::{Daemon, Sidecar, http_get};

#[tokio::test]
async fn the_python_sdk_nests_its_segment_under_ours() {
    let daemon = Daemon::start().await;
    let flask = PythonApp::flask(daemon.addr, "sdk-backend");
    let sc = Sidecar::sample_all(&flask.url(""), daemon.addr, &[]);

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
