//! Request statistics for one node or edge of the map, in the shape of X-Ray's `SummaryStatistics`.

use super::document::Outcome;
use serde::Serialize;

/// Collects the outcomes and response times of the requests through a node or edge.
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    ok: u64,
    error: u64,
    throttle: u64,
    fault: u64,
    total_response_time: f64,
    response_times: Vec<f64>,
}

/// X-Ray's `ErrorStatistics`: 4xx, of which throttles (429).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorStatistics {
    /// Throttled requests.
    pub throttle_count: u64,
    /// Other client errors.
    pub other_count: u64,
    /// All client errors.
    pub total_count: u64,
}

/// X-Ray's `FaultStatistics`: 5xx.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct FaultStatistics {
    /// Faults not classified further.
    pub other_count: u64,
    /// All faults.
    pub total_count: u64,
}

/// X-Ray's `SummaryStatistics` (edge and service).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryStatistics {
    /// Requests that completed without error.
    pub ok_count: u64,
    /// Client errors.
    pub error_statistics: ErrorStatistics,
    /// Server errors.
    pub fault_statistics: FaultStatistics,
    /// All requests.
    pub total_count: u64,
    /// Sum of response times, seconds.
    pub total_response_time: f64,
}

/// One bucket of X-Ray's `ResponseTimeHistogram`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HistogramEntry {
    /// Response time, seconds (rounded to two significant digits).
    pub value: f64,
    /// Requests with that response time.
    pub count: u64,
}

/// The figures the map shows beside each node and edge.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Rates {
    /// Requests per minute over the graph's time span.
    pub requests_per_minute: f64,
    /// Mean response time, seconds.
    pub average_response_time: f64,
    /// 95th percentile response time, seconds.
    pub p95_response_time: f64,
    /// Share of client errors (throttles included), 0..1.
    pub error_rate: f64,
    /// Share of throttles, 0..1.
    pub throttle_rate: f64,
    /// Share of faults, 0..1.
    pub fault_rate: f64,
}

impl Accumulator {
    /// Counts one request.
    pub fn add(&mut self, outcome: Outcome, response_time: f64) {
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Error => self.error += 1,
            Outcome::Throttle => self.throttle += 1,
            Outcome::Fault => self.fault += 1,
        }
        let rt = response_time.max(0.0);
        self.total_response_time += rt;
        self.response_times.push(rt);
    }

    /// Requests counted.
    pub fn total(&self) -> u64 {
        self.ok + self.error + self.throttle + self.fault
    }

    /// The X-Ray summary.
    pub fn summary(&self) -> SummaryStatistics {
        SummaryStatistics {
            ok_count: self.ok,
            error_statistics: ErrorStatistics {
                throttle_count: self.throttle,
                other_count: self.error,
                total_count: self.error + self.throttle,
            },
            fault_statistics: FaultStatistics { other_count: self.fault, total_count: self.fault },
            total_count: self.total(),
            total_response_time: self.total_response_time,
        }
    }

    /// The response times bucketed to two significant digits, fastest first.
    pub fn histogram(&self) -> Vec<HistogramEntry> {
        let mut sorted = self.sorted();
        sorted.iter_mut().for_each(|v| *v = two_digits(*v));
        let mut out: Vec<HistogramEntry> = Vec::new();
        for v in sorted {
            match out.last_mut() {
                Some(last) if last.value == v => last.count += 1,
                _ => out.push(HistogramEntry { value: v, count: 1 }),
            }
        }
        out
    }

    /// Rates and percentiles; `span_seconds` is the time the counted requests cover.
    pub fn rates(&self, span_seconds: f64) -> Rates {
        let total = self.total();
        let share = |n: u64| {
            if total == 0 { 0.0 } else { n as f64 / total as f64 }
        };
        let sorted = self.sorted();
        // Nearest-rank percentile: the smallest value with at least 95% of requests at or below it.
        let p95 = match sorted.len() {
            0 => 0.0,
            n => sorted[((n as f64 * 0.95).ceil() as usize).clamp(1, n) - 1],
        };
        Rates {
            requests_per_minute: total as f64 * 60.0 / span_seconds.max(1.0),
            average_response_time: if total == 0 { 0.0 } else { self.total_response_time / total as f64 },
            p95_response_time: p95,
            error_rate: share(self.error + self.throttle),
            throttle_rate: share(self.throttle),
            fault_rate: share(self.fault),
        }
    }

    fn sorted(&self) -> Vec<f64> {
        let mut sorted = self.response_times.clone();
        sorted.sort_by(f64::total_cmp);
        sorted
    }
}

/// Rounds to two significant digits, so the histogram has few buckets.
fn two_digits(v: f64) -> f64 {
    if v <= 0.0 {
        return 0.0;
    }
    let scale = 10f64.powi(1 - v.log10().floor() as i32);
    (v * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_outcomes_like_x_ray() {
        let mut acc = Accumulator::default();
        for (o, rt) in [
            (Outcome::Ok, 0.010),
            (Outcome::Ok, 0.012),
            (Outcome::Error, 0.002),
            (Outcome::Throttle, 0.001),
            (Outcome::Fault, 0.5),
        ] {
            acc.add(o, rt);
        }
        let s = acc.summary();
        assert_eq!((s.ok_count, s.total_count), (2, 5));
        assert_eq!(s.error_statistics.total_count, 2);
        assert_eq!(s.error_statistics.throttle_count, 1);
        assert_eq!(s.fault_statistics.total_count, 1);
        let r = acc.rates(60.0);
        assert_eq!(r.requests_per_minute, 5.0);
        assert_eq!(r.p95_response_time, 0.5);
        assert!((r.error_rate - 0.4).abs() < 1e-9 && (r.fault_rate - 0.2).abs() < 1e-9);
        assert!((r.average_response_time - 0.105).abs() < 1e-9);
    }

    #[test]
    fn p95_and_histogram() {
        let mut acc = Accumulator::default();
        for i in 1..=100 {
            acc.add(Outcome::Ok, f64::from(i) / 1000.0);
        }
        assert_eq!(acc.rates(30.0).p95_response_time, 0.095);
        assert_eq!(acc.rates(30.0).requests_per_minute, 200.0);
        let h = acc.histogram();
        assert_eq!(h.iter().map(|e| e.count).sum::<u64>(), 100);
        assert_eq!(h.first().map(|e| e.value), Some(0.001));
        assert_eq!(two_digits(0.01234), 0.012);
        assert_eq!(two_digits(1.26), 1.3);
    }
}
