//! The data path: listeners, per-connection services, and the proxy's lifecycle.

pub mod body;
pub mod detect;
pub mod error;
pub mod forward;
pub mod guard;
pub mod inbound;
pub mod opaque;
pub mod orig_dst;
pub mod outbound;
pub mod probes;
pub mod record;
pub mod server;
pub mod trace;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, Readiness};
use crate::config::ProxyArgs;
use crate::metrics::Metrics;
use crate::otel::exporter::OtlpExporter;
use crate::xray::centralized::{Centralized, poller};
use crate::xray::emitter::Emitter;
use crate::xray::sampling::Sampler;
use crate::xray::segment::sanitize_name;
use forward::{Upstream, UpstreamSettings};
use guard::OwnListeners;
use inbound::{Destination, Inbound};
use outbound::Outbound;
use probes::Probes;
use record::Tracer;
use server::ServerSettings;

/// A running proxy: its bound addresses and the means to stop it.
#[derive(Debug)]
pub struct Proxy {
    /// Where inbound requests are accepted.
    pub inbound: SocketAddr,
    /// Where the application's outgoing calls are accepted, if enabled.
    pub outbound: Option<SocketAddr>,
    /// Where the admin endpoints are served, if enabled.
    pub admin: Option<SocketAddr>,
    /// Counters, shared with the admin listener.
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    done: JoinHandle<()>,
}

