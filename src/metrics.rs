//! Process-wide counters, written with relaxed atomics on the hot path and rendered by the admin
//! listener in the Prometheus text format.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::xray::delivery::DeliveryCounters;
use crate::xray::segment::Direction;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// One in a gauge of [`Metrics`] for as long as it lives: an idle connection, a parked socket.
#[derive(Debug)]
pub struct GaugeHeld {
    metrics: Arc<Metrics>,
    gauge: fn(&Metrics) -> &AtomicU64,
}

impl GaugeHeld {
    /// Adds one to `gauge` of `metrics`, until dropped.
    pub fn new(metrics: &Arc<Metrics>, gauge: fn(&Metrics) -> &AtomicU64) -> Self {
        gauge(metrics).fetch_add(1, Relaxed);
        GaugeHeld { metrics: metrics.clone(), gauge }
    }
}

impl Drop for GaugeHeld {
    fn drop(&mut self) {
        (self.gauge)(&self.metrics).fetch_sub(1, Relaxed);
    }
}

/// Everything the proxy counts.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests by direction (inbound, outbound) and status class (1xx..5xx; index 0 = no response).
    requests: [[AtomicU64; 6]; 2],
    latency: [Histogram; 2],
    /// What delivering segments to the daemon counts, shared with the emitter.
    pub delivery: Arc<DeliveryCounters>,
    /// Sampling decisions by source ([`DecisionSource`] order), yes then no.
    sampling: [[AtomicU64; 2]; 4],
    /// The centralized sampling engine, whose per-rule counters `/metrics` shows.
    pub centralized: std::sync::OnceLock<std::sync::Arc<crate::xray::centralized::Centralized>>,
    /// The connection limit, whose slots in use `/metrics` shows beside it.
    pub connection_limit: std::sync::OnceLock<xray_lifecycle::shutdown::ConnectionLimit>,
    /// Upstream failures by kind: connect, timeout, reset/protocol.
    upstream_errors: [AtomicU64; 3],
    /// Trace headers that could not be used as they came.
    pub malformed_headers: AtomicU64,
    /// HTTP/1 request heads hyper's parser refused (answered `400` or `431`, the connection
    /// closed): malformed, ambiguous or too large, so no request was formed.
    pub malformed_requests: AtomicU64,
    /// Tunnels (`CONNECT` or intercepted TLS) relayed to their end.
    pub tunnels: AtomicU64,
    /// `CONNECT` requests refused because they named the proxy itself or a denied range.
    pub connects_denied: AtomicU64,
    /// Connections answered 503 and closed because `--max-connections` were already open.
    pub connections_refused: AtomicU64,
    /// HTTP/2 streams answered 503 because connections and streams in flight had taken every slot
    /// of `--max-connections`.
    pub streams_refused: AtomicU64,
    /// HTTP/1.1 client connections open but idle, hyper's buffers handed back (a gauge).
    pub idle_connections: AtomicU64,
    /// HTTP/1.1 upstream connections kept open but idle, hyper's buffers handed back (a gauge).
    pub idle_upstream_connections: AtomicU64,
    /// Spans the OTLP collector accepted.
    pub otlp_spans_exported: AtomicU64,
    /// Spans dropped: queue full, or the collector refused or stayed unreachable past the retries.
    pub otlp_spans_dropped: AtomicU64,
    /// OTLP export requests sent again after a 429, 502, 503, 504 or a connection failure.
    pub otlp_export_retries: AtomicU64,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// Where a sampling decision came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionSource {
    /// The caller's `Sampled=1` or `Sampled=0`.
    Caller,
    /// Our local rules.
    Local,
    /// The X-Ray console's rules.
    Centralized,
    /// A health check, never sampled.
    HealthCheck,
}

/// A class of upstream failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    /// The connection could not be made.
    Connect,
    /// Connect or response timed out.
    Timeout,
    /// The connection broke or spoke bad HTTP.
    Broken,
}

