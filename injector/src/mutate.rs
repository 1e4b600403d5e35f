//! The mutation itself, pure: a pod as received (JSON) in; whether to inject, and the mutated pod and
//! its JSON Patch, out. Everything the injector does not add is left exactly as it came.

use serde_json::{Map, Value, json};
use xray_sidecar::contract::{
    ADMIN_PORT, INBOUND_PORT, INIT_COMMAND, LIVE_PATH, OUTBOUND_PORT, PROXY_COMMAND, READY_PATH, init_flag, proxy_env,
    proxy_flag,
};

use crate::annotation;
use crate::config::InjectConfig;
use crate::resources::{Resource, Resources};

/// Annotation and label keys.
pub mod keys {
    /// `"true"` opts a pod in, `"false"` out (always wins).
    pub const INJECT: &str = "xray-sidecar.io/inject";
    /// The X-Ray service name.
    pub const SERVICE_NAME: &str = "xray-sidecar.io/service-name";
    /// A ConfigMap holding `sampling-rules.json`.
    pub const SAMPLING_RULES: &str = "xray-sidecar.io/sampling-rules";
    /// Inbound ports never intercepted.
    pub const EXCLUDE_INBOUND_PORTS: &str = "xray-sidecar.io/exclude-inbound-ports";
    /// Outbound ports never intercepted.
    pub const EXCLUDE_OUTBOUND_PORTS: &str = "xray-sidecar.io/exclude-outbound-ports";
    /// Outbound CIDRs never intercepted.
    pub const EXCLUDE_OUTBOUND_CIDRS: &str = "xray-sidecar.io/exclude-outbound-cidrs";
    /// The application's ports: only these are intercepted inbound.
    pub const APP_PORTS: &str = "xray-sidecar.io/app-ports";
    /// `"true"` samples health checks (kubelet probes, the pod's probe paths) like any request.
    pub const SAMPLE_HEALTH_CHECKS: &str = "xray-sidecar.io/sample-health-checks";
    /// How long the proxy keeps an idle client connection (`120s`): longer than the idle timeout
    /// of a load balancer in front of the pod, when that was raised above the proxy's 75 s.
    pub const KEEP_ALIVE_TIMEOUT: &str = "xray-sidecar.io/keep-alive-timeout";
    /// How long a response may go with nothing moving before the proxy cuts it (`900s`): above
    /// the quietest gap of the pod's long polls or server-sent events, when that is over 5 minutes.
    pub const STREAM_IDLE_TIMEOUT: &str = "xray-sidecar.io/stream-idle-timeout";
    /// The proxy's CPU request (`100m`), in place of the injector's.
    pub const PROXY_CPU_REQUEST: &str = "xray-sidecar.io/proxy-cpu-request";
    /// The proxy's CPU limit (`2`), in place of the injector's.
    pub const PROXY_CPU_LIMIT: &str = "xray-sidecar.io/proxy-cpu-limit";
    /// The proxy's memory request (`64Mi`), in place of the injector's.
    pub const PROXY_MEMORY_REQUEST: &str = "xray-sidecar.io/proxy-memory-request";
    /// The proxy's memory limit (`256Mi`), in place of the injector's; its connection limit
    /// follows.
    pub const PROXY_MEMORY_LIMIT: &str = "xray-sidecar.io/proxy-memory-limit";
    /// Written by the injector: what it added.
    pub const STATUS: &str = "xray-sidecar.io/status";
}

/// The proxy container's name.
pub const PROXY: &str = "xray-sidecar";
/// The iptables init container's name.
pub const INIT: &str = "xray-sidecar-init";
const SAMPLING_VOLUME: &str = "xray-sidecar-sampling";
const SAMPLING_DIR: &str = "/etc/xray-sidecar/sampling";

