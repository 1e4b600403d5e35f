//! `xray-sidecar init`: the dry run, and the real rules applied twice in a fresh network namespace.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn init(prefix: &[&str], args: &[&str]) -> (bool, String, String) {
    let (cmd, pre) = prefix.split_first().map_or((env!("CARGO_BIN_EXE_xray-sidecar"), &[][..]), |(c, rest)| (*c, rest));
    let mut c = Command::new(cmd);
    c.args(pre);
    if !prefix.is_empty() {
        c.arg(env!("CARGO_BIN_EXE_xray-sidecar"));
    }
    let out = c.arg("init").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn dry_run_prints_both_families_and_needs_no_root() {
    let (ok, out, err) =
        init(&[], &["--dry-run", "--exclude-outbound-cidrs", "10.0.0.0/8,fd00::/8", "--proxy-uid", "1234"]);
    assert!(ok, "{err}");
    assert!(out.contains("# iptables-restore --noflush\n*nat\n"), "{out}");
    assert!(out.contains("# ip6tables-restore --noflush\n*nat\n"), "{out}");
    assert!(out.contains("-A XRAY_OUTBOUND -m owner --uid-owner 1234 -j RETURN"));
    assert_eq!(out.matches("COMMIT").count(), 2);
}

#[test]
fn a_bad_value_names_the_flag() {
    let (ok, _, err) = init(&[], &["--dry-run", "--exclude-outbound-cidrs", "10.0.0.0/40"]);
    assert!(!ok);
    assert!(err.contains("--exclude-outbound-cidrs"), "{err}");
}

#[test]
fn rules_that_would_break_the_pod_or_intercept_nothing_are_refused() {
    for (args, says) in [
        (&["--inbound-port", "0"][..], "--inbound-port 0"),
        (&["--inbound-port", "15101", "--outbound-port", "15101"][..], "both 15101"),
        (&["--include-inbound-ports", "8080", "--exclude-inbound-ports", "8080"][..], "port 8080 is in both"),
        (&["--proxy-uid", "0"][..], "must not run as root"),
    ] {
        let (ok, out, err) = init(&[], &[&["--dry-run"][..], args].concat());
        assert!(!ok && out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn applying_twice_in_a_namespace_leaves_one_set_of_rules() {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    if !root {
        eprintln!("SKIPPED: applying iptables rules needs root (CI runs it as root)");
        return;
    }
    let ns = format!("xray-init-{}", std::process::id());
    assert!(Command::new("ip").args(["netns", "add", &ns]).status().unwrap().success());
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _cleanup = Cleanup(ns.clone());
    let exec = ["ip", "netns", "exec", ns.as_str()];
    for _ in 0..2 {
        let (ok, _, err) = init(&exec, &["--exclude-inbound-ports", "22"]);
        assert!(ok, "init failed: {err}");
    }
    let saved = Command::new("ip").args(["netns", "exec", &ns]).args(["iptables-save", "-t", "nat"]).output().unwrap();
    let saved = String::from_utf8_lossy(&saved.stdout);
    assert_eq!(saved.matches("-A PREROUTING -p tcp -j XRAY_INBOUND").count(), 1, "{saved}");
    assert_eq!(saved.matches("-A OUTPUT -p tcp -j XRAY_OUTBOUND").count(), 1, "{saved}");
    assert_eq!(saved.matches("--uid-owner 2500").count(), 1, "{saved}");
    assert_eq!(saved.matches("--dport 22 -j RETURN").count(), 1, "{saved}");
    assert!(saved.contains("-j REDIRECT --to-ports 15101"), "{saved}");
}
