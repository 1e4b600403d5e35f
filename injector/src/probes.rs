//! The application's HTTP probe paths, read from the pod so the sidecar can keep health checks off
//! the service map (kubelet probes are also known by their `User-Agent`; the paths catch the same
//! checks made by load balancers and other callers).

use serde_json::Value;

/// The `httpGet` paths of every liveness, readiness and startup probe of the pod's containers (and
/// of its sidecar init containers, which are probed too), without duplicates or query strings.
///
/// `/` is left out: it is usually the application's own page, not a health check. Paths the
/// sidecar's comma-separated list cannot carry are left out too.
pub fn http_probe_paths(pod: &Value) -> Vec<String> {
    let list = |p: &str| pod.pointer(p).and_then(Value::as_array).into_iter().flatten();
    let sidecars = list("/spec/initContainers").filter(|c| c["restartPolicy"] == "Always");
    let containers = list("/spec/containers").chain(sidecars);
    let mut paths: Vec<String> = Vec::new();
    for c in containers {
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            let Some(path) = c.get(probe).and_then(|p| p.pointer("/httpGet/path")).and_then(Value::as_str) else {
                continue;
            };
            let path = path.split('?').next().unwrap_or_default().trim();
            let usable = path.starts_with('/') && path != "/" && !path.contains([',', ' ']);
            if usable && !paths.iter().any(|p| p == path) {
                paths.push(path.to_owned());
            }
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_http_probe_path_once_without_root_or_query() {
        let pod = json!({"spec": {
            "initContainers": [
                {"name": "migrate", "readinessProbe": {"httpGet": {"path": "/never"}}},
                {"name": "agent", "restartPolicy": "Always", "livenessProbe": {"httpGet": {"path": "/agent/live"}}}
            ],
            "containers": [
                {"name": "web",
                 "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                 "readinessProbe": {"httpGet": {"path": "/ready?deep=1", "port": "http"}},
                 "startupProbe": {"httpGet": {"path": "/healthz", "port": 8080}}},
                {"name": "worker",
                 "livenessProbe": {"exec": {"command": ["true"]}},
                 "readinessProbe": {"httpGet": {"path": "/", "port": 9000}},
                 "startupProbe": {"httpGet": {"path": "/a,b", "port": 9000}}}
            ]
        }});
        assert_eq!(http_probe_paths(&pod), ["/healthz", "/ready", "/agent/live"]);
        assert!(http_probe_paths(&json!({"spec": {}})).is_empty());
    }
}