/// Why a pod is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The pod's annotation says `"false"`.
    OptedOut,
    /// Neither the pod nor its namespace asked for injection.
    NotOptedIn,
    /// Host-network pods share the node's network: intercepting them would intercept the node.
    HostNetwork,
    /// A namespace the injector never touches.
    SystemNamespace,
    /// The pod already has the sidecar.
    AlreadyInjected,
    /// Another mesh's proxy (named by its container) already intercepts the pod's traffic with
    /// iptables: the two interceptions would send each other's traffic round in a loop.
    OtherMesh {
        /// The mesh.
        mesh: &'static str,
        /// Its container or init container found in the pod.
        container: &'static str,
    },
    /// A container of the pod declares a port the sidecar listens on: the two would fight over it
    /// in the pod's one network namespace.
    PortConflict {
        /// The container.
        container: String,
        /// The port.
        port: u16,
    },
    /// A pod for Windows nodes: the proxy's image and its iptables set-up are Linux-only, so the
    /// pod would never start.
    Windows,
    /// A pod that runs to completion (`restartPolicy` `Never` or `OnFailure`: a Job's) under
    /// `--legacy-sidecar`: the proxy would be an ordinary container that never exits, so the pod
    /// would never complete. A native sidecar ends with the pod's containers.
    RunsToCompletion,
    /// An annotation could not be used; injecting with it ignored could intercept what the
    /// operator meant to exclude.
    InvalidAnnotation(Unusable),
}

/// Why a pod that asked for the sidecar cannot be given it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// An annotation's value fails its check.
    #[error("{key}: {source}")]
    Annotation {
        /// The annotation.
        key: &'static str,
        /// What is wrong with its value.
        #[source]
        source: annotation::InvalidValue,
    },
    /// There is no `spec` to add the containers to.
    #[error("the pod has no spec")]
    NoSpec,
}

impl Skip {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Skip::OptedOut => "opted_out",
            Skip::NotOptedIn => "not_opted_in",
            Skip::HostNetwork => "host_network",
            Skip::SystemNamespace => "system_namespace",
            Skip::AlreadyInjected => "already_injected",
            Skip::OtherMesh { .. } => "other_mesh",
            Skip::PortConflict { .. } => "port_conflict",
            Skip::Windows => "windows",
            Skip::RunsToCompletion => "runs_to_completion",
            Skip::InvalidAnnotation(_) => "invalid_annotation",
        }
    }

    /// What the response warning says.
    pub fn message(&self) -> String {
        match self {
            Skip::OptedOut => format!("xray-sidecar not injected: {} is \"false\"", keys::INJECT),
            Skip::NotOptedIn => "xray-sidecar not injected: the pod and its namespace did not opt in".into(),
            Skip::HostNetwork => "xray-sidecar not injected: hostNetwork pods are never injected".into(),
            Skip::SystemNamespace => "xray-sidecar not injected: system namespace".into(),
            Skip::AlreadyInjected => "xray-sidecar not injected: already injected".into(),
            Skip::OtherMesh { mesh, container } => format!(
                "xray-sidecar not injected: {mesh} already intercepts this pod's traffic ({container}); \
                 two interceptions would loop"
            ),
            Skip::PortConflict { container, port } => format!(
                "xray-sidecar not injected: container {container} declares port {port}, which the sidecar \
                 listens on ({INBOUND_PORT}, {OUTBOUND_PORT} and {ADMIN_PORT} are the sidecar's)"
            ),
            Skip::Windows => "xray-sidecar not injected: the pod runs on Windows nodes, and the proxy and its \
                              iptables set-up are Linux-only (the pod would never start)"
                .into(),
            Skip::RunsToCompletion => "xray-sidecar not injected: with --legacy-sidecar the proxy never exits, so a pod \
                                       that runs to completion (restartPolicy Never or OnFailure) would never complete; \
                                       native sidecars (Kubernetes 1.29+) end with the pod"
                .into(),
            Skip::InvalidAnnotation(why) => format!("xray-sidecar not injected: {why}"),
        }
    }
}

/// The decision for one pod.
#[derive(Debug)]
pub enum Outcome {
    /// The mutated pod and the patch that turns the original into it.
    Inject {
        /// The pod with the sidecar.
        pod: Value,
        /// RFC 6902 operations against the pod as received.
        patch: json_patch::Patch,
    },
    /// Left alone, and why.
    Skip(Skip),
}

/// What the caller knows beyond the pod itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The pod's namespace (an AdmissionRequest carries it even when the pod does not).
    pub namespace: &'a str,
    /// Whether the namespace is labelled for injection.
    pub namespace_opted_in: bool,
    /// A name to fall back on for the service (e.g. the workload of a pod template).
    pub workload: Option<&'a str>,
}

