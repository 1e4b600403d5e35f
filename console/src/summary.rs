//! Trace summaries for the trace list, in the shape of X-Ray's `GetTraceSummaries`.

use super::document::{Document, Kind, Outcome};
use super::graph::{self, NodeKey, Place};
use super::store::Trace;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};

/// The entry request's HTTP facts (X-Ray's `Http` of a trace summary).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HttpSummary {
    /// The URL.
    #[serde(rename = "HttpURL", skip_serializing_if = "Option::is_none")]
    pub http_url: Option<String>,
    /// The response status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_method: Option<String>,
    /// The client's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// The client's user agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// A service a trace went through (X-Ray's `ServiceId`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceId {
    /// Its name.
    pub name: String,
    /// All its names.
    pub names: Vec<String>,
    /// Its type, as on the map.
    #[serde(rename = "Type")]
    pub kind: String,
}

/// A user named on a trace's segments, with the services that named it (X-Ray's `TraceUser`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct TraceUser {
    /// The segments' `user`.
    pub user_name: String,
    /// The services whose segments named it.
    pub service_ids: Vec<ServiceId>,
}

/// One request through a node of the map, or one call along one of its edges, as the filter
/// expressions' `service(…) { … }` and `edge(…) { … }` see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hop {
    /// How it ended.
    pub outcome: Outcome,
    /// Still in progress.
    pub in_progress: bool,
    /// Its own duration, seconds.
    pub response_time: Option<f64>,
    /// Its HTTP facts.
    pub http: HttpSummary,
    /// Its annotations and those of the work nested in it, X-Ray style.
    pub annotations: BTreeMap<String, Vec<Value>>,
    /// Its `user`.
    pub user: Option<String>,
}

/// A request through a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeHop {
    /// The node.
    pub node: ServiceId,
    /// The request.
    pub hop: Hop,
}

/// A call along an edge.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeHop {
    /// The caller's node.
    pub from: ServiceId,
    /// The callee's node.
    pub to: ServiceId,
    /// The call, as the caller recorded it (the client's: the root segment).
    pub hop: Hop,
}

/// One row of the trace list (X-Ray's `TraceSummary`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TraceSummary {
    /// The trace id.
    pub id: String,
    /// The earliest start, epoch seconds.
    pub start_time: f64,
    /// From the earliest start to the latest end, seconds.
    pub duration: f64,
    /// The entry segment's own duration, seconds (absent while it is in progress).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_time: Option<f64>,
    /// Some entry had a client error.
    pub has_error: bool,
    /// Some entry had a fault.
    pub has_fault: bool,
    /// Some entry was throttled.
    pub has_throttle: bool,
    /// Something is still in progress, or a caller's document has not arrived.
    pub is_partial: bool,
    /// The entry request.
    pub http: HttpSummary,
    /// The entry call's gRPC status name (`OK`, `NOT_FOUND`...), when it was a gRPC call.
    #[serde(rename = "GrpcStatus", skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<String>,
    /// Annotations by key, X-Ray style.
    pub annotations: BTreeMap<String, Vec<Value>>,
    /// The services it went through.
    pub service_ids: Vec<ServiceId>,
    /// The service that received the request first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<ServiceId>,
    /// The users its segments name.
    pub users: Vec<TraceUser>,
    /// Documents received for it.
    pub segment_count: usize,
    /// Every request through a node of the map (the client's left out); only
    /// [`summarize_with_hops`] fills it.
    #[serde(skip)]
    pub nodes: Vec<NodeHop>,
    /// Every call along an edge of the map; only [`summarize_with_hops`] fills it.
    #[serde(skip)]
    pub edges: Vec<EdgeHop>,
}

/// One page of the trace list (X-Ray's `GetTraceSummaries` answer).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TraceSummaries {
    /// The page, newest first.
    pub trace_summaries: Vec<TraceSummary>,
    /// Traces that matched the filter in all.
    pub matched_count: usize,
    /// Traces looked at.
    pub traces_processed_count: usize,
    /// When the list was made, epoch seconds.
    pub approximate_time: f64,
    /// The `next_token` for the next page, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// The node a segment stands for: its service, typed by its `origin`.
