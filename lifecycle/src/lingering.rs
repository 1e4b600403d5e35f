//! Connections the HTTP servers' graceful shutdown does not see: tunnels (a `CONNECT`, intercepted
//! TLS, an upgraded WebSocket), connections that were never HTTP, and HTTP served inside a
//! `CONNECT`. Each runs on after the HTTP connection it came on has ended, or without one, so
//! waiting for HTTP connections alone would let the process exit under them at the end of the
//! drain window: every HTTPS call in flight cut on a rollout. They are held here instead, given the
//! same grace period, then cut, so that they end (and are recorded) rather than vanish at exit.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Acquire};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::latch::{Latch, Wait};

/// How long connections cut at the end of the grace period get to finish their records.
const CUT_WAIT: Duration = Duration::from_millis(500);

/// The connections held; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Lingering(Arc<Tally>);

#[derive(Debug, Default)]
struct Tally {
    held: AtomicUsize,
    /// Told when the last held connection ends.
    none_left: Notify,
    /// Set when the grace period is over.
    cut: Latch,
}

/// One connection, counted until dropped.
#[derive(Debug)]
pub struct Held(Arc<Tally>);

impl Lingering {
    /// Counts one more connection until the guard is dropped.
    pub fn hold(&self) -> Held {
        self.0.held.fetch_add(1, AcqRel);
        Held(self.0.clone())
    }

    /// Connections held now.
    pub fn count(&self) -> usize {
        self.0.held.load(Acquire)
    }

    /// Waits until no connection is held, or until `deadline`; then cuts those left (their
    /// [`Held::cut`] resolves) and waits a moment for them to end. How many were cut.
    pub async fn drain(&self, deadline: Instant) -> usize {
        if tokio::time::timeout_at(deadline, self.none_left()).await.is_ok() {
            return 0;
        }
        let cut = self.count();
        self.0.cut.set();
        let _ = tokio::time::timeout(CUT_WAIT, self.none_left()).await;
        cut
    }

    async fn none_left(&self) {
        loop {
            let notified = self.0.none_left.notified();
            tokio::pin!(notified);
            // Registered before the count is read: a last drop in between still wakes it.
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Held {
    /// Resolves once the grace period is over: the connection must end now.
    pub fn cut(&self) -> Wait<'_> {
        self.0.cut.wait()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.0.held.fetch_sub(1, AcqRel) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_the_held_then_cuts_them() {
        let lingering = Lingering::default();
        assert_eq!(lingering.drain(Instant::now() + Duration::from_secs(10)).await, 0, "nothing held");

        // One ends within the grace period: drain returns then, not at the deadline.
        let short = lingering.hold();
        let start = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(short);
        });
        assert_eq!(lingering.drain(start + Duration::from_secs(10)).await, 0);
        assert_eq!(start.elapsed(), Duration::from_secs(2));

        // One that would run for ever is cut at the deadline and ends.
        let long = lingering.hold();
        let ended = tokio::spawn(async move {
            long.cut().await;
            Instant::now()
        });
        let start = Instant::now();
        assert_eq!(lingering.drain(start + Duration::from_secs(3)).await, 1);
        assert_eq!(ended.await.expect("task") - start, Duration::from_secs(3));
        assert_eq!(lingering.count(), 0);
    }
}