fn dir(d: Direction) -> usize {
    match d {
        Direction::Inbound => 0,
        Direction::Outbound => 1,
    }
}

impl Metrics {
    /// Counts a finished request.
    pub fn record_request(&self, d: Direction, status: Option<u16>, elapsed: Duration) {
        let class = status.map_or(0, |s| usize::from(s / 100).clamp(1, 5));
        self.requests[dir(d)][class].fetch_add(1, Relaxed);
        let h = &self.latency[dir(d)];
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            h.buckets[i].fetch_add(1, Relaxed);
        }
        h.count.fetch_add(1, Relaxed);
        h.sum_micros.fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    /// Counts a sampling decision.
    pub fn record_decision(&self, source: DecisionSource, sampled: bool) {
        self.sampling[source as usize][usize::from(!sampled)].fetch_add(1, Relaxed);
    }

    /// Counts an upstream failure.
    pub fn record_upstream_error(&self, e: UpstreamError) {
        self.upstream_errors[e as usize].fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        let dirs = ["inbound", "outbound"];
        let classes = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];
        o.push_str("# HELP xray_sidecar_requests_total Requests proxied, by direction and status class.\n");
        o.push_str("# TYPE xray_sidecar_requests_total counter\n");
        for (d, row) in dirs.iter().zip(&self.requests) {
            for (c, n) in classes.iter().zip(row) {
                let _ = writeln!(
                    o,
                    "xray_sidecar_requests_total{{direction=\"{d}\",status_class=\"{c}\"}} {}",
                    n.load(Relaxed)
                );
            }
        }
        o.push_str("# HELP xray_sidecar_request_duration_seconds Time from request to the last response byte.\n");
        o.push_str("# TYPE xray_sidecar_request_duration_seconds histogram\n");
        for (d, h) in dirs.iter().zip(&self.latency) {
            let mut cumulative = 0;
            for (b, n) in BUCKETS.iter().zip(&h.buckets) {
                cumulative += n.load(Relaxed);
                let _ = writeln!(
                    o,
                    "xray_sidecar_request_duration_seconds_bucket{{direction=\"{d}\",le=\"{b}\"}} {cumulative}"
                );
            }
            let count = h.count.load(Relaxed);
            let _ =
                writeln!(o, "xray_sidecar_request_duration_seconds_bucket{{direction=\"{d}\",le=\"+Inf\"}} {count}");
            let sum = h.sum_micros.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(o, "xray_sidecar_request_duration_seconds_sum{{direction=\"{d}\"}} {sum}");
            let _ = writeln!(o, "xray_sidecar_request_duration_seconds_count{{direction=\"{d}\"}} {count}");
        }
        for (name, help, v) in [
            ("segments_emitted_total", "Segment documents sent to the daemon.", &self.delivery.segments_emitted),
            (
                "segments_dropped_total",
                "Segments dropped because the emit queue was full.",
                &self.delivery.segments_dropped,
            ),
            (
                "segments_too_large_total",
                "Segments too large for one datagram, not sent.",
                &self.delivery.segments_too_large,
            ),
            (
                "segments_split_total",
                "Segments whose subsegments were sent separately to fit.",
                &self.delivery.segments_split,
            ),
            (
                "daemon_send_errors_total",
                "Datagrams that could not be sent to the daemon.",
                &self.delivery.daemon_send_errors,
            ),
            (
                "daemon_resolve_errors_total",
                "Failed look-ups of the daemon address.",
                &self.delivery.daemon_resolve_errors,
            ),
            (
                "datagram_send_calls_total",
                "System calls that sent segment datagrams (one may carry many).",
                &self.delivery.datagram_send_calls,
            ),
            (
                "malformed_trace_headers_total",
                "Trace headers that could not be used as received.",
                &self.malformed_headers,
            ),
            (
                "malformed_requests_total",
                "HTTP/1 request heads refused by the parser (400 or 431, connection closed).",
                &self.malformed_requests,
            ),
            ("tunnels_total", "Tunnels (CONNECT or intercepted TLS) relayed to their end.", &self.tunnels),
            (
                "connects_denied_total",
                "CONNECT requests refused: the proxy itself or a denied range.",
                &self.connects_denied,
            ),
            (
                "connections_refused_total",
                "Connections answered 503 because --max-connections were open.",
                &self.connections_refused,
            ),
            (
                "streams_refused_total",
                "HTTP/2 streams answered 503 because --max-connections were taken by connections and streams.",
                &self.streams_refused,
            ),
            ("otlp_spans_exported_total", "Spans the OTLP collector accepted.", &self.otlp_spans_exported),
            ("otlp_spans_dropped_total", "Spans dropped: OTLP queue full or export failed.", &self.otlp_spans_dropped),
            ("otlp_export_retries_total", "OTLP export requests retried.", &self.otlp_export_retries),
        ] {
            let _ = writeln!(o, "# HELP xray_sidecar_{name} {help}\n# TYPE xray_sidecar_{name} counter");
            let _ = writeln!(o, "xray_sidecar_{name} {}", v.load(Relaxed));
        }
        let limit = self.connection_limit.get();
        for (name, help, v) in [
            (
                "idle_connections",
                "HTTP/1.1 client connections open but idle, their buffers handed back.",
                Some(self.idle_connections.load(Relaxed)),
            ),
            (
                "idle_upstream_connections",
                "HTTP/1.1 upstream connections kept open but idle, their buffers handed back.",
                Some(self.idle_upstream_connections.load(Relaxed)),
            ),
            (
                "connection_limit",
                "Connections (and HTTP/2 streams) served at once at most: --max-connections.",
                limit.map(|l| l.max() as u64),
            ),
            (
                "connections_in_use",
                "Slots of --max-connections taken: client connections, and HTTP/2 streams beside others.",
                limit.map(|l| l.in_use() as u64),
            ),
        ] {
            if let Some(v) = v {
                let _ = writeln!(o, "# HELP xray_sidecar_{name} {help}\n# TYPE xray_sidecar_{name} gauge");
                let _ = writeln!(o, "xray_sidecar_{name} {v}");
            }
        }
        o.push_str("# HELP xray_sidecar_segment_send_fallbacks_total Batched sending the kernel refused, by what it fell back to.\n");
        o.push_str("# TYPE xray_sidecar_segment_send_fallbacks_total counter\n");
        for (to, n) in [("sendmmsg", &self.delivery.gso_fallbacks), ("send", &self.delivery.sendmmsg_fallbacks)] {
            let _ = writeln!(o, "xray_sidecar_segment_send_fallbacks_total{{to=\"{to}\"}} {}", n.load(Relaxed));
        }
        o.push_str("# HELP xray_sidecar_sampling_decisions_total Sampling decisions, by source and outcome.\n");
        o.push_str("# TYPE xray_sidecar_sampling_decisions_total counter\n");
        for (source, row) in ["caller", "local", "centralized", "health_check"].iter().zip(&self.sampling) {
            for (sampled, n) in ["true", "false"].iter().zip(row) {
                let _ = writeln!(
                    o,
                    "xray_sidecar_sampling_decisions_total{{source=\"{source}\",sampled=\"{sampled}\"}} {}",
                    n.load(Relaxed)
                );
            }
        }
        o.push_str("# HELP xray_sidecar_upstream_errors_total Failures reaching or reading the upstream, by kind.\n");
        o.push_str("# TYPE xray_sidecar_upstream_errors_total counter\n");
        for (kind, n) in ["connect", "timeout", "broken"].iter().zip(&self.upstream_errors) {
            let _ = writeln!(o, "xray_sidecar_upstream_errors_total{{kind=\"{kind}\"}} {}", n.load(Relaxed));
        }
        crate::process::render(&mut o);
        if let Some(c) = self.centralized.get() {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            c.render(&mut o, now.as_secs());
        }
        o
    }
}