impl Proxy {
    /// Validates the configuration, binds every listener and starts serving.
    pub async fn start(args: &ProxyArgs) -> Result<Proxy, crate::BoxError> {
        args.validate()?;
        let sampler = match &args.sampling_rules {
            Some(path) => Sampler::from_file(path).map_err(|e| format!("--sampling-rules: {e}"))?,
            None => Sampler::default(),
        };
        let metrics = Arc::new(Metrics::default());
        let environment = args.environment();
        let (xray, otlp_settings) = if args.disable_tracing {
            (false, None)
        } else {
            crate::otel::settings::resolve(
                args.exporter,
                args.otlp_endpoint.as_deref(),
                &args.service_name,
                &environment,
                |name| std::env::var(name).ok(),
            )?
        };
        let (emitter, flush) = if xray {
            let (e, f) = Emitter::spawn(args.daemon_address.udp.clone(), environment, metrics.clone());
            (Some(e), Some(f))
        } else {
            (None, None)
        };
        let (otlp, otlp_flush) = match otlp_settings {
            Some(settings) => {
                tracing::info!(endpoint = %settings.endpoint, "exporting spans over OTLP");
                let (e, f) = OtlpExporter::spawn(settings, metrics.clone());
                (Some(e), Some(f))
            }
            None => (None, None),
        };
        let service_name: Arc<str> = Arc::from(sanitize_name(&args.service_name));
        let centralized = (args.centralized_sampling && emitter.is_some()).then(|| {
            let engine = Arc::new(Centralized::new(service_name.clone(), args.environment().origin));
            let _ = metrics.centralized.set(engine.clone());
            engine
        });
        let tracer = Arc::new(Tracer {
            service_name,
            sampler,
            propagation: args.propagation,
            centralized: centralized.clone(),
            probes: Probes::new(&args.probe_paths, args.sample_health_checks),
            emitter,
            otlp,
            metrics: metrics.clone(),
        });
        let destination = match (&args.upstream, args.transparent) {
            (Some(a), false) => Destination::Fixed(a.clone()),
            _ => Destination::OriginalDst,
        };
        let settings = ServerSettings {
            header_read_timeout: args.header_read_timeout,
            max_header_size: args.max_header_size,
            shutdown_grace: args.shutdown_grace,
            max_connections: args.max_connections as usize,
        };

        let interception = Interception {
            skip_ports: args.skip_detect_ports.clone(),
            detect_timeout: args.detect_timeout,
            connect_timeout: args.connect_timeout,
        };
        let inbound_listener = bind(args.listen, "--listen").await?;
        let inbound = inbound_listener.local_addr()?;
        let outbound_listener = match args.outbound_listen {
            Some(a) => Some(bind(a, "--outbound-listen").await?),
            None => None,
        };
        let outbound_addr = outbound_listener.as_ref().map(TcpListener::local_addr).transpose()?;
        let admin_listener = match args.admin_listen {
            Some(a) => Some(bind(a, "--admin-listen").await?),
            None => None,
        };
        let admin_addr = admin_listener.as_ref().map(TcpListener::local_addr).transpose()?;
        let own = OwnListeners::new([Some(inbound), outbound_addr, admin_addr].into_iter().flatten());
        let upstream = Upstream::new(
            &UpstreamSettings {
                connect_timeout: args.connect_timeout,
                response_timeout: (!args.upstream_timeout.is_zero()).then_some(args.upstream_timeout),
                idle_timeout: args.idle_timeout,
                max_header_size: args.max_header_size,
            },
            own,
        );

        let (shutdown, stop) = watch::channel(false);
        let readiness = Readiness::default();
        let outbound_task = outbound_listener.map(|listener| {
            let ctx = Arc::new(Outbound {
                upstream: upstream.clone(),
                tracer: tracer.clone(),
                interception: interception.clone(),
            });
            tokio::spawn(server::serve(
                listener,
                settings.clone(),
                move |stream, peer, http| ctx.clone().handle(stream, peer, http),
                stop.clone(),
            ))
        });
        let ctx = Arc::new(Inbound { destination, upstream, tracer, interception });
        let inbound_task = tokio::spawn(server::serve(
            inbound_listener,
            settings,
            move |stream, peer, http| ctx.clone().handle(stream, peer, http),
            stop.clone(),
        ));
        let poller = centralized.map(|c| poller::spawn(c, args.daemon_address.tcp.clone(), stop.clone()));
        let admin_task = admin_listener.map(|l| {
            tokio::spawn(admin::serve(l, metrics.clone(), readiness.clone(), args.header_read_timeout, stop.clone()))
        });
        readiness.set(true);
        tracing::info!(%inbound, outbound = ?outbound_addr, admin = ?admin_addr, service = %args.service_name, "proxy ready");

        let done = tokio::spawn(async move {
            let mut stop = stop;
            server::stopped(&mut stop).await;
            readiness.set(false);
            let _ = inbound_task.await;
            if let Some(t) = outbound_task {
                let _ = t.await;
            }
            if let Some(p) = poller {
                let _ = p.await;
            }
            // Both exporters drain at once, within the same bound.
            let udp = async {
                if let Some(flush) = flush {
                    flush.flush(Duration::from_secs(2)).await;
                }
            };
            let otlp = async {
                if let Some(flush) = otlp_flush {
                    flush.flush(Duration::from_secs(2)).await;
                }
            };
            tokio::join!(udp, otlp);
            if let Some(t) = admin_task {
                let _ = t.await;
            }
        });
        Ok(Proxy { inbound, outbound: outbound_addr, admin: admin_addr, metrics, shutdown, done })
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, flushes segments.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.done.await;
    }
}

/// How intercepted connections are told apart and passed through.
#[derive(Clone, Debug)]
pub struct Interception {
    /// Destination ports never inspected (protocols where the server speaks first).
    pub skip_ports: Vec<u16>,
    /// How long to wait for a client's first bytes.
    pub detect_timeout: Duration,
    /// Connect timeout for passed-through connections.
    pub connect_timeout: Duration,
}

impl Interception {
    /// Whether a redirected connection to `dst` is HTTP to trace, rather than bytes to pass through:
    /// ports that skip detection never are, the rest are peeked at.
    pub async fn is_http(&self, stream: &tokio::net::TcpStream, dst: SocketAddr) -> bool {
        !self.skip_ports.contains(&dst.port())
            && detect::detect(stream, self.detect_timeout).await != detect::Protocol::Opaque
    }
}

async fn bind(addr: SocketAddr, flag: &str) -> Result<TcpListener, crate::BoxError> {
    TcpListener::bind(addr).await.map_err(|e| format!("{flag} {addr}: cannot listen: {e}").into())
}