/// Decides and, when injecting, mutates. Never fails: a pod it cannot read is skipped by the caller.
pub fn mutate(pod: &Value, ctx: Context<'_>, cfg: &InjectConfig) -> Outcome {
    let annotations = pod.pointer("/metadata/annotations").and_then(Value::as_object);
    let annotation = |k: &str| annotations.and_then(|a| a.get(k)).and_then(Value::as_str).map(str::trim);
    match annotation(keys::INJECT) {
        Some(v) if v.eq_ignore_ascii_case("false") => return Outcome::Skip(Skip::OptedOut),
        Some(v) if v.eq_ignore_ascii_case("true") => {}
        _ if ctx.namespace_opted_in => {}
        _ => return Outcome::Skip(Skip::NotOptedIn),
    }
    if cfg.is_system(ctx.namespace) {
        return Outcome::Skip(Skip::SystemNamespace);
    }
    if pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true) {
        return Outcome::Skip(Skip::HostNetwork);
    }
    if annotation(keys::STATUS).is_some() || has_container(pod, PROXY) || has_container(pod, INIT) {
        return Outcome::Skip(Skip::AlreadyInjected);
    }
    // The API server calls webhook configurations in name order, and other meshes' sort before
    // ours (istio-, linkerd-, appmesh-, aws-app-mesh-): their containers are in the pod already.
    if let Some((container, mesh)) = OTHER_MESHES.iter().copied().find(|(c, _)| has_container(pod, c)) {
        return Outcome::Skip(Skip::OtherMesh { mesh, container });
    }
    if let Some((container, port)) = declared_sidecar_port(pod) {
        return Outcome::Skip(Skip::PortConflict { container, port });
    }
    if runs_on_windows(pod) {
        return Outcome::Skip(Skip::Windows);
    }
    // A pod's restartPolicy defaults to Always; a Job's template must say Never or OnFailure.
    let restart = pod.pointer("/spec/restartPolicy").and_then(Value::as_str).unwrap_or("Always");
    if cfg.legacy_sidecar && restart != "Always" {
        return Outcome::Skip(Skip::RunsToCompletion);
    }
    let mut init_args = vec![
        INIT_COMMAND.to_owned(),
        flag(init_flag::PROXY_UID),
        cfg.proxy_uid.to_string(),
        flag(init_flag::INBOUND_PORT),
        INBOUND_PORT.to_string(),
        flag(init_flag::OUTBOUND_PORT),
        OUTBOUND_PORT.to_string(),
        flag(init_flag::ADMIN_PORT),
        ADMIN_PORT.to_string(),
    ];
    // One policy for every value that reaches the sidecar or the init container: it is used only
    // as the strict check returns it, and a value that fails skips injection with a warning.
    let checked = |key: &'static str, check: fn(&str) -> Result<String, annotation::InvalidValue>| {
        annotation(key)
            .filter(|v| !v.is_empty())
            .map(|v| check(v).map_err(|source| Skip::InvalidAnnotation(Unusable::Annotation { key, source })))
            .transpose()
    };
    for (key, name, check) in [
        (keys::EXCLUDE_INBOUND_PORTS, init_flag::EXCLUDE_INBOUND_PORTS, annotation::ports as fn(&str) -> _),
        (keys::EXCLUDE_OUTBOUND_PORTS, init_flag::EXCLUDE_OUTBOUND_PORTS, annotation::ports),
        (keys::EXCLUDE_OUTBOUND_CIDRS, init_flag::EXCLUDE_OUTBOUND_CIDRS, annotation::cidrs),
        (keys::APP_PORTS, init_flag::INCLUDE_INBOUND_PORTS, annotation::ports),
    ] {
        match checked(key, check) {
            Ok(Some(v)) => init_args.extend([flag(name), v]),
            Ok(None) => {}
            Err(skip) => return Outcome::Skip(skip),
        }
    }
    let (sampling, sample_probes, service_annotation) = match (
        checked(keys::SAMPLING_RULES, annotation::config_map_name),
        checked(keys::SAMPLE_HEALTH_CHECKS, |v| annotation::boolean(v).map(|b| b.to_string())),
        checked(keys::SERVICE_NAME, annotation::service_name),
    ) {
        (Ok(sampling), Ok(probes), Ok(service)) => (sampling, probes.as_deref() == Some("true"), service),
        (Err(skip), ..) | (_, Err(skip), _) | (.., Err(skip)) => return Outcome::Skip(skip),
    };
    let mut timeouts = Vec::new();
    for (key, var) in [
        (keys::KEEP_ALIVE_TIMEOUT, proxy_env::KEEP_ALIVE_TIMEOUT),
        (keys::STREAM_IDLE_TIMEOUT, proxy_env::STREAM_IDLE_TIMEOUT),
    ] {
        match checked(key, annotation::seconds) {
            Ok(Some(v)) => timeouts.push((var, v)),
            Ok(None) => {}
            Err(skip) => return Outcome::Skip(skip),
        }
    }

    let mut resources = Resources::from_config(cfg);
    for (key, check, value) in [
        (keys::PROXY_CPU_REQUEST, annotation::cpu as fn(&str) -> _, &mut resources.cpu_request),
        (keys::PROXY_CPU_LIMIT, annotation::cpu, &mut resources.cpu_limit),
        (keys::PROXY_MEMORY_REQUEST, annotation::memory_request, &mut resources.memory_request),
        (keys::PROXY_MEMORY_LIMIT, annotation::memory_limit, &mut resources.memory_limit),
    ] {
        match checked(key, check) {
            Ok(Some(v)) => *value = v,
            Ok(None) => {}
            Err(skip) => return Outcome::Skip(skip),
        }
    }
    if let Some((which, source)) = resources.request_above_limit() {
        // The injector's own figures agree (checked at start), so the pod set at least one of the
        // pair: the warning names the request if the pod set it, else the limit.
        let (request, limit) = match which {
            Resource::Cpu => (keys::PROXY_CPU_REQUEST, keys::PROXY_CPU_LIMIT),
            Resource::Memory => (keys::PROXY_MEMORY_REQUEST, keys::PROXY_MEMORY_LIMIT),
        };
        let key = if annotation(request).is_some_and(|v| !v.is_empty()) { request } else { limit };
        return Outcome::Skip(Skip::InvalidAnnotation(Unusable::Annotation { key, source }));
    }

    let service = service_name(pod, service_annotation.as_deref(), ctx.workload);
    let mut proxy = proxy_container(cfg, &service, sampling.is_some(), &resources);
    if let Some(env) = proxy["env"].as_array_mut() {
        // The sidecar keeps health checks off the service map unless the pod asks for them.
        let paths = crate::probes::http_probe_paths(pod);
        if !paths.is_empty() {
            env.push(json!({"name": proxy_env::PROBE_PATHS, "value": annotation::env_literal(&paths.join(","))}));
        }
        if sample_probes {
            env.push(json!({"name": proxy_env::SAMPLE_HEALTH_CHECKS, "value": "true"}));
        }
        for (var, timeout) in timeouts {
            env.push(json!({"name": var, "value": timeout}));
        }
    }
    let init = init_container(cfg, init_args);
    let mut new = pod.clone();
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return Outcome::Skip(Skip::InvalidAnnotation(Unusable::NoSpec));
    };
    let mut status =
        json!({"version": env!("CARGO_PKG_VERSION"), "initContainers": [INIT], "containers": [], "volumes": []});
    if cfg.legacy_sidecar {
        prepend(spec, "initContainers", vec![init]);
        prepend(spec, "containers", vec![proxy]);
        status["containers"] = json!([PROXY]);
    } else {
        // A native sidecar: started, and probed ready, before the application's own init
        // containers and containers; stopped after them, so Jobs still complete.
        proxy["restartPolicy"] = json!("Always");
        prepend(spec, "initContainers", vec![init, proxy]);
        status["initContainers"] = json!([INIT, PROXY]);
    }
    if let Some(name) = &sampling {
        let volume = json!({"name": SAMPLING_VOLUME, "configMap": {"name": name}});
        if let Some(volumes) = spec.entry("volumes").or_insert_with(|| json!([])).as_array_mut() {
            volumes.push(volume);
        }
        status["volumes"] = json!([SAMPLING_VOLUME]);
    }
    let meta = new.as_object_mut().map(|o| o.entry("metadata").or_insert_with(|| json!({})));
    if let Some(meta) = meta.and_then(Value::as_object_mut) {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(keys::STATUS.into(), Value::String(status.to_string()));
        }
    }
    let patch = json_patch::diff(pod, &new);
    Outcome::Inject { pod: new, patch }
}

