//! `xray-sidecar proxy` flags (each also read from the environment) and their validation into a
//! [`ProxyConfig`](crate::proxy::config::ProxyConfig). A bad value stops start-up with one line naming the flag.

use clap::{Args, FromArgMatches};
use http::uri::Authority;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use crate::contract::{
    DEFAULT_PROXY_MEMORY_LIMIT_MIB, INBOUND_PORT, PROXY_COMMAND, max_connections_for_memory, proxy_env, proxy_flag,
};
use crate::otel::propagation::Propagation;
use crate::otel::settings::Exporters;
use crate::xray::daemon::DaemonAddress;
use crate::xray::segment::Environment;
use xray_lifecycle::logging::Format as LogFormat;

/// Command-line arguments of `xray-sidecar proxy`.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Address to accept the application's inbound requests on.
    #[arg(long, env = proxy_env::LISTEN, value_name = "ADDR",
          default_value_t = SocketAddr::from(([0, 0, 0, 0], INBOUND_PORT)))]
    pub listen: SocketAddr,

    /// The application, as `http://host:port`. Required unless --transparent, where each connection
    /// goes to its original destination.
    #[arg(long, env = proxy_env::UPSTREAM, value_name = "URL", value_parser = parse_upstream)]
    pub upstream: Option<Authority>,

    /// Name of this service in X-Ray (sanitised to the characters X-Ray accepts).
    #[arg(long, env = proxy_env::SERVICE_NAME, value_name = "NAME")]
    pub service_name: String,

    /// X-Ray daemon: `host:port`, or `tcp:host:port udp:host:port`. Host names are looked up again
    /// every 30 seconds.
    #[arg(long, env = proxy_env::DAEMON_ADDRESS, value_name = "ADDR", default_value = "127.0.0.1:2000")]
    pub daemon_address: DaemonAddress,

    /// Local sampling rules in the X-Ray SDK format (version 1 or 2). Default: 1 request a second,
    /// then 5 %.
    #[arg(long, env = proxy_env::SAMPLING_RULES, value_name = "FILE")]
    pub sampling_rules: Option<PathBuf>,

    /// Sample by the rules set in the X-Ray console, fetched through the daemon's TCP address
    /// (GetSamplingRules every 5 minutes, SamplingTargets every 10 s), whichever exporters are on.
    /// The local rules decide until the first rules arrive and once the rules are an hour old; the
    /// rules fetched last go on deciding while the API cannot be reached, as in the X-Ray SDKs.
    #[arg(
        long,
        env = "XRAY_SIDECAR_CENTRALIZED_SAMPLING",
        value_name = "BOOL",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub centralized_sampling: bool,

    /// The application's HTTP probe paths (comma-separated): requests it receives on them, like every
    /// `User-Agent: kube-probe/*` or `ELB-HealthChecker/*` request, are forwarded and counted but never
    /// sampled.
    #[arg(long, env = proxy_env::PROBE_PATHS, value_name = "PATHS", value_delimiter = ',')]
    pub probe_paths: Vec<String>,

    /// Sample health checks (kubelet probes, load balancers' health checks and --probe-paths) like
    /// any other request.
    #[arg(long, env = proxy_env::SAMPLE_HEALTH_CHECKS, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub sample_health_checks: bool,

    /// Address for /ready, /live and /metrics. Off when not given.
    #[arg(long, env = proxy_env::ADMIN_LISTEN, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,

    /// Address that accepts the application's outgoing calls (explicit proxy or iptables REDIRECT).
    #[arg(long, env = proxy_env::OUTBOUND_LISTEN, value_name = "ADDR")]
    pub outbound_listen: Option<SocketAddr>,

    /// Destination ports passed through without looking for HTTP: protocols where the server speaks
    /// first would otherwise wait for the detection timeout.
    #[arg(
        long,
        env = "XRAY_SIDECAR_SKIP_DETECT_PORTS",
        value_name = "PORTS",
        value_delimiter = ',',
        default_value = "21,22,25,587,3306,5432,6379,11211,27017,9042,9092,2181,5672,1521,1433,3389"
    )]
    pub skip_detect_ports: Vec<u16>,

    /// Destinations a `CONNECT` on the outbound listener may not open (the proxy's own listeners are
    /// always refused); by default the instance metadata service.
    #[arg(
        long,
        env = "XRAY_SIDECAR_CONNECT_DENY_CIDRS",
        value_name = "CIDRS",
        value_delimiter = ',',
        default_value = "169.254.169.254/32,fd00:ec2::254/128"
    )]
    pub connect_deny_cidrs: Vec<crate::init::Cidr>,

    /// How long an intercepted connection (or a `CONNECT` tunnel) may stay silent before it is passed
    /// through unread.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub detect_timeout: Duration,

    /// Forward each inbound connection to its original destination (set by iptables REDIRECT).
    #[arg(long = proxy_flag::TRANSPARENT, env = "XRAY_SIDECAR_TRANSPARENT")]
    pub transparent: bool,

    /// Trace context formats read from callers and written for the next hop: `xray`
    /// (X-Amzn-Trace-Id), `w3c` (traceparent, tracestate passed on), or both. When both come and
    /// name different traces, X-Amzn-Trace-Id wins.
    #[arg(long, env = "XRAY_SIDECAR_PROPAGATION", value_name = "FORMATS", default_value = "xray,w3c")]
    pub propagation: Propagation,

    /// Where sampled requests go: `xray` (segment documents over UDP to the daemon or CloudWatch
    /// agent), `otlp` (spans over OTLP/HTTP protobuf), or both. Default: xray, plus otlp when an
    /// OTLP endpoint is configured.
    #[arg(long, env = "XRAY_SIDECAR_EXPORTER", value_name = "EXPORTERS")]
    pub exporter: Option<Exporters>,

    /// OTLP/HTTP traces endpoint, e.g. `http://collector:4318` (`/v1/traces` is added to a bare
    /// address). Else OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT, or
    /// `http://localhost:4318/v1/traces`. Headers, resource and batching follow the standard
    /// OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and OTEL_BSP_* variables.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// Forward without tracing: no header handling, no segments (for comparison and emergencies).
    #[arg(long, env = "XRAY_SIDECAR_DISABLE_TRACING")]
    pub disable_tracing: bool,

    /// How log lines are written: `plain`, or `json` (one object per line, for log shippers). The
    /// level comes from RUST_LOG (default `info`).
    #[arg(long, env = proxy_env::LOG_FORMAT, value_name = "FORMAT", default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,

    /// Runtime worker threads (0: one per core, at most 2).
    #[arg(long, env = proxy_env::WORKERS, value_name = "N", default_value_t = 0)]
    pub workers: usize,

    /// Time a client has to send a request's headers, once they have begun to arrive (and to send
    /// the first bytes on a new connection).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// How long an idle connection from a client (HTTP/1.1 keep-alive with no request, HTTP/2 with
    /// no stream open) is kept open for its next request. Longer than the idle timeout of whatever keeps connections to the pod (an ALB keeps
    /// them 60 s), so that no request is sent on a connection the proxy is closing.
    #[arg(long, env = proxy_env::KEEP_ALIVE_TIMEOUT, value_name = "DURATION", default_value = "75s", value_parser = parse_duration)]
    pub keep_alive_timeout: Duration,

    /// Client connections served at once, inbound and outbound together; an HTTP/2 connection's
    /// streams in flight beyond its first count as connections too (with none left, a new stream
    /// is answered 503). At the limit the connection idle longest (HTTP/1.1 or HTTP/2, or one
    /// whose request head has stalled for a second) is closed to make room for a new one; with
    /// none a new one is answered `503 too many connections` and closed.
    // Sized for the injector's default memory limit (contract::max_connections_for_memory says
    // how; README, "Reliability and security"; tests/proxy_limits.rs measures it).
    #[arg(
        long,
        env = proxy_env::MAX_CONNECTIONS,
        value_name = "N",
        default_value_t = max_connections_for_memory(DEFAULT_PROXY_MEMORY_LIMIT_MIB),
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,

    /// Largest request or response head accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024, value_parser = parse_header_size)]
    pub max_header_size: usize,

    /// Time allowed to connect to the upstream.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Time allowed for the upstream's response head once it has the whole request; while the
    /// request body is still coming, the most it may pause (a body that stops is the client's 408).
    /// 0: no limit.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// Longest a response may go with nothing moving: no byte from the upstream while the client
    /// waits for more (nor from the client's request body), or none taken by a client that has
    /// stopped reading. The response is then cut and recorded. 0: no limit (long polls or
    /// server-sent events quiet for longer need a higher one).
    #[arg(long, env = proxy_env::STREAM_IDLE_TIMEOUT, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub stream_idle_timeout: Duration,

    /// How long idle pooled upstream connections are kept.
    #[arg(long, value_name = "DURATION", default_value = "90s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// On SIGTERM, how long new connections are still accepted after /ready has turned 503, so that
    /// callers stop sending before the listeners close.
    #[arg(long, env = "XRAY_SIDECAR_DRAIN_DELAY", value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub drain_delay: Duration,

    /// On SIGTERM, how long in-flight requests get to finish (after the drain delay).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// EKS cluster name, recorded in `aws.eks`.
    #[arg(long, env = proxy_env::CLUSTER_NAME, value_name = "NAME")]
    pub cluster_name: Option<String>,

    /// Pod name (from the downward API), recorded in `aws.eks`.
    #[arg(long, env = proxy_env::POD_NAME, value_name = "NAME")]
    pub pod_name: Option<String>,

    /// Pod namespace (from the downward API), recorded as the `k8s_namespace` annotation.
    #[arg(long, env = proxy_env::POD_NAMESPACE, value_name = "NAMESPACE")]
    pub pod_namespace: Option<String>,
}

