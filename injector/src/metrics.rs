//! The injector's counters, in the Prometheus text format.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

const BUCKETS: [f64; 7] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];

/// Review counters and latency.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: AtomicU64,
    injected: AtomicU64,
    errors: AtomicU64,
    skipped: Mutex<Vec<(&'static str, u64)>>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Metrics {
    /// Counts one review and how long it took.
    pub fn record(&self, verdict: Option<&crate::review::Verdict>, took: Duration) {
        use crate::review::Verdict as R;
        self.requests.fetch_add(1, Relaxed);
        match verdict {
            Some(R::Injected) => {
                self.injected.fetch_add(1, Relaxed);
            }
            Some(R::Skipped(reason)) => {
                if let Ok(mut s) = self.skipped.lock() {
                    match s.iter_mut().find(|(r, _)| r == reason) {
                        Some(e) => e.1 += 1,
                        None => s.push((reason, 1)),
                    }
                }
            }
            Some(R::Error) | None => {
                self.errors.fetch_add(1, Relaxed);
            }
        }
        if let Some(i) = BUCKETS.iter().position(|b| took.as_secs_f64() <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(took.as_micros() as u64, Relaxed);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut o = String::new();
        for (name, help, v) in [
            ("requests_total", "Admission reviews received.", &self.requests),
            ("injected_total", "Pods the sidecar was added to.", &self.injected),
            ("errors_total", "Reviews that were malformed or whose pod could not be read or patched.", &self.errors),
        ] {
            let _ = writeln!(o, "# HELP xray_injector_{name} {help}\n# TYPE xray_injector_{name} counter");
            let _ = writeln!(o, "xray_injector_{name} {}", v.load(Relaxed));
        }
        o.push_str("# HELP xray_injector_skipped_total Pods left alone, by reason.\n# TYPE xray_injector_skipped_total counter\n");
        if let Ok(s) = self.skipped.lock() {
            for (reason, n) in s.iter() {
                let _ = writeln!(o, "xray_injector_skipped_total{{reason=\"{reason}\"}} {n}");
            }
        }
        o.push_str("# HELP xray_injector_review_duration_seconds Time to answer a review.\n");
        o.push_str("# TYPE xray_injector_review_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(o, "xray_injector_review_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(o, "xray_injector_review_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(o, "xray_injector_review_duration_seconds_sum {}", self.sum_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(o, "xray_injector_review_duration_seconds_count {count}");
        o
    }
}
