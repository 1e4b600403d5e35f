//! A latch: set once, awaited by any number of tasks. While it is not set, polling a task that is
//! already waiting costs an atomic load and a waker comparison.
//!
//! Every client connection waits on the process's shutdown, and its task polls that wait with
//! each of its wake-ups, several per request. `tokio::sync::watch`, which this replaces, takes a
//! mutex shared by every connection (its `Notify`'s list of waiters) on each such poll; here the
//! mutex is taken only when a task starts waiting, changes waker or stops waiting, and once when
//! the latch is set.

use slab::Slab;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{AcqRel, Acquire};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// Set once; [`Latch::wait`] resolves from then on.
#[derive(Debug, Default)]
pub(crate) struct Latch {
    set: AtomicBool,
    /// The wakers of the tasks waiting, each under the key its [`Wait`] holds.
    waiting: Mutex<Slab<Waker>>,
}

impl Latch {
    /// Sets the latch and wakes every task waiting on it (once: setting it again does nothing).
    pub(crate) fn set(&self) {
        if self.set.swap(true, AcqRel) {
            return;
        }
        // Woken outside the lock: a woken task may poll (and lock) at once on another thread.
        let wakers: Vec<Waker> = self.waiting().drain().collect();
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Resolves once the latch is set.
    pub(crate) fn wait(&self) -> Wait<'_> {
        Wait { latch: self, key: None, waker: None }
    }

    fn waiting(&self) -> MutexGuard<'_, Slab<Waker>> {
        // The slab is consistent after any panic (each operation on it is one call).
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The future of [`Latch::wait`].
#[derive(Debug)]
pub struct Wait<'a> {
    latch: &'a Latch,
    /// Where this wait's waker is kept, once registered.
    key: Option<usize>,
    /// The waker registered, to tell without the lock whether the task polling is the same.
    waker: Option<Waker>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.latch.set.load(Acquire) {
            return Poll::Ready(());
        }
        if this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            // `set` will wake the waker already registered.
            return Poll::Pending;
        }
        let mut waiting = this.latch.waiting();
        // `set` stores the flag before it takes the lock to drain the wakers: either it is seen
        // here, or the waker registered below is drained and woken.
        if this.latch.set.load(Acquire) {
            return Poll::Ready(());
        }
        let waker = cx.waker().clone();
        match this.key.and_then(|k| waiting.get_mut(k)) {
            Some(registered) => registered.clone_from(&waker),
            None => this.key = Some(waiting.insert(waker.clone())),
        }
        this.waker = Some(waker);
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        // Once the latch is set the slab has been drained (nothing to remove), and no key is
        // handed out again.
        self.latch.waiting().try_remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::task::Wake;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    fn poll(wait: &mut Wait<'_>, waker: &Waker) -> Poll<()> {
        Pin::new(wait).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn waiting_tasks_are_registered_once_and_woken_when_it_is_set() {
        let latch = Latch::default();
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let (mut first, mut second) = (latch.wait(), latch.wait());
        for _ in 0..3 {
            assert_eq!(poll(&mut first, &wa), Poll::Pending);
        }
        assert_eq!(poll(&mut second, &wa), Poll::Pending);
        // A task polled with another waker (moved to another task) replaces its registration.
        assert_eq!(poll(&mut second, &wb), Poll::Pending);
        assert_eq!(latch.waiting().len(), 2, "one registration per wait, however often polled");

        latch.set();
        assert_eq!((a.0.load(SeqCst), b.0.load(SeqCst)), (1, 1), "each registered waker woken once");
        assert_eq!(poll(&mut first, &wa), Poll::Ready(()));
        assert_eq!(poll(&mut second, &wb), Poll::Ready(()));
        latch.set();
        assert_eq!(a.0.load(SeqCst), 1, "setting it again wakes nobody");
        assert_eq!(poll(&mut latch.wait(), &wa), Poll::Ready(()), "a wait begun after it is set");
    }

    #[test]
    fn a_wait_dropped_before_it_is_set_leaves_nothing_behind() {
        let latch = Latch::default();
        let counted = Arc::new(Count::default());
        let waker = Waker::from(counted.clone());
        let mut kept = latch.wait();
        assert_eq!(poll(&mut kept, &waker), Poll::Pending);
        for _ in 0..100 {
            let mut dropped = latch.wait();
            assert_eq!(poll(&mut dropped, &waker), Poll::Pending);
        }
        assert_eq!(latch.waiting().len(), 1);
        latch.set();
        assert_eq!(counted.0.load(SeqCst), 1, "only the wait still held was woken");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tasks_on_other_threads_see_it_set() {
        let latch = Arc::new(Latch::default());
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let latch = latch.clone();
                tokio::spawn(async move { latch.wait().await })
            })
            .collect();
        tokio::task::yield_now().await;
        latch.set();
        for t in tasks {
            tokio::time::timeout(std::time::Duration::from_secs(5), t).await.expect("woken").expect("task");
        }
    }
}
