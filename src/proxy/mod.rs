//! The data path: listeners, per-connection services, and the proxy's lifecycle.

pub mod body;
pub mod body_progress;
pub mod client_wait;
pub mod config;
pub mod connect;
pub mod detect;
pub mod epoch;
pub mod error;
pub mod forward;
pub mod grpc;
pub mod grpc_body;
pub mod guard;
pub mod head;
pub mod hop;
pub mod idle;
pub mod idle_h2;
pub mod inbound;
pub mod opaque;
pub mod open_files;
pub mod orig_dst;
pub mod outbound;
pub mod plaintext;
pub mod pool;
pub mod probes;
pub mod record;
pub mod relay;
pub mod response_timer;
pub mod rewind;
pub mod server;
pub mod sni;
pub mod stream_idle;
pub mod target;
pub mod trace;
pub mod tunnel;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use xray_lifecycle::shutdown::ConnectionLimit;
use xray_lifecycle::{Flush, Lingering, Shutdown, Stopped};

use crate::admin::{self, Draining, Readiness};
use crate::metrics::Metrics;
use crate::otel::exporter::OtlpExporter;
use crate::xray::centralized::{Centralized, poller};
use crate::xray::emitter::Emitter;
use config::{CentralizedSampling, Emission, ProxyConfig, ServingConfig, TracingConfig};
use connect::ConnectPolicy;
use forward::Upstream;
use guard::OwnListeners;
use inbound::Inbound;
use outbound::Outbound;
use plaintext::Plaintext;
use record::Tracer;

/// How long queued segments get to reach the daemon once the listeners have stopped.
const FLUSH_GRACE: Duration = Duration::from_secs(2);

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
    shutdown: Shutdown,
    done: JoinHandle<()>,
}

/// The listeners a proxy serves, bound before anything is spawned so that a taken address fails
/// start-up cleanly; each is the address given and, for an IPv4 wildcard or loopback, its IPv6
/// twin (see [`bind`]).
struct Listeners {
    inbound: Vec<TcpListener>,
    outbound: Option<Vec<TcpListener>>,
    admin: Option<Vec<TcpListener>>,
}

impl Listeners {
    fn bind(config: &ProxyConfig) -> Result<Self, crate::BoxError> {
        Ok(Listeners {
            inbound: bind(config.listen, "--listen")?,
            outbound: bind_optional(config.outbound_listen, "--outbound-listen")?,
            admin: bind_optional(config.admin_listen, "--admin-listen")?,
        })
    }

    /// Every address bound, of every listener.
    fn addrs(&self) -> Vec<SocketAddr> {
        let all = [Some(&self.inbound), self.outbound.as_ref(), self.admin.as_ref()];
        all.into_iter().flatten().flatten().filter_map(|l| l.local_addr().ok()).collect()
    }
}

