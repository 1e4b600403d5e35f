//! The service map, drawn from segments the way X-Ray draws it, in the shape of `GetServiceGraph`.

use super::document::{Document, Kind};
use super::stats::{Accumulator, HistogramEntry, Rates, SummaryStatistics};
use super::store::Trace;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Rates are never computed over less than this, so a handful of requests does not read as a flood.
const MIN_RATE_SPAN_SECONDS: f64 = 10.0;

/// The time range a graph covers, epoch seconds; documents starting in it are counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Inclusive start.
    pub start: f64,
    /// Inclusive end.
    pub end: f64,
}

impl Window {
    /// Whether `t` (epoch seconds) falls in the window, both ends included.
    pub fn contains(self, t: f64) -> bool {
        t >= self.start && t <= self.end
    }
}

/// `GetServiceGraph`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceGraph {
    /// The window's start.
    pub start_time: f64,
    /// The window's end.
    pub end_time: f64,
    /// The nodes, each with its outgoing edges.
    pub services: Vec<Service>,
    /// Always false: there are no groups here.
    pub contains_old_group_versions: bool,
}

/// A node of the map.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Service {
    /// The node's number, which edges refer to.
    pub reference_id: usize,
    /// The service name (`client` for the client node).
    pub name: String,
    /// Every name of the service.
    pub names: Vec<String>,
    /// `client`, the segment's `origin` (or `service`), `remote`, or `AWS::<name>` for inferred nodes.
    #[serde(rename = "Type")]
    pub kind: String,
    /// True when clients call it directly.
    pub root: bool,
    /// `active`, as X-Ray says for nodes with traffic.
    pub state: &'static str,
    /// True for a node inferred from a caller's subsegment (the downstream sent no segment).
    pub inferred: bool,
    /// Earliest start of its requests.
    pub start_time: f64,
    /// Latest end of its requests.
    pub end_time: f64,
    /// Its calls to other nodes.
    pub edges: Vec<Edge>,
    /// Its requests (absent for the client node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary_statistics: Option<SummaryStatistics>,
    /// Its response times.
    pub response_time_histogram: Vec<HistogramEntry>,
    /// Its durations (the same as its response times here).
    pub duration_histogram: Vec<HistogramEntry>,
    /// Rates, averages and shares (absent for the client node).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub rates: Option<Rates>,
}

/// An edge from a caller to a callee.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Edge {
    /// The callee's `ReferenceId`.
    pub reference_id: usize,
    /// Earliest start of the calls.
    pub start_time: f64,
    /// Latest end of the calls.
    pub end_time: f64,
    /// The calls as the caller saw them.
    pub summary_statistics: SummaryStatistics,
    /// Their response times.
    pub response_time_histogram: Vec<HistogramEntry>,
    /// Other names of the callee (none here).
    pub aliases: Vec<String>,
    /// Rates, averages and shares.
    #[serde(flatten)]
    pub rates: Rates,
}

/// Identifies a node; the order puts the client first, then services, then inferred nodes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeKey {
    rank: u8,
    /// The node's name (`client` for the client).
    pub name: String,
    /// Its type: `client`, the segment's `origin` (or `service`), `remote` or `AWS::<name>`.
    pub kind: String,
}

impl NodeKey {
    fn client() -> Self {
        Self { rank: 0, name: "client".into(), kind: "client".into() }
    }

    fn service(segment: &Document) -> Self {
        let kind = segment.origin.clone().unwrap_or_else(|| "service".into());
        Self { rank: 1, name: segment.name.clone(), kind }
    }

    fn inferred(call: &Document) -> Self {
        Self { rank: 2, name: call.name.clone(), kind: call.downstream_type() }
    }
}

/// Requests through a node or edge, with their time range.
#[derive(Debug, Default)]
struct Tally {
    stats: Accumulator,
    start: f64,
    end: f64,
    root: bool,
}

