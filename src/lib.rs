//! xray-sidecar: AWS X-Ray tracing for unmodified HTTP services.
//!
//! The binary is a thin shell around these modules: `xray` holds the X-Ray concepts (ids, the trace
//! header, sampling, segment documents, the UDP emitter), `proxy` the data path, `admin` the
//! operator's endpoints, and, with the default `console` feature, `console` (the `xray-console`
//! crate) the local trace viewer and `demo` the lab that runs everything on one machine.

pub mod admin;
pub mod config;
pub mod contract;
#[cfg(feature = "console")]
pub mod demo;
pub mod init;
pub mod metrics;
pub mod otel;
pub mod proxy;
pub mod xray;

#[cfg(feature = "console")]
pub use xray_console as console;
pub use xray_lifecycle::{BoxError, signal};
