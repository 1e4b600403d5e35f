//! What the injector and the sidecar agree on: the listener ports, the proxy's UID, the admin paths
//! the pod's probes call, how many connections a memory limit holds, the subcommand and flag names,
//! and the environment variables the injector writes into the pods it mutates. The sidecar's
//! parsers (`ProxyArgs`, `InitArgs`) are declared with these names and the injector writes them,
//! so a rename on one side is a rename on both.

/// The inbound listener's port in a pod.
pub const INBOUND_PORT: u16 = 15100;
/// The outbound listener's port in a pod.
pub const OUTBOUND_PORT: u16 = 15101;
/// The admin listener's port in a pod (probes reach it directly).
pub const ADMIN_PORT: u16 = 15102;
/// The UID (and GID) the proxy runs as; iptables never redirects its traffic.
pub const PROXY_UID: u32 = 2500;

/// The admin listener's readiness path: the pod's startup and readiness probes.
pub const READY_PATH: &str = "/ready";
/// The admin listener's liveness path: the pod's liveness probe.
pub const LIVE_PATH: &str = "/live";

/// The memory limit the injector gives the proxy container unless the operator sets another, in MiB.
pub const DEFAULT_PROXY_MEMORY_LIMIT_MIB: u64 = 128;

/// How many connections a proxy with `mib` MiB of memory may serve at once: the proxy's
/// `--max-connections` default is this for [`DEFAULT_PROXY_MEMORY_LIMIT_MIB`], and the injector
/// passes it for the limit it gives the container.
// The costliest connection a client can hold, a head just under --max-header-size waiting for a
// slow application, measures 120-128 KB (tests/proxy_limits.rs): each is given 128 KiB. A fifth of
// the limit is kept for the kernel's socket buffers, which the container's limit counts too, and
// 16 MiB for the process itself (7-10 MB after load). Never fewer than 16 connections.
pub const fn max_connections_for_memory(mib: u64) -> u32 {
    const PER_MIB: u64 = 1024 / 128;
    let connections = (mib * 4 / 5).saturating_sub(16) * PER_MIB;
    if connections < 16 {
        16
    } else if connections > u32::MAX as u64 {
        u32::MAX
    } else {
        connections as u32
    }
}

/// The subcommand that runs the proxy.
pub const PROXY_COMMAND: &str = "proxy";
/// The subcommand that installs the iptables rules (the init container).
pub const INIT_COMMAND: &str = "init";

/// Flags of `xray-sidecar proxy` the injector passes (without the leading `--`).
pub mod proxy_flag {
    /// Forward each inbound connection to its original destination.
    pub const TRANSPARENT: &str = "transparent";
}

/// Flags of `xray-sidecar init` (without the leading `--`).
pub mod init_flag {
    /// The proxy's UID.
    pub const PROXY_UID: &str = "proxy-uid";
    /// The inbound listener's port.
    pub const INBOUND_PORT: &str = "inbound-port";
    /// The outbound listener's port.
    pub const OUTBOUND_PORT: &str = "outbound-port";
    /// The admin listener's port.
    pub const ADMIN_PORT: &str = "admin-port";
    /// Inbound ports never redirected.
    pub const EXCLUDE_INBOUND_PORTS: &str = "exclude-inbound-ports";
    /// Only these inbound ports are redirected.
    pub const INCLUDE_INBOUND_PORTS: &str = "include-inbound-ports";
    /// Outbound destination ports never redirected.
    pub const EXCLUDE_OUTBOUND_PORTS: &str = "exclude-outbound-ports";
    /// Outbound destinations never redirected, as CIDRs.
    pub const EXCLUDE_OUTBOUND_CIDRS: &str = "exclude-outbound-cidrs";
}

/// Environment variables `xray-sidecar proxy` reads (each also a flag).
pub mod proxy_env {
    /// `--listen`.
    pub const LISTEN: &str = "XRAY_SIDECAR_LISTEN";
    /// `--upstream`.
    pub const UPSTREAM: &str = "XRAY_SIDECAR_UPSTREAM";
    /// `--service-name`.
    pub const SERVICE_NAME: &str = "AWS_XRAY_TRACING_NAME";
    /// `--daemon-address`.
    pub const DAEMON_ADDRESS: &str = "AWS_XRAY_DAEMON_ADDRESS";
    /// `--sampling-rules`.
    pub const SAMPLING_RULES: &str = "XRAY_SIDECAR_SAMPLING_RULES";
    /// `--probe-paths`.
    pub const PROBE_PATHS: &str = "XRAY_SIDECAR_PROBE_PATHS";
    /// `--sample-health-checks`.
    pub const SAMPLE_HEALTH_CHECKS: &str = "XRAY_SIDECAR_SAMPLE_HEALTH_CHECKS";
    /// `--keep-alive-timeout`.
    pub const KEEP_ALIVE_TIMEOUT: &str = "XRAY_SIDECAR_KEEP_ALIVE_TIMEOUT";
    /// `--stream-idle-timeout`.
    pub const STREAM_IDLE_TIMEOUT: &str = "XRAY_SIDECAR_STREAM_IDLE_TIMEOUT";
    /// `--max-connections`.
    pub const MAX_CONNECTIONS: &str = "XRAY_SIDECAR_MAX_CONNECTIONS";
    /// `--log-format`.
    pub const LOG_FORMAT: &str = "XRAY_SIDECAR_LOG_FORMAT";
    /// `--workers`.
    pub const WORKERS: &str = "XRAY_SIDECAR_WORKERS";
    /// `--admin-listen`.
    pub const ADMIN_LISTEN: &str = "XRAY_SIDECAR_ADMIN_LISTEN";
    /// `--outbound-listen`.
    pub const OUTBOUND_LISTEN: &str = "XRAY_SIDECAR_OUTBOUND_LISTEN";
    /// `--cluster-name`.
    pub const CLUSTER_NAME: &str = "XRAY_SIDECAR_CLUSTER_NAME";
    /// `--pod-name`.
    pub const POD_NAME: &str = "XRAY_SIDECAR_POD_NAME";
    /// `--pod-namespace`.
    pub const POD_NAMESPACE: &str = "XRAY_SIDECAR_POD_NAMESPACE";
}
