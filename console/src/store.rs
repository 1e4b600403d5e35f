//! The bounded in-memory trace store: documents grouped by trace id, oldest traces evicted first.

use super::datagram::Received;
use super::document::Document;
use std::collections::{HashMap, VecDeque};

/// How much the store may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Traces kept; the oldest (first received) is evicted beyond this.
    pub max_traces: usize,
    /// Approximate bytes of documents kept; the oldest traces are evicted beyond this.
    pub max_bytes: usize,
    /// Documents kept per trace; further new documents for a full trace are refused.
    pub max_documents_per_trace: usize,
}

/// One stored document.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The JSON text as received.
    pub text: String,
    /// The parsed view.
    pub document: Document,
}

/// The documents of one trace, in arrival order.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The trace id.
    pub id: String,
    /// Its documents (segments and independent subsegments); a re-sent id replaces the earlier one.
    pub documents: Vec<Stored>,
}

impl Trace {
    /// The earliest start among its documents.
    pub fn start(&self) -> f64 {
        self.documents.iter().map(|d| d.document.start).fold(f64::INFINITY, f64::min)
    }

    /// The latest end (or start, while in progress) among its documents and their subsegments.
    pub fn end(&self) -> f64 {
        self.documents.iter().map(|d| d.document.latest_end()).fold(f64::NEG_INFINITY, f64::max)
    }
}

/// What `insert` did with a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A new document (and maybe a new trace).
    Added,
    /// Replaced the document with the same id (e.g. in progress, then complete).
    Replaced,
    /// Kept the complete document with the same id: this one is in progress, an earlier state
    /// that arrived late (datagrams may be reordered).
    Stale,
    /// Refused: the trace already holds its maximum of documents.
    TraceFull,
}

/// Counters of the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Traces held now.
    pub traces: usize,
    /// Documents held now.
    pub documents: usize,
    /// Approximate bytes held now.
    pub bytes: usize,
    /// Traces evicted since start.
    pub evicted_traces: u64,
    /// Documents refused because their trace was full.
    pub refused_documents: u64,
}

/// The trace store.
#[derive(Debug)]
pub struct Store {
    limits: Limits,
    traces: HashMap<String, Trace>,
    order: VecDeque<String>,
    stats: StoreStats,
}

/// Approximate memory a document costs: its text, the parsed view (which keeps every field) and
/// bookkeeping.
fn cost(text: &str) -> usize {
    text.len() * 3 + 256
}

impl Store {
    /// An empty store with these limits.
    pub fn new(limits: Limits) -> Self {
        Self { limits, traces: HashMap::new(), order: VecDeque::new(), stats: StoreStats::default() }
    }

    /// Adds a document to its trace, then evicts the oldest traces beyond the limits.
    pub fn insert(&mut self, received: Received) -> Inserted {
        let trace_id = received.document.trace_id.clone();
        let new_cost = cost(&received.text);
        let trace = match self.traces.get_mut(&trace_id) {
            Some(trace) => trace,
            None => {
                self.order.push_back(trace_id.clone());
                self.stats.traces += 1;
                let trace = Trace { id: trace_id.clone(), documents: Vec::new() };
                self.traces.entry(trace_id.clone()).or_insert(trace)
            }
        };
        let stored = Stored { text: received.text, document: received.document };
        let full = trace.documents.len() >= self.limits.max_documents_per_trace;
        let existing = trace.documents.iter_mut().find(|d| d.document.id == stored.document.id);
        let outcome = match existing {
            Some(old) if old.document.end.is_some() && stored.document.end.is_none() => return Inserted::Stale,
            Some(old) => {
                self.stats.bytes = self.stats.bytes - cost(&old.text) + new_cost;
                *old = stored;
                Inserted::Replaced
            }
            None if full => {
                self.stats.refused_documents += 1;
                return Inserted::TraceFull;
            }
            None => {
                self.stats.bytes += new_cost;
                self.stats.documents += 1;
                trace.documents.push(stored);
                Inserted::Added
            }
        };
        self.evict(&trace_id);
        outcome
    }

    /// Evicts the oldest traces until within limits, never the one just written.
    fn evict(&mut self, keep: &str) {
        while self.traces.len() > self.limits.max_traces.max(1)
            || (self.stats.bytes > self.limits.max_bytes && self.traces.len() > 1)
        {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if oldest == keep {
                self.order.push_back(oldest);
                continue;
            }
            if let Some(trace) = self.traces.remove(&oldest) {
                let bytes: usize = trace.documents.iter().map(|d| cost(&d.text)).sum();
                self.stats.bytes -= bytes;
                self.stats.documents -= trace.documents.len();
                self.stats.traces -= 1;
                self.stats.evicted_traces += 1;
            }
        }
    }

