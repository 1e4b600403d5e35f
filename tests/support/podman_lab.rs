//! The podman lab test's parts: the images, the lab's manifests as podman plays them, the console
//! on the host, plain HTTP requests and the pods' iptables rules.
#![allow(dead_code, clippy::unwrap_used)]

use super::podman::Podman;
use super::support::{printed_page, repo_root, yaml_docs};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

/// The applications' image: Debian's Python on the same debootstrap base (no registry here).
pub const LAB_IMAGE: &str = "localhost/xray-lab-python:bookworm";
const BASE_IMAGE: &str = "localhost/debian-minbase:bookworm";

/// The directory of the binaries `cargo test` built (both packages with `--workspace`).
fn binaries() -> PathBuf {
    let sidecar = PathBuf::from(env!("CARGO_BIN_EXE_xray-sidecar"));
    let dir = sidecar.parent().unwrap().to_owned();
    assert!(dir.join("xray-injector").exists(), "run with `cargo test --workspace` (xray-injector is missing)");
    dir
}

/// `scripts/images --binaries … --local-base --tag TAG`; the two image names (untagged on drop).
pub fn build_images(podman: &mut Podman, tag: &str) -> (String, String) {
    let bins = binaries();
    let out = Command::new(repo_root().join("scripts/images"))
        .args(["--binaries", bins.to_str().unwrap(), "--local-base", "--tag", tag])
        .env("CONTAINERS_CONF", podman.conf())
        .env("CONTAINER_ENGINE", "podman")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprint!("{text}");
    assert!(out.status.success(), "scripts/images failed");
    let names = ["xray-sidecar", "xray-injector"].map(|n| format!("localhost/{n}:{tag}"));
    for name in &names {
        assert!(text.contains(&format!("{name} ")), "scripts/images did not report {name}: {text}");
        podman.untag_on_drop(name);
    }
    let [sidecar, injector] = names;
    (sidecar, injector)
}

/// Builds the applications' image once (it is kept, like the base).
pub fn lab_image(podman: &Podman, dir: &Path) {
    if podman.command(&["image", "exists", LAB_IMAGE]).status().is_ok_and(|s| s.success()) {
        return;
    }
    let context = dir.join("lab-image");
    std::fs::create_dir_all(&context).unwrap();
    let file = context.join("Containerfile");
    std::fs::write(
        &file,
        format!(
            "FROM {BASE_IMAGE}\nRUN apt-get update && apt-get install -y --no-install-recommends python3 \
             && apt-get clean && rm -rf /var/lib/apt/lists/*\n"
        ),
    )
    .unwrap();
    podman.run(&["build", "-q", "-f", file.to_str().unwrap(), "-t", LAB_IMAGE, context.to_str().unwrap()]);
}

/// What differs between the lab's pods and the manifests users apply.
pub struct Lab<'a> {
    pub sidecar_image: &'a str,
    pub daemon: &'a str,
    pub suffix: &'a str,
}

impl Lab<'_> {
    /// `file` adapted to this machine, injected by `xray-injector inject -f`, adapted to podman
    /// (tests/support/podman_lab.py says what and why). Native sidecars are init containers that
    /// keep running, which podman 4.3 cannot run: the injector's `--legacy-sidecar` form it is.
    pub fn manifest(&self, file: &str, backend_url: &str) -> String {
        let adapt = repo_root().join("tests/support/podman_lab.py");
        let adapt = adapt.to_str().unwrap();
        let lab = std::fs::read_to_string(repo_root().join(file)).unwrap();
        let before = pipe("python3", &[adapt, "before", LAB_IMAGE, backend_url], &lab);
        let injector = binaries().join("xray-injector");
        #[rustfmt::skip]
        let injected = pipe(injector.to_str().unwrap(), &[
            "inject", "-f", "-", "--legacy-sidecar", "--sidecar-image", self.sidecar_image,
            "--daemon-address", self.daemon,
        ], &before);
        pipe("python3", &[adapt, "after", "xray-lab", "podman-node", self.suffix], &injected)
    }
}

