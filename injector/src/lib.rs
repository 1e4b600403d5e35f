//! The injector as a library: the webhook's transport and pure mutation, the `inject` and `certs`
//! commands, and the HTTPS server, so that `main.rs` only wires them to the command line and fuzz
//! targets can feed AdmissionReviews straight to [`review::answer`].

mod annotation;
pub mod certs;
pub mod config;
#[cfg(test)]
mod contract_tests;
pub mod inject_cmd;
mod metrics;
pub mod mutate;
mod probes;
mod quantity;
pub mod resources;
pub mod review;
pub mod server;
pub mod tls;
mod yaml;

pub use xray_lifecycle::BoxError;