    /// The trace with this id.
    pub fn get(&self, trace_id: &str) -> Option<&Trace> {
        self.traces.get(trace_id)
    }

    /// Every trace, in no particular order.
    pub fn traces(&self) -> impl Iterator<Item = &Trace> {
        self.traces.values()
    }

    /// The store's counters.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// The limits it keeps to.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagram;

    /// A short name's bytes in hex.
    fn hex(name: &str) -> String {
        name.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// A trace id made of a short name, so that the tests read as names.
    fn tid(name: &str) -> String {
        format!("1-5759e988-{:0>24}", hex(name))
    }

    /// A document id made of a short name.
    fn id(name: &str) -> String {
        format!("{:0>16}", hex(name))
    }

    /// A complete segment of `trace` named `name`, unless `extra` says otherwise.
    fn received(trace: &str, name: &str, extra: &str) -> Received {
        let (trace, id) = (tid(trace), id(name));
        let extra = if extra.is_empty() { ",\"end_time\":1.5" } else { extra };
        let text = format!(
            "{{\"format\":\"json\",\"version\":1}}\n{{\"name\":\"svc\",\"id\":\"{id}\",\"trace_id\":\"{trace}\",\"start_time\":1.0{extra}}}"
        );
        datagram::parse(text.as_bytes()).expect("valid test datagram")
    }

    fn limits(max_traces: usize) -> Limits {
        Limits { max_traces, max_bytes: usize::MAX, max_documents_per_trace: 3 }
    }

    #[test]
    fn groups_by_trace_and_replaces_resent_ids() {
        let mut store = Store::new(limits(10));
        assert_eq!(store.insert(received("t1", "a", ",\"in_progress\":true")), Inserted::Added);
        assert_eq!(store.insert(received("t1", "b", "")), Inserted::Added);
        assert_eq!(store.insert(received("t1", "a", ",\"end_time\":2.0")), Inserted::Replaced);
        let trace = store.get(&tid("t1")).expect("stored");
        assert_eq!(trace.documents.len(), 2);
        assert_eq!(trace.documents[0].document.end, Some(2.0));
        assert_eq!(trace.end(), 2.0);
        assert_eq!(store.stats().documents, 2);
    }

    #[test]
    fn a_late_in_progress_document_never_replaces_the_complete_one() {
        let mut store = Store::new(limits(10));
        assert_eq!(store.insert(received("t1", "a", ",\"end_time\":2.0,\"fault\":true")), Inserted::Added);
        assert_eq!(store.insert(received("t1", "a", ",\"in_progress\":true")), Inserted::Stale);
        let trace = store.get(&tid("t1")).expect("stored");
        assert_eq!(trace.documents[0].document.end, Some(2.0));
        assert_eq!(store.stats().documents, 1);
    }

    #[test]
    fn evicts_the_oldest_trace_first() {
        let mut store = Store::new(limits(2));
        store.insert(received("t1", "a", ""));
        store.insert(received("t2", "a", ""));
        store.insert(received("t1", "b", ""));
        store.insert(received("t3", "a", ""));
        assert!(store.get(&tid("t1")).is_none(), "t1 arrived first, so it goes first");
        assert!(store.get(&tid("t2")).is_some() && store.get(&tid("t3")).is_some());
        let stats = store.stats();
        assert_eq!((stats.traces, stats.documents, stats.evicted_traces), (2, 2, 1));
    }

    #[test]
    fn byte_budget_and_per_trace_cap_bound_memory() {
        let mut store = Store::new(Limits { max_traces: 1000, max_bytes: 2000, max_documents_per_trace: 3 });
        for i in 0..100 {
            store.insert(received(&format!("t{i}"), "a", ""));
        }
        assert!(store.stats().bytes <= 2000, "{:?}", store.stats());
        assert!(store.get(&tid("t99")).is_some());
        for i in 0..5 {
            store.insert(received("t99", &format!("x{i}"), ""));
        }
        assert_eq!(store.get(&tid("t99")).map(|t| t.documents.len()), Some(3));
        assert_eq!(store.stats().refused_documents, 3);
    }
}
