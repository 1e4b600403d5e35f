//! Giving the memory of a past burst back to the system.
//!
//! glibc's `malloc` keeps freed memory for reuse and returns it to the kernel only from the top of
//! the heap. After a burst of connections (each holds hyper's read and write buffers, some 16 KB,
//! and each upstream connection's request channel some 20 KB more) most of the heap is free yet
//! stays resident, and the pod's RSS sits at the burst's high-water mark for good: measured after
//! `wrk -c64` through the sidecar, 4.6 MB of anonymous memory, of which `malloc_trim` gave 3.4 MB
//! back. `malloc_trim(0)` returns free pages anywhere in the heap (`madvise`). It holds the
//! allocator's lock while it walks the free lists (0.2-1 ms on this heap), and pages taken again
//! afterwards cost a page fault each, so it is not done while the memory is in use: every
//! [`EVERY`] the proxy asks how much of the heap is free (`mallinfo2`, a walk without system
//! calls) and trims when a burst has left more free than in use, and at least [`WORTH_TRIMMING`].
//!
//! The one place in the workspace with `unsafe` code (`scripts/test` checks that it stays so): both
//! calls go to glibc, though neither has a precondition.

use std::time::Duration;

/// How often the heap is looked at.
pub const EVERY: Duration = Duration::from_secs(10);

/// Free heap memory worth a trim; less is soon taken again anyway.
pub const WORTH_TRIMMING: usize = 1 << 20;

/// Hands free heap pages back, every [`EVERY`] when a burst has passed; runs until its task is
/// dropped. One per process: the heap is the process's, however many proxies it runs.
pub async fn trim_periodically() {
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; there is nothing to give back at start-up.
    every.tick().await;
    loop {
        every.tick().await;
        trim_after_burst();
    }
}

/// Whether a heap with `free` bytes free and `used` in use is worth trimming: a burst has passed.
pub fn worth_trimming(free: usize, used: usize) -> bool {
    free >= WORTH_TRIMMING && free > used
}

/// Returns the heap's free pages to the kernel when [`worth_trimming`]; whether it did.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim_after_burst() -> bool {
    // SAFETY: `mallinfo2` and `malloc_trim` take no pointer and have no precondition; glibc
    // serialises them with every other allocator call.
    let info = unsafe { libc::mallinfo2() };
    if !worth_trimming(info.fordblks, info.uordblks) {
        return false;
    }
    let started = std::time::Instant::now();
    // SAFETY: as above.
    let released = unsafe { libc::malloc_trim(0) } == 1;
    tracing::debug!(free = info.fordblks, used = info.uordblks, released, took = ?started.elapsed(), "free heap memory handed back");
    released
}

/// Other allocators (musl's, the system's elsewhere) return freed memory themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim_after_burst() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_heap_mostly_free_is_trimmed() {
        assert!(worth_trimming(3 << 20, 1 << 20));
        // Under load: the free part is fragmentation between buffers in use.
        assert!(!worth_trimming(2 << 20, 3 << 20));
        // Too little to be worth the page faults of taking it again.
        assert!(!worth_trimming(512 << 10, 100 << 10));
    }
}
