//! What the receiver and the web server share: the trace store, the sampling rules and the counters.

use super::sampling_rules::Rules;
use super::sampling_targets::Targets;
use super::store::{Limits, Store};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The shared state of one console.
#[derive(Debug)]
pub struct State {
    store: Mutex<Store>,
    /// Datagrams received on the UDP port.
    pub received: AtomicU64,
    /// Datagrams that held a document the store took.
    pub accepted: AtomicU64,
    /// Datagrams dropped as malformed.
    pub malformed: AtomicU64,
    /// Datagrams relayed to the forward address.
    pub forwarded: AtomicU64,
    /// Datagrams the forward address could not be sent.
    pub forward_errors: AtomicU64,
    last_malformed: Mutex<Option<String>>,
    sampling: Mutex<Sampling>,
    /// Segment documents taken through `PutTraceSegments`.
    pub put_segments: AtomicU64,
    /// Records taken through `PutTelemetryRecords`.
    pub telemetry_records: AtomicU64,
}

/// The sampling rules and the clients' statistics, changed together under one lock.
#[derive(Debug)]
pub struct Sampling {
    /// The rules.
    pub rules: Rules,
    /// The clients' demands and the rules' statistics.
    pub targets: Targets,
}

/// The console's counters, as `/api/stats` shows them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Stats {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams whose document was stored.
    pub accepted: u64,
    /// Datagrams dropped as malformed.
    pub malformed: u64,
    /// Why the last malformed datagram was dropped.
    pub last_malformed_reason: Option<String>,
    /// Datagrams relayed to the real daemon.
    pub forwarded: u64,
    /// Datagrams that could not be relayed.
    pub forward_errors: u64,
    /// Traces held.
    pub traces: usize,
    /// Documents held.
    pub documents: usize,
    /// Approximate bytes held.
    pub bytes: usize,
    /// Traces evicted to stay within the limits.
    pub evicted_traces: u64,
    /// Documents refused because their trace was full.
    pub refused_documents: u64,
    /// The `--max-traces` limit.
    pub max_traces: usize,
    /// Segment documents taken through the `PutTraceSegments` API.
    pub put_segments: u64,
    /// Telemetry records taken through the `PutTelemetryRecords` API.
    pub telemetry_records: u64,
}

impl State {
    /// Fresh state with an empty store and only the `Default` sampling rule.
    pub fn new(limits: Limits) -> Self {
        Self {
            store: Mutex::new(Store::new(limits)),
            received: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            forward_errors: AtomicU64::new(0),
            last_malformed: Mutex::new(None),
            sampling: Mutex::new(Sampling { rules: Rules::new(super::clock::now()), targets: Targets::default() }),
            put_segments: AtomicU64::new(0),
            telemetry_records: AtomicU64::new(0),
        }
    }

    /// The store, locked; a panic elsewhere while holding it leaves consistent data, so poison is ignored.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The sampling rules and statistics, locked (poison ignored as for the store).
    pub fn sampling(&self) -> MutexGuard<'_, Sampling> {
        self.sampling.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a malformed datagram and remembers why.
    pub fn count_malformed(&self, reason: String) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
        *self.last_malformed.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let (store, max_traces) = {
            let store = self.store();
            (store.stats(), store.limits().max_traces)
        };
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            received: load(&self.received),
            accepted: load(&self.accepted),
            malformed: load(&self.malformed),
            last_malformed_reason: self.last_malformed.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            forwarded: load(&self.forwarded),
            forward_errors: load(&self.forward_errors),
            traces: store.traces,
            documents: store.documents,
            bytes: store.bytes,
            evicted_traces: store.evicted_traces,
            refused_documents: store.refused_documents,
            max_traces,
            put_segments: load(&self.put_segments),
            telemetry_records: load(&self.telemetry_records),
        }
    }
}
