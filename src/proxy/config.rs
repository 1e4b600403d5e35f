//! The proxy's validated configuration: every part [`super::Proxy::start`] builds, worked out once
//! from the command line, so that a bad value stops start-up before anything is bound.

use std::net::SocketAddr;
use std::sync::Arc;

use super::detect::Interception;
use super::forward::UpstreamSettings;
use super::inbound::Destination;
use super::probes::Probes;
use super::server::ServerSettings;
use crate::config::{InvalidArgs, ProxyArgs};
use crate::otel::propagation::Propagation;
use crate::otel::settings::{OtlpSettings, resolve as resolve_exporters};
use crate::xray::daemon::HostPort;
use crate::xray::sampling::{RulesError, Sampler};
use crate::xray::segment::{Environment, sanitize_name};

/// What a proxy listens on, where it forwards, and how it traces.
#[derive(Debug)]
pub struct ProxyConfig {
    /// Where inbound requests are accepted.
    pub listen: SocketAddr,
    /// Where the application's outgoing calls are accepted, if enabled.
    pub outbound_listen: Option<SocketAddr>,
    /// Where the admin endpoints are served, if enabled.
    pub admin_listen: Option<SocketAddr>,
    /// How requests are recorded.
    pub tracing: TracingConfig,
    /// How connections are served and requests forwarded.
    pub serving: ServingConfig,
}

/// How requests are recorded.
#[derive(Debug)]
pub struct TracingConfig {
    /// This service's name as X-Ray accepts it.
    pub service_name: Arc<str>,
    /// The local sampling rules, loaded.
    pub sampler: Sampler,
    /// The trace context formats read and written.
    pub propagation: Propagation,
    /// Where segments go and what they say about the pod; `None` when X-Ray export is off.
    pub emission: Option<Emission>,
    /// Where OTLP spans go; `None` when OTLP export is off. With neither, tracing is disabled.
    pub otlp: Option<OtlpSettings>,
    /// Where the X-Ray console's rules are fetched, when they decide; `None` when centralized
    /// sampling is off or nothing is exported.
    pub centralized: Option<CentralizedSampling>,
    /// Health checks, never sampled unless asked.
    pub probes: Probes,
}

/// How connections are served and requests forwarded.
#[derive(Debug)]
pub struct ServingConfig {
    /// Where inbound requests go.
    pub destination: Destination,
    /// Timeouts and limits of the upstream clients.
    pub upstream: UpstreamSettings,
    /// Limits applied to every client connection, and the shutdown grace.
    pub server: ServerSettings,
    /// How intercepted connections are told apart and passed through.
    pub interception: Interception,
    /// Further destinations a `CONNECT` may not open.
    pub connect_deny: Vec<crate::init::Cidr>,
}

/// Where segments are sent, and the environment written into them.
#[derive(Debug)]
pub struct Emission {
    /// The daemon's UDP address.
    pub daemon: HostPort,
    /// Where the proxy runs.
    pub environment: Environment,
}

/// Where the sampling API is and what this service is to its rules.
///
/// Independent of the exporters: the daemon's TCP side serves the sampling API whether segments go
/// to its UDP side or spans go over OTLP (the CloudWatch agent serves both), so the console's rules
/// decide for OTLP-only export too.
#[derive(Debug)]
pub struct CentralizedSampling {
    /// The daemon's TCP address.
    pub api: HostPort,
    /// Our segment `origin`, which the rules' `ServiceType` matches; `None` outside AWS environments.
    pub origin: Option<&'static str>,
}

/// Why the command line does not make a working proxy.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Flags that clap accepted but do not go together.
    #[error(transparent)]
    Invalid(#[from] InvalidArgs),
    /// The sampling rules file cannot be read or parsed.
    #[error("--sampling-rules: {0}")]
    SamplingRules(#[source] RulesError),
    /// `--exporter`, `--otlp-endpoint` or an `OTEL_*` variable has a bad value.
    #[error("{0}")]
    Export(String),
}

impl TryFrom<&ProxyArgs> for ProxyConfig {
    type Error = ConfigError;

    fn try_from(args: &ProxyArgs) -> Result<Self, ConfigError> {
        args.validate()?;
        let sampler = match &args.sampling_rules {
            Some(path) => Sampler::from_file(path).map_err(ConfigError::SamplingRules)?,
            None => Sampler::default(),
        };
        let environment = args.environment();
        let (xray, otlp) = if args.disable_tracing {
            (false, None)
        } else {
            let env = |name: &str| std::env::var(name).ok();
            let endpoint = args.otlp_endpoint.as_deref();
            resolve_exporters(args.exporter, endpoint, &args.service_name, &environment, env)
                .map_err(ConfigError::Export)?
        };
        let centralized = (args.centralized_sampling && (xray || otlp.is_some()))
            .then(|| CentralizedSampling { api: args.daemon_address.tcp.clone(), origin: environment.origin });
        let emission = xray.then(|| Emission { daemon: args.daemon_address.udp.clone(), environment });
        let destination = match (&args.upstream, args.transparent) {
            (Some(a), false) => Destination::Fixed(a.clone()),
            _ => Destination::OriginalDst,
        };
        let stream_idle = (!args.stream_idle_timeout.is_zero()).then_some(args.stream_idle_timeout);
        Ok(ProxyConfig {
            listen: args.listen,
            outbound_listen: args.outbound_listen,
            admin_listen: args.admin_listen,
            tracing: TracingConfig {
                service_name: Arc::from(sanitize_name(&args.service_name)),
                sampler,
                propagation: args.propagation,
                emission,
                otlp,
                centralized,
                probes: Probes::new(&args.probe_paths, args.sample_health_checks),
            },
            serving: ServingConfig {
                destination,
                upstream: UpstreamSettings {
                    connect_timeout: args.connect_timeout,
                    response_timeout: (!args.upstream_timeout.is_zero()).then_some(args.upstream_timeout),
                    stream_idle_timeout: stream_idle,
                    idle_timeout: args.idle_timeout,
                    max_header_size: args.max_header_size,
                },
                server: ServerSettings {
                    header_read_timeout: args.header_read_timeout,
                    keep_alive_timeout: args.keep_alive_timeout,
                    stream_idle_timeout: stream_idle,
                    max_header_size: args.max_header_size,
                    shutdown_grace: args.shutdown_grace,
                    drain_delay: args.drain_delay,
                    max_connections: args.max_connections as usize,
                },
                interception: Interception {
                    skip_ports: args.skip_detect_ports.clone(),
                    detect_timeout: args.detect_timeout,
                    connect_timeout: args.connect_timeout,
                },
                connect_deny: args.connect_deny_cidrs.clone(),
            },
        })
    }
}
