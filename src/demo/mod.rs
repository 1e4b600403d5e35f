//! `xray-sidecar demo`: the whole lab on one machine, in one process, on loopback only: the console,
//! a back-end, a front-end that calls it, a sidecar in front of each, and a client calling the
//! front-end at a steady rate.

mod apps;

use clap::Args as ClapArgs;
use http::uri::Authority;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::config::ProxyArgs;
use crate::otel::settings::Exporters;
use crate::proxy::Proxy;
use crate::proxy::config::ProxyConfig;
use crate::xray::daemon::{DaemonAddress, HostPort};
use xray_lifecycle::{Shutdown, Stopped};

/// Command-line arguments of `xray-sidecar demo`.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// Client calls to the front-end per second.
    #[arg(long, default_value_t = 1.0, value_parser = parse_rate)]
    pub rate: f64,

    /// Where the console's page is served.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:2020")]
    pub http: SocketAddr,

    /// Where the console receives segments (the X-Ray daemon's place).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:2000")]
    pub udp: SocketAddr,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 1000.0 => Ok(r),
        _ => Err(format!("`{s}` is not a rate between 0 and 1000 calls a second")),
    }
}

/// A sidecar's configuration: the flags' defaults (never the shell's environment), this sidecar's
/// addresses and rules, and X-Ray export only.
fn sidecar(
    service: &str,
    upstream: SocketAddr,
    daemon: SocketAddr,
    rules: &str,
    outbound: bool,
) -> Result<ProxyConfig, crate::BoxError> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let daemon = HostPort { host: daemon.ip().to_string(), port: daemon.port() };
    let mut args = ProxyArgs::defaults()?;
    args.listen = loopback;
    args.upstream = Some(Authority::try_from(upstream.to_string())?);
    args.service_name = service.to_owned();
    args.daemon_address = DaemonAddress { udp: daemon.clone(), tcp: daemon };
    args.sampling_rules = Some(rules.into());
    args.outbound_listen = outbound.then_some(loopback);
    args.exporter = Some(Exporters { xray: true, otlp: false });
    Ok(ProxyConfig::try_from(&args)?)
}

/// The client's walk through the shop: mostly fine, now and then a failure of each kind.
fn path_for(call: u64) -> &'static str {
    match call {
        n if n % 13 == 12 => "/busy",
        n if n % 11 == 10 => "/missing",
        n if n % 7 == 6 => "/checkout",
        n if n % 2 == 0 => "/",
        _ => "/products",
    }
}

/// Client addresses the demo's traffic appears to come from, so the trace list has some to filter.
const CLIENTS: [&str; 3] = ["203.0.113.10", "203.0.113.24", "198.51.100.7"];

/// Runs the lab until Ctrl-C or SIGTERM.
pub async fn run(args: Args) -> Result<(), crate::BoxError> {
    let (stop, stopped) = Shutdown::new();
    let mut console_stop = stopped.clone();
    let console = crate::console::serve(
        crate::console::ConsoleConfig { udp: args.udp, http: args.http, ..Default::default() },
        async move { console_stop.wait().await },
    )
    .await?;
    let daemon = console.udp_addr();
    // The sidecars take the console's rules (centralized sampling): Default records every call, and
    // one rule samples one /products call in ten, which the page's "Sampling rules" view shows and
    // lets the user change.
    console.put_sampling_rule(serde_json::json!({"RuleName": "Default", "FixedRate": 1.0, "ReservoirSize": 1}))?;
    console.put_sampling_rule(serde_json::json!({
        "RuleName": "products-one-in-ten", "ResourceARN": "*", "Priority": 100, "FixedRate": 0.1,
        "ReservoirSize": 0, "ServiceName": "*", "ServiceType": "*", "Host": "*", "HTTPMethod": "GET",
        "URLPath": "/products", "Version": 1
    }))?;
    // Every call is recorded, so the map fills at any rate.
    let rules = std::env::temp_dir().join(format!("xray-sidecar-demo-{}.json", std::process::id()));
    std::fs::write(&rules, r#"{"version": 2, "default": {"fixed_target": 0, "rate": 1.0}, "rules": []}"#)?;
    let rules = rules.to_string_lossy().into_owned();

    let back_app = apps::serve(apps::back_end, stopped.clone()).await?;
    let back = Proxy::start(sidecar("back-end", back_app, daemon, &rules, false)?).await?;
    let back_addr = back.inbound;
    // The front-end app needs its sidecar's outbound address, which exists once the sidecar (which
    // needs the app's address) has started.
    let outbound = Arc::new(OnceLock::new());
    let app_outbound = outbound.clone();
    let front_app = apps::serve(
        move |req| {
            let proxy = app_outbound.get().copied();
            async move {
                match proxy {
                    Some(proxy) => apps::front_end(req, proxy, back_addr).await,
                    None => apps::unavailable(),
                }
            }
        },
        stopped.clone(),
    )
    .await?;
    let front = Proxy::start(sidecar("front-end", front_app, daemon, &rules, true)?).await?;
    if let Some(addr) = front.outbound {
        let _ = outbound.set(addr);
    }
    println!("xray-sidecar demo: open {} (Ctrl-C stops)", console.url());
    println!("  client -> front-end sidecar {} -> front-end app {front_app}", front.inbound);
    println!(
        "  front-end app -> front-end sidecar (outbound) {} -> back-end sidecar {} -> back-end app {back_app}",
        front.outbound.map(|a| a.to_string()).unwrap_or_default(),
        back.inbound
    );
    println!("  {} call(s) a second; segments to udp {daemon}", args.rate);

    let client = tokio::spawn(client_loop(front.inbound, args.rate, stopped.clone()));
    crate::signal::terminated().await;
    println!("stopping");
    stop.trigger();
    let _ = client.await;
    front.shutdown().await;
    back.shutdown().await;
    console.wait().await;
    let _ = std::fs::remove_file(&rules);
    Ok(())
}

/// Calls the front-end at `rate` a second until stopped.
async fn client_loop(front: SocketAddr, rate: f64, mut stopped: Stopped) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait() => return,
        }
        let req = http::Request::get(format!("http://{front}{}", path_for(n)))
            .header("x-forwarded-for", CLIENTS[(n % CLIENTS.len() as u64) as usize])
            .header("user-agent", "demo-client/1.0")
            .body(http_body_util::Empty::new());
        n += 1;
        let Ok(req) = req else { continue };
        let client = client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.request(req).await {
                tracing::warn!(error = %e, "demo client call failed");
            }
        });
    }
}
