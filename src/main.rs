//! The `xray-sidecar` command line: parses arguments and starts the chosen job.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xray-sidecar",
    version,
    about = "AWS X-Ray tracing for unmodified HTTP services"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local X-Ray console: receives segments like the daemon and shows the service map.
    Console(xray_sidecar::console::Args),
}

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xray-sidecar: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = match cli.command {
        Command::Console(args) => rt.block_on(xray_sidecar::console::run(args)),
    };
    if let Err(e) = result {
        eprintln!("xray-sidecar: {e}");
        std::process::exit(1);
    }
}