/// Flags that clap accepts one by one but that do not make a proxy together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidArgs {
    /// Neither a fixed upstream nor transparent mode.
    #[error("--upstream (XRAY_SIDECAR_UPSTREAM) is required unless --transparent is set")]
    NoUpstream,
    /// A blank service name.
    #[error("--service-name (AWS_XRAY_TRACING_NAME) must not be empty")]
    EmptyServiceName,
}

impl ProxyArgs {
    /// Checks what clap cannot check on its own.
    pub fn validate(&self) -> Result<(), InvalidArgs> {
        if self.upstream.is_none() && !self.transparent {
            return Err(InvalidArgs::NoUpstream);
        }
        if self.service_name.trim().is_empty() {
            return Err(InvalidArgs::EmptyServiceName);
        }
        Ok(())
    }

    /// Every flag at its default and an empty service name, for a proxy started in-process (the
    /// demo): nothing is read from the environment, unlike on the command line, so the shell's
    /// `XRAY_SIDECAR_*` settings stay out of it.
    pub fn defaults() -> Result<ProxyArgs, clap::Error> {
        let matches = defaults_command().try_get_matches_from([PROXY_COMMAND])?;
        ProxyArgs::from_arg_matches(&matches)
    }

    /// The worker thread count to run with.
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(2)),
            n => n,
        }
    }

    /// Where the proxy runs, from the pod's environment.
    pub fn environment(&self) -> Environment {
        // A pod has KUBERNETES_SERVICE_HOST; the injector also passes the pod's name.
        let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() || self.pod_name.is_some();
        Environment {
            origin: in_pod.then_some("AWS::EKS::Container"),
            cluster_name: self.cluster_name.clone(),
            pod: self.pod_name.clone().or_else(|| in_pod.then(hostname).flatten()),
            container_id: in_pod.then(container_id).flatten(),
            namespace: self.pod_namespace.clone(),
            aws_json: OnceLock::new(),
        }
    }
}

