//! The task that keeps the centralized rules current: `GetSamplingRules` (every page) at start-up
//! and every 5 minutes, `SamplingTargets` every 10 s or the interval the service asks for.
//!
//! It runs beside the proxy and never on a request's path: a sampling API that is down, slow or
//! answers garbage is a counter and a debug log, and the rules fetched last go on deciding meanwhile
//! (the local rules before the first, and once those are an hour old).

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use xray_lifecycle::Stopped;

use super::Centralized;
use super::wire::{RawRule, RulesRequest, RulesResponse, TargetsRequest, TargetsResponse};
use crate::xray::daemon::HostPort;

/// How often rules are fetched when nothing says they changed.
pub const RULES_INTERVAL: Duration = Duration::from_secs(300);
/// How often statistics are reported unless the service asks otherwise.
pub const TARGETS_INTERVAL: Duration = Duration::from_secs(10);
/// Longest wait for one call, answer included.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read; a bigger one is refused as garbage.
const MAX_ANSWER: usize = 4 << 20;
/// The service takes at most this many statistics documents per call.
const DOCUMENTS_PER_CALL: usize = 25;
/// Pages of rules read at most, against a service that keeps handing out the same token.
const MAX_PAGES: usize = 100;

/// Why a call to the sampling API gave nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The daemon's address did not resolve.
    #[error("cannot resolve the daemon address: {0}")]
    Resolve(#[source] std::io::Error),
    /// The request could not be made or its answer read.
    #[error("request failed: {0}")]
    Http(#[source] crate::BoxError),
    /// Not a 2xx answer.
    #[error("answered {0}")]
    Status(StatusCode),
    /// The answer is not the JSON expected.
    #[error("unreadable answer: {0}")]
    Json(#[from] serde_json::Error),
    /// No complete answer in time.
    #[error("no answer within {CALL_TIMEOUT:?}")]
    Timeout,
}

/// Polls the sampling API at `addr` (the daemon's TCP side) for `engine` until `stop`.
pub fn spawn(engine: Arc<Centralized>, addr: HostPort, stop: Stopped) -> JoinHandle<()> {
    let client = Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(Poller { engine, addr, client, failing: AtomicBool::new(false) }.run(stop))
}

struct Poller {
    engine: Arc<Centralized>,
    addr: HostPort,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Whether the last call failed: the first failure of a run is a warning, the rest debug lines.
    failing: AtomicBool,
}

impl Poller {
    /// Polls until `stop`, which also drops a call in flight: a sampling API that does not answer
    /// must not hold up the proxy's shutdown for the call's timeout.
    async fn run(self, mut stop: Stopped) {
        tokio::select! {
            () = self.poll() => {}
            _ = stop.wait() => {}
        }
    }

    async fn poll(&self) {
        let mut next_rules = Instant::now();
        let mut next_targets = Instant::now() + TARGETS_INTERVAL;
        loop {
            let now = Instant::now();
            if now >= next_rules {
                next_rules =
                    now + self.refresh_rules().await.map_or(TARGETS_INTERVAL, |()| RULES_INTERVAL + jitter(5000));
            }
            if now >= next_targets {
                let (interval, changed) = self.report().await;
                next_targets = now + interval + jitter(100);
                if changed {
                    tracing::debug!("sampling rules changed on the service; fetching them again");
                    next_rules = Instant::now();
                }
            }
            tokio::time::sleep_until(next_rules.min(next_targets)).await;
        }
    }

    /// Fetches every page of rules and puts them in force.
    async fn refresh_rules(&self) -> Result<(), ()> {
        let mut all: Vec<RawRule> = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let body = serde_json::to_vec(&RulesRequest { next_token: token.as_deref() }).unwrap_or_default();
            let page: RulesResponse = match self.call("/GetSamplingRules", body).await {
                Ok(p) => p,
                Err(e) => {
                    self.engine.poll_failures[0].fetch_add(1, Relaxed);
                    self.failed("GetSamplingRules", &e);
                    return Err(());
                }
            };
            all.extend(page.sampling_rule_records.into_iter().filter_map(|r| r.sampling_rule));
            token = page.next_token.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        let applied = self.engine.install(&all, now_secs());
        self.answered();
        tracing::debug!(fetched = all.len(), applied, "sampling rules in force");
        Ok(())
    }

    /// Reports statistics and applies the targets; returns when to report next and whether the
    /// rules changed on the service.
    async fn report(&self) -> (Duration, bool) {
        let docs = self.engine.statistics(now_secs() as f64);
        let (mut interval, mut changed) = (None::<u64>, false);
        for chunk in docs.chunks(DOCUMENTS_PER_CALL) {
            let req = TargetsRequest { documents: chunk.to_vec() };
            let body = serde_json::to_vec(&req).unwrap_or_default();
            match self.call::<TargetsResponse>("/SamplingTargets", body).await {
                Ok(res) => {
                    self.answered();
                    changed |= self.engine.apply_targets(&res);
                    let asked = res.sampling_target_documents.iter().filter_map(|t| t.interval).min();
                    if let Some(s) = asked.and_then(|s| u64::try_from(s).ok()) {
                        interval = Some(interval.map_or(s, |i| i.min(s)));
                    }
                    if !res.unprocessed_statistics.is_empty() {
                        tracing::debug!(unprocessed = ?res.unprocessed_statistics, "sampling statistics refused");
                    }
                }
                Err(e) => {
                    self.engine.poll_failures[1].fetch_add(1, Relaxed);
                    self.engine.restore(chunk);
                    self.failed("SamplingTargets", &e);
                }
            }
        }
        let interval = interval.map_or(TARGETS_INTERVAL, |s| Duration::from_secs(s.clamp(1, 300)));
        (interval, changed)
    }

    /// A call to the sampling API failed: the rules fetched last go on deciding until they are an
    /// hour old, without the quotas that lapse meanwhile.
    fn failed(&self, call: &str, e: &PollError) {
        if self.failing.swap(true, Relaxed) {
            tracing::debug!(daemon = %self.addr, error = %e, "{call} failed");
        } else {
            tracing::warn!(
                daemon = %self.addr, error = %e,
                "{call} failed: the sampling API does not answer; the rules fetched last decide until they are an hour old (the local rules if none were)"
            );
        }
    }

    /// A call to the sampling API answered.
    fn answered(&self) {
        if self.failing.swap(false, Relaxed) {
            tracing::info!(daemon = %self.addr, "the sampling API answers again");
        }
    }

    async fn call<T: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> Result<T, PollError> {
        let exchange = async {
            let addr = self.addr.resolve().await.map_err(PollError::Resolve)?;
            let req = Request::post(format!("http://{addr}{path}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| PollError::Http(e.into()))?;
            let res = self.client.request(req).await.map_err(|e| PollError::Http(e.into()))?;
            if !res.status().is_success() {
                return Err(PollError::Status(res.status()));
            }
            let bytes = Limited::new(res.into_body(), MAX_ANSWER).collect().await.map_err(PollError::Http)?.to_bytes();
            Ok(serde_json::from_slice(&bytes)?)
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange).await.unwrap_or(Err(PollError::Timeout))
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Spreads a fleet's calls so that pods started together do not poll together.
fn jitter(max_millis: u64) -> Duration {
    Duration::from_millis(rand::random_range(0..max_millis))
}
