//! `xray-injector`: the mutating admission webhook that adds xray-sidecar to pods that opt in, and
//! its helpers `inject` and `certs`; the command line only (the rest is the library).

use clap::{Args, Parser, Subcommand};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use xray_injector::{BoxError, certs, config, inject_cmd, resources, server, tls};
use xray_lifecycle::{Shutdown, logging, signal};

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
    /// How the injector's log lines are written: `plain`, or `json` (one object per line).
    #[arg(long, env = "XRAY_INJECTOR_LOG_FORMAT", value_name = "FORMAT", default_value_t = logging::Format::Plain)]
    log_format: logging::Format,
    /// What to inject.
    #[command(flatten)]
    config: config::InjectConfig,
}

/// Why the webhook server could not start.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    /// The serving certificate or key is unusable.
    #[error("--tls-cert-file/--tls-key-file: {0}")]
    Certificate(#[source] tls::TlsError),
    /// The TLS configuration could not be built.
    #[error("{0}")]
    Tls(#[source] tls::TlsError),
    /// The listen address cannot be bound.
    #[error("--listen {addr}: cannot listen: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match &cli.command {
        Command::Serve(args) => args.log_format,
        _ => logging::Format::Plain,
    };
    logging::init(format);
    let config = match &cli.command {
        Command::Serve(args) => Some(&args.config),
        Command::Inject(args) => Some(&args.config),
        Command::Certs(_) => None,
    };
    if let Some(Err(e)) = config.map(resources::Resources::check_config) {
        eprintln!("xray-injector: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Inject(args) => inject_cmd::run(&args).map_err(BoxError::from),
        Command::Certs(args) => certs::run(&args).map_err(BoxError::from),
        Command::Serve(args) => match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(rt) => rt.block_on(serve(args)).map_err(BoxError::from),
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

async fn serve(args: ServeArgs) -> Result<(), ServeError> {
    let store =
        Arc::new(tls::CertStore::open(&args.tls_cert_file, &args.tls_key_file).map_err(ServeError::Certificate)?);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(store.clone().server_config().map_err(ServeError::Tls)?));
    tokio::spawn(store.watch(Duration::from_secs(args.cert_reload_seconds.max(1))));
    let addr = args.listen;
    let listen_error = |source| ServeError::Listen { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(listen_error)?;
    tracing::info!(addr = %listener.local_addr().map_err(listen_error)?, "xray-injector serving");
    let shared = Arc::new(server::Shared::new(args.config));
    let stopped = Shutdown::on(async {
        signal::terminated().await;
        tracing::info!("shutting down: answering the reviews in flight");
    });
    server::serve(listener, acceptor, shared, stopped).await;
    Ok(())
}
