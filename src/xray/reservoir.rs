//! A per-second reservoir in one atomic word, shared by the local and the centralized rules: the
//! sampling decision runs on every request, so taking from it is a compare-and-swap, never a lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// How many requests were taken in the current second.
#[derive(Debug, Default)]
pub struct PerSecond {
    /// Epoch second in the high half, requests taken in that second in the low half.
    window: AtomicU64,
}

impl PerSecond {
    /// Takes one request if fewer than `capacity` were taken in second `now_secs`.
    pub fn take(&self, now_secs: u64, capacity: u64) -> bool {
        if capacity == 0 {
            return false;
        }
        let now = now_secs & 0xffff_ffff;
        let mut cur = self.window.load(Ordering::Relaxed);
        loop {
            let (sec, used) = (cur >> 32, cur & 0xffff_ffff);
            let next = if sec != now {
                now << 32 | 1
            } else if used < capacity {
                cur + 1
            } else {
                return false;
            };
            match self.window.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => cur = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_capacity_per_second_then_refills() {
        let r = PerSecond::default();
        assert_eq!((0..5).filter(|_| r.take(100, 3)).count(), 3);
        assert!(r.take(101, 3));
        assert!(!r.take(101, 0));
    }

    #[test]
    fn is_exact_under_concurrency() {
        let r = std::sync::Arc::new(PerSecond::default());
        let taken: usize = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || (0..1000).filter(|_| r.take(7, 50)).count())
            })
            .map(|t| t.join().unwrap_or(0))
            .sum();
        assert_eq!(taken, 50);
    }
}