/// Containers (or init containers) that mean another mesh intercepts the pod's traffic: each
/// mesh's proxy, and its iptables init container (Istio's proxy may also be an init container, as
/// a native sidecar, and with its CNI plugin there is no init container at all).
const OTHER_MESHES: [(&str, &str); 5] = [
    ("istio-proxy", "Istio"),
    ("istio-init", "Istio"),
    ("linkerd-proxy", "Linkerd"),
    ("linkerd-init", "Linkerd"),
    ("proxyinit", "App Mesh"),
];

/// The first container (and port) that declares one of the ports the sidecar listens on.
fn declared_sidecar_port(pod: &Value) -> Option<(String, u16)> {
    containers(pod).find_map(|c| {
        let ports = c.get("ports").and_then(Value::as_array)?;
        let port = ports
            .iter()
            .filter_map(|p| p.get("containerPort").and_then(Value::as_u64))
            .find_map(|p| [INBOUND_PORT, OUTBOUND_PORT, ADMIN_PORT].into_iter().find(|&ours| u64::from(ours) == p))?;
        Some((c.get("name").and_then(Value::as_str).unwrap_or("(unnamed)").to_owned(), port))
    })
}

/// Whether the pod can only be scheduled on Windows nodes: it says so (`spec.os.name`), its
/// `nodeSelector` asks for them, or every term of its required node affinity does.
fn runs_on_windows(pod: &Value) -> bool {
    let windows = |v: Option<&Value>| v.and_then(Value::as_str).is_some_and(|os| os.eq_ignore_ascii_case("windows"));
    if windows(pod.pointer("/spec/os/name")) {
        return true;
    }
    let selector = pod.pointer("/spec/nodeSelector");
    if [OS_LABEL, BETA_OS_LABEL].iter().any(|label| windows(selector.and_then(|s| s.get(label)))) {
        return true;
    }
    let terms = pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array);
    let windows_only = |term: &Value| {
        term.get("matchExpressions").and_then(Value::as_array).is_some_and(|exprs| {
            exprs.iter().any(|e| {
                let key = e.get("key").and_then(Value::as_str);
                let values = e.get("values").and_then(Value::as_array);
                key.is_some_and(|k| k == OS_LABEL || k == BETA_OS_LABEL)
                    && e.get("operator").and_then(Value::as_str) == Some("In")
                    && values.is_some_and(|v| !v.is_empty() && v.iter().all(|os| windows(Some(os))))
            })
        })
    };
    terms.is_some_and(|t| !t.is_empty() && t.iter().all(windows_only))
}

