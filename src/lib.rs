//! xray-sidecar: AWS X-Ray tracing for unmodified HTTP services.
//!
//! The binary is a thin shell around these modules, listed from the bottom up (each imports only
//! modules listed before it, and `scripts/module-cycles` fails on any import cycle): `contract`,
//! what the injector and the sidecar agree on; `xray`, the X-Ray concepts (ids, the trace header,
//! sampling, segments and their documents, the UDP emitter); `init`, the iptables set-up;
//! `process`, the process's own figures (memory, CPU, open files); `metrics`, the counters; `memory`, handing freed memory back to the system; `otel`, the
//! OpenTelemetry bridge (W3C trace context, OTLP export); `config`, the `proxy` flags; `admin`, the
//! operator's endpoints; `proxy`, the data path. With the default `console` feature, `console` (the
//! `xray-console` crate) is the local trace viewer and `demo` the lab that runs everything on one
//! machine.

pub mod admin;
pub mod config;
pub mod contract;
#[cfg(feature = "console")]
pub mod demo;
pub mod init;
pub mod metrics;
pub mod otel;
pub mod process;
pub mod proxy;
pub mod xray;

#[cfg(feature = "console")]
pub use xray_console as console;
pub use xray_lifecycle::{BoxError, signal};
