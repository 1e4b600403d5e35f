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
fn pods_another_mesh_intercepts_are_left_alone() {
    for (list, name, mesh) in [
        ("containers", "istio-proxy", "Istio"),
        ("initContainers", "istio-proxy", "Istio"),
        ("initContainers", "linkerd-init", "Linkerd"),
        ("containers", "linkerd-proxy", "Linkerd"),
        ("initContainers", "proxyinit", "App Mesh"),
    ] {
        let mut p = pod(json!({"xray-sidecar.io/inject": "true"}));
        p["spec"][list] = json!([{"name": name, "image": "proxy"}, {"name": "web", "image": "nginx"}]);
        let r = mutate(&p, ctx(), &cfg(&[]));
        let Outcome::Skip(skip) = r else { panic!("{name}: {r:?}") };
        assert_eq!(skip.label(), "other_mesh");
        assert!(skip.message().contains(mesh) && skip.message().contains(name), "{}", skip.message());
    }
    // A container of the application's that merely runs Envoy is no mesh.
    let mut p = pod(json!({"xray-sidecar.io/inject": "true"}));
    p["spec"]["containers"] = json!([{"name": "envoy", "image": "envoyproxy/envoy"}]);
    assert!(matches!(mutate(&p, ctx(), &cfg(&[])), Outcome::Inject { .. }));
}

#[test]
fn pods_that_declare_a_port_of_the_sidecars_are_left_alone() {
    for (list, port) in [("containers", 15100), ("containers", 15102), ("initContainers", 15101)] {
        let mut p = pod(json!({"xray-sidecar.io/inject": "true"}));
        p["spec"][list] =
            json!([{"name": "web", "image": "nginx", "ports": [{"containerPort": 8080}, {"containerPort": port}]}]);
        let r = mutate(&p, ctx(), &cfg(&[]));
        let Outcome::Skip(skip) = r else { panic!("{list} {port}: {r:?}") };
        assert_eq!(skip.label(), "port_conflict");
        assert!(skip.message().contains(&format!("web declares port {port}")), "{}", skip.message());
    }
    let mut p = pod(json!({"xray-sidecar.io/inject": "true"}));
    p["spec"]["containers"] = json!([{"name": "web", "image": "nginx", "ports": [{"containerPort": 15103}]}]);
    assert!(matches!(mutate(&p, ctx(), &cfg(&[])), Outcome::Inject { .. }));
}

#[test]
fn windows_pods_are_left_alone() {
    let affinity = |values: Value| {
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": values}]}
        ]}}})
    };
    let windows = [
        ("os", json!({"name": "windows"})),
        ("nodeSelector", json!({"kubernetes.io/os": "windows"})),
        ("nodeSelector", json!({"beta.kubernetes.io/os": "windows"})),
        ("affinity", affinity(json!(["windows"]))),
    ];
    for (field, value) in windows {
        let mut p = pod(json!({"xray-sidecar.io/inject": "true"}));
        p["spec"][field] = value.clone();
        let r = mutate(&p, ctx(), &cfg(&[]));
        let Outcome::Skip(skip) = r else { panic!("{field} {value}: {r:?}") };
        assert_eq!(skip.label(), "windows");
        assert!(skip.message().contains("Windows"), "{}", skip.message());
    }
    // Linux pods, and pods that may land on either, are injected.
    let either = [
        ("os", json!({"name": "linux"})),
        ("nodeSelector", json!({"kubernetes.io/os": "linux"})),
        ("affinity", affinity(json!(["linux", "windows"]))),
    ];
    for (field, value) in either {
        let mut p = pod(json!({"xray-sidecar.io/inject": "true"}));
        p["spec"][field] = value.clone();
        assert!(matches!(mutate(&p, ctx(), &cfg(&[])), Outcome::Inject { .. }), "{field} {value}");
    }
}

