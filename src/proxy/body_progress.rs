//! How far a client's request body has come on its way to the upstream, for the wait for the
//! response.
//!
//! `--upstream-timeout` bounds the upstream's silence, which only begins once it has the whole
//! request: a steady upload longer than the timeout is no fault of the upstream's, and a body
//! that stops coming is the client's. So while the body is still arriving the wait counts from its
//! last frame (a body that makes no progress for the timeout is the client's `408`), and once it
//! has all arrived, from its end (no response head within the timeout is the upstream's `504`).
//! A request without a body has nothing to wait for: the wait counts from the request, as before.
//! Once the response streams, a request body still moving keeps the stream alive for
//! `--stream-idle-timeout` (see `stream_idle`): a call that only the client is talking on is not
//! idle.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

use super::epoch::Epoch;

/// Shared by the request body (which notes each frame) and the response future and body (which
/// read it when their timers fire).
#[derive(Debug)]
pub struct Progress {
    /// What `last` counts from.
    since: Epoch,
    /// When the body last moved (a frame, or its end), in nanoseconds after `since`.
    last: AtomicU64,
    /// The body has all been passed on.
    done: AtomicBool,
}

/// Where the wait for the response stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Not yet timed out: look again at this instant.
    Until(Instant),
    /// The body stopped coming for the timeout: the client's doing.
    ForBody,
    /// The body has all gone and the upstream has not answered in time.
    ForResponse,
}

impl Progress {
    /// A body that starts now.
    pub fn new() -> Self {
        Progress { since: Epoch::now(), last: AtomicU64::new(0), done: AtomicBool::new(false) }
    }

    /// A frame of the body passed.
    pub fn moved(&self) {
        self.last.store(self.since.nanos(Instant::now()), Relaxed);
    }

    /// The body has ended: the upstream's wait starts now.
    pub fn finished(&self) {
        self.moved();
        self.done.store(true, Relaxed);
    }

    /// When the body last moved (a frame, or its end): its start if it has not.
    pub fn last_moved(&self) -> Instant {
        self.since.at(self.last.load(Relaxed))
    }

    /// Where the wait stands at `now`, given `timeout`.
    pub fn waiting(&self, now: Instant, timeout: Duration) -> Waiting {
        let deadline = self.last_moved() + timeout;
        if now < deadline {
            Waiting::Until(deadline)
        } else if self.done.load(Relaxed) {
            Waiting::ForResponse
        } else {
            Waiting::ForBody
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// Waits on `timer` until nothing has moved for `limit`: not the response, last seen moving at
/// `last`, nor `request`, a request body still on its way. The timer only moves when it fires
/// (things that move meanwhile just push the next deadline on), so a stream that keeps moving
/// costs its timer nothing. A deadline beyond what the clock can count never comes.
pub fn poll_quiet(
    mut timer: Pin<&mut Sleep>,
    cx: &mut Context<'_>,
    last: Instant,
    request: Option<&Progress>,
    limit: Duration,
) -> Poll<()> {
    while timer.as_mut().poll(cx).is_ready() {
        let moved = request.map_or(last, |r| last.max(r.last_moved()));
        let Some(deadline) = moved.checked_add(limit) else {
            return Poll::Pending;
        };
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        timer.as_mut().reset(deadline);
    }
    Poll::Pending
}

/// A request body that moves `times` times, `every` apart, from now on: what the timers' tests
/// drive the request's side with.
#[cfg(test)]
pub fn moving(every: Duration, times: u32) -> std::sync::Arc<Progress> {
    let progress = std::sync::Arc::new(Progress::new());
    let moves = progress.clone();
    tokio::spawn(async move {
        for _ in 0..times {
            tokio::time::sleep(every).await;
            moves.moved();
        }
    });
    progress
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_wait_counts_from_the_last_frame_then_from_the_end() {
        let timeout = Duration::from_secs(10);
        let p = Progress::new();
        let start = Instant::now();
        assert_eq!(p.waiting(start, timeout), Waiting::Until(start + timeout));
        tokio::time::advance(Duration::from_secs(8)).await;
        p.moved();
        let moved = Instant::now();
        assert_eq!(p.waiting(start + timeout, timeout), Waiting::Until(moved + timeout), "a frame renews the wait");
        assert_eq!(p.waiting(moved + timeout, timeout), Waiting::ForBody, "no frame for the timeout");
        tokio::time::advance(Duration::from_secs(5)).await;
        p.finished();
        let ended = Instant::now();
        assert_eq!(p.waiting(ended, timeout), Waiting::Until(ended + timeout));
        assert_eq!(p.waiting(ended + timeout, timeout), Waiting::ForResponse, "the upstream's turn");
    }
}
