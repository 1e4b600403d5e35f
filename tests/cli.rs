//! The command line: bad values stop start-up with one clear line naming the flag, never a panic.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xray-sidecar"));
    cmd.args(args);
    for var in ["XRAY_SIDECAR_UPSTREAM", "AWS_XRAY_TRACING_NAME", "AWS_XRAY_DAEMON_ADDRESS", "XRAY_SIDECAR_LISTEN"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    // A value taken where it should have been refused would leave the proxy serving: stopped after
    // a while, it fails the test rather than hanging it.
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_values_name_the_flag_and_exit_non_zero() {
    let base = ["proxy", "--listen", "127.0.0.1:0", "--service-name", "svc"];
    let cases: &[(&[&str], &str)] = &[
        (&["--upstream", "http://127.0.0.1:1", "--daemon-address", "nowhere"], "--daemon-address"),
        (&["--upstream", "ftp://x"], "--upstream"),
        (&[], "--upstream"),
        (&["--upstream", "http://127.0.0.1:1", "--connect-timeout", "soon"], "--connect-timeout"),
        (&["--upstream", "http://127.0.0.1:1", "--sampling-rules", "/nonexistent/rules.json"], "--sampling-rules"),
        (&["--upstream", "http://127.0.0.1:1", "--max-header-size", "10"], "--max-header-size"),
        // Beyond what the clock can add to now, it made every connection's task panic.
        (&["--upstream", "http://127.0.0.1:1", "--keep-alive-timeout", "9999999999999999999"], "--keep-alive-timeout"),
    ];
    for (extra, flag) in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let (code, stderr) = run(&args, &[]);
        assert_ne!(code, 0, "{args:?}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn an_unparsable_rules_file_is_a_start_up_error_with_the_reason() {
    let path = std::env::temp_dir().join(format!("bad-rules-{}.json", std::process::id()));
    std::fs::write(&path, r#"{"version": 2, "default": {"fixed_target": 1, "rate": 7}}"#).unwrap();
    let (code, stderr) = run(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:1",
            "--sampling-rules",
            path.to_str().unwrap(),
        ],
        &[("AWS_XRAY_TRACING_NAME", "svc")],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("--sampling-rules") && stderr.contains("rate 7"), "{stderr}");
}

#[test]
fn flags_can_come_from_the_environment() {
    let (code, stderr) = run(
        &["proxy", "--listen", "127.0.0.1:0"],
        &[
            ("XRAY_SIDECAR_UPSTREAM", "http://127.0.0.1:1"),
            ("AWS_XRAY_TRACING_NAME", "svc"),
            ("AWS_XRAY_DAEMON_ADDRESS", "tcp:127.0.0.1:2000 udp:"),
        ],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("--daemon-address"), "{stderr}");
}

#[test]
fn help_explains_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_xray-sidecar")).args(["proxy", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--upstream",
        "--service-name",
        "--daemon-address",
        "--sampling-rules",
        "--admin-listen",
        "XRAY_SIDECAR_LISTEN",
        "AWS_XRAY_DAEMON_ADDRESS",
        "AWS_XRAY_TRACING_NAME",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}