/// The node label that names a node's operating system, and its deprecated form.
const OS_LABEL: &str = "kubernetes.io/os";
const BETA_OS_LABEL: &str = "beta.kubernetes.io/os";

/// The pod's containers, then its init containers.
fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    ["/spec/containers", "/spec/initContainers"]
        .into_iter()
        .filter_map(|list| pod.pointer(list).and_then(Value::as_array))
        .flatten()
}

fn has_container(pod: &Value, name: &str) -> bool {
    containers(pod).any(|c| c["name"] == name)
}

fn prepend(spec: &mut Map<String, Value>, key: &str, mut items: Vec<Value>) {
    let existing = spec.remove(key).and_then(|v| match v {
        Value::Array(a) => Some(a),
        _ => None,
    });
    items.extend(existing.unwrap_or_default());
    spec.insert(key.into(), Value::Array(items));
}

/// The annotation, else `app.kubernetes.io/name` or `app`, else the owner (a ReplicaSet's name
/// without its pod-template hash, i.e. the Deployment's), else the workload or the pod's name.
pub fn service_name(pod: &Value, annotation: Option<&str>, workload: Option<&str>) -> String {
    let label = |k: &str| pod.pointer("/metadata/labels").and_then(|l| l.get(k)).and_then(Value::as_str);
    if let Some(n) =
        annotation.filter(|n| !n.is_empty()).or_else(|| label("app.kubernetes.io/name")).or_else(|| label("app"))
    {
        return n.to_owned();
    }
    if let Some(owner) = pod.pointer("/metadata/ownerReferences/0/name").and_then(Value::as_str) {
        let hash = label("pod-template-hash").map(|h| format!("-{h}"));
        return hash.and_then(|h| owner.strip_suffix(&h)).unwrap_or(owner).to_owned();
    }
    workload
        .or_else(|| pod.pointer("/metadata/name").and_then(Value::as_str))
        .or_else(|| pod.pointer("/metadata/generateName").and_then(Value::as_str).map(|g| g.trim_end_matches('-')))
        .unwrap_or("unknown")
        .to_owned()
}

