//! The manifests in `k8s/`: they render with kustomize, validate against the Kubernetes schema, agree
//! with each other (webhook ↔ Service ↔ Deployment), and the lab's workloads validate after
//! `xray-injector inject -f`.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::{repo_root, yaml_docs as docs};

fn run(cmd: &str, args: &[&str], input: Option<&str>) -> String {
    let mut child = Command::new(cmd)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd} is not installed ({e}): run scripts/setup"));
    if let Some(text) = input {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{cmd} {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Validates documents against the Kubernetes schema, strictly (unknown fields are errors).
fn validate(name: &str, docs: &[&Value]) {
    let dir = std::env::temp_dir().join(format!("xray-k8s-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<PathBuf> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let f = dir.join(format!("{i}.json"));
            std::fs::write(&f, d.to_string()).unwrap();
            f
        })
        .collect();
    let args: Vec<&str> = std::iter::once("--strict").chain(files.iter().map(|f| f.to_str().unwrap())).collect();
    let out = run("kubernetes-validate", &args, None);
    assert!(!out.contains("ERROR"), "{name}: {out}");
    assert_eq!(out.matches("passed").count(), docs.len(), "{name}: {out}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

const CERT_MANAGER: &str = "cert-manager.io/v1";

#[test]
fn everything_renders_and_validates() {
    let plain = docs(&run("kubectl", &["kustomize", "k8s/"], None));
    let kinds: Vec<String> = plain
        .iter()
        .map(|d| format!("{}/{}", d["kind"].as_str().unwrap(), d["metadata"]["name"].as_str().unwrap()))
        .collect();
    for want in [
        "ServiceAccount/xray-daemon",
        "DaemonSet/xray-daemon",
        "Service/xray-service",
        "Namespace/xray-sidecar",
        "Deployment/xray-injector",
        "PodDisruptionBudget/xray-injector",
        "MutatingWebhookConfiguration/xray-injector",
        "Deployment/front-end",
        "Deployment/back-end",
    ] {
        assert!(kinds.iter().any(|k| k == want), "missing {want} in {kinds:?}");
    }
    // Namespaces before anything that lives in them.
    let first_other = plain.iter().position(|d| d["kind"] != "Namespace").unwrap();
    assert!(plain[first_other..].iter().all(|d| d["kind"] != "Namespace"));
    validate("plain", &plain.iter().collect::<Vec<_>>());

    let with_cm = docs(&run("kubectl", &["kustomize", "k8s/with-cert-manager"], None));
    let (cm, core): (Vec<&Value>, Vec<&Value>) = with_cm.iter().partition(|d| d["apiVersion"] == CERT_MANAGER);
    validate("with-cert-manager", &core);
    // cert-manager's kinds are custom resources, outside the core schema: checked by structure.
    assert_eq!(cm.len(), 4);
    let serving = cm.iter().find(|d| d["kind"] == "Certificate" && d["metadata"]["name"] == "xray-injector").unwrap();
    assert_eq!(serving["spec"]["secretName"], "xray-injector-tls");
    assert!(serving["spec"]["dnsNames"].as_array().unwrap().iter().any(|n| n == "xray-injector.xray-sidecar.svc"));
    let issuer = serving["spec"]["issuerRef"]["name"].as_str().unwrap();
    assert!(cm.iter().any(|d| d["kind"] == "Issuer" && d["metadata"]["name"] == issuer));
    let hook = find(&with_cm, "MutatingWebhookConfiguration", "xray-injector");
    assert_eq!(hook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"], "xray-sidecar/xray-injector");
}

#[test]
fn the_webhook_reaches_the_injector_as_deployed() {
    let d = docs(&run("kubectl", &["kustomize", "k8s/"], None));
    let service = find(&d, "Service", "xray-injector");
    let deploy = find(&d, "Deployment", "xray-injector");
    let hook = find(&d, "MutatingWebhookConfiguration", "xray-injector");
    let ns = service["metadata"]["namespace"].as_str().unwrap();
    assert_eq!(deploy["metadata"]["namespace"], ns);
    let port = &service["spec"]["ports"][0];
    let container = &deploy["spec"]["template"]["spec"]["containers"][0];
    let target = container["ports"].as_array().unwrap().iter().find(|p| p["name"] == port["targetPort"]).unwrap();
    // `xray-injector serve` listens on 8443 unless told otherwise.
    assert_eq!(target["containerPort"], 8443);
    assert_eq!(container["args"], serde_json::json!(["serve"]));
    let mounts = container["volumeMounts"].to_string();
    assert!(mounts.contains("/etc/xray-injector/tls"), "the default --tls-cert-file location: {mounts}");
    let hooks = hook["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 2);
    for h in hooks {
        let svc = &h["clientConfig"]["service"];
        assert_eq!(svc["name"], service["metadata"]["name"]);
        assert_eq!(svc["namespace"], ns);
        assert_eq!(svc["port"], port["port"]);
        assert!(svc["path"].as_str().unwrap().starts_with("/mutate"));
        assert_eq!(h["failurePolicy"], "Ignore");
        assert_eq!(h["timeoutSeconds"], 5);
        assert_eq!(h["sideEffects"], "None");
        let never = h["namespaceSelector"]["matchExpressions"].to_string();
        assert!(never.contains("kube-system") && never.contains(ns), "{never}");
    }
    let paths: Vec<&str> = hooks.iter().map(|h| h["clientConfig"]["service"]["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"/mutate?namespace=enabled") && paths.contains(&"/mutate"), "{paths:?}");
}

/// The injector binary, built beside this test by `cargo test --workspace`.
fn injector() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("xray-injector");
    assert!(bin.exists(), "{} is missing: run the tests with `cargo test --workspace`", bin.display());
    bin
}

#[test]
fn the_lab_validates_after_injection() {
    let bin = injector();
    for file in ["k8s/base/lab/front-end.yaml", "k8s/base/lab/back-end.yaml"] {
        let out = run(bin.to_str().unwrap(), &["inject", "-f", file], None);
        let injected = docs(&out);
        let deploy = injected.iter().find(|d| d["kind"] == "Deployment").unwrap();
        let spec = &deploy["spec"]["template"]["spec"];
        let init: Vec<&str> =
            spec["initContainers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(init, ["xray-sidecar-init", "xray-sidecar"], "{file}");
        let name = deploy["metadata"]["name"].as_str().unwrap();
        assert!(spec["initContainers"][1]["env"].to_string().contains(&format!("\"{name}\"")), "{file}");
        validate(name, &injected.iter().collect::<Vec<_>>());
    }
}

/// Users name the images once, in the `images:` entries of k8s/base/kustomization.yaml: the injector's
/// container and the sidecar image it injects both follow.
#[test]
fn the_images_are_named_in_one_place() {
    let dir = std::env::temp_dir().join(format!("xray-k8s-images-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    run("cp", &["-r", "k8s", dir.to_str().unwrap()], None);
    let kustomization = dir.join("base/kustomization.yaml");
    let text = std::fs::read_to_string(&kustomization).unwrap();
    let mine = text
        .replace("newName: ghcr.io/xray-sidecar/", "newName: registry.example.com/team/")
        .replace("newTag: \"0.1.0\"", "newTag: \"2.0\"");
    assert_ne!(mine, text, "no images: entries in k8s/base/kustomization.yaml");
    std::fs::write(&kustomization, mine).unwrap();
    for overlay in ["", "with-cert-manager"] {
        let rendered = run("kubectl", &["kustomize", dir.join(overlay).to_str().unwrap()], None);
        assert!(!rendered.contains("ghcr.io"), "{overlay}: an image not named in images:\n{rendered}");
        let d = docs(&rendered);
        let container = &find(&d, "Deployment", "xray-injector")["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "registry.example.com/team/xray-injector:2.0");
        let env = container["env"].as_array().unwrap();
        let sidecar = env.iter().find(|e| e["name"] == "XRAY_INJECTOR_SIDECAR_IMAGE").unwrap();
        assert_eq!(sidecar["value"], "registry.example.com/team/xray-sidecar:2.0");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_cloudwatch_agent_overlay_replaces_the_daemon() {
    let d = docs(&run("kubectl", &["kustomize", "k8s/with-cloudwatch-agent"], None));
    let names: Vec<String> = d
        .iter()
        .map(|x| format!("{}/{}", x["kind"].as_str().unwrap(), x["metadata"]["name"].as_str().unwrap()))
        .collect();
    for gone in ["DaemonSet/xray-daemon", "Service/xray-service", "ServiceAccount/xray-daemon"] {
        assert!(!names.iter().any(|n| n == gone), "{gone} still in {names:?}");
    }
    for kept in ["Deployment/xray-injector", "MutatingWebhookConfiguration/xray-injector", "Deployment/front-end"] {
        assert!(names.iter().any(|n| n == kept), "{kept} missing from {names:?}");
    }
    let deploy = find(&d, "Deployment", "xray-injector");
    let env = deploy["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap();
    let value = |name: &str| env.iter().find(|e| e["name"] == name).map(|e| e["value"].clone());
    assert_eq!(value("XRAY_INJECTOR_DAEMON_ADDRESS"), Some("cloudwatch-agent.amazon-cloudwatch:2000".into()));
    assert!(value("XRAY_INJECTOR_SIDECAR_IMAGE").is_some(), "the rest of the environment is kept: {env:?}");
    validate("with-cloudwatch-agent", &d.iter().collect::<Vec<_>>());
}
