//! Instants kept in atomics, as nanoseconds after a base instant: what a connection's task and its
//! requests share about when things happened, without a lock.

use std::time::Duration;
use tokio::time::Instant;

/// The base instant that stored times count from.
#[derive(Clone, Copy, Debug)]
pub struct Epoch(Instant);

impl Epoch {
    /// An epoch that starts now.
    pub fn now() -> Self {
        Epoch(Instant::now())
    }

    /// `t` as nanoseconds after the epoch: 0 for an instant before it, and saturating after 584
    /// years.
    pub fn nanos(self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.0).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant `nanos` after the epoch.
    pub fn at(self, nanos: u64) -> Instant {
        self.0 + Duration::from_nanos(nanos)
    }
}