fn proxy_container(cfg: &InjectConfig, service: &str, sampling: bool, resources: &Resources) -> Value {
    let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    let value = |name: &str, v: &str| json!({"name": name, "value": v});
    let mut env = vec![
        value(proxy_env::LISTEN, &format!("0.0.0.0:{INBOUND_PORT}")),
        value(proxy_env::OUTBOUND_LISTEN, &format!("127.0.0.1:{OUTBOUND_PORT}")),
        value(proxy_env::ADMIN_LISTEN, &format!("0.0.0.0:{ADMIN_PORT}")),
        value(proxy_env::SERVICE_NAME, service),
        value(proxy_env::DAEMON_ADDRESS, &cfg.daemon_address),
        value(proxy_env::MAX_CONNECTIONS, &resources.max_connections().to_string()),
        field(proxy_env::POD_NAME, "metadata.name"),
        field(proxy_env::POD_NAMESPACE, "metadata.namespace"),
    ];
    if let Some(cluster) = &cfg.cluster_name {
        env.push(value(proxy_env::CLUSTER_NAME, cluster));
    }
    if let Some(workers) = resources.workers() {
        env.push(value(proxy_env::WORKERS, &workers.to_string()));
    }
    if let Some(format) = cfg.proxy_log_format {
        env.push(value(proxy_env::LOG_FORMAT, &format.to_string()));
    }
    if sampling {
        env.push(value(proxy_env::SAMPLING_RULES, &format!("{SAMPLING_DIR}/sampling-rules.json")));
    }
    let probe = |path: &str, period: u32, failures: u32| json!({"httpGet": {"path": path, "port": ADMIN_PORT}, "periodSeconds": period, "failureThreshold": failures});
    let mut c = json!({
        "name": PROXY,
        "image": cfg.sidecar_image,
        "args": [PROXY_COMMAND, flag(proxy_flag::TRANSPARENT)],
        "env": env,
        "ports": [
            {"name": "xray-inbound", "containerPort": INBOUND_PORT, "protocol": "TCP"},
            {"name": "xray-admin", "containerPort": ADMIN_PORT, "protocol": "TCP"}
        ],
        "resources": resources.to_json(),
        "startupProbe": probe(READY_PATH, 1, 30),
        "readinessProbe": probe(READY_PATH, 5, 3),
        "livenessProbe": probe(LIVE_PATH, 10, 3),
        "securityContext": {
            "runAsUser": cfg.proxy_uid,
            "runAsGroup": cfg.proxy_uid,
            "runAsNonRoot": true,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}
        }
    });
    if sampling {
        c["volumeMounts"] = json!([{"name": SAMPLING_VOLUME, "mountPath": SAMPLING_DIR, "readOnly": true}]);
    }
    c
}

fn init_container(cfg: &InjectConfig, args: Vec<String>) -> Value {
    json!({
        "name": INIT,
        "image": cfg.sidecar_image,
        "args": args,
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": false,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
        }
    })
}

/// `--name` for a flag of the sidecar.
fn flag(name: &str) -> String {
    format!("--{name}")
}

#[cfg(test)]
#[path = "mutate_tests.rs"]
mod tests;
