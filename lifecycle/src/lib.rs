//! What every process of the project shares about its life: logging set-up, waiting for the signal
//! to stop, stopping gracefully, flushing background senders, and the error type of a failure that
//! is only reported.
//!
//! The sidecar, the console and the injector each depend on this small crate instead of on one
//! another, so the console can live in its own crate and the per-pod build can leave it out.

pub mod flush;
mod latch;
pub mod lingering;
pub mod logging;
pub mod shutdown;
pub mod signal;

pub use flush::Flush;
pub use lingering::{Held, Lingering};
pub use shutdown::{Shutdown, Stopped};

/// The error type used where a failure only needs to be reported, not matched on.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