#[test]
fn legacy_mode_leaves_pods_that_run_to_completion_alone() {
    let mut job = pod(json!({"xray-sidecar.io/inject": "true"}));
    for policy in ["Never", "OnFailure"] {
        job["spec"]["restartPolicy"] = json!(policy);
        let r = mutate(&job, ctx(), &cfg(&["--legacy-sidecar"]));
        let Outcome::Skip(skip) = r else { panic!("{policy}: {r:?}") };
        assert_eq!(skip, Skip::RunsToCompletion);
        assert!(skip.message().contains("never complete"), "{}", skip.message());
        // A native sidecar ends with the pod: Jobs are injected.
        assert!(matches!(mutate(&job, ctx(), &cfg(&[])), Outcome::Inject { .. }), "{policy}");
    }
    job["spec"]["restartPolicy"] = json!("Always");
    assert!(matches!(mutate(&job, ctx(), &cfg(&["--legacy-sidecar"])), Outcome::Inject { .. }));
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
        (keys::KEEP_ALIVE_TIMEOUT, "2m"),
        (keys::KEEP_ALIVE_TIMEOUT, "0s"),
        (keys::KEEP_ALIVE_TIMEOUT, "86401s"),
        (keys::KEEP_ALIVE_TIMEOUT, "75s --flag"),
        (keys::STREAM_IDLE_TIMEOUT, "5m"),
        (keys::STREAM_IDLE_TIMEOUT, "0s"),
        (keys::STREAM_IDLE_TIMEOUT, "1s\n--flag"),
    ] {
        let r = mutate(&pod(json!({"xray-sidecar.io/inject": "true", key: value})), ctx(), &c);
        match r {
            Outcome::Skip(Skip::InvalidAnnotation(why)) => assert!(why.to_string().contains(key), "{why}"),
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

/// Values an attacker or an unlucky operator could put in each annotation that reaches the sidecar
/// or the init container.
fn hostile() -> Vec<(&'static str, String)> {
    let many_ports = (1..=65).map(|p| p.to_string()).collect::<Vec<_>>().join(",");
    let many_cidrs = (0..65).map(|i| format!("10.{i}.0.0/16")).collect::<Vec<_>>().join(",");
    let mut table: Vec<(&'static str, String)> = Vec::new();
    for key in [keys::EXCLUDE_INBOUND_PORTS, keys::EXCLUDE_OUTBOUND_PORTS, keys::APP_PORTS] {
        for v in ["80,\t443", "8080,\n9090", "80 443", "80,,443", "+80", "65536", "0", "--dry-run", "80,--dry-run"] {
            table.push((key, v.to_owned()));
        }
        table.push((key, many_ports.clone()));
        table.push((key, "1,".repeat(5000)));
    }
    for v in
        ["10.0.0.0/8,\n10.1.0.0/16", "10.0.0.0/8\t,10.1.0.0/16", "10.0.0.0/8 --dry-run", "--dry-run", "10.0.0.0/8,,"]
    {
        table.push((keys::EXCLUDE_OUTBOUND_CIDRS, v.to_owned()));
    }
    table.push((keys::EXCLUDE_OUTBOUND_CIDRS, many_cidrs));
    for v in
        ["web\nXRAY_SIDECAR_DAEMON_ADDRESS=evil:2000", "$(POD_NAME)", "web$(HOME)", "web;rm", "--dry-run", "a\u{0}b"]
    {
        table.push((keys::SERVICE_NAME, v.to_owned()));
    }
    table.push((keys::SERVICE_NAME, "x".repeat(10_000)));
    for v in ["Rules", "rules/../x", "-rules", "rules-", "rules\nx", "a b"] {
        table.push((keys::SAMPLING_RULES, v.to_owned()));
    }
    for v in ["yes", "1", "true --dry-run", "true,false"] {
        table.push((keys::SAMPLE_HEALTH_CHECKS, v.to_owned()));
    }
    for key in [keys::PROXY_CPU_REQUEST, keys::PROXY_CPU_LIMIT, keys::PROXY_MEMORY_REQUEST, keys::PROXY_MEMORY_LIMIT] {
        for v in ["-1", "lots", "0", "1 Gi", "$(LIMIT)", "1\nGi", "1e400", "1Gi --dry-run", "0.0000001", "1mi"] {
            table.push((key, v.to_owned()));
        }
        table.push((key, "9".repeat(30)));
    }
    // Too little memory for the proxy to start and serve.
    table.push((keys::PROXY_MEMORY_LIMIT, "16Mi".to_owned()));
    table.push((keys::PROXY_MEMORY_REQUEST, "1000".to_owned()));
    table
}

#[test]
fn hostile_annotation_values_skip_injection_with_a_short_warning() {
    for (key, value) in hostile() {
        let r = mutate(&pod(json!({"xray-sidecar.io/inject": "true", key: value})), ctx(), &cfg(&[]));
        let Outcome::Skip(skip) = r else { panic!("{key}={value:?} was injected") };
        let Skip::InvalidAnnotation(why) = &skip else { panic!("{key}={value:?}: {skip:?}") };
        assert!(why.to_string().contains(key), "{why}");
        let warning = skip.message();
        assert!(warning.len() < 200, "{key}: the warning stays short: {warning}");
        assert!(!warning.chars().any(char::is_control), "{key}: the warning stays one line: {warning:?}");
    }
}

#[test]
fn valid_annotation_values_reach_the_init_container_normalised() {
    let annotations = json!({
        "xray-sidecar.io/inject": "true",
        keys::EXCLUDE_INBOUND_PORTS: " 22 , 9090 ",
        keys::APP_PORTS: (1..=64).map(|p| p.to_string()).collect::<Vec<_>>().join(","),
        keys::EXCLUDE_OUTBOUND_CIDRS: "10.0.0.0/8, fd00::/8",
        keys::SERVICE_NAME: "shop/cart v2:blue@eu-west-1",
        keys::SAMPLE_HEALTH_CHECKS: "FALSE",
    });
    let Outcome::Inject { pod, .. } = mutate(&pod(annotations), ctx(), &cfg(&[])) else { panic!("expected injection") };
    let init = &pod["spec"]["initContainers"][0];
    let args: Vec<&str> = init["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    let after = |f: &str| args.iter().position(|a| *a == f).map(|i| args[i + 1]);
    assert_eq!(after("--exclude-inbound-ports"), Some("22,9090"));
    assert_eq!(after("--exclude-outbound-cidrs"), Some("10.0.0.0/8,fd00::/8"));
    assert_eq!(after("--include-inbound-ports").map(|v| v.split(',').count()), Some(64));
    let env = pod["spec"]["initContainers"][1]["env"].to_string();
    assert!(env.contains("shop/cart v2:blue@eu-west-1"), "{env}");
    assert!(!env.contains("SAMPLE_HEALTH_CHECKS"), "{env}");
}

#[test]
fn probe_paths_reach_the_sidecar_unexpanded() {
    let mut p = pod(json!({"xray-sidecar.io/inject": "true"}));
    p["spec"]["containers"][0]["readinessProbe"] = json!({"httpGet": {"path": "/ready$(HOME)", "port": 8080}});
    let Outcome::Inject { pod, .. } = mutate(&p, ctx(), &cfg(&[])) else { panic!("expected injection") };
    let env = pod["spec"]["initContainers"][1]["env"].to_string();
    // The kubelet turns `$$` back into `$`, so the sidecar reads the path as the pod wrote it.
    assert!(env.contains("/ready$$(HOME)"), "{env}");
}

#[test]
fn the_keep_alive_and_stream_idle_timeouts_reach_the_proxy_as_whole_seconds() {
    for (key, var) in [
        (keys::KEEP_ALIVE_TIMEOUT, proxy_env::KEEP_ALIVE_TIMEOUT),
        (keys::STREAM_IDLE_TIMEOUT, proxy_env::STREAM_IDLE_TIMEOUT),
    ] {
        for (value, env) in [("120s", "120s"), ("075s", "75s"), ("86400s", "86400s")] {
            let p = pod(json!({"xray-sidecar.io/inject": "true", key: value}));
            let Outcome::Inject { pod, .. } = mutate(&p, ctx(), &cfg(&[])) else { panic!("{value}: not injected") };
            let containers = pod["spec"]["initContainers"].as_array().expect("init containers");
            let proxy = containers.iter().find(|c| c["name"] == PROXY).expect("the proxy");
            let vars = proxy["env"].as_array().expect("env");
            let set = vars.iter().find(|e| e["name"] == var);
            assert_eq!(set.map(|e| &e["value"]), Some(&json!(env)), "{key}={value}");
        }
    }
}

/// The proxy container of an injected pod.
fn proxy_of(pod: &Value) -> &Value {
    let containers = pod["spec"]["initContainers"].as_array().expect("init containers");
    containers.iter().find(|c| c["name"] == PROXY).expect("the proxy")
}

#[test]
fn a_busy_pod_gives_its_proxy_more_and_the_connection_limit_follows() {
    let annotations = json!({
        "xray-sidecar.io/inject": "true",
        keys::PROXY_CPU_REQUEST: "250m",
        keys::PROXY_CPU_LIMIT: "2",
        keys::PROXY_MEMORY_REQUEST: "128Mi",
        keys::PROXY_MEMORY_LIMIT: "512Mi",
    });
    let Outcome::Inject { pod, .. } = mutate(&pod(annotations), ctx(), &cfg(&[])) else { panic!("not injected") };
    let proxy = proxy_of(&pod);
    assert_eq!(
        proxy["resources"],
        json!({"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "512Mi"}})
    );
    let connections = proxy["env"].as_array().expect("env").iter().find(|e| e["name"] == proxy_env::MAX_CONNECTIONS);
    let expected = xray_sidecar::contract::max_connections_for_memory(512).to_string();
    assert_eq!(connections.map(|e| &e["value"]), Some(&json!(expected)));
    let workers = proxy["env"].as_array().expect("env").iter().find(|e| e["name"] == proxy_env::WORKERS);
    assert_eq!(workers.map(|e| &e["value"]), Some(&json!("2")), "a worker per core of the CPU limit");

    // Without annotations, the injector's own figures.
    let plain = super::tests::pod(json!({"xray-sidecar.io/inject": "true"}));
    let Outcome::Inject { pod: plain, .. } = mutate(&plain, ctx(), &cfg(&[])) else { panic!("not injected") };
    assert_eq!(proxy_of(&plain)["resources"]["limits"], json!({"cpu": "1", "memory": "128Mi"}));
}

#[test]
fn a_request_above_its_limit_skips_injection_rather_than_the_whole_pod() {
    // The API server refuses a container whose request is above its limit, and with it the pod.
    for (annotations, key) in [
        (json!({keys::PROXY_MEMORY_REQUEST: "256Mi"}), keys::PROXY_MEMORY_REQUEST),
        (json!({keys::PROXY_MEMORY_LIMIT: "64Mi", keys::PROXY_MEMORY_REQUEST: "100Mi"}), keys::PROXY_MEMORY_REQUEST),
        // The pod set only the limit, below the injector's 50m request: the limit is named.
        (json!({keys::PROXY_CPU_LIMIT: "20m"}), keys::PROXY_CPU_LIMIT),
    ] {
        let mut annotations = annotations;
        annotations["xray-sidecar.io/inject"] = json!("true");
        let r = mutate(&pod(annotations.clone()), ctx(), &cfg(&[]));
        let Outcome::Skip(skip) = r else { panic!("{annotations}: injected") };
        let message = skip.message();
        assert!(message.contains(key) && message.contains("above the limit"), "{message}");
    }
}