/// `ProxyArgs`' command with no flag read from the environment and no flag required.
fn defaults_command() -> clap::Command {
    ProxyArgs::augment_args(clap::Command::new(PROXY_COMMAND))
        .mut_args(|arg| arg.env(None))
        // The one flag without a default: left empty, for the caller to set.
        .mut_arg("service_name", |arg| arg.required(false).default_value(""))
}

fn parse_upstream(s: &str) -> Result<Authority, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => return Err(format!("scheme `{other}` is not supported (use http://)")),
        None => return Err("expected http://host:port".into()),
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err("the upstream URL takes no path or query: requests keep their own".into());
    }
    let authority = uri.authority().cloned().ok_or("expected http://host:port")?;
    if authority.as_str().contains('@') {
        return Err("credentials in the upstream URL are not supported".into());
    }
    Ok(authority)
}

/// The longest duration an option takes: beyond any timeout or delay that means something, and
/// far within what the clock can add to the present (a larger one made every connection's task
/// panic as it computed its deadline).
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses `250ms`, `10s`, `5m`, or a bare number of seconds, up to a year.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("`{s}` is not a duration like 500ms, 10s or 5m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("unknown unit `{unit}` in `{s}` (use ms, s or m)")),
    };
    let d = Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"))?;
    if d > MAX_DURATION {
        return Err(format!("`{s}` is longer than a year, the most any of these options takes"));
    }
    Ok(d)
}

fn parse_header_size(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|_| format!("`{s}` is not a number of bytes"))?;
    if n < 8192 {
        return Err(format!("{n} is below the minimum of 8192 bytes"));
    }
    Ok(n)
}

fn hostname() -> Option<String> {
    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty())
}

/// The container id from the cgroup path (`.../<64 hex>` or `...cri-containerd-<64 hex>.scope`).
fn container_id() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.split(|c: char| c == '/' || c == '-' || c == '.' || c.is_whitespace())
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_process_defaults_are_the_flags_defaults_and_ignore_the_environment() {
        assert!(defaults_command().get_arguments().all(|a| a.get_env().is_none()));
        let args = ProxyArgs::defaults().expect("the defaults parse");
        assert_eq!(args.listen, SocketAddr::from(([0, 0, 0, 0], INBOUND_PORT)));
        assert_eq!((args.upstream, args.service_name.as_str(), args.transparent), (None, "", false));
        assert_eq!((args.admin_listen, args.outbound_listen), (None, None));
        assert_eq!(args.daemon_address, DaemonAddress::default());
        assert_eq!((args.max_connections, args.drain_delay), (688, Duration::from_secs(2)));
        assert!(args.centralized_sampling && !args.disable_tracing);
    }

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").err().unwrap_or_default().contains("unknown unit"));
        assert_eq!(parse_duration("525600m"), Ok(MAX_DURATION));
        for too_long in ["525601m", "9999999999999999999", "1e400"] {
            assert!(parse_duration(too_long).is_err(), "{too_long}");
        }
    }

    #[test]
    fn upstreams_are_plain_http_authorities() {
        assert_eq!(parse_upstream("http://127.0.0.1:8080").map(|a| a.to_string()), Ok("127.0.0.1:8080".into()));
        assert_eq!(parse_upstream("http://app:80/").map(|a| a.to_string()), Ok("app:80".into()));
        for (bad, why) in [
            ("https://app", "not supported"),
            ("app:8080", "expected http://"),
            ("http://app/api", "no path"),
            ("http://u:p@app", "credentials"),
        ] {
            let err = parse_upstream(bad).err().unwrap_or_default();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
