//! The webhook black-box: the real binary over TLS on loopback, real AdmissionReview documents, the
//! returned JSON Patch applied to the pod, the result validated against Kubernetes' schema, the
//! certificate rotated under a running server, and a review in flight answered through SIGTERM.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_xray-injector");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

fn certs(dir: &Path) {
    let out = Command::new(BIN).args(["certs", "--out-dir", dir.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(tag: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("xray-injector-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    certs(&dir);
    // Port 0, and the port read back from the server's log: a port picked free beforehand could be
    // taken by another test's server in between, and this test would then talk to that one.
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--cert-reload-seconds", "1"])
        .arg("--tls-cert-file")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key-file")
        .arg(dir.join("tls.key"))
        .args(["--cluster-name", "demo"])
        .env_remove("POD_NAMESPACE")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let port = loop {
        line.clear();
        let read = std::io::BufRead::read_line(&mut log, &mut line).unwrap();
        assert!(read > 0, "xray-injector did not start");
        if let Some((_, addr)) = line.trim_end().split_once("xray-injector serving addr=") {
            break addr.parse::<std::net::SocketAddr>().unwrap().port();
        }
    };
    // The rest of the log is read and dropped, so that the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
    Server { child, port, dir }
}

/// A real HTTPS request trusting every CA in the server's folder: the status, the body, and the
/// certificate the server presented.
async fn request(server: &Server, method: http::Method, path: &str, body: Vec<u8>) -> (u16, Vec<u8>, Vec<u8>) {
    let tls = connect(server).await;
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "xray-injector.xray-sidecar.svc")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    (status, res.into_body().collect().await.unwrap().to_bytes().to_vec(), served)
}

/// A TLS connection to the server, trusting every CA in its folder.
async fn connect(server: &Server) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    // Every CA the test has made (rotation writes a new one beside the old).
    for f in
        std::fs::read_dir(&server.dir).unwrap().flatten().filter(|f| f.file_name().to_string_lossy().starts_with("ca"))
    {
        let ca = std::fs::read(f.path()).unwrap();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
            roots.add(c.unwrap()).unwrap();
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("xray-injector.xray-sidecar.svc").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.unwrap()
}

async fn post(server: &Server, path: &str, body: Vec<u8>) -> (u16, Vec<u8>, Vec<u8>) {
    request(server, http::Method::POST, path, body).await
}

async fn fetch(server: &Server, path: &str) -> (u16, Vec<u8>, Vec<u8>) {
    request(server, http::Method::GET, path, Vec::new()).await
}

/// Posts a review and returns the response part of the answer.
async fn review(server: &Server, path: &str, name: &str) -> (Value, Value) {
    let body = fixture(name);
    let (status, out, _) = post(server, path, body.clone()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
    let answer: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(answer["kind"], "AdmissionReview");
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["uid"], sent["request"]["uid"]);
    assert_eq!(answer["response"]["allowed"], true, "tracing never blocks a pod: {answer}");
    (sent["request"]["object"].clone(), answer["response"].clone())
}

/// Applies the response's base64 JSON Patch to the pod.
fn apply(pod: &Value, response: &Value) -> Value {
    use base64::Engine;
    assert_eq!(response["patchType"], "JSONPatch");
    // The API server takes the patch's bytes as a base64 string or as an array of byte values.
    let raw = match &response["patch"] {
        Value::String(b64) => base64::engine::general_purpose::STANDARD.decode(b64).unwrap(),
        Value::Array(bytes) => bytes.iter().map(|b| b.as_u64().unwrap() as u8).collect(),
        other => panic!("no patch in {response}: {other}"),
    };
    let patch: json_patch::Patch = serde_json::from_slice(&raw).unwrap();
    let mut out = pod.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    out
}

fn names(pod: &Value, list: &str) -> Vec<String> {
    pod["spec"][list]
        .as_array()
        .map(|a| a.iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// Validates pods against the Kubernetes schema (strict: no unknown or misspelled fields).
fn validate(pods: &[Value]) {
    // A directory of its own per call: the tests of this binary run at once.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("xray-injector-validate-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for (i, p) in pods.iter().enumerate() {
        let mut p = p.clone();
        // The fixtures carry a made-up field to prove unknown fields survive; the schema knows it not.
        p["spec"].as_object_mut().unwrap().remove("futureField");
        p["metadata"]["name"] = json!(format!("pod-{i}"));
        let f = dir.join(format!("pod-{i}.json"));
        std::fs::write(&f, p.to_string()).unwrap();
        files.push(f);
    }
    let out = Command::new("kubernetes-validate").arg("--strict").args(&files).output().unwrap_or_else(|e| {
        panic!("kubernetes-validate is not installed ({e}): run scripts/setup (pip install -r tests/requirements.txt)")
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !text.contains("ERROR"), "schema validation failed:\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn reviews_are_answered_and_patches_apply() {
    let server = start("reviews");
    let mut injected = Vec::new();

    // A plain pod that opted in: a native sidecar after the iptables init container.
    let (pod, res) = review(&server, "/mutate", "review-plain-pod.json").await;
    let out = apply(&pod, &res);
    assert_eq!(names(&out, "initContainers"), ["xray-sidecar-init", "xray-sidecar"]);
    assert_eq!(names(&out, "containers"), ["app"]);
    let proxy = &out["spec"]["initContainers"][1];
    assert_eq!(proxy["restartPolicy"], "Always");
    assert_eq!(proxy["securityContext"]["runAsUser"], 2500);
    assert_eq!(proxy["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(proxy["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(proxy["startupProbe"]["httpGet"]["port"], 15102);
    let env: Vec<(String, Value)> =
        proxy["env"].as_array().unwrap().iter().map(|e| (e["name"].as_str().unwrap().to_owned(), e.clone())).collect();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("no {k}"));
    assert_eq!(get("AWS_XRAY_TRACING_NAME")["value"], "checkout");
    assert_eq!(get("AWS_XRAY_DAEMON_ADDRESS")["value"], "xray-service.default:2000");
    assert_eq!(get("XRAY_SIDECAR_CLUSTER_NAME")["value"], "demo");
    assert_eq!(get("XRAY_SIDECAR_POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
    let init = &out["spec"]["initContainers"][0];
    assert_eq!(init["securityContext"]["capabilities"]["add"], json!(["NET_ADMIN", "NET_RAW"]));
    assert_eq!(init["args"][0], "init");
    // What the injector does not know survives untouched.
    assert_eq!(out["spec"]["futureField"], json!({"unknownToTheInjector": true}));
    assert_eq!(out["metadata"]["annotations"]["example.com/owner"], "team-a");
    assert!(out["metadata"]["annotations"]["xray-sidecar.io/status"].as_str().unwrap().contains("xray-sidecar-init"));
    injected.push(out.clone());

    // Existing init containers run after the proxy; annotations reach the init and proxy (dry run alike).
    let (pod, res) = review(&server, "/mutate", "review-init-containers.json").await;
    let out = apply(&pod, &res);
    assert_eq!(names(&out, "initContainers"), ["xray-sidecar-init", "xray-sidecar", "migrate"]);
    let args: Vec<&str> =
        out["spec"]["initContainers"][0]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.windows(2).any(|w| w == ["--exclude-outbound-ports", "5432,6379"]), "{args:?}");
    let proxy = &out["spec"]["initContainers"][1];
    assert!(proxy["env"].to_string().contains("checkout-api"));
    assert!(proxy["env"].to_string().contains("XRAY_SIDECAR_SAMPLING_RULES"));
    assert_eq!(out["spec"]["volumes"][0]["configMap"]["name"], "checkout-sampling");
    injected.push(out);

    // Skips, each with a warning and no patch.
    for (fixture, path, why) in [
        ("review-host-network.json", "/mutate", "hostNetwork"),
        ("review-opted-out.json", "/mutate?namespace=enabled", "\"false\""),
        ("review-already-injected.json", "/mutate", "already injected"),
        ("review-namespace-label.json", "/mutate", "did not opt in"),
    ] {
        let (_, res) = review(&server, path, fixture).await;
        assert!(res.get("patch").is_none_or(Value::is_null), "{fixture}: {res}");
        assert!(res["warnings"][0].as_str().unwrap().contains(why), "{fixture}: {res}");
    }

    // The same pod without an annotation, in a namespace labelled for injection.
    let (pod, res) = review(&server, "/mutate?namespace=enabled", "review-namespace-label.json").await;
    let out = apply(&pod, &res);
    assert_eq!(names(&out, "initContainers"), ["xray-sidecar-init", "xray-sidecar"]);
    injected.push(out.clone());

    // Injecting the injected pod again changes nothing.
    let mut again: Value = serde_json::from_slice(&fixture("review-plain-pod.json")).unwrap();
    again["request"]["object"] = out;
    let (status, body, _) = post(&server, "/mutate", again.to_string().into_bytes()).await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert!(answer["response"].get("patch").is_none_or(Value::is_null));

    // A body that is not an AdmissionReview.
    let (status, body, _) = post(&server, "/mutate", fixture("review-malformed.json")).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("AdmissionReview"));
    // A review whose object is not a readable pod is allowed, with a warning.
    let mut odd: Value = serde_json::from_slice(&fixture("review-plain-pod.json")).unwrap();
    odd["request"]["object"] = json!("not a pod");
    let (status, body, _) = post(&server, "/mutate", odd.to_string().into_bytes()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"]["warnings"][0].as_str().unwrap().contains("no readable pod"));

    let (status, metrics, _) = fetch(&server, "/metrics").await;
    assert_eq!(status, 200);
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("xray_injector_injected_total 3"), "{metrics}");
    assert!(metrics.contains("xray_injector_skipped_total{reason=\"host_network\"} 1"), "{metrics}");
    assert!(metrics.contains("xray_injector_errors_total 2"), "{metrics}");

    validate(&injected);
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let server = start("rotate");
    let (status, _, first) = fetch(&server, "/healthz").await;
    assert_eq!(status, 200);
    // A broken file never replaces the good certificate.
    std::fs::write(server.dir.join("tls.crt"), "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, _, still) = fetch(&server, "/healthz").await;
    assert_eq!(still, first);
    // A new CA and certificate are picked up.
    std::fs::rename(server.dir.join("ca.crt"), server.dir.join("ca-before.crt")).unwrap();
    certs(&server.dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, now) = fetch(&server, "/healthz").await;
        assert_eq!(status, 200);
        if now != first {
            break;
        }
        assert!(Instant::now() < deadline, "the rotated certificate was not served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The injected sidecar's environment, as name → value.
fn sidecar_env(pod: &Value) -> std::collections::BTreeMap<String, String> {
    let sidecar = ["initContainers", "containers"]
        .iter()
        .filter_map(|l| pod["spec"][l].as_array())
        .flatten()
        .find(|c| c["name"] == "xray-sidecar")
        .unwrap();
    sidecar["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.to_owned(), e["value"].as_str()?.to_owned())))
        .collect()
}

#[tokio::test]
async fn the_applications_http_probe_paths_reach_the_sidecar_and_an_annotation_traces_them() {
    let server = start("probes");
    let (pod, res) = review(&server, "/mutate", "review-http-probes.json").await;
    let injected = apply(&pod, &res);
    let env = sidecar_env(&injected);
    assert_eq!(env.get("XRAY_SIDECAR_PROBE_PATHS").map(String::as_str), Some("/healthz,/ready"));
    assert_eq!(env.get("XRAY_SIDECAR_SAMPLE_HEALTH_CHECKS"), None);
    // The application's own probes are left exactly as they were.
    assert_eq!(injected["spec"]["containers"][0]["readinessProbe"], pod["spec"]["containers"][0]["readinessProbe"]);

    let mut asked: Value = serde_json::from_slice(&fixture("review-http-probes.json")).unwrap();
    asked["request"]["object"]["metadata"]["annotations"]["xray-sidecar.io/sample-health-checks"] = json!("true");
    let (status, out, _) = post(&server, "/mutate", asked.to_string().into_bytes()).await;
    assert_eq!(status, 200);
    let res = serde_json::from_slice::<Value>(&out).unwrap()["response"].clone();
    let traced = apply(&asked["request"]["object"], &res);
    assert_eq!(sidecar_env(&traced).get("XRAY_SIDECAR_SAMPLE_HEALTH_CHECKS").map(String::as_str), Some("true"));

    asked["request"]["object"]["metadata"]["annotations"]["xray-sidecar.io/sample-health-checks"] = json!("yes");
    let (_, out, _) = post(&server, "/mutate", asked.to_string().into_bytes()).await;
    let res = serde_json::from_slice::<Value>(&out).unwrap()["response"].clone();
    assert_eq!(res["allowed"], true);
    assert!(res.get("patch").is_none(), "a value it cannot read is not guessed at: {res}");
    assert!(res["warnings"].to_string().contains("sample-health-checks"), "{res}");
    validate(&[injected, traced]);
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_silent_clients_are_answered_in_bounded_time_and_memory() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start("stall");
    let started = Instant::now();
    // 40 reviews that announce 3 MB and stall after 64 KB, and one connection that says nothing.
    let mut stalled = Vec::new();
    for _ in 0..40 {
        let mut tls = connect(&server).await;
        let head =
            "POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 3000000\r\n\r\n";
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(&vec![b' '; 64 * 1024]).await.unwrap();
        tls.flush().await.unwrap();
        stalled.push(tls);
    }
    let mut silent = connect(&server).await;
    let rss = rss_kb(server.child.id());
    eprintln!("injector RSS with 40 stalled reviews: {rss} KB");
    assert!(rss < 64 * 1024, "{rss} KB");

    // A real review is still answered meanwhile, or refused at once with 503 when every slot is
    // taken (the API server then admits the pod untouched).
    let (status, _, _) = post(&server, "/mutate", fixture("review-plain-pod.json")).await;
    assert!(status == 200 || status == 503, "{status}");

    // Every stalled review gets an answer (408 after the read timeout, or 503 at once), and the
    // silent connection is closed, well within the API server's 5 s.
    let mut statuses = std::collections::BTreeMap::new();
    for mut tls in stalled {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(8), tls.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        let status = text.split(' ').nth(1).unwrap_or("none").to_owned();
        *statuses.entry(status).or_insert(0) += 1;
    }
    eprintln!("stalled reviews answered: {statuses:?} within {:?}", started.elapsed());
    assert_eq!(statuses.keys().cloned().collect::<Vec<_>>(), ["408", "503"], "{statuses:?}");
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(6), silent.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "a connection that sends nothing is closed at the header timeout");
    assert!(started.elapsed() < Duration::from_secs(12), "{:?}", started.elapsed());
    // And the server is healthy afterwards.
    let (status, _, _) = post(&server, "/mutate", fixture("review-plain-pod.json")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn hostile_annotations_are_refused_with_a_warning_and_the_pod_admitted_untouched() {
    let server = start("hostile");
    let hostile = [
        ("xray-sidecar.io/exclude-inbound-ports", "80,\t443".to_owned()),
        ("xray-sidecar.io/app-ports", "8080,\n9090".to_owned()),
        ("xray-sidecar.io/exclude-outbound-ports", "1,".repeat(5000)),
        ("xray-sidecar.io/exclude-outbound-cidrs", "10.0.0.0/8,--dry-run".to_owned()),
        ("xray-sidecar.io/service-name", "web\nAWS_XRAY_DAEMON_ADDRESS=evil:2000$(POD_NAME)".to_owned()),
        ("xray-sidecar.io/service-name", "s".repeat(10_000)),
        ("xray-sidecar.io/sampling-rules", "rules --dry-run".to_owned()),
        ("xray-sidecar.io/sample-health-checks", "true\n--dry-run".to_owned()),
    ];
    for (key, value) in hostile {
        let mut asked: Value = serde_json::from_slice(&fixture("review-plain-pod.json")).unwrap();
        asked["request"]["object"]["metadata"]["annotations"]["xray-sidecar.io/inject"] = json!("true");
        asked["request"]["object"]["metadata"]["annotations"][key] = json!(value);
        let (status, out, _) = post(&server, "/mutate", asked.to_string().into_bytes()).await;
        assert_eq!(status, 200);
        let text = String::from_utf8_lossy(&out);
        let res = serde_json::from_slice::<Value>(&out).unwrap()["response"].clone();
        assert_eq!(res["allowed"], true, "{key}: {text}");
        assert!(res.get("patch").is_none(), "{key}: the pod is admitted untouched: {text}");
        let warnings = res["warnings"].as_array().unwrap();
        assert!(warnings.iter().any(|w| w.as_str().unwrap().contains(key)), "{key}: {text}");
        for w in warnings {
            let w = w.as_str().unwrap();
            assert!(w.len() < 200 && !w.chars().any(char::is_control), "{key}: short, one-line warning: {w:?}");
        }
        assert!(!text.contains("evil:2000") && !text.contains("$(POD_NAME)"), "{text}");
    }
    // The same pod with usable values is injected, with the values normalised.
    let mut asked: Value = serde_json::from_slice(&fixture("review-plain-pod.json")).unwrap();
    let annotations = &mut asked["request"]["object"]["metadata"]["annotations"];
    annotations["xray-sidecar.io/inject"] = json!("true");
    annotations["xray-sidecar.io/exclude-inbound-ports"] = json!("80, 443");
    annotations["xray-sidecar.io/service-name"] = json!("shop/cart v2");
    let (_, out, _) = post(&server, "/mutate", asked.to_string().into_bytes()).await;
    let res = serde_json::from_slice::<Value>(&out).unwrap()["response"].clone();
    let injected = apply(&asked["request"]["object"], &res);
    assert_eq!(sidecar_env(&injected).get("AWS_XRAY_TRACING_NAME").map(String::as_str), Some("shop/cart v2"));
    let init = &injected["spec"]["initContainers"][0]["args"];
    assert!(init.to_string().contains("\"80,443\""), "{init}");
    validate(&[injected]);
}

/// Reads one HTTP/1.1 response from `stream`: the status and the body (by its content-length).
async fn read_response<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> (u16, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                return (status, buf[end + 4..end + 4 + length].to_vec());
            }
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed after {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn a_review_in_flight_at_sigterm_is_still_answered_and_the_process_exits_0() {
    use tokio::io::AsyncWriteExt;
    let mut server = start("drain");
    let body = fixture("review-plain-pod.json");
    let uid = serde_json::from_slice::<Value>(&body).unwrap()["request"]["uid"].clone();
    let mut tls = connect(&server).await;
    // `Expect: 100-continue` makes the server say when it has started reading the body: from then
    // on the review is in flight.
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nexpect: 100-continue\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let (status, _) = read_response(&mut tls).await;
    assert_eq!(status, 100);
    let (first, rest) = body.split_at(body.len() / 2);
    tls.write_all(first).await.unwrap();
    tls.flush().await.unwrap();

    let kill = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    // The rest of the body arrives after the signal, slowly as the API server's might.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(server.child.try_wait().unwrap().is_none(), "the injector exited with a review in flight");
    tls.write_all(rest).await.unwrap();
    tls.flush().await.unwrap();

    let (status, out) = tokio::time::timeout(Duration::from_secs(10), read_response(&mut tls)).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
    let answer: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(answer["response"]["uid"], uid);
    assert_eq!(answer["response"]["allowed"], true);
    drop(tls);

    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the injector did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
}
