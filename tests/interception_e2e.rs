//! End to end through real iptables interception: two "pods" as network namespaces joined by a veth
//! pair, each with an unmodified application, the sidecar running as its own UID and
//! `xray-sidecar init` applied. The front-end's application calls the back-end's address directly.
//!
//! Needs root (network namespaces, iptables). When not root it says so and skips; CI runs as root.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{is_root, sh};

const PROXY_UID: &str = "2500";

/// Two namespaces and everything running in them, torn down on drop (also when a check fails).
struct Lab {
    front: String,
    back: String,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.front, &self.back] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    fn spawn(&mut self, ns: &str, args: &[&str], stdout: Stdio) -> &mut Child {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        self.children.push(child);
        self.children.last_mut().unwrap()
    }

    fn exec(&self, ns: &str, args: &[&str]) -> String {
        let out = Command::new("ip").args(["netns", "exec", ns]).args(args).output().unwrap();
        assert!(out.status.success(), "{ns} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a sidecar as the proxy UID and applies the interception rules in `ns`.
    fn pod(&mut self, ns: &str, service: &str, daemon: &str) -> u32 {
        self.pod_with(ns, service, daemon, "127.0.0.1:15101", &[])
    }

    /// Like `pod`, with the outbound listener at `outbound` and more `init` flags; returns the
    /// sidecar's process id.
    fn pod_with(&mut self, ns: &str, service: &str, daemon: &str, outbound: &str, init_extra: &[&str]) -> u32 {
        let bin = self.dir.join("xray-sidecar");
        let rules = self.dir.join("rules.json");
        let (bin, rules) = (bin.to_str().unwrap().to_owned(), rules.to_str().unwrap().to_owned());
        let init = self.exec(
            ns,
            &[
                &bin,
                "init",
                "--proxy-uid",
                PROXY_UID,
                "--inbound-port",
                "15100",
                "--outbound-port",
                "15101",
                "--admin-port",
                "15102",
            ]
            .iter()
            .chain(init_extra)
            .copied()
            .collect::<Vec<_>>(),
        );
        eprintln!("{ns}: init: {init}");
        #[rustfmt::skip]
        let args = [
            "setpriv", "--reuid", PROXY_UID, "--regid", PROXY_UID, "--clear-groups", &bin, "proxy", "--transparent",
            "--listen", "0.0.0.0:15100", "--outbound-listen", outbound, "--admin-listen", "0.0.0.0:15102",
            "--service-name", service, "--daemon-address", daemon, "--sampling-rules", &rules,
        ];
        // `ip netns exec` and `setpriv` exec in place: the child is the sidecar itself.
        let pid = self.spawn(ns, &args, Stdio::null()).id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.metrics(ns).starts_with("# HELP") {
            assert!(Instant::now() < deadline, "{service} sidecar did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        pid
    }

    /// The sidecar's /metrics, read from inside the namespace (loopback is never intercepted).
    fn metrics(&self, ns: &str) -> String {
        let script = "import urllib.request as u\ntry:\n print(u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:15102/metrics', timeout=2).read().decode())\nexcept Exception:\n print('')";
        self.exec(ns, &["python3", "-c", script])
    }
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines().find(|l| l.starts_with(line_start)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0)
}

/// Whether this test cannot run here (it says so): network namespaces and iptables need root.
fn skipped() -> bool {
    if is_root() {
        return false;
    }
    eprintln!("SKIPPED: interception_e2e needs root for network namespaces and iptables (CI runs it as root)");
    true
}

/// Two joined namespaces, `(lab, front ip, back ip)`, nothing running yet; `tag` keeps the names of
/// tests running at once apart.
fn two_namespaces(tag: u32) -> (Lab, String, String) {
    let id = std::process::id() * 4 + tag;
    let net = format!("10.{}.{}", 200 + (id % 50), (id / 50) % 250);
    let (front_ip, back_ip) = (format!("{net}.1"), format!("{net}.2"));
    let dir = std::env::temp_dir().join(format!("xray-e2e-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    // The proxy runs as an unprivileged UID: give it a copy of the binary it can read.
    std::fs::copy(env!("CARGO_BIN_EXE_xray-sidecar"), dir.join("xray-sidecar")).unwrap();
    std::fs::write(dir.join("rules.json"), support::SAMPLE_ALL).unwrap();
    sh(&["chmod", "-R", "a+rX", dir.to_str().unwrap()]);
    let lab = Lab { front: format!("xrf{id}"), back: format!("xrb{id}"), children: Vec::new(), dir };
    let (front, back) = (lab.front.clone(), lab.back.clone());
    let (veth_f, veth_b) = (format!("xvf{}", id % 100000), format!("xvb{}", id % 100000));
    sh(&["ip", "netns", "add", &front]);
    sh(&["ip", "netns", "add", &back]);
    sh(&["ip", "link", "add", &veth_f, "netns", &front, "type", "veth", "peer", "name", &veth_b, "netns", &back]);
    for (ns, veth, ip) in [(&front, &veth_f, &front_ip), (&back, &veth_b, &back_ip)] {
        sh(&["ip", "-n", ns, "addr", "add", &format!("{ip}/24"), "dev", veth]);
        sh(&["ip", "-n", ns, "link", "set", veth, "up"]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    (lab, front_ip, back_ip)
}

#[test]
fn two_pods_behind_iptables_draw_client_front_end_back_end() {
    if skipped() {
        return;
    }
    let (mut lab, front_ip, back_ip) = two_namespaces(0);
    let (front, back) = (lab.front.clone(), lab.back.clone());
    let services = support::repo_root().join("tests/support/netns_services.py");
    let services = services.to_str().unwrap();

    // The daemon's place: a collector in the front namespace, reached over UDP (never intercepted).
    let collector = lab.spawn(&front, &["python3", services, "collector", &front_ip, "2000"], Stdio::piped());
    let (tx, docs) = mpsc::channel::<String>();
    let out = collector.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    assert_eq!(docs.recv_timeout(Duration::from_secs(10)).unwrap(), "ready");

    // The back-end pod: an unmodified HTTP app, a TCP echo service, its sidecar.
    lab.spawn(&back, &["python3", "-m", "http.server", "8080", "--bind", &back_ip], Stdio::null());
    lab.spawn(&back, &["python3", services, "echo", &back_ip, "9000"], Stdio::null());
    // Servers that speak first: on a port that skips detection (MySQL's), and on one that does not.
    lab.spawn(&back, &["python3", services, "banner", &back_ip, "3306"], Stdio::null());
    lab.spawn(&back, &["python3", services, "banner", &back_ip, "7000"], Stdio::null());
    // An HTTPS service whose certificate carries an AWS endpoint's name, reached by its address.
    let certs = lab.dir.clone();
    let san = "subjectAltName=DNS:dynamodb.us-east-1.amazonaws.com";
    let (cert, key) = (certs.join("cert.pem"), certs.join("key.pem"));
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    #[rustfmt::skip]
    sh(&["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
        "-subj", "/CN=dynamodb", "-addext", san, "-keyout", key, "-out", cert]);
    let tls_server = support::repo_root().join("tests/support/tls_server.py");
    lab.spawn(&back, &["python3", tls_server.to_str().unwrap(), cert, key, &back_ip, "443"], Stdio::null());
    let daemon = format!("{front_ip}:2000");
    lab.pod(&back, "back-end", &daemon);
    lab.pod(&front, "front-end", &daemon);

    // The front-end application calls the back-end's address directly.
    let app = support::repo_root().join("tests/support/netns_front_app.py");
    let calls = 3;
    let result = lab.exec(&front, &["python3", app.to_str().unwrap(), &back_ip, &calls.to_string(), cert]);
    let result: Value = serde_json::from_str(result.trim()).unwrap();
    assert_eq!(result["statuses"], serde_json::json!([200, 200, 200]), "{result}");
    assert_eq!(result["tcp_echo_ok"], true, "non-HTTP TCP must pass unchanged: {result}");
    assert_eq!(result["tls_ok"], true, "TLS must pass unterminated: {result}");

    let mut got: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 2 * calls + 1 && Instant::now() < deadline {
        if let Ok(line) = docs.recv_timeout(Duration::from_millis(200)) {
            got.push(serde_json::from_str(&line).unwrap());
        }
    }
    support::validate(&got);
    let is_tunnel = |d: &&Value| d["subsegments"][0]["metadata"]["tunnel"].is_object();
    let (tunnels, fronts): (Vec<&Value>, Vec<&Value>) =
        got.iter().filter(|d| d["name"] == "front-end").partition(is_tunnel);
    let backs: Vec<&Value> = got.iter().filter(|d| d["name"] == "back-end").collect();
    assert_eq!((fronts.len(), backs.len()), (calls, calls), "{got:#?}");
    for f in &fronts {
        assert!(f.get("parent_id").is_none(), "front-end segment must have no parent: {f}");
        let sub = &f["subsegments"][0];
        assert_eq!(sub["namespace"], "remote");
        assert_eq!(sub["name"], back_ip.as_str());
        assert_eq!(sub["traced"], true);
        let b = backs.iter().find(|b| b["parent_id"] == sub["id"]).unwrap_or_else(|| panic!("no back-end under {sub}"));
        assert_eq!(b["trace_id"], f["trace_id"], "one shared trace id");
        assert_eq!(b["http"]["response"]["status"], 200);
        assert_eq!(b["annotations"]["direction"], "inbound");
    }

    // The TLS connection: one `aws` subsegment named from the ClientHello's server name.
    assert_eq!(tunnels.len(), 1, "{got:#?}");
    let sub = &tunnels[0]["subsegments"][0];
    assert_eq!(
        (&sub["name"], &sub["namespace"], &sub["aws"]["region"]),
        (&"DynamoDB".into(), &"aws".into(), &"us-east-1".into())
    );
    assert_eq!(sub["http"]["request"]["url"], "https://dynamodb.us-east-1.amazonaws.com:443/");
    assert!(sub["http"]["request"].get("method").is_none(), "no request was seen: {sub}");
    let tunnel = &sub["metadata"]["tunnel"];
    assert_eq!(
        (&tunnel["opened_by"], &tunnel["ended"], &tunnel["per_connection"]),
        (&"interception".into(), &"closed".into(), &true.into())
    );
    assert!(
        tunnel["bytes_sent"].as_u64().unwrap() > 200 && tunnel["bytes_received"].as_u64().unwrap() > 200,
        "{tunnel}"
    );

    // A server that speaks first is heard at once on a port that skips detection, and after the
    // detection timeout (1 s) of each pod's sidecar on another (the front-end's outbound side, the
    // back-end's inbound side): once each, not a second time to look for a TLS server name.
    let greeted = |port: &str| {
        let script = r#"
import socket, sys, time
t = time.time()
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
assert s.recv(64).startswith(b"220"), "no greeting"
print("%.2f" % (time.time() - t))
"#;
        lab.exec(&front, &["python3", "-c", script, &back_ip, port]).trim().parse::<f64>().unwrap()
    };
    let (skipped_port, detected_port) = (greeted("3306"), greeted("7000"));
    assert!(skipped_port < 0.5, "greeted after {skipped_port} s on a port that skips detection");
    assert!((1.9..2.6).contains(&detected_port), "greeted after {detected_port} s on a detected port");

    // No loops: each call crossed each proxy exactly once.
    let (fm, bm) = (lab.metrics(&front), lab.metrics(&back));
    let out_2xx = r#"xray_sidecar_requests_total{direction="outbound",status_class="2xx"}"#;
    let in_2xx = r#"xray_sidecar_requests_total{direction="inbound",status_class="2xx"}"#;
    assert_eq!(metric(&fm, out_2xx), calls as u64, "{fm}");
    assert_eq!(metric(&fm, in_2xx), 0, "{fm}");
    assert_eq!(metric(&bm, in_2xx), calls as u64, "{bm}");
    assert_eq!(metric(&bm, out_2xx), 0, "{bm}");
}

/// Connects from `ns` to `addr:port`, sends `payload` (possibly nothing), and reports how the
/// connection ended: `closed <seconds>` or `open` if it was still open after 5 s.
fn raw_exchange(lab: &Lab, ns: &str, addr: &str, port: u16, payload: &str) -> String {
    let script = r#"
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(bytes.fromhex(sys.argv[3]))
t = time.time()
try:
    while s.recv(4096):
        pass
    print("closed %.1f" % (time.time() - t))
except ConnectionResetError:
    print("closed %.1f" % (time.time() - t))
except socket.timeout:
    print("open")
"#;
    lab.exec(ns, &["python3", "-c", script, addr, &port.to_string(), payload]).trim().to_owned()
}

#[test]
fn a_pod_never_forwards_to_its_own_listeners() {
    if skipped() {
        return;
    }
    let (mut lab, front_ip, back_ip) = two_namespaces(1);
    let (front, back) = (lab.front.clone(), lab.back.clone());
    // The outbound listener on every address, and connections from other pods to its port not
    // redirected: whatever reaches it from outside must be turned away by the proxy itself.
    let daemon = format!("{front_ip}:2000");
    let pid = lab.pod_with(&back, "back-end", &daemon, "0.0.0.0:15101", &["--exclude-inbound-ports", "15101"]);
    let curl = |ns: &str, args: &[&str]| {
        let base = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"];
        lab.exec(ns, &base.iter().chain(args).copied().collect::<Vec<_>>())
    };

    // Another pod calls the inbound port itself, which is not redirected: one hop, a clear answer.
    let calls = 20;
    for _ in 0..calls {
        assert_eq!(curl(&front, &[&format!("http://{back_ip}:15100/")]), "508");
    }
    // Bytes that are not HTTP, and a connection that says nothing, are closed, not tunnelled to
    // ourselves.
    assert!(raw_exchange(&lab, &front, &back_ip, 15100, "160301000568656c6c6f").starts_with("closed"));
    assert!(raw_exchange(&lab, &front, &back_ip, 15100, "").starts_with("closed"));
    // The outbound listener serves only the pod.
    assert_eq!(curl(&front, &[&format!("http://{back_ip}:15101/")]), "403");

    // From inside the pod, through the explicit proxy: the proxy's own ports on any local address,
    // and instance metadata, are refused before any connection is made.
    let via = ["-x", "http://127.0.0.1:15101"];
    for (url, status) in [
        ("http://127.0.0.1:15100/".to_owned(), "508"),
        (format!("http://{back_ip}:15100/"), "508"),
        ("http://localhost:15102/metrics".to_owned(), "508"),
        ("http://169.254.169.254/latest/meta-data/".to_owned(), "403"),
    ] {
        assert_eq!(curl(&back, &[via[0], via[1], &url]), status, "{url}");
    }

    // Each refused call crossed the proxy exactly once, and nothing piled up.
    let m = lab.metrics(&back);
    assert_eq!(metric(&m, r#"xray_sidecar_requests_total{direction="inbound",status_class="5xx"}"#), calls, "{m}");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    assert!(fds < 64, "{fds} open files after the refused calls");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb: u64 =
        status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    eprintln!("after the refused calls: {fds} open files, {rss_kb} KB RSS");
    assert!(rss_kb < 64 * 1024, "{rss_kb} KB RSS");
}

#[test]
fn ipv6_traffic_is_intercepted_and_served_like_ipv4() {
    if skipped() {
        return;
    }
    let (mut lab, front_ip, _) = two_namespaces(2);
    let (front, back) = (lab.front.clone(), lab.back.clone());
    // In an IPv6 cluster the pods have IPv6 addresses only; these two have both.
    let veth = |ns: &str| lab.exec(ns, &["ip", "-o", "link", "show", "type", "veth"]);
    let name = |out: String| out.split(':').nth(1).unwrap().trim().split('@').next().unwrap().to_owned();
    let (veth_f, veth_b) = (name(veth(&front)), name(veth(&back)));
    let net = format!("fd00:{:x}", std::process::id() % 0xffff);
    let (front6, back6) = (format!("{net}::1"), format!("{net}::2"));
    for (ns, dev, ip) in [(&front, &veth_f, &front6), (&back, &veth_b, &back6)] {
        sh(&["ip", "-n", ns, "addr", "add", &format!("{ip}/64"), "dev", dev, "nodad"]);
    }
    // The back-end's application listens on IPv6; the front-end has a server for its own calls.
    lab.spawn(&back, &["python3", "-m", "http.server", "8080", "--bind", &back6], Stdio::null());
    lab.spawn(&front, &["python3", "-m", "http.server", "8081", "--bind", &front6], Stdio::null());
    let daemon = format!("{front_ip}:2000");
    lab.pod(&back, "back-end", &daemon);
    let curl = |ns: &str, url: &str| {
        let args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", url];
        lab.exec(ns, &args)
    };
    // Each server is waited for (python starts slowly on a loaded machine): until it listens, the
    // sidecar's answer is a 502.
    let until_served = |ns: &str, url: &str, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while curl(ns, url) != "200" {
            assert!(Instant::now() < deadline, "{what} was never reached through the sidecar");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    until_served(&front, &format!("http://[{back6}]:8080/"), "the IPv6 app");
    // Inbound over IPv6 went through the proxy, and so does the application's own IPv6 call.
    until_served(&back, &format!("http://[{front6}]:8081/"), "the IPv6 server the app calls");
    // The kubelet probes the pod's IPv6 address.
    assert_eq!(curl(&front, &format!("http://[{back6}]:15102/ready")), "200");
    let m = lab.metrics(&back);
    assert!(metric(&m, r#"xray_sidecar_requests_total{direction="inbound",status_class="2xx"}"#) >= 1, "{m}");
    assert_eq!(metric(&m, r#"xray_sidecar_requests_total{direction="outbound",status_class="2xx"}"#), 1, "{m}");
}
