//! What the injector adds, configured by the operator (never by the pods it mutates).

use clap::Args;

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

    /// UID and GID the proxy runs as; its traffic is never intercepted.
    #[arg(long, env = "XRAY_INJECTOR_PROXY_UID", default_value_t = xray_sidecar::contract::PROXY_UID)]
    pub proxy_uid: u32,

    /// Proxy CPU request.
    #[arg(long, env = "XRAY_INJECTOR_PROXY_CPU_REQUEST", default_value = "50m")]
    pub proxy_cpu_request: String,

    /// Proxy memory request.
    #[arg(long, env = "XRAY_INJECTOR_PROXY_MEMORY_REQUEST", default_value = "32Mi")]
    pub proxy_memory_request: String,

    /// Proxy CPU limit.
    #[arg(long, env = "XRAY_INJECTOR_PROXY_CPU_LIMIT", default_value = "1")]
    pub proxy_cpu_limit: String,

    /// Proxy memory limit.
    #[arg(long, env = "XRAY_INJECTOR_PROXY_MEMORY_LIMIT", default_value = "128Mi")]
    pub proxy_memory_limit: String,

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
