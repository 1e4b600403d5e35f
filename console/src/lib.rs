//! The console behind `xray-sidecar console`: a local stand-in for the X-Ray daemon, console and API.
//!
//! It listens where the daemon does (UDP `127.0.0.1:2000`), assembles the segments it receives into
//! traces held in memory within a bound, and serves a page (`http://127.0.0.1:2020/`) with the
//! service map, the trace list, each trace's timeline and the sampling rules, plus the same data as
//! JSON shaped like the X-Ray API:
//!
//! - `GET /api/service-graph?start_time=&end_time=` (epoch seconds; default the last 5 minutes):
//!   `GetServiceGraph`'s `Services`, each node and edge with `RequestsPerMinute`,
//!   `AverageResponseTime`, `P95ResponseTime`, `ErrorRate`, `ThrottleRate` and `FaultRate` beside
//!   X-Ray's `SummaryStatistics`;
//! - `GET /api/trace-summaries?status=&client_ip=&url=&service=&min_duration=&max_duration=&limit=&next_token=`:
//!   `GetTraceSummaries`, newest first (`status` takes `500` or `5xx`; `client_ip` is a prefix;
//!   `url` a case-insensitive part);
//! - `GET /api/traces/{id}`: `BatchGetTraces` for one trace, with its `Summary` and `Timeline`;
//! - `POST /v1/traces`: OTLP/HTTP protobuf spans, stored as segment documents (see `otlp`);
//! - `GET /api/stats`: datagrams received, malformed (and why the last one was), forwarded; traces
//!   held and evicted; segments and telemetry records taken through the API.
//!
//! The same address speaks the AWS X-Ray API itself (`POST /TraceSegments`, `/ServiceGraph`,
//! `/TraceSummaries`, `/Traces`, `/TraceGraph`, `/GetSamplingRules`, `/CreateSamplingRule`,
//! `/UpdateSamplingRule`, `/DeleteSamplingRule`, `/SamplingTargets`, `/SamplingStatisticSummaries`,
//! `/TelemetryRecords`, `/TimeSeriesServiceStatistics`, `/Groups`, ...), so boto3, the AWS CLI and
//! a real daemon work against it; and, like the daemon, the TCP port of the UDP port's number
//! answers the SDKs' sampling calls.

mod api;
mod assemble;
mod assets;
mod clock;
mod daemon_tcp;
/// Public only so the fuzz targets can reach the parser; not a stable interface.
#[doc(hidden)]
pub mod datagram;
mod document;
mod filter;
mod filter_ast;
/// Public only so the fuzz targets can reach the parser; not a stable interface.
#[doc(hidden)]
pub mod filter_expression;
mod filter_parser;
mod filter_tokens;
mod graph;
mod otlp;
mod query;
mod receiver;
mod sampling_api;
mod sampling_rules;
mod sampling_targets;
mod server;
mod state;
mod stats;
mod store;
mod summary;
#[cfg(test)]
mod testdata;
mod time_series;
mod timeline;
mod xray_api;
mod xray_error;

pub use state::Stats;

use clap::Args as ClapArgs;
use clock::now;
use state::State;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tracing::info;
use xray_lifecycle::Shutdown;

/// Command-line arguments of `xray-sidecar console`.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// UDP address to receive segment documents on, as the X-Ray daemon does; the TCP port of the
    /// same number answers the SDKs' sampling calls (/GetSamplingRules, /SamplingTargets).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:2000")]
    pub udp: SocketAddr,
    /// Address of the web page, its JSON API and the X-Ray API.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:2020")]
    pub http: SocketAddr,
    /// Also relay every datagram unchanged to this X-Ray daemon (`host:port`), and the sampling
    /// calls to its TCP side (its answers are returned while it answers).
    #[arg(long, value_name = "ADDR")]
    pub forward: Option<String>,
    /// Traces kept in memory; the oldest are evicted first.
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_traces: u64,
}

/// What a console listens on and how much it keeps.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// UDP address for segment documents (port 0 picks a free one).
    pub udp: SocketAddr,
    /// Address of the page and API (port 0 picks a free one).
    pub http: SocketAddr,
    /// A daemon (`host:port`) to relay every datagram to, unchanged.
    pub forward: Option<String>,
    /// Traces kept; the oldest are evicted first.
    pub max_traces: usize,
    /// Approximate bytes of documents kept; the oldest traces are evicted beyond it.
    pub max_bytes: usize,
    /// Documents kept per trace; more for a full trace are refused and counted.
    pub max_documents_per_trace: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            udp: SocketAddr::from(([127, 0, 0, 1], 2000)),
            http: SocketAddr::from(([127, 0, 0, 1], 2020)),
            forward: None,
            max_traces: 10_000,
            max_bytes: 256 * 1024 * 1024,
            max_documents_per_trace: 1_000,
        }
    }
}

impl From<Args> for ConsoleConfig {
    fn from(args: Args) -> Self {
        Self {
            udp: args.udp,
            http: args.http,
            forward: args.forward,
            max_traces: usize::try_from(args.max_traces).unwrap_or(usize::MAX),
            ..Self::default()
        }
    }
}

