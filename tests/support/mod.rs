//! Shared test fixtures: a real upstream server, a UDP socket standing in for the X-Ray daemon, the
//! real `xray-sidecar` binary, and schema validation of what it sends.
#![allow(dead_code, clippy::unwrap_used)]

pub mod ids;
pub mod python;
pub mod sampling_api;
pub mod upstream;

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/`, beside the repository (CI clones with it there).
pub fn shared(path: &str) -> PathBuf {
    repo_root().join("../shared").join(path)
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A port that refuses connections for as long as the value lives: bound but never listening, so
/// no other test can start listening there while a test counts on nothing answering (a port only
/// found free could be).
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    pub addr: SocketAddr,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        ClosedPort { _socket: socket, addr }
    }
}

/// The first line `child` printed on its (piped) stdout; empty if it printed none before exiting.
pub fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.as_mut().expect("stdout piped")).read_line(&mut line);
    line
}

/// The address of the page `child` (the demo or the console, asked for port 0) names in the first
/// `http://ADDR/` of its first line.
pub fn printed_page(child: &mut Child, what: &str) -> String {
    let line = first_line(child);
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .map(|w| w.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| panic!("the {what}'s first line names its page: {line:?}"))
}

/// A UDP port nobody listens on right now.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

/// Whether the tests run as root (network namespaces, iptables, rootful podman need it).
pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n")
}