impl Tally {
    fn count(&mut self, doc: &Document) {
        if self.stats.total() == 0 || doc.start < self.start {
            self.start = doc.start;
        }
        self.end = self.end.max(doc.end.unwrap_or(doc.start));
        if let Some(rt) = doc.duration() {
            self.stats.add(doc.outcome, rt);
        }
    }
}

#[derive(Default)]
struct Builder {
    nodes: BTreeMap<NodeKey, Tally>,
    edges: BTreeMap<(NodeKey, NodeKey), Tally>,
    first: f64,
    last: f64,
}

/// Builds the map from the documents of `traces` that start inside `window`.
pub fn build<'a>(traces: impl IntoIterator<Item = &'a Trace>, window: Window) -> ServiceGraph {
    let mut b = Builder { first: f64::INFINITY, last: f64::NEG_INFINITY, ..Builder::default() };
    for trace in traces {
        let all: Vec<&Document> = trace.documents.iter().map(|s| &s.document).collect();
        b.add_trace(&all, window);
    }
    b.finish(window)
}

impl Builder {
    fn add_trace(&mut self, all: &[&Document], window: Window) {
        let in_window = |d: &Document| window.contains(d.start);
        if !all.iter().any(|d| in_window(d)) {
            return;
        }
        for doc in all.iter().filter(|d| in_window(d)) {
            self.first = self.first.min(doc.start);
            self.last = self.last.max(doc.latest_end());
        }
        walk(all, in_window, &mut |place| match place {
            Place::Node(key, doc, root) => {
                let tally = self.nodes.entry(key).or_default();
                tally.count(doc);
                tally.root |= root;
            }
            Place::Edge(from, to, call) => self.edges.entry((from, to)).or_default().count(call),
        });
    }

    fn finish(self, window: Window) -> ServiceGraph {
        let span = if self.first.is_finite() { window.end.min(self.last) - window.start.max(self.first) } else { 0.0 };
        let span = span.max(MIN_RATE_SPAN_SECONDS);
        let ids: HashMap<&NodeKey, usize> = self.nodes.keys().enumerate().map(|(i, k)| (k, i)).collect();
        let mut services: Vec<Service> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, (key, tally))| {
                let is_client = key.rank == 0;
                let histogram = tally.stats.histogram();
                Service {
                    reference_id: i,
                    name: key.name.clone(),
                    names: vec![key.name.clone()],
                    kind: key.kind.clone(),
                    root: tally.root,
                    state: "active",
                    inferred: key.rank == 2,
                    start_time: tally.start,
                    end_time: tally.end,
                    edges: Vec::new(),
                    summary_statistics: (!is_client).then(|| tally.stats.summary()),
                    duration_histogram: histogram.clone(),
                    response_time_histogram: histogram,
                    rates: (!is_client).then(|| tally.stats.rates(span)),
                }
            })
            .collect();
        for ((from, to), tally) in &self.edges {
            let (Some(&from), Some(&to)) = (ids.get(from), ids.get(to)) else {
                continue;
            };
            services[from].edges.push(Edge {
                reference_id: to,
                start_time: tally.start,
                end_time: tally.end,
                summary_statistics: tally.stats.summary(),
                response_time_histogram: tally.stats.histogram(),
                aliases: Vec::new(),
                rates: tally.stats.rates(span),
            });
        }
        ServiceGraph { start_time: window.start, end_time: window.end, services, contains_old_group_versions: false }
    }
}