fn segment_service(segment: &Document) -> ServiceId {
    service_id(&segment.name, segment.origin.as_deref().unwrap_or("service"))
}

/// The service node of a segment, as the map names it.
fn service_id(name: &str, kind: &str) -> ServiceId {
    ServiceId { name: name.to_owned(), names: vec![name.to_owned()], kind: kind.to_owned() }
}

/// The segment that received the request first: a parentless one, else one whose caller is missing.
pub fn entry<'a>(docs: &[&'a Document], ids: &HashSet<&str>) -> Option<&'a Document> {
    let segments = || docs.iter().copied().filter(|d| d.kind == Kind::Segment);
    let earliest = |it: &mut dyn Iterator<Item = &'a Document>| it.min_by(|a, b| a.start.total_cmp(&b.start));
    earliest(&mut segments().filter(|d| d.parent_id.is_none()))
        .or_else(|| earliest(&mut segments().filter(|d| d.parent_id.as_deref().is_some_and(|p| !ids.contains(p)))))
        .or_else(|| earliest(&mut segments()))
}

/// Summarizes one trace for the list; [`summarize_with_hops`] adds what `service(…) { … }` and
/// `edge(…)` filter on.
pub fn summarize(trace: &Trace) -> TraceSummary {
    let docs: Vec<&Document> = trace.documents.iter().map(|s| &s.document).collect();
    let mut ids: HashSet<&str> = HashSet::new();
    let (mut has_throttle, mut in_progress) = (false, false);
    let mut annotations: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for doc in &docs {
        // The service whose segment holds the annotations (an independent subsegment's is another
        // document's, and says none).
        let service = (doc.kind == Kind::Segment).then(|| segment_service(doc));
        doc.walk(&mut |d| {
            ids.insert(d.id.as_str());
            has_throttle |= d.outcome == Outcome::Throttle;
            in_progress |= d.end.is_none();
            for (key, value) in &d.annotations {
                add_annotation(annotations.entry(key.clone()).or_default(), value, service.as_ref());
            }
        });
    }
    let orphaned = docs.iter().any(|d| d.parent_id.as_deref().is_some_and(|p| !ids.contains(p)));
    let callees: HashSet<&str> = docs.iter().filter_map(|d| d.parent_id.as_deref()).collect();
    let mut services: Vec<ServiceId> = Vec::new();
    for doc in &docs {
        if doc.kind == Kind::Segment {
            services.push(segment_service(doc));
        }
        doc.walk(&mut |d| {
            if d.is_remote() && d.kind == Kind::Subsegment && !callees.contains(d.id.as_str()) {
                services.push(service_id(&d.name, &d.downstream_type()));
            }
        });
    }
    services.sort();
    services.dedup();
    let entry = entry(&docs, &ids);
    // As X-Ray's `TraceSummary`: an error or a fault is the root segment's, what the client got
    // (a fault downstream that the application handled is not the trace's); a throttle is any
    // segment's.
    let outcome = entry.map_or(Outcome::Ok, |e| e.outcome);
    let (has_error, has_fault) = (matches!(outcome, Outcome::Error | Outcome::Throttle), outcome == Outcome::Fault);
    let start = trace.start();
    TraceSummary {
        id: trace.id.clone(),
        start_time: start,
        duration: (trace.end() - start).max(0.0),
        response_time: entry.and_then(Document::duration),
        has_error,
        has_fault,
        has_throttle,
        is_partial: in_progress || orphaned,
        http: entry.map(http_summary).unwrap_or_default(),
        grpc_status: entry.and_then(grpc_status),
        annotations,
        service_ids: services,
        entry_point: entry.map(segment_service),
        users: users(&docs),
        segment_count: docs.len(),
        nodes: Vec::new(),
        edges: Vec::new(),
    }
}

