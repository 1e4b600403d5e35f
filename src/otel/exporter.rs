//! The OTLP exporter: a bounded queue in front of one task that sends spans to a collector over
//! HTTP/protobuf (`POST /v1/traces`) in batches, as OpenTelemetry's batch span processor does.
//!
//! Requests push a finished [`Segment`] under an uncontended lock and move on; a full queue drops
//! and counts. The task wakes when a batch is full or the schedule delay has passed, turns the
//! segments into spans there, and retries 429/502/503/504 and connection failures with back-off
//! within the export timeout; beyond it the batch is dropped and counted. Nothing here can slow or
//! fail a request.

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use xray_lifecycle::Flush;

use super::settings::{Compression, OtlpSettings};
use super::span::span_count;
use super::wire::{self, Envelope, Scratch};
use crate::metrics::Metrics;
use crate::xray::segment::Finished;

/// First wait before a retry; doubled each time up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Retries per batch, within the export timeout.
const MAX_RETRIES: u32 = 5;
/// Collector answers are small; a larger one is not read.
const MAX_RESPONSE: usize = 64 * 1024;

/// The request path's handle: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct OtlpExporter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Notify,
    metrics: Arc<Metrics>,
    max_queue: usize,
    max_batch: usize,
}

#[derive(Debug, Default)]
struct Queue {
    segments: Vec<Finished>,
    spans: usize,
}

impl OtlpExporter {
    /// Starts the exporter task.
    pub fn spawn(settings: OtlpSettings, metrics: Arc<Metrics>) -> (OtlpExporter, Flush) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            metrics,
            max_queue: settings.batching.max_queue,
            max_batch: settings.batching.max_batch,
        });
        let (close, closed) = watch::channel(false);
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(2)));
        http.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(http);
        let envelope = Envelope::new(
            Resource { attributes: settings.resource.clone(), ..Resource::default() },
            InstrumentationScope {
                name: "xray-sidecar".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..InstrumentationScope::default()
            },
        );
        let sender = Sender { settings, shared: shared.clone(), client, envelope, scratch: Scratch::default() };
        let task = tokio::spawn(sender.run(closed));
        (OtlpExporter { shared }, Flush::new(close, task, "spans still queued for OTLP at shutdown were dropped"))
    }

    /// Queues a segment's spans; drops and counts them when the queue is full.
    pub fn emit(&self, segment: Finished) {
        let n = span_count(&segment);
        let full_batch = {
            let Ok(mut q) = self.shared.queue.lock() else { return };
            if q.spans + n > self.shared.max_queue {
                drop(q);
                self.shared.metrics.otlp_spans_dropped.fetch_add(n as u64, Relaxed);
                return;
            }
            q.segments.push(segment);
            q.spans += n;
            q.spans >= self.shared.max_batch && q.spans - n < self.shared.max_batch
        };
        if full_batch {
            self.shared.wake.notify_one();
        }
    }
}

/// `data` gzip-compressed at the fastest level: spans are repetitive enough that it already saves
/// most of the bytes, and the sidecar's CPU is the application's. Writing into memory cannot fail.
fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::fast());
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

struct Sender {
    settings: OtlpSettings,
    shared: Arc<Shared>,
    client: Client<HttpConnector, Full<Bytes>>,
    /// The resource and scope, encoded once.
    envelope: Envelope,
    /// Buffers each export's encoding reuses.
    scratch: Scratch,
}

/// How one export request ended.
enum Outcome {
    Accepted { rejected: u64 },
    Retry { after: Option<Duration>, why: String },
    Refused(String),
}

impl Sender {
    async fn run(mut self, mut closed: watch::Receiver<bool>) {
        loop {
            let closing = tokio::select! {
                _ = tokio::time::sleep(self.settings.batching.delay) => false,
                _ = self.shared.wake.notified() => false,
                _ = closed.changed() => true,
            };
            let closing = closing || *closed.borrow();
            // Send what is queued now, a batch at a time. What arrives meanwhile waits for the
            // next round, so that it gathers into a batch rather than leaving a few spans at a
            // time; at shutdown everything goes.
            let mut pending = self.queued_spans();
            while pending > 0 || closing {
                let Some((batch, spans)) = self.take_batch() else { break };
                pending = pending.saturating_sub(spans);
                self.export(batch).await;
            }
            if closing {
                break;
            }
        }
    }

    fn queued_spans(&self) -> usize {
        self.shared.queue.lock().map_or(0, |q| q.spans)
    }

    /// Up to a batch of queued segments, and how many spans they make.
    fn take_batch(&self) -> Option<(Vec<Finished>, usize)> {
        let mut q = self.shared.queue.lock().ok()?;
        if q.segments.is_empty() {
            return None;
        }
        let (mut spans, mut end) = (0, 0);
        while end < q.segments.len() && (end == 0 || spans + span_count(&q.segments[end]) <= self.shared.max_batch) {
            spans += span_count(&q.segments[end]);
            end += 1;
        }
        q.spans -= spans;
        Some((q.segments.drain(..end).collect(), spans))
    }