/// A place on the map one document stands for.
#[derive(Debug)]
pub enum Place<'a> {
    /// A request through a node: a service's segment (true when clients called it directly), the
    /// same segment again for the client node, or the call that stands for an inferred node.
    Node(NodeKey, &'a Document, bool),
    /// A call along an edge: a root segment from the client, or a caller's subsegment.
    Edge(NodeKey, NodeKey, &'a Document),
}

/// Walks one trace's documents the way the map draws them, telling `visit` every request through a
/// node and every call along an edge of the documents `include` keeps (the graph's time window; the
/// trace list's filters keep all). The map and the filter expressions' `service(…)` and `edge(…)`
/// both stand on this.
pub fn walk<'a>(all: &[&'a Document], include: impl Fn(&Document) -> bool, visit: &mut impl FnMut(Place<'a>)) {
    let owners = owners(all);
    let mut by_parent: HashMap<&str, Vec<&Document>> = HashMap::new();
    for seg in all.iter().filter(|d| d.kind == Kind::Segment) {
        if let Some(parent) = seg.parent_id.as_deref() {
            by_parent.entry(parent).or_default().push(seg);
        }
    }
    let mut calls: HashSet<&str> = HashSet::new();
    for doc in all {
        doc.walk(&mut |d| {
            if d.kind == Kind::Subsegment && d.is_remote() {
                calls.insert(d.id.as_str());
            }
        });
    }
    // A call may arrive both nested and streamed on its own (same id): count it once.
    let mut counted: HashSet<&str> = HashSet::new();
    for &doc in all.iter().filter(|d| include(d)) {
        if doc.kind == Kind::Segment {
            let key = NodeKey::service(doc);
            let root = doc.parent_id.is_none();
            visit(Place::Node(key.clone(), doc, root));
            if root {
                // The client node has no statistics of its own; counting gives it its time range.
                visit(Place::Node(NodeKey::client(), doc, false));
                visit(Place::Edge(NodeKey::client(), key, doc));
            } else if let Some(caller) = direct_caller(doc, &calls, &owners).filter(|c| **c != key) {
                visit(Place::Edge(caller.clone(), key, doc));
            }
        }
        doc.walk(&mut |call| {
            if !call.is_remote() || call.kind != Kind::Subsegment || !counted.insert(call.id.as_str()) {
                return;
            }
            // A call whose enclosing segment never arrived cannot be placed on the map yet.
            let Some(owner) = owners.get(call.id.as_str()) else {
                return;
            };
            match by_parent.get(call.id.as_str()) {
                Some(callees) => {
                    for callee in callees {
                        visit(Place::Edge(owner.clone(), NodeKey::service(callee), call));
                    }
                }
                None => {
                    let inferred = NodeKey::inferred(call);
                    visit(Place::Node(inferred.clone(), call, false));
                    visit(Place::Edge(owner.clone(), inferred, call));
                }
            }
        });
    }
}

/// The node of the entry a segment names as its parent when that is no remote call: a segment
/// (a sidecar's, an Envoy's, in front of an instrumented application that continues its trace) or
/// a local subsegment. Such a callee is reached by the caller's node as surely as through a call,
/// and without this edge it would stand alone on the map, with no client in front of it either.
fn direct_caller<'m>(seg: &Document, calls: &HashSet<&str>, owners: &'m HashMap<&str, NodeKey>) -> Option<&'m NodeKey> {
    let parent = seg.parent_id.as_deref()?;
    if calls.contains(parent) {
        return None;
    }
    owners.get(parent)
}

/// Maps every entry id to the node of the segment that holds it, following independent
/// subsegments up through their `parent_id`s.
fn owners<'a>(all: &[&'a Document]) -> HashMap<&'a str, NodeKey> {
    let mut owners: HashMap<&str, NodeKey> = HashMap::new();
    for seg in all.iter().filter(|d| d.kind == Kind::Segment) {
        let key = NodeKey::service(seg);
        seg.walk(&mut |d| {
            owners.entry(d.id.as_str()).or_insert_with(|| key.clone());
        });
    }
    // Each pass places the subsegments whose parent is placed; a chain needs one pass per link.
    let mut pending: Vec<&Document> = all.iter().copied().filter(|d| d.kind == Kind::Subsegment).collect();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|sub| {
            let parent = sub.parent_id.as_deref().unwrap_or_default();
            let Some(key) = owners.get(parent).cloned() else {
                return true;
            };
            sub.walk(&mut |d| {
                owners.entry(d.id.as_str()).or_insert_with(|| key.clone());
            });
            false
        });
        if pending.len() == before {
            break;
        }
    }
    owners
}

#[cfg(test)]
#[path = "graph_tests.rs"]
mod tests;