/// Why a console could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The UDP address is taken or not ours.
    #[error("cannot listen for segments on udp {addr}: {source}")]
    BindUdp {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TCP port matching the UDP port (the daemon's sampling API) is taken or not ours.
    #[error("cannot serve the sampling API on tcp {addr} (the daemon port): {source}")]
    BindDaemonTcp {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP address is taken or not ours.
    #[error("cannot serve the console on {addr}: {source}")]
    BindHttp {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The forward address does not resolve, or no socket could be opened for it.
    #[error("cannot forward to {target}: {source}")]
    Forward {
        /// The address as given.
        target: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A running console: its bound addresses, and a way to wait for it to stop.
#[derive(Debug)]
pub struct Console {
    udp_addr: SocketAddr,
    http_addr: SocketAddr,
    state: Arc<State>,
    tasks: Vec<JoinHandle<()>>,
}

impl Console {
    /// The UDP address segments are received on (the actual port when 0 was asked).
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The address of the page and API.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The page's URL, e.g. `http://127.0.0.1:2020/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.http_addr)
    }

    /// The counters: datagrams received, malformed, forwarded, traces held and evicted.
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// Creates a sampling rule given in the X-Ray API's `SamplingRule` form, or changes the rule of
    /// that name (`Default`: only `FixedRate` and `ReservoirSize`), with X-Ray's checks, as
    /// `CreateSamplingRule` and `UpdateSamplingRule` do.
    pub fn put_sampling_rule(&self, rule: serde_json::Value) -> Result<(), xray_lifecycle::BoxError> {
        let name = rule.get("RuleName").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
        let mut sampling = self.state.sampling();
        if sampling.rules.get(&name).is_some() {
            sampling.rules.update(serde_json::from_value(rule)?, now())?;
        } else {
            sampling.rules.create(serde_json::from_value(rule)?, now())?;
        }
        Ok(())
    }

    /// Waits until the shutdown future given to [`serve`] has completed and every server stopped.
    pub async fn wait(self) {
        for task in self.tasks {
            // A task can only end early by panicking; the other one still stops on shutdown.
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a console task failed");
            }
        }
    }
}

/// Starts a console: binds the UDP and HTTP addresses, then receives and serves in background tasks
/// until `shutdown` completes. Returns once both are bound, with the addresses actually bound (so
/// port 0 works), or the error that kept it from binding. Call from within a tokio runtime.
///
/// ```no_run
/// use xray_console::{serve, ConsoleConfig};
///
/// # async fn example() -> Result<(), xray_lifecycle::BoxError> {
/// let config = ConsoleConfig { http: "127.0.0.1:0".parse()?, ..ConsoleConfig::default() };
/// let console = serve(config, async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await?;
/// println!("send segments to udp {} and open {}", console.udp_addr(), console.url());
/// console.wait().await; // returns after Ctrl-C, once both servers have stopped
/// # Ok(())
/// # }
/// ```
pub async fn serve(
    config: ConsoleConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Console, ConsoleError> {
    let (udp, daemon_tcp) = bind_daemon(config.udp).await?;
    let udp_addr = udp.local_addr().map_err(|source| ConsoleError::BindUdp { addr: config.udp, source })?;
    let http = tokio::net::TcpListener::bind(config.http)
        .await
        .map_err(|source| ConsoleError::BindHttp { addr: config.http, source })?;
    let http_addr = http.local_addr().map_err(|source| ConsoleError::BindHttp { addr: config.http, source })?;
    let forward = match &config.forward {
        Some(target) => {
            let f = receiver::Forwarder::new(target)
                .await
                .map_err(|source| ConsoleError::Forward { target: target.clone(), source })?;
            info!(target = %target, addr = %f.addr(), "relaying every datagram to a daemon");
            Some(f)
        }
        None => None,
    };
    let state = Arc::new(State::new(store::Limits {
        max_traces: config.max_traces.max(1),
        max_bytes: config.max_bytes,
        max_documents_per_trace: config.max_documents_per_trace.max(1),
    }));
    let stopped = Shutdown::on(shutdown);
    let relay = config.forward.as_deref().map(daemon_tcp::Relay::new);
    let page_state = state.clone();
    let page = move |req| {
        let state = page_state.clone();
        async move { server::answer(&state, req).await }
    };
    let daemon_state = state.clone();
    let daemon = move |req| daemon_tcp::answer(daemon_state.clone(), relay.clone(), req);
    let tasks = vec![
        tokio::spawn(receiver::run(udp, forward, state.clone(), stopped.clone())),
        tokio::spawn(server::run("console", http, page, stopped.clone())),
        tokio::spawn(server::run("console daemon tcp", daemon_tcp, daemon, stopped)),
    ];
    info!(udp = %udp_addr, http = %http_addr, "console listening");
    Ok(Console { udp_addr, http_addr, state, tasks })
}

/// Binds the daemon's UDP address and the TCP port of the same number, where the daemon serves the
/// sampling API. For port 0 the UDP port is picked first; if its TCP twin is taken, another is tried.
async fn bind_daemon(addr: SocketAddr) -> Result<(tokio::net::UdpSocket, tokio::net::TcpListener), ConsoleError> {
    let mut tries = 0;
    loop {
        let udp = receiver::bind(addr).map_err(|source| ConsoleError::BindUdp { addr, source })?;
        let bound = udp.local_addr().map_err(|source| ConsoleError::BindUdp { addr, source })?;
        match tokio::net::TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(_) if addr.port() == 0 && tries < 16 => tries += 1,
            Err(source) => return Err(ConsoleError::BindDaemonTcp { addr: bound, source }),
        }
    }
}

/// Runs the console until Ctrl-C or SIGTERM.
pub async fn run(args: Args) -> Result<(), xray_lifecycle::BoxError> {
    // Logging is set up by the binary; the console only needs its stop signal.
    let console = serve(args.into(), xray_lifecycle::signal::terminated()).await?;
    println!("xray-sidecar console: send segments to udp {} and open {}", console.udp_addr(), console.url());
    console.wait().await;
    Ok(())
}