    async fn export(&mut self, batch: Vec<Finished>) {
        let mut encoded = Vec::new();
        let count = wire::request(&self.envelope, &batch, &mut encoded, &mut self.scratch) as u64;
        drop(batch);
        let body = match self.settings.compression {
            Compression::None => Bytes::from(encoded),
            Compression::Gzip => Bytes::from(gzip(&encoded)),
        };
        let metrics = &self.shared.metrics;
        let deadline = Instant::now() + self.settings.batching.timeout;
        let mut backoff = FIRST_BACKOFF;
        for attempt in 0.. {
            let why = match tokio::time::timeout_at(deadline, self.send(body.clone())).await {
                Ok(Outcome::Accepted { rejected }) => {
                    metrics.otlp_spans_exported.fetch_add(count.saturating_sub(rejected), Relaxed);
                    if rejected > 0 {
                        metrics.otlp_spans_dropped.fetch_add(rejected, Relaxed);
                        tracing::warn!(rejected, "the OTLP collector rejected part of a batch");
                    }
                    return;
                }
                Ok(Outcome::Refused(why)) => {
                    metrics.otlp_spans_dropped.fetch_add(count, Relaxed);
                    tracing::warn!(endpoint = %self.settings.endpoint, spans = count, %why, "OTLP export refused; batch dropped");
                    return;
                }
                Ok(Outcome::Retry { after, why }) => {
                    backoff = after.map_or(backoff, |a| a.max(backoff));
                    why
                }
                Err(_) => "export timed out".to_owned(),
            };
            if attempt >= MAX_RETRIES || Instant::now() + backoff >= deadline {
                metrics.otlp_spans_dropped.fetch_add(count, Relaxed);
                tracing::warn!(endpoint = %self.settings.endpoint, spans = count, attempts = attempt + 1, %why, "OTLP export failed; batch dropped");
                return;
            }
            tracing::debug!(%why, ?backoff, "OTLP export will be retried");
            metrics.otlp_export_retries.fetch_add(1, Relaxed);
            // Spread retries so that many sidecars do not return to a recovering collector at once.
            let jitter = backoff.mul_f64(rand::random::<f64>() * 0.2);
            tokio::time::sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn send(&self, body: Bytes) -> Outcome {
        let mut req = Request::post(self.settings.endpoint.clone())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(header::USER_AGENT, concat!("xray-sidecar/", env!("CARGO_PKG_VERSION")));
        if self.settings.compression == Compression::Gzip {
            req = req.header(header::CONTENT_ENCODING, "gzip");
        }
        for (k, v) in &self.settings.headers {
            req = req.header(k, v);
        }
        let Ok(req) = req.body(Full::new(body)) else {
            return Outcome::Refused("the request could not be built".into());
        };
        let res = match self.client.request(req).await {
            Ok(res) => res,
            Err(e) => return Outcome::Retry { after: None, why: format!("cannot reach the collector: {e}") },
        };
        let status = res.status();
        let after =
            res.headers().get(header::RETRY_AFTER).and_then(|v| retry_after(v.to_str().ok()?, SystemTime::now()));
        let body = Limited::new(res.into_body(), MAX_RESPONSE).collect().await.map(|b| b.to_bytes());
        match status {
            s if s.is_success() => {
                let rejected = body
                    .ok()
                    .and_then(|b| ExportTraceServiceResponse::decode(b).ok())
                    .and_then(|r| r.partial_success)
                    .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0));
                Outcome::Accepted { rejected }
            }
            StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => Outcome::Retry { after, why: format!("collector answered {status}") },
            s => Outcome::Refused(format!("collector answered {s}")),
        }
    }
}

/// The longest wait a `Retry-After` is taken at; longer ones are past any export's timeout, so the
/// batch is dropped rather than held.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How long a `Retry-After` value asks to wait from `now`: a number of seconds or an HTTP date
/// (RFC 9110 §10.2.3), a date already past being no wait at all.
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value).ok()?.duration_since(now).unwrap_or_default(),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now = httpdate::parse_http_date("Sun, 06 Dec 2026 04:00:00 GMT").expect("date");
        assert_eq!(retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("Sun, 06 Dec 2026 04:00:03 GMT", now), Some(Duration::from_secs(3)));
        // The obsolete forms a recipient must read too.
        assert_eq!(retry_after("Sunday, 06-Dec-26 04:00:05 GMT", now), Some(Duration::from_secs(5)));
        assert_eq!(retry_after("Sun Dec  6 04:00:04 2026", now), Some(Duration::from_secs(4)));
        assert_eq!(retry_after("Sat, 05 Dec 2026 04:00:00 GMT", now), Some(Duration::ZERO), "already past");
        assert_eq!(retry_after("Thu, 31 Dec 2099 23:59:59 GMT", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("3600", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-1", now), None);
    }
}