fn pipe(cmd: &str, args: &[&str], input: &str) -> String {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{cmd} {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The iptables init container as the manifest states it.
pub struct InitContainer {
    pub args: Vec<String>,
    user: String,
    cap_add: Vec<String>,
    cap_drop: Vec<String>,
    read_only: bool,
}

impl InitContainer {
    /// `podman run` flags giving it the manifest's UID and capabilities.
    pub fn run_args(&self) -> Vec<String> {
        let mut a = vec!["--user".to_owned(), self.user.clone()];
        for c in &self.cap_drop {
            a.extend(["--cap-drop".to_owned(), c.clone()]);
        }
        for c in &self.cap_add {
            a.extend(["--cap-add".to_owned(), c.clone()]);
        }
        if self.read_only {
            a.push("--read-only".into());
        }
        a
    }
}

/// The pod's first init container in `yaml`.
pub fn init_container(yaml: &str) -> InitContainer {
    let docs = yaml_docs(yaml);
    let pod = docs.iter().find(|d| d["kind"] == "Pod").unwrap();
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(init["name"], "xray-sidecar-init");
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
    };
    let sc = &init["securityContext"];
    InitContainer {
        args: strings(&init["args"]),
        user: sc["runAsUser"].to_string(),
        cap_add: strings(&sc["capabilities"]["add"]),
        cap_drop: strings(&sc["capabilities"]["drop"]),
        read_only: sc["readOnlyRootFilesystem"] == true,
    }
}

/// The nat table of `pod`'s network namespace, both iptables back ends, without counters.
pub fn nat_rules(podman: &Podman, pod: &str) -> String {
    let pid = podman.pod_pid(pod);
    let script = "iptables-nft-save -t nat 2>/dev/null; iptables-legacy-save -t nat 2>/dev/null; true";
    let out = Command::new("nsenter").args(["-t", &pid, "-n", "sh", "-c", script]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(" [").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `GET path` over HTTP/1.1 to `addr`: the status and body, or why not.
pub fn get(addr: &str, path: &str) -> Result<(u16, String), String> {
    request(addr, "GET", path, "")
}

/// `method path` with a JSON `body` over HTTP/1.1 to `addr`: the status and body, or why not.
pub fn request(addr: &str, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let addr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let head = format!(
        "Host: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}",
        body.len()
    );
    write!(s, "{method} {path} HTTP/1.1\r\n{head}\r\n\r\n{body}").map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let status = text.get(9..12).and_then(|s| s.parse().ok()).ok_or(format!("not HTTP: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// `xray-sidecar console` on the host, receiving the pods' segments on the network's gateway and
/// relaying each datagram to this test too.
pub struct Console {
    child: Child,
    http: String,
    documents: Receiver<Value>,
}

impl Console {
    pub fn start(udp: &str) -> Console {
        let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
        let forward = relay.local_addr().unwrap().to_string();
        // An HTTP port it picks itself, read from its first line ("… open http://ADDR/").
        let mut child = Command::new(env!("CARGO_BIN_EXE_xray-sidecar"))
            .args(["console", "--udp", udp, "--http", "127.0.0.1:0", "--forward", &forward])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let http = printed_page(&mut child, "console");
        let (tx, documents) = channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = relay.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let body = text.split_once('\n').map(|(_, b)| b).unwrap_or_default();
                if tx.send(serde_json::from_str(body).unwrap_or(Value::Null)).is_err() {
                    return;
                }
            }
        });
        let console = Console { child, http, documents };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while get(&console.http, "/api/stats").is_err() {
            assert!(std::time::Instant::now() < deadline, "the console did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The sidecars take their sampling rules from the console's daemon port (centralized
        // sampling): its Default must record every call, as the lab's local rules do.
        let update = r#"{"SamplingRuleUpdate": {"RuleName": "Default", "FixedRate": 1.0}}"#;
        let (status, body) = request(&console.http, "POST", "/UpdateSamplingRule", update).unwrap();
        assert_eq!(status, 200, "{body}");
        console
    }

    /// Every document received so far, waiting until none came for `quiet`.
    pub fn documents(&self, quiet: Duration) -> Vec<Value> {
        let mut docs = Vec::new();
        while let Ok(d) = self.documents.recv_timeout(quiet) {
            docs.push(d);
        }
        docs
    }

    /// The console's service map of everything it received.
    pub fn service_graph(&self) -> Value {
        let (status, body) = get(&self.http, "/api/service-graph?start_time=0").unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// A screenshot of the console's page (the service map) with headless Chromium, when installed.
    pub fn screenshot(&self, png: &Path) -> Option<u64> {
        let chromium = Path::new("/usr/bin/chromium");
        if !chromium.exists() {
            return None;
        }
        let _ = std::fs::remove_file(png);
        let status = Command::new(chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,800"])
            .args(["--virtual-time-budget=5000", &format!("--screenshot={}", png.display())])
            .arg(format!("http://{}/", self.http))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        assert!(status.success(), "chromium could not take {}", png.display());
        std::fs::metadata(png).ok().map(|m| m.len())
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
