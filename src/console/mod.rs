//! `xray-sidecar console`: a local stand-in for the X-Ray daemon and console.

use clap::Args as ClapArgs;

/// Command-line arguments of `xray-sidecar console`.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {}

/// Runs the console until Ctrl-C.
pub async fn run(_args: Args) -> Result<(), crate::BoxError> {
    Err("the console is not built yet".into())
}