/// Runs a command (program and arguments), failing the test with its stderr unless it succeeds.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// YAML documents as JSON values (PyYAML comes with kubernetes-validate).
pub fn yaml_docs(yaml: &str) -> Vec<Value> {
    let script = "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "not YAML:\n{yaml}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A UDP socket in the daemon's place.
pub struct Daemon {
    pub socket: UdpSocket,
    pub addr: SocketAddr,
}

impl Daemon {
    pub async fn start() -> Daemon {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        Daemon { socket, addr }
    }

    /// The next document, checking the daemon header; `None` after `wait` with nothing.
    pub async fn next(&self, wait: Duration) -> Option<Value> {
        let mut buf = vec![0u8; 70_000];
        let n = tokio::time::timeout(wait, self.socket.recv(&mut buf)).await.ok()?.unwrap();
        let text = std::str::from_utf8(&buf[..n]).expect("datagram is UTF-8");
        let (header, body) = text.split_once('\n').expect("datagram has a header line");
        // SDKs space the header differently; the daemon reads it as JSON.
        let header: Value = serde_json::from_str(header).expect("header is JSON");
        assert_eq!(header, serde_json::json!({"format": "json", "version": 1}));
        Some(serde_json::from_str(body).expect("document is JSON"))
    }

    /// Exactly `n` documents (fails after 5 s).
    pub async fn take(&self, n: usize) -> Vec<Value> {
        let mut docs = Vec::new();
        while docs.len() < n {
            match self.next(Duration::from_secs(5)).await {
                Some(d) => docs.push(d),
                None => panic!("expected {n} documents, got {}: {docs:#?}", docs.len()),
            }
        }
        validate(&docs);
        docs
    }

    /// Asserts nothing arrives within `wait`.
    pub async fn nothing(&self, wait: Duration) {
        if let Some(d) = self.next(wait).await {
            panic!("expected no document, got {d:#}");
        }
    }
}

/// Validates documents against AWS's segment schema with the `jsonschema` Python package.
pub fn validate(docs: &[Value]) {
    let schema = shared("xray/segment-document-schema-v1.0.0.json");
    let script = repo_root().join("tests/support/validate_segments.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(&schema)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    {
        let mut stdin = child.stdin.take().unwrap();
        for d in docs {
            writeln!(stdin, "{d}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "schema validation failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// In a sidecar's arguments, a listening address the harness picks afresh on each start (as it
/// does `--listen`'s), read back from `Sidecar::outbound` for `--outbound-listen`.
pub const ANY_PORT: &str = "127.0.0.1:0";

/// A running `xray-sidecar proxy` process, killed on drop.
pub struct Sidecar {
    pub child: Child,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// The outbound listener, when started with `--outbound-listen`.
    pub outbound: Option<SocketAddr>,
}

/// A rules file recording every request.
pub fn sample_all_rules() -> PathBuf {
    let rules = std::env::temp_dir().join(format!("xray-sample-all-{}.json", std::process::id()));
    // Tests of one binary run at once: write beside and rename, so that no sidecar starting
    // meanwhile reads a file another test has just truncated.
    let id = format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_digit(), "");
    let aside = rules.with_extension(format!("{id}.tmp"));
    std::fs::write(&aside, SAMPLE_ALL).unwrap();
    std::fs::rename(&aside, &rules).unwrap();
    rules
}

/// Sampling rules that record every request.
pub const SAMPLE_ALL: &str = r#"{"version": 2, "default": {"fixed_target": 0, "rate": 1.0}, "rules": []}"#;

/// How a sidecar is started, beyond its flags.
#[derive(Clone, Copy, Default)]
pub struct Launch<'a> {
    /// Environment variables set for the process.
    pub env: &'a [(&'a str, &'a str)],
    /// Where its log goes, at the default level (what an operator sees) rather than debug to the
    /// test's output.
    pub log: Option<&'a std::path::Path>,
    /// A command that runs the rest of its arguments as itself (`prlimit`), the sidecar after it.
    pub wrapper: &'a [&'a str],
}

impl Sidecar {
    /// Starts the proxy in front of `upstream` reporting to `daemon`, with `extra` flags; waits
    /// until `/ready` answers.
    pub fn start(upstream: &str, daemon: impl std::fmt::Display, extra: &[&str]) -> Sidecar {
        Sidecar::named("front-end", upstream, daemon, extra)
    }

    /// Like `start`, with another service name.
    pub fn named(name: &str, upstream: &str, daemon: impl std::fmt::Display, extra: &[&str]) -> Sidecar {
        Sidecar::with_env(name, upstream, daemon, extra, &[])
    }

    /// Like `named`, with environment variables set for the process.
    pub fn with_env(
        name: &str,
        upstream: &str,
        daemon: impl std::fmt::Display,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Sidecar {
        Sidecar::spawn(name, upstream, daemon, extra, Launch { env, ..Launch::default() })
    }

    /// Like `start`, started as `launch` says.
    pub fn launch(upstream: &str, daemon: impl std::fmt::Display, extra: &[&str], launch: Launch<'_>) -> Sidecar {
        Sidecar::spawn("front-end", upstream, daemon, extra, launch)
    }

    fn spawn(
        name: &str,
        upstream: &str,
        daemon: impl std::fmt::Display,
        extra: &[&str],
        launch: Launch<'_>,
    ) -> Sidecar {
        // Tests of one binary run at once and some hold hundreds of sockets each: the test process
        // takes the open-file limit the proxy itself takes (a soft limit of 1,024 would not do).
        static RAISED: std::sync::Once = std::sync::Once::new();
        RAISED.call_once(|| {
            xray_sidecar::proxy::open_files::raise(0);
        });
        // A port found free can be taken by another test (or an outgoing connection) before the
        // sidecar binds it; the sidecar then exits at start, and is started again on other ports.
        // That includes an outbound listener asked for as `127.0.0.1:0` (see `ANY_PORT`).
        let mut attempt = 1;
        loop {
            let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let any = format!("127.0.0.1:{}", free_port());
            let extra: Vec<&str> = extra.iter().map(|a| if *a == ANY_PORT { any.as_str() } else { a }).collect();
            let outbound =
                extra.iter().position(|a| *a == "--outbound-listen").and_then(|i| extra.get(i + 1)?.parse().ok());
            let bin = env!("CARGO_BIN_EXE_xray-sidecar");
            let mut cmd = match launch.wrapper.split_first() {
                Some((program, args)) => {
                    let mut cmd = Command::new(program);
                    cmd.args(args).arg(bin);
                    cmd
                }
                None => Command::new(bin),
            };
            cmd.arg("proxy")
                .args(["--listen", &listen.to_string(), "--admin-listen", &admin.to_string()])
                .args(["--upstream", upstream, "--service-name", name])
                .args(["--daemon-address", &daemon.to_string()])
                .args(&extra)
                .envs(launch.env.iter().copied())
                .env_remove("KUBERNETES_SERVICE_HOST")
                .stdout(Stdio::null());
            match launch.log {
                Some(path) => cmd.env_remove("RUST_LOG").stderr(std::fs::File::create(path).unwrap()),
                None => cmd.env("RUST_LOG", "debug").stderr(Stdio::inherit()),
            };
            let child = cmd.spawn().expect("xray-sidecar starts");
            let mut sidecar = Sidecar { child, listen, admin, outbound };
            match sidecar.until_ready() {
                Ok(()) => return sidecar,
                Err(status) if attempt < 3 => {
                    eprintln!("xray-sidecar exited at start ({status}); again on other ports")
                }
                Err(status) => panic!("xray-sidecar exited at start: {status}"),
            }
            attempt += 1;
        }
    }

    /// Waits until `/ready` answers 200, or the process exits first (fails the test after 10 s).
    fn until_ready(&mut self) -> Result<(), std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(status);
            }
            if self.ready() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("xray-sidecar did not become ready");
    }

    /// Like `start`, recording every request.
    pub fn sample_all(upstream: &str, daemon: SocketAddr, extra: &[&str]) -> Sidecar {
        Sidecar::sample_all_named("front-end", upstream, daemon, extra)
    }

    /// Like `named`, recording every request.
    pub fn sample_all_named(name: &str, upstream: &str, daemon: SocketAddr, extra: &[&str]) -> Sidecar {
        let rules = sample_all_rules();
        let mut args = vec!["--sampling-rules", rules.to_str().unwrap()];
        args.extend_from_slice(extra);
        Sidecar::named(name, upstream, daemon, &args)
    }

    /// Waits until `/ready` answers 200 (fails the test after 10 s).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ready() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("xray-sidecar did not become ready");
    }

    /// Whether `/ready` answers 200 now.
    fn ready(&self) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(self.admin) else { return false };
        use std::io::Read;
        let _ = s.write_all(b"GET /ready HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.1 200")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.listen, path)
    }

    /// The admin listener's /metrics text.
    pub async fn metrics(&self) -> String {
        let (_, _, body) = http_get(&format!("http://{}/metrics", self.admin), &[]).await;
        body
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
    }

    /// Waits for the process to end by itself (after `terminate`) and returns how it ended.
    pub async fn exited(self) -> std::process::ExitStatus {
        tokio::task::spawn_blocking(move || {
            let mut sc = self;
            let status = sc.child.wait().unwrap();
            // Dropping would kill and wait for a process that is already gone.
            std::mem::forget(sc);
            status
        })
        .await
        .unwrap()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET: status, headers, body.
pub async fn http_get(url: &str, headers: &[(&str, &str)]) -> (u16, http::HeaderMap, String) {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let mut req = http::Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client.request(req.body(Empty::new()).unwrap()).await.expect("request succeeds");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (parts.status.as_u16(), parts.headers, String::from_utf8_lossy(&body).into_owned())
}

/// One HTTP/2 connection (prior knowledge) to `addr`: its request sender, and a task that ends
/// with the instant the connection closed.
pub async fn h2_connection(
    addr: SocketAddr,
) -> (hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>, tokio::task::JoinHandle<Instant>) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.expect("h2 handshake");
    let closed = tokio::spawn(async move {
        let _ = conn.await;
        Instant::now()
    });
    (send, closed)
}

/// A GET of `path` on an HTTP/2 connection: its status.
pub async fn h2_get(
    send: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    path: &str,
) -> u16 {
    use http_body_util::{BodyExt, Empty};
    let req = http::Request::get(format!("http://app{path}")).body(Empty::new()).unwrap();
    let res = send.send_request(req).await.expect("h2 request");
    let status = res.status().as_u16();
    res.into_body().collect().await.expect("h2 body");
    status
}

/// Parses `Root=..;Parent=..;Sampled=..` into its pairs.
pub fn trace_pairs(v: &str) -> Vec<(String, String)> {
    v.split(';').filter_map(|p| p.split_once('=')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect()
}

/// The value of `key` in a trace header.
pub fn pair<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Polls `ok` every 100 ms until it holds, failing the test after `wait`.
pub async fn until(what: &str, wait: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + wait;
    while !ok().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the metric line `name` (with its labels) in a Prometheus text page.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
