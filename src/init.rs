//! `xray-sidecar init`: installs the iptables rules that send a pod's TCP traffic through the proxy.

use clap::Args;

/// Command-line arguments of `xray-sidecar init`.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {}

/// Applies (or, with `--dry-run`, prints) the interception rules.
pub fn run(_args: InitArgs) -> Result<(), crate::BoxError> {
    Err("init is not built yet".into())
}