impl Proxy {
    /// Binds every listener of `config` and starts serving.
    pub async fn start(config: ProxyConfig) -> Result<Proxy, crate::BoxError> {
        let listeners = Listeners::bind(&config)?;
        let first = |ls: &Vec<TcpListener>| ls[0].local_addr();
        let inbound = first(&listeners.inbound)?;
        let outbound = listeners.outbound.as_ref().map(first).transpose()?;
        let admin = listeners.admin.as_ref().map(first).transpose()?;

        let ProxyConfig { tracing: recording, serving, .. } = config;
        open_files::raise(serving.server.max_connections);
        let metrics = Arc::new(Metrics::default());
        let (shutdown, stopped) = Shutdown::new();
        // The listeners close later than the rest stops: after the drain window; the outbound one
        // once the inbound requests are done (see `drain`).
        let (close, closing) = Shutdown::new();
        let (close_outbound, outbound_closing) = Shutdown::new();
        let (drain_delay, grace) = (serving.server.drain_delay, serving.server.shutdown_grace);
        let (tracer, flush, poller) = tracing(recording, metrics.clone(), &stopped);
        let draining = tracer.draining.clone();
        let service = tracer.service_name.clone();
        let readiness = Readiness::default();
        let own = OwnListeners::new(listeners.addrs());
        let lingering = Lingering::default();
        let stops = Stops { inbound: closing, outbound: outbound_closing };
        let mut served = serve(listeners, &serving, own, tracer, &readiness, &stops, &lingering);
        served.poller = poller;
        readiness.set(true);
        // A listener not asked for is a field left out, not "None".
        let (outbound_field, admin_field) = (outbound.map(tracing::field::display), admin.map(tracing::field::display));
        tracing::info!(%inbound, outbound = outbound_field, admin = admin_field, %service, "proxy ready");

        let closing = Closing { draining, close, close_outbound, delay: drain_delay, grace, lingering };
        let done = tokio::spawn(drain(stopped, readiness, closing, served, flush));
        Ok(Proxy { inbound, outbound, admin, metrics, shutdown, done })
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, flushes segments.
    pub async fn shutdown(self) {
        self.shutdown.trigger();
        let _ = self.done.await;
    }
}

/// What is still queued for export at shutdown, per exporter.
#[derive(Default)]
struct Flushes {
    udp: Option<Flush>,
    otlp: Option<Flush>,
}

impl Flushes {
    /// Sends what is queued, both exporters at once, within the same bound.
    async fn run(self) {
        let flush = |f: Option<Flush>| async move {
            if let Some(f) = f {
                f.flush(FLUSH_GRACE).await;
            }
        };
        tokio::join!(flush(self.udp), flush(self.otlp));
    }
}

/// Starts what records requests: the exporters that are on (with their flushes at shutdown) and,
/// when on, the centralized sampling engine with its poller (whichever exporters are on).
fn tracing(
    config: TracingConfig,
    metrics: Arc<Metrics>,
    stopped: &Stopped,
) -> (Arc<Tracer>, Flushes, Option<JoinHandle<()>>) {
    let TracingConfig { service_name, sampler, propagation, emission, otlp, centralized, probes } = config;
    let (otlp, otlp_flush) = match otlp {
        Some(settings) => {
            tracing::info!(endpoint = %settings.endpoint, "exporting spans over OTLP");
            let (exporter, flush) = OtlpExporter::spawn(settings, metrics.clone());
            (Some(exporter), Some(flush))
        }
        None => (None, None),
    };
    let (centralized, poller) = match centralized {
        Some(CentralizedSampling { api, origin }) => {
            let engine = Arc::new(Centralized::new(service_name.clone(), origin));
            let _ = metrics.centralized.set(engine.clone());
            let poller = poller::spawn(engine.clone(), api, stopped.clone());
            (Some(engine), Some(poller))
        }
        None => (None, None),
    };
    let (emitter, udp_flush) = match emission {
        Some(Emission { daemon, environment }) => {
            let (emitter, flush) = Emitter::spawn(daemon, environment, metrics.delivery.clone());
            (Some(emitter), Some(flush))
        }
        None => (None, None),
    };
    let draining = Draining::default();
    let tracer = Tracer { service_name, sampler, propagation, centralized, probes, emitter, otlp, metrics, draining };
    (Arc::new(tracer), Flushes { udp: udp_flush, otlp: otlp_flush }, poller)
}

/// The tasks serving a proxy's listeners, and the sampling poller.
struct Served {
    inbound: JoinHandle<()>,
    outbound: Option<JoinHandle<()>>,
    admin: Option<JoinHandle<()>>,
    poller: Option<JoinHandle<()>>,
}

/// Spawns a server for each listener.
fn serve(
    listeners: Listeners,
    config: &ServingConfig,
    own: OwnListeners,
    tracer: Arc<Tracer>,
    readiness: &Readiness,
    stops: &Stops,
    lingering: &Lingering,
) -> Served {
    let upstream = Arc::new(Upstream::new(&config.upstream, own, tracer.metrics.clone(), lingering.clone()));
    // One limit for both sides: it is the process's memory that must stay bounded.
    let limit = ConnectionLimit::new(config.server.max_connections);
    let _ = tracer.metrics.connection_limit.set(limit.clone());
    let outbound = listeners.outbound.map(|listener| {
        let connect = ConnectPolicy {
            own: upstream.own().clone(),
            deny: config.connect_deny.clone(),
            connect_timeout: config.upstream.connect_timeout,
        };
        let plaintext = Plaintext {
            upstream: upstream.clone(),
            tracer: tracer.clone(),
            http: Arc::new(server::Http::new(&config.server)),
            stopped: stops.outbound.clone(),
            detect_timeout: config.interception.detect_timeout,
            skip_ports: config.interception.skip_ports.clone(),
        };
        let ctx = Arc::new(Outbound {
            upstream: upstream.clone(),
            tracer: tracer.clone(),
            interception: config.interception.clone(),
            connect: Arc::new(connect),
            plaintext: Arc::new(plaintext),
        });
        let handle = move |stream, peer, http| ctx.clone().handle(stream, peer, http);
        let metrics = tracer.metrics.clone();
        let (settings, limit) = (config.server.clone(), limit.clone());
        tokio::spawn(server::serve(listener, "outbound", settings, limit, metrics, handle, stops.outbound.clone()))
    });
    let admin = listeners.admin.map(|listener| {
        let (metrics, ready) = (tracer.metrics.clone(), readiness.clone());
        let (header_read_timeout, grace) = (config.server.header_read_timeout, config.server.shutdown_grace);
        tokio::spawn(admin::serve(listener, metrics, ready, header_read_timeout, stops.inbound.clone(), grace))
    });
    let metrics = tracer.metrics.clone();
    let ctx = Arc::new(Inbound {
        destination: config.destination.clone(),
        upstream,
        tracer,
        interception: config.interception.clone(),
    });
    let handle = move |stream, peer, http| ctx.clone().handle(stream, peer, http);
    let inbound = tokio::spawn(server::serve(
        listeners.inbound,
        "inbound",
        config.server.clone(),
        limit,
        metrics,
        handle,
        stops.inbound.clone(),
    ));
    Served { inbound, outbound, admin, poller: None }
}

/// When each side's listeners close (and their HTTP connections begin their graceful close).
struct Stops {
    /// The inbound and admin listeners: after the drain window.
    inbound: Stopped,
    /// The outbound one: once the inbound requests are done, since they may still call out.
    outbound: Stopped,
}

/// How the listeners close once the proxy is stopped.
struct Closing {
    /// Tells the inbound responses of the drain window to close their connections.
    draining: Draining,
    /// Closes the inbound and admin listeners (and starts their HTTP connections' graceful close).
    close: Shutdown,
    /// Closes the outbound listener.
    close_outbound: Shutdown,
    /// The drain window.
    delay: Duration,
    /// How long open connections get to finish after it.
    grace: Duration,
    /// The connections the HTTP servers' graceful close does not see: tunnels, upgraded
    /// connections, HTTP inside a `CONNECT`.
    lingering: Lingering,
}

/// Once stopped: reports not ready, keeps serving for the drain window (the endpoints that send us
/// traffic take a moment to hear that we are leaving), closes the inbound listeners, then the
/// outbound one once the inbound requests are done, lets open connections (tunnels too) finish
/// within the grace period, flushes the segments still queued, those of the
/// tunnels cut at its end among them.
async fn drain(mut stopped: Stopped, readiness: Readiness, closing: Closing, served: Served, flushes: Flushes) {
    let Closing { draining, close, close_outbound, delay, grace, lingering } = closing;
    stopped.wait().await;
    readiness.set(false);
    draining.start();
    tracing::info!(drain = ?delay, "not ready; still serving for the drain window");
    tokio::time::sleep(delay).await;
    close.trigger();
    let deadline = tokio::time::Instant::now() + grace;
    let _ = served.inbound.await;
    // The application is not drained, its callers are: while it serves requests it may call out
    // (and iptables still sends its calls here), so the outbound listener closes only once the
    // inbound requests are done, its connections getting what is left of the grace period.
    close_outbound.trigger();
    if let Some(t) = served.outbound {
        if tokio::time::timeout_at(deadline, t).await.is_err() {
            tracing::warn!(?grace, "outbound connections still open after the grace period were left");
        }
    }
    let cut = lingering.drain(deadline).await;
    if cut > 0 {
        tracing::warn!(cut, ?grace, "tunnels still open after the grace period were cut");
    }
    if let Some(p) = served.poller {
        let _ = p.await;
    }
    flushes.run().await;
    if let Some(t) = served.admin {
        let _ = t.await;
    }
}

/// Binds `addr` and, when it is IPv4's wildcard or loopback, the same port at IPv6's (`[::]`,
/// `[::1]`), IPv6 only: in a pod the init container redirects IPv6 traffic to the same ports as
/// IPv4's (the only traffic there is in an IPv6 cluster), and the kubelet probes the pod's IPv6
/// address. A host without IPv6 keeps the IPv4 listener alone.
fn bind(addr: SocketAddr, flag: &str) -> Result<Vec<TcpListener>, crate::BoxError> {
    // An IPv6 address given takes IPv4 connections too (the kernel's default for `[::]`).
    let v4 = listen(addr, false).map_err(|e| format!("{flag} {addr}: cannot listen: {e}"))?;
    let twin = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => Ipv6Addr::UNSPECIFIED,
        IpAddr::V4(ip) if ip.is_loopback() => Ipv6Addr::LOCALHOST,
        _ => return Ok(vec![v4]),
    };
    // The port the IPv4 listener has, which `0` leaves to the kernel.
    let at = SocketAddr::new(twin.into(), v4.local_addr()?.port());
    match listen(at, true) {
        Ok(v6) => Ok(vec![v4, v6]),
        Err(e) => {
            tracing::debug!(%at, error = %e, "no IPv6 listener beside {addr}");
            Ok(vec![v4])
        }
    }
}

/// Connections the kernel holds for a listener before they are accepted. tokio's `bind` asks
/// for 128, the standard library's figure: a burst of new connections (a client fleet
/// reconnecting, a deploy) beyond it has SYNs dropped and waits a second or more for the retry.
/// 1024 is Envoy's default (nginx asks 511); the kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 1024;

/// A listener on `at`; `v6_only` for the IPv6 twin of an IPv4 listener, which has the IPv4
/// connections.
fn listen(at: SocketAddr, v6_only: bool) -> std::io::Result<TcpListener> {
    let socket =
        socket2::Socket::new(socket2::Domain::for_address(at), socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if v6_only {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&at.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

fn bind_optional(addr: Option<SocketAddr>, flag: &str) -> Result<Option<Vec<TcpListener>>, crate::BoxError> {
    match addr {
        Some(addr) => bind(addr, flag).map(Some),
        None => Ok(None),
    }
}