/// Summarizes one trace with every request through a node and every call along an edge of the
/// map, as the filter expressions' complex keywords need (and the list does not: it costs a walk
/// of the trace as the map does it, and a copy of each request's facts).
pub fn summarize_with_hops(trace: &Trace) -> TraceSummary {
    let mut summary = summarize(trace);
    let docs: Vec<&Document> = trace.documents.iter().map(|s| &s.document).collect();
    graph::walk(&docs, |_| true, &mut |place| match place {
        Place::Node(key, _, _) if key.kind == "client" => {}
        Place::Node(key, doc, _) => summary.nodes.push(NodeHop { node: node_id(key), hop: hop(doc) }),
        Place::Edge(from, to, doc) => {
            summary.edges.push(EdgeHop { from: node_id(from), to: node_id(to), hop: hop(doc) });
        }
    });
    summary
}

fn node_id(key: NodeKey) -> ServiceId {
    ServiceId { names: vec![key.name.clone()], name: key.name, kind: key.kind }
}

/// What the filter expressions see of one document: its own facts, and the annotations of the
/// work nested in it.
fn hop(doc: &Document) -> Hop {
    let mut annotations: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    doc.walk(&mut |d| {
        for (key, value) in &d.annotations {
            annotations.entry(key.clone()).or_default().push(annotation_value(value));
        }
    });
    Hop {
        outcome: doc.outcome,
        in_progress: doc.end.is_none(),
        response_time: doc.duration(),
        http: http_summary(doc),
        annotations,
        user: doc.fields.get("user").and_then(Value::as_str).map(str::to_owned),
    }
}

/// The users the trace's segments name, each with the services that named it.
fn users(docs: &[&Document]) -> Vec<TraceUser> {
    let mut by_name: BTreeMap<&str, Vec<ServiceId>> = BTreeMap::new();
    for doc in docs.iter().filter(|d| d.kind == Kind::Segment) {
        if let Some(user) = doc.fields.get("user").and_then(Value::as_str) {
            let service = segment_service(doc);
            let services = by_name.entry(user).or_default();
            if !services.contains(&service) {
                services.push(service);
            }
        }
    }
    by_name.into_iter().map(|(name, service_ids)| TraceUser { user_name: name.to_owned(), service_ids }).collect()
}

/// The `grpc_status` annotation the proxy writes on a gRPC call's segment.
fn grpc_status(entry: &Document) -> Option<String> {
    let (_, v) = entry.annotations.iter().find(|(k, _)| k == "grpc_status")?;
    v.as_str().map(str::to_owned)
}

fn http_summary(entry: &Document) -> HttpSummary {
    let h = &entry.http;
    HttpSummary {
        http_url: h.url.clone(),
        http_status: h.status,
        http_method: h.method.clone(),
        client_ip: h.client_ip.clone(),
        user_agent: h.user_agent.clone(),
    }
}

/// Adds one annotation's value to its key's `ValueWithServiceIds` list, as X-Ray lists them: each
/// value once, with the services that gave it.
fn add_annotation(values: &mut Vec<Value>, value: &Value, service: Option<&ServiceId>) {
    let typed = annotation_value(value);
    let at = match values.iter().position(|v| v["AnnotationValue"] == typed["AnnotationValue"]) {
        Some(i) => i,
        None => {
            values.push(json!({"AnnotationValue": typed["AnnotationValue"], "ServiceIds": []}));
            values.len() - 1
        }
    };
    let (Some(service), Some(Value::Array(ids))) = (service, values[at].get_mut("ServiceIds")) else { return };
    if let Ok(id) = serde_json::to_value(service) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
}

/// X-Ray's `AnnotationValue` for a scalar.
fn annotation_value(v: &Value) -> Value {
    let typed = match v {
        Value::Bool(b) => json!({"BooleanValue": b}),
        Value::Number(n) => json!({"NumberValue": n}),
        other => json!({"StringValue": other.as_str().unwrap_or_default()}),
    };
    json!({"AnnotationValue": typed})
}

#[cfg(test)]
#[path = "summary_tests.rs"]
mod tests;
