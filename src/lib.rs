//! xray-sidecar: AWS X-Ray tracing for unmodified HTTP services.
//!
//! The binary is a thin shell around these modules: `xray` holds the X-Ray concepts (ids, the trace
//! header, sampling, segment documents, the UDP emitter), `proxy` the data path, `admin` the
//! operator's endpoints, and `console` the local trace viewer.

pub mod admin;
pub mod config;
pub mod console;
pub mod demo;
pub mod init;
pub mod metrics;
pub mod otel;
pub mod proxy;
pub mod signal;
pub mod xray;

/// The error type used where a failure only needs to be reported, not matched on.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
