//! `xray-injector`: the mutating admission webhook that adds xray-sidecar to pods that opt in, and
//! its helpers `inject` and `certs`.

mod certs;
mod config;
#[cfg(test)]
mod contract_tests;
mod inject_cmd;
mod metrics;
mod mutate;
mod probes;
mod review;
mod server;
mod tls;
mod yaml;

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use xray_lifecycle::{Shutdown, signal};

pub use xray_lifecycle::BoxError;

#[derive(Parser)]
#[command(name = "xray-injector", version, about = "Adds the xray-sidecar proxy to Kubernetes pods that opt in")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the admission webhook over HTTPS.
    Serve(ServeArgs),
    /// Print manifests with the sidecar added (Pods and workload pod templates).
    Inject(inject_cmd::InjectArgs),
    /// Write a CA, a serving certificate and the webhook configuration with its caBundle.
    Certs(certs::CertsArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address of the HTTPS listener.
    #[arg(long, env = "XRAY_INJECTOR_LISTEN", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Serving certificate (PEM chain); reloaded when it changes.
    #[arg(long, env = "XRAY_INJECTOR_TLS_CERT_FILE", default_value = "/etc/xray-injector/tls/tls.crt")]
    tls_cert_file: PathBuf,
    /// Serving key (PEM); reloaded when it changes.
    #[arg(long, env = "XRAY_INJECTOR_TLS_KEY_FILE", default_value = "/etc/xray-injector/tls/tls.key")]
    tls_key_file: PathBuf,
    /// How often the certificate files are checked for changes, in seconds.
    #[arg(long, env = "XRAY_INJECTOR_CERT_RELOAD_SECONDS", default_value_t = 10)]
    cert_reload_seconds: u64,
    /// What to inject.
    #[command(flatten)]
    config: config::InjectConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    xray_lifecycle::logging::init();
    let result = match cli.command {
        Command::Inject(args) => inject_cmd::run(&args),
        Command::Certs(args) => certs::run(&args),
        Command::Serve(args) => match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(rt) => rt.block_on(serve(args)),
            Err(e) => Err(e.into()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xray-injector: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), BoxError> {
    let store = Arc::new(
        tls::CertStore::open(&args.tls_cert_file, &args.tls_key_file)
            .map_err(|e| format!("--tls-cert-file/--tls-key-file: {e}"))?,
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(store.clone().server_config()?));
    tokio::spawn(store.watch(Duration::from_secs(args.cert_reload_seconds.max(1))));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("--listen {}: cannot listen: {e}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "xray-injector serving");
    let shared = Arc::new(server::Shared::new(args.config));
    let stopped = Shutdown::on(async {
        signal::terminated().await;
        tracing::info!("shutting down: answering the reviews in flight");
    });
    server::serve(listener, acceptor, shared, stopped).await;
    Ok(())
}
