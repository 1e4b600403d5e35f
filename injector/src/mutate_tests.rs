use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cmd {
    #[command(flatten)]
    cfg: InjectConfig,
}

fn cfg(extra: &[&str]) -> InjectConfig {
    let mut argv = vec!["x"];
    argv.extend_from_slice(extra);
    Cmd::try_parse_from(argv).expect("config").cfg
}

fn pod(annotations: Value) -> Value {
    json!({"metadata": {"name": "web-0", "annotations": annotations, "labels": {}},
           "spec": {"containers": [{"name": "web", "image": "nginx"}]}})
}

fn ctx() -> Context<'static> {
    Context { namespace: "shop", namespace_opted_in: false, workload: None }
}

#[test]
fn legacy_mode_puts_the_proxy_first_among_containers() {
    let Outcome::Inject { pod, patch } =
        mutate(&pod(json!({"xray-sidecar.io/inject": "true"})), ctx(), &cfg(&["--legacy-sidecar"]))
    else {
        panic!("expected injection")
    };
    let names = |k: &str| pod["spec"][k].as_array().map(|a| a.iter().map(|c| c["name"].clone()).collect::<Vec<_>>());
    assert_eq!(names("initContainers"), Some(vec![json!(INIT)]));
    assert_eq!(names("containers"), Some(vec![json!(PROXY), json!("web")]));
    assert!(pod["spec"]["containers"][0].get("restartPolicy").is_none());
    // The status annotation key's `/` is escaped in the patch path.
    assert!(serde_json::to_string(&patch).expect("json").contains("xray-sidecar.io~1status"));
}

#[test]
fn system_namespaces_and_bad_annotations_are_skipped() {
    let p = pod(json!({"xray-sidecar.io/inject": "true"}));
    let mut c = cfg(&[]);
    c.own_namespace = Some("xray-sidecar".into());
    for ns in ["kube-system", "xray-sidecar"] {
        let r = mutate(&p, Context { namespace: ns, ..ctx() }, &c);
        assert!(matches!(r, Outcome::Skip(Skip::SystemNamespace)), "{ns}: {r:?}");
    }
    for (key, value) in [
        (keys::EXCLUDE_INBOUND_PORTS, "22,http"),
        (keys::EXCLUDE_OUTBOUND_CIDRS, "10.0.0.0/99"),
        (keys::APP_PORTS, "0"),
        (keys::SAMPLING_RULES, "Not_A_Name"),
    ] {
        let r = mutate(&pod(json!({"xray-sidecar.io/inject": "true", key: value})), ctx(), &c);
        match r {
            Outcome::Skip(Skip::InvalidAnnotation(why)) => assert!(why.contains(key), "{why}"),
            other => panic!("{key}={value}: {other:?}"),
        }
    }
}

#[test]
fn the_service_name_comes_from_annotation_labels_owner_or_name() {
    let owned = json!({"metadata": {"labels": {"pod-template-hash": "7d4b9"},
        "ownerReferences": [{"kind": "ReplicaSet", "name": "checkout-7d4b9"}]}});
    assert_eq!(service_name(&owned, None, None), "checkout");
    assert_eq!(service_name(&owned, Some("billing"), None), "billing");
    let labelled = json!({"metadata": {"labels": {"app": "cart", "app.kubernetes.io/name": "cart-api"}}});
    assert_eq!(service_name(&labelled, None, None), "cart-api");
    assert_eq!(service_name(&json!({"metadata": {"generateName": "job-x-"}}), None, None), "job-x");
    assert_eq!(service_name(&json!({"metadata": {}}), None, Some("nightly")), "nightly");
    // The image and privileges are configuration only: no annotation changes them.
    let p = pod(json!({"xray-sidecar.io/inject": "true", "xray-sidecar.io/image": "evil:latest"}));
    let Outcome::Inject { pod, .. } = mutate(&p, ctx(), &cfg(&[])) else { panic!("expected injection") };
    let images: Vec<&Value> =
        pod["spec"]["initContainers"].as_array().expect("init").iter().map(|c| &c["image"]).collect();
    assert!(images.iter().all(|i| *i == "ghcr.io/xray-sidecar/xray-sidecar:0.1.0"), "{images:?}");
}
