//! The timer that bounds the wait for an upstream's response (`--upstream-timeout`), kept by the
//! client connection and re-armed for each of its requests.
//!
//! A new `tokio::time::Sleep` for every request costs ~600 instructions (2 % of an untraced
//! request): a handle to the runtime taken, a place in the timer wheel found under the driver's
//! lock on the first poll, and the lock taken again to leave it on drop. A timer that is already in
//! the wheel is moved to a later deadline with one compare-and-swap (the wheel files it again
//! when its old time comes), so each connection keeps the timer its last response left and moves
//! it on: ~280 instructions a request fewer (the first poll still registers the task's waker).
//! HTTP/1 requests only: they run in their connection's task, whose waker the kept timer holds;
//! an HTTP/2 stream runs in a task of its own, which a kept timer would keep allocated after the
//! stream ended, so streams make their own, as before. A kept timer costs its connection ~160
//! bytes, and one that runs out while the connection is idle wakes the connection's task once,
//! for nothing.

use std::pin::Pin;
use std::sync::Mutex;
use tokio::time::{Instant, Sleep};

/// The timer a connection's last response left, ready to be armed again.
#[derive(Debug, Default)]
pub struct ResponseTimers(Mutex<Option<Pin<Box<Sleep>>>>);

impl ResponseTimers {
    /// A timer that fires at `deadline`: the kept one if it is free, else a new one.
    pub fn arm(&self, deadline: Instant) -> Pin<Box<Sleep>> {
        match self.0.lock().ok().and_then(|mut kept| kept.take()) {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Keeps `timer` for the connection's next request (a second one is dropped).
    pub fn keep(&self, timer: Pin<Box<Sleep>>) {
        if let Ok(mut kept) = self.0.lock() {
            kept.get_or_insert(timer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_kept_timer_fires_at_its_new_deadline_not_its_old_one() {
        let timers = ResponseTimers::default();
        let first = timers.arm(Instant::now() + Duration::from_secs(1));
        let at = first.deadline();
        timers.keep(first);
        // Armed again later: the old deadline passes without it firing.
        tokio::time::advance(Duration::from_millis(500)).await;
        let mut timer = timers.arm(Instant::now() + Duration::from_secs(2));
        assert!(timer.deadline() > at);
        tokio::select! {
            () = &mut timer => panic!("fired at the deadline it was kept with"),
            () = tokio::time::sleep(Duration::from_millis(1_900)) => {}
        }
        let fired = Instant::now();
        (&mut timer).await;
        assert!(Instant::now() - fired <= Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_that_fired_while_kept_waits_again_once_armed() {
        let timers = ResponseTimers::default();
        timers.keep(timers.arm(Instant::now() + Duration::from_millis(10)));
        tokio::time::advance(Duration::from_secs(1)).await;
        let mut timer = timers.arm(Instant::now() + Duration::from_secs(1));
        tokio::select! {
            biased;
            () = &mut timer => panic!("a timer armed again fired at once"),
            () = tokio::time::sleep(Duration::from_millis(900)) => {}
        }
        tokio::time::timeout(Duration::from_millis(200), timer).await.expect("fires at its new deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn overlapping_requests_each_get_a_timer_and_one_is_kept() {
        let timers = ResponseTimers::default();
        let a = timers.arm(Instant::now() + Duration::from_secs(5));
        let b = timers.arm(Instant::now() + Duration::from_secs(1));
        let kept: *const Sleep = &*a;
        timers.keep(a);
        timers.keep(b);
        // The one kept is the first given back, armed again; the second was dropped.
        let again = timers.arm(Instant::now() + Duration::from_secs(3));
        assert!(std::ptr::eq(&*again, kept), "a new timer where the kept one was free");
        assert_eq!(again.deadline(), Instant::now() + Duration::from_secs(3));
        let another = timers.arm(Instant::now() + Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(2), another).await.expect("a fresh timer fires");
    }
}
