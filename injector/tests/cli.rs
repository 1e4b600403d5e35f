//! `xray-injector inject -f` and `xray-injector certs`, run as a user would.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_xray-injector");

const WORKLOADS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: checkout, namespace: shop}
spec:
  selector: {matchLabels: {app: checkout}}
  template:
    metadata: {labels: {app: checkout}}
    spec: {containers: [{name: app, image: "nginx:1.27"}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        metadata: {annotations: {xray-sidecar.io/inject: "false"}}
        spec: {restartPolicy: OnFailure, containers: [{name: job, image: "busybox:1.36"}]}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: solo}
  spec: {containers: [{name: c, image: "busybox:1.36"}]}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: untouched}
  data: {a: b}
"#;

fn yaml_docs(text: &str) -> Vec<Value> {
    let out = Command::new("python3")
        .args(["-c", "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .expect("python3 with PyYAML (installed with kubernetes-validate by scripts/setup)");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn inject_prints_mutated_workloads_and_leaves_the_rest() {
    let mut child = Command::new(BIN)
        .args(["inject", "-f", "-", "--sidecar-image", "registry.local/xray-sidecar:test"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(WORKLOADS.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs = yaml_docs(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(docs.len(), 3);
    let deploy = &docs[0]["spec"]["template"]["spec"];
    assert_eq!(deploy["initContainers"][1]["name"], "xray-sidecar");
    assert_eq!(deploy["initContainers"][1]["image"], "registry.local/xray-sidecar:test");
    assert!(deploy["initContainers"][1]["env"].to_string().contains("\"checkout\""));
    assert!(docs[1]["spec"]["jobTemplate"]["spec"]["template"]["spec"].get("initContainers").is_none());
    assert_eq!(docs[2]["items"][0]["spec"]["initContainers"][0]["name"], "xray-sidecar-init");
    assert_eq!(docs[2]["items"][1]["data"]["a"], "b");
    assert!(String::from_utf8_lossy(&out.stderr).contains("CronJob/nightly"));
}

#[test]
fn a_request_above_its_limit_in_the_configuration_stops_the_injector_at_start() {
    // Each figure is a quantity on its own; together the API server would refuse every pod, so
    // neither the webhook nor `inject` runs with them (the webhook before reading its certificate).
    for (args, env) in [
        (&["inject", "-f", "-", "--proxy-memory-request", "256Mi"][..], None),
        (&["serve", "--tls-cert-file", "/nonexistent"], Some(("XRAY_INJECTOR_PROXY_CPU_REQUEST", "2"))),
    ] {
        let mut cmd = Command::new(BIN);
        cmd.args(args).stdin(Stdio::null());
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && out.stdout.is_empty(), "{args:?}: {stderr}");
        assert!(stderr.contains("request") && stderr.contains("is above the limit"), "{args:?}: {stderr}");
    }
}

#[test]
fn certs_chain_to_their_ca_and_patch_the_webhook_configuration() {
    let dir = std::env::temp_dir().join(format!("xray-certs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let webhook = dir.join("in.yaml");
    std::fs::write(
        &webhook,
        "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {name: xray-injector}\n\
         webhooks:\n- name: pod.inject.xray-sidecar.io\n  clientConfig: {service: {name: xray-injector, namespace: xray-sidecar, path: /mutate}}\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["certs", "--service", "xray-injector", "--namespace", "xray-sidecar", "--out-dir"])
        .arg(&dir)
        .arg("--webhook-config")
        .arg(&webhook)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // openssl is not assumed: Python's ssl module verifies the chain and the name.
    let check = r#"
import ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1] + "/ca.crt")
cert = ssl._ssl._test_decode_cert(sys.argv[1] + "/tls.crt")
names = [v for k, v in cert["subjectAltName"]]
assert "xray-injector.xray-sidecar.svc" in names, names
assert cert["issuer"][0][0][1] == "xray-injector CA", cert["issuer"]
print("ok")
"#;
    let v = Command::new("python3").args(["-c", check]).arg(&dir).output().unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let patched = yaml_docs(&std::fs::read_to_string(dir.join("webhook.yaml")).unwrap());
    let bundle = patched[0]["webhooks"][0]["clientConfig"]["caBundle"].as_str().unwrap();
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.decode(bundle).unwrap();
    assert_eq!(ca, std::fs::read(dir.join("ca.crt")).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}
