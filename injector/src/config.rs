//! What the injector adds, configured by the operator (never by the pods it mutates).

use clap::Args;
use xray_lifecycle::logging::Format as LogFormat;

use crate::annotation;

/// Injector configuration: the sidecar's image, privileges and resources are chosen here only.
#[derive(Debug, Clone, Args)]
pub struct InjectConfig {
    /// Image of the proxy and of its init container.
    #[arg(long, env = "XRAY_INJECTOR_SIDECAR_IMAGE", default_value = "ghcr.io/xray-sidecar/xray-sidecar:0.1.0")]
    pub sidecar_image: String,

    /// X-Ray daemon address given to every proxy.
    #[arg(long, env = "XRAY_INJECTOR_DAEMON_ADDRESS", default_value = "xray-service.default:2000")]
    pub daemon_address: String,

    /// EKS cluster name recorded in segments.
    #[arg(long, env = "XRAY_INJECTOR_CLUSTER_NAME")]
    pub cluster_name: Option<String>,

    /// Clusters older than Kubernetes 1.29: put the proxy first among the containers instead of
    /// running it as a native sidecar (an init container with restartPolicy Always).
    #[arg(long, env = "XRAY_INJECTOR_LEGACY_SIDECAR")]
    pub legacy_sidecar: bool,

    /// UID and GID the proxy runs as; its traffic is never intercepted (not root: every root
    /// process's traffic would then escape interception, and `init` refuses it).
    #[arg(long, env = "XRAY_INJECTOR_PROXY_UID", default_value_t = xray_sidecar::contract::PROXY_UID, value_parser = clap::value_parser!(u32).range(1..))]
    pub proxy_uid: u32,

    /// Proxy CPU request.
    #[arg(long, env = "XRAY_INJECTOR_PROXY_CPU_REQUEST", default_value = "50m", value_parser = cpu)]
    pub proxy_cpu_request: String,

    /// Proxy memory request.
    #[arg(long, env = "XRAY_INJECTOR_PROXY_MEMORY_REQUEST", default_value = "32Mi", value_parser = memory_request)]
    pub proxy_memory_request: String,

    /// Proxy CPU limit.
    #[arg(long, env = "XRAY_INJECTOR_PROXY_CPU_LIMIT", default_value = "1", value_parser = cpu)]
    pub proxy_cpu_limit: String,

    /// Proxy memory limit (a Kubernetes quantity); the proxy's connection limit is sized from it.
    #[arg(long, env = "XRAY_INJECTOR_PROXY_MEMORY_LIMIT", default_value = "128Mi", value_parser = memory_limit)]
    pub proxy_memory_limit: String,

    /// How the injected proxies write their log lines (`plain` or `json`); unset, the proxy's
    /// default (`plain`).
    #[arg(long, env = "XRAY_INJECTOR_PROXY_LOG_FORMAT", value_name = "FORMAT")]
    pub proxy_log_format: Option<LogFormat>,

    /// Namespaces never injected (the injector's own, from POD_NAMESPACE, is added).
    #[arg(
        long,
        env = "XRAY_INJECTOR_SYSTEM_NAMESPACES",
        value_delimiter = ',',
        default_value = "kube-system,kube-public,kube-node-lease"
    )]
    pub system_namespaces: Vec<String>,

    /// The injector's own namespace (downward API), never injected.
    #[arg(long, env = "POD_NAMESPACE", hide = true)]
    pub own_namespace: Option<String>,
}

impl InjectConfig {
    /// The configuration `xray-injector serve` runs with when given no flags: the defaults, and
    /// whatever the environment sets.
    pub fn from_env() -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            cfg: InjectConfig,
        }
        <Only as clap::Parser>::try_parse_from(["xray-injector"]).map(|o| o.cfg)
    }

    /// Whether pods in `ns` are never touched.
    pub fn is_system(&self, ns: &str) -> bool {
        self.system_namespaces.iter().any(|s| s == ns) || self.own_namespace.as_deref() == Some(ns)
    }
}

/// A memory limit the proxy can run with, refused at start-up otherwise: a value the API server
/// refuses would have it refuse every pod the injector mutates.
fn memory_limit(value: &str) -> Result<String, String> {
    annotation::memory_limit(value).map_err(|e| e.to_string())
}

/// A memory request, refused at start-up otherwise (as [`memory_limit`]).
fn memory_request(value: &str) -> Result<String, String> {
    annotation::memory_request(value).map_err(|e| e.to_string())
}

/// A CPU quantity, refused at start-up otherwise (as [`memory_limit`]).
fn cpu(value: &str) -> Result<String, String> {
    annotation::cpu(value).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::quantity;
    use crate::resources::Resources;
    use xray_sidecar::contract::{DEFAULT_PROXY_MEMORY_LIMIT_MIB, max_connections_for_memory};

    fn parse(args: &[&str]) -> Result<InjectConfig, clap::Error> {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            cfg: InjectConfig,
        }
        <Only as clap::Parser>::try_parse_from(std::iter::once("xray-injector").chain(args.iter().copied()))
            .map(|o| o.cfg)
    }

    #[test]
    fn the_proxy_connection_limit_follows_its_memory_limit() {
        let connections = |cfg: &InjectConfig| Resources::from_config(cfg).max_connections();
        let default = parse(&[]).unwrap();
        assert_eq!(quantity::mebibytes(&default.proxy_memory_limit), Some(DEFAULT_PROXY_MEMORY_LIMIT_MIB));
        assert_eq!(connections(&default), max_connections_for_memory(DEFAULT_PROXY_MEMORY_LIMIT_MIB));
        let bigger = parse(&["--proxy-memory-limit", "256Mi"]).unwrap();
        assert!(connections(&bigger) > 2 * connections(&default) - 50);
        let smaller = parse(&["--proxy-memory-limit", "64M"]).unwrap();
        assert!(connections(&smaller) < connections(&default) / 2);
    }

    #[test]
    fn resources_that_are_no_quantities_are_refused_at_start() {
        for (flag, value) in [
            ("--proxy-memory-limit", "128MB"),
            ("--proxy-memory-request", "lots"),
            ("--proxy-cpu-limit", "one"),
            ("--proxy-cpu-request", "0"),
        ] {
            let err = parse(&[flag, value]).unwrap_err().to_string();
            assert!(err.contains(flag) && err.contains(&format!("`{value}` is not a")), "{err}");
        }
        // A low request is no mistake: the proxy is not held to it.
        assert_eq!(parse(&["--proxy-memory-request", "16Mi"]).unwrap().proxy_memory_request, "16Mi");
    }

    #[test]
    fn a_request_above_its_limit_is_refused_at_start() {
        // Each figure is a fine quantity; together the API server would refuse every pod.
        for (args, flags) in [
            (&["--proxy-memory-request", "256Mi"][..], "--proxy-memory-request/--proxy-memory-limit"),
            (&["--proxy-cpu-request", "2", "--proxy-cpu-limit", "1500m"], "--proxy-cpu-request/--proxy-cpu-limit"),
        ] {
            let err = Resources::check_config(&parse(args).unwrap()).unwrap_err();
            assert!(err.starts_with(flags) && err.contains("above the limit"), "{err}");
        }
        assert_eq!(Resources::check_config(&parse(&[]).unwrap()), Ok(()));
        let equal = parse(&["--proxy-memory-request", "128Mi", "--proxy-cpu-request", "1"]).unwrap();
        assert_eq!(Resources::check_config(&equal), Ok(()));
    }
}
