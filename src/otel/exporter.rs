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
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::settings::OtlpSettings;
use super::span::{push_spans, span_count};
use crate::metrics::Metrics;
use crate::xray::segment::Segment;

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
    segments: Vec<Segment>,
    spans: usize,
}

/// Ends the exporter task after what is queued has been sent.
#[derive(Debug)]
pub struct OtlpFlush {
    close: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl OtlpExporter {
    /// Starts the exporter task.
    pub fn spawn(settings: OtlpSettings, metrics: Arc<Metrics>) -> (OtlpExporter, OtlpFlush) {
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
        let task = tokio::spawn(Sender { settings, shared: shared.clone(), client }.run(closed));
        (OtlpExporter { shared }, OtlpFlush { close, task })
    }

    /// Queues a segment's spans; drops and counts them when the queue is full.
    pub fn emit(&self, segment: Segment) {
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

impl OtlpFlush {
    /// Sends what is queued, then stops; gives up after `grace`.
    pub async fn flush(mut self, grace: Duration) {
        let _ = self.close.send(true);
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            self.task.abort();
            tracing::warn!(?grace, "spans still queued for OTLP at shutdown were dropped");
        }
    }
}

struct Sender {
    settings: OtlpSettings,
    shared: Arc<Shared>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// How one export request ended.
enum Outcome {
    Accepted { rejected: u64 },
    Retry { after: Option<Duration>, why: String },
    Refused(String),
}

impl Sender {
    async fn run(self, mut closed: watch::Receiver<bool>) {
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
    fn take_batch(&self) -> Option<(Vec<Segment>, usize)> {
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

    async fn export(&self, batch: Vec<Segment>) {
        let mut spans = Vec::with_capacity(batch.len());
        for seg in &batch {
            push_spans(seg, &mut spans);
        }
        drop(batch);
        let count = spans.len() as u64;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: self.settings.resource.clone(), ..Resource::default() }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "xray-sidecar".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..InstrumentationScope::default()
                    }),
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        let body = Bytes::from(request.encode_to_vec());
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
        let after = res
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse().ok())
            .map(|secs: u64| Duration::from_secs(secs.min(30)));
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
