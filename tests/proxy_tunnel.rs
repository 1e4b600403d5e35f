//! HTTPS through the outbound listener: an `https_proxy` client's `CONNECT` is tunnelled to a real
//! TLS server and recorded as one remote subsegment per connection; tunnels to the proxy itself or
//! to denied ranges are refused. Plain HTTP sent inside a `CONNECT` is traced request by request.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::python::PythonApp;
use support::upstream::Upstream;
use support::{Daemon, Sidecar};

/// A self-signed certificate for `localhost`, 127.0.0.1 and an AWS endpoint name, in a fresh dir.
fn certificate(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xray-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let san = "subjectAltName=DNS:localhost,DNS:dynamodb.us-east-1.amazonaws.com,IP:127.0.0.1";
    #[rustfmt::skip]
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-addext", san])
        .arg("-keyout").arg(dir.join("key.pem")).arg("-out").arg(dir.join("cert.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir
}

/// Python's `ssl` serving HTTPS on loopback; killed on drop.
fn tls_server(certs: &Path) -> PythonApp {
    let (cert, key) = (certs.join("cert.pem"), certs.join("key.pem"));
    PythonApp::start("tls_server.py", &[cert.to_str().unwrap(), key.to_str().unwrap(), "127.0.0.1", "{port}"])
}

/// GETs `url` with urllib, `https_proxy` pointing at `proxy`, trusting `certs`; the status and body.
fn https_get(proxy: std::net::SocketAddr, url: &str, certs: &Path) -> (u16, String) {
    let script = r#"
import json, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
with urllib.request.urlopen(sys.argv[1], context=ctx, timeout=10) as res:
    print(json.dumps({"status": res.status, "body": res.read().decode()}))
"#;
    let out = Command::new("python3")
        .args(["-c", script, url])
        .arg(certs.join("cert.pem"))
        .env("https_proxy", format!("http://{proxy}"))
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["status"].as_u64().unwrap() as u16, v["body"].as_str().unwrap().to_owned())
}

/// Sends a raw `CONNECT target` to `proxy` and returns the response head's status line.
fn raw_connect(proxy: std::net::SocketAddr, target: &str) -> String {
    let mut s = std::net::TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_owned()
}

fn outbound_sidecar(daemon: &Daemon, extra: &[&str]) -> Sidecar {
    let mut args = vec!["--outbound-listen", support::ANY_PORT];
    args.extend_from_slice(extra);
    Sidecar::sample_all("http://127.0.0.1:9", daemon.addr, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_call_through_connect_is_one_remote_subsegment_named_after_the_host() {
    let certs = certificate("connect");
    let (server, daemon) = (tls_server(&certs), Daemon::start().await);
    let sc = outbound_sidecar(&daemon, &[]);
    let url = format!("https://localhost:{}/orders/7", server.port);
    let (status, body) = https_get(sc.outbound.unwrap(), &url, &certs);
    assert_eq!((status, body.as_str()), (200, "secure /orders/7\n"));

    let doc = &daemon.take(1).await[0];
    assert_eq!(doc["name"], "front-end");
    assert!(doc.get("parent_id").is_none(), "a client node is drawn in front: {doc}");
    assert_eq!(doc["annotations"]["direction"], "outbound");
    let sub = &doc["subsegments"][0];
    assert_eq!(sub["name"], "localhost");
    assert_eq!(sub["namespace"], "remote");
    assert_eq!(sub["http"]["request"]["method"], "CONNECT");
    assert_eq!(sub["http"]["request"]["url"], format!("https://localhost:{}/", server.port).as_str());
    let tunnel = &sub["metadata"]["tunnel"];
    assert_eq!(tunnel["per_connection"], true, "{sub}");
    assert_eq!(tunnel["opened_by"], "connect");
    assert_eq!(tunnel["ended"], "closed");
    // A TLS handshake and one request each way: well over a kilobyte in total, some each way.
    let (sent, received) = (tunnel["bytes_sent"].as_u64().unwrap(), tunnel["bytes_received"].as_u64().unwrap());
    assert!(sent > 200 && received > 200, "{tunnel}");
    assert!(sub.get("fault").is_none() && sub.get("error").is_none(), "{sub}");
    let took = sub["end_time"].as_f64().unwrap() - sub["start_time"].as_f64().unwrap();
    assert!((0.0..10.0).contains(&took), "{sub}");
    assert!(sc.metrics().await.contains("xray_sidecar_tunnels_total 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_to_an_unreachable_destination_is_502_and_a_fault() {
    let daemon = Daemon::start().await;
    let sc = outbound_sidecar(&daemon, &[]);
    let closed = support::ClosedPort::new();
    let line = raw_connect(sc.outbound.unwrap(), &closed.addr.to_string());
    assert!(line.starts_with("HTTP/1.1 502"), "{line}");
    let doc = &daemon.take(1).await[0];
    let sub = &doc["subsegments"][0];
    assert_eq!(sub["name"], "127.0.0.1");
    assert_eq!(sub["fault"], true);
    assert_eq!(sub["cause"]["exceptions"][0]["type"], "ConnectionRefused");
    assert_eq!(sub["metadata"]["tunnel"]["ended"], "connect_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_to_the_proxy_itself_to_instance_metadata_or_to_denied_ranges_are_refused() {
    let certs = certificate("deny");
    let (server, daemon) = (tls_server(&certs), Daemon::start().await);
    let sc = outbound_sidecar(&daemon, &["--connect-deny-cidrs", "127.0.0.2/32"]);
    let proxy = sc.outbound.unwrap();
    for target in [
        format!("127.0.0.1:{}", sc.admin.port()),
        format!("localhost:{}", sc.listen.port()),
        format!("127.0.0.1:{}", proxy.port()),
        format!("127.0.0.2:{}", server.port),
        "169.254.169.254:80".to_owned(),
    ] {
        let line = raw_connect(proxy, &target);
        assert!(line.starts_with("HTTP/1.1 403"), "{target}: {line}");
    }
    daemon.nothing(std::time::Duration::from_millis(300)).await;
    assert!(sc.metrics().await.contains("xray_sidecar_connects_denied_total 5"));
    // The same server on an allowed address still works.
    assert!(raw_connect(proxy, &format!("127.0.0.1:{}", server.port)).starts_with("HTTP/1.1 200"));
    // Targets that are not host:port, or read two ways, and a CONNECT with content (whose bytes
    // would be taken out of the tunnel's) are refused before anything is dialled.
    let port = server.port;
    for target in [
        "127.0.0.1:0".to_owned(),
        format!("127.0.0.1:+{port}"),
        format!("user:pw@127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}"),
        format!("[127.0.0.1]:{port}"),
    ] {
        let line = raw_connect(proxy, &target);
        assert!(line.starts_with("HTTP/1.1 400"), "{target}: {line}");
    }
    let mut s = std::net::TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(s, "CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 5\r\n\r\nBODY!").unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&buf[..n]));
}

/// `curl --proxytunnel` (like gRPC with `grpc_proxy`) sends plain HTTP inside a `CONNECT`: each
/// request is its own remote subsegment, and the application gets the trace header naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_inside_connect_is_traced_request_by_request() {
    let (upstream, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = outbound_sidecar(&daemon, &[]);
    let proxy = format!("http://{}", sc.outbound.unwrap());
    let url = |path: &str| format!("http://localhost:{}{path}", upstream.addr.port());
    // Two URLs on one command line: curl reuses the tunnel for the second.
    let out = Command::new("curl")
        .args(["-s", "--proxytunnel", "--proxy", &proxy, "-D", "-", "--max-time", "10"])
        .args([url("/orders/7"), url("/status/404")])
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("\r\n\r\nok\n"), "{text}");
    assert!(text.contains("HTTP/1.1 404") && text.contains("status 404"), "{text}");
    let saw: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("x-saw-trace")).map(|(_, v)| v.trim()))
        .collect();
    assert_eq!(saw.len(), 2, "{text}");

    let docs = daemon.take(2).await;
    for (doc, status) in docs.iter().zip([200, 404]) {
        let sub = &doc["subsegments"][0];
        assert_eq!((&sub["name"], &sub["namespace"]), (&"localhost".into(), &"remote".into()), "{doc}");
        assert_eq!(sub["http"]["request"]["method"], "GET", "{sub}");
        assert_eq!(sub["http"]["response"]["status"], status, "{sub}");
        assert!(sub["metadata"].get("tunnel").is_none(), "a request, not a tunnel: {sub}");
        let parent = format!("Parent={}", sub["id"].as_str().unwrap());
        assert!(saw.iter().any(|h| h.contains(&parent)), "{parent} in {saw:?}");
    }
    daemon.nothing(std::time::Duration::from_millis(300)).await;
    assert!(sc.metrics().await.contains("xray_sidecar_tunnels_total 0"));
}

/// A request inside a tunnel cannot name another destination: the tunnel's checked address is
/// where it goes, whatever its target or Host say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_inside_a_tunnel_goes_only_where_the_tunnel_goes() {
    let (upstream, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = outbound_sidecar(&daemon, &[]);
    let mut s = std::net::TcpStream::connect(sc.outbound.unwrap()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let target = upstream.addr.to_string();
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let mut head = [0u8; 512];
    let n = s.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    let admin = sc.admin;
    write!(s, "GET http://{admin}/metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok\n") && !answer.contains("xray_sidecar_"), "the upstream answered: {answer}");
    let doc = &daemon.take(1).await[0];
    assert_eq!(doc["subsegments"][0]["http"]["response"]["status"], 200, "{doc}");
}

/// A tunnel to a port whose server speaks first (`--skip-detect-ports`, as for interception) is
/// relayed at once: the proxy does not wait for the client's first bytes to look for HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_to_a_server_first_port_is_relayed_without_waiting_for_the_client() {
    let daemon = Daemon::start().await;
    let banner = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = banner.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in banner.incoming().flatten() {
            let _ = conn.write_all(b"220 ready\r\n");
        }
    });
    let skip = port.to_string();
    let sc = outbound_sidecar(&daemon, &["--skip-detect-ports", &skip, "--detect-timeout", "20s"]);
    let mut s = std::net::TcpStream::connect(sc.outbound.unwrap()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let started = std::time::Instant::now();
    write!(s, "CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&got).contains("220 ready") {
        let n = s.read(&mut buf).expect("the banner, long before the 20 s detection wait");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
}

/// An HTTP/1.1 connection inside a `CONNECT` idles between requests for the keep-alive timeout,
/// as any client connection does: a client pooling it (curl, a gRPC channel) must not meet it
/// closing after the header read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_inside_connect_keeps_alive_for_the_keep_alive_timeout() {
    let (upstream, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = outbound_sidecar(&daemon, &["--header-read-timeout", "1s", "--keep-alive-timeout", "4s"]);
    let target = upstream.addr.to_string();
    let mut s = std::net::TcpStream::connect(sc.outbound.unwrap()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.1\r\nhost: back-end\r\n\r\n").unwrap();
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        // Idle past the header read timeout, within the keep-alive timeout.
        std::thread::sleep(std::time::Duration::from_millis(2000));
    }
    daemon.take(2).await;
}
