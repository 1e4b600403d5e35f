//! A trace's timeline: every segment and subsegment as a row, nested under its caller, on one time axis.

use super::document::{Document, Kind, Outcome};
use super::store::Trace;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

/// One bar of the timeline.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Row {
    /// The entry's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its caller or enclosing entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Nesting depth, 0 for the top.
    pub depth: usize,
    /// `segment` or `subsegment`.
    pub kind: &'static str,
    /// The service whose segment holds it.
    pub service: String,
    /// Start, epoch seconds.
    pub start_time: f64,
    /// End, epoch seconds; absent while in progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<f64>,
    /// `ok`, `error`, `throttle` or `fault`.
    pub outcome: &'static str,
    /// `http.response.status`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// A call to another service.
    pub remote: bool,
    /// It names a parent that has not arrived (or its parents form a loop).
    pub missing_parent: bool,
    /// The entry as sent, without its nested subsegments: http, annotations, metadata, cause, ...
    pub details: Value,
}

/// A trace laid out for the timeline.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Timeline {
    /// The axis' start, epoch seconds.
    pub start_time: f64,
    /// The axis' end, epoch seconds.
    pub end_time: f64,
    /// The rows, depth first, siblings by start time.
    pub rows: Vec<Row>,
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Error => "error",
        Outcome::Throttle => "throttle",
        Outcome::Fault => "fault",
    }
}

/// Lays out a trace: segments under the subsegment that called them, subsegments under their parent.
pub fn build(trace: &Trace) -> Timeline {
    let mut nodes: Vec<&Document> = Vec::new();
    for stored in &trace.documents {
        stored.document.walk(&mut |d| nodes.push(d));
    }
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        index.entry(n.id.as_str()).or_insert(i);
    }
    let by_start = |a: &usize, b: &usize| nodes[*a].start.total_cmp(&nodes[*b].start);
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut roots: Vec<usize> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        match n.parent_id.as_deref().and_then(|p| index.get(p)) {
            Some(&parent) if parent != i => children[parent].push(i),
            _ => roots.push(i),
        }
    }
    children.iter_mut().for_each(|c| c.sort_by(by_start));
    roots.sort_by(by_start);

    let mut rows = Vec::with_capacity(nodes.len());
    let mut visited = vec![false; nodes.len()];
    // Entries caught in a parent loop are never reached from a root: start from them too.
    let mut starts: Vec<(usize, bool)> = roots.iter().map(|&r| (r, nodes[r].parent_id.is_some())).collect();
    let mut next_start = 0;
    loop {
        while let Some(&(root, missing)) = starts.get(next_start) {
            next_start += 1;
            if visited[root] {
                continue;
            }
            // Depth-first with an explicit stack, so a long chain of parents cannot overflow it.
            let mut stack = vec![(root, 0usize, String::new(), missing)];
            while let Some((i, depth, service, missing)) = stack.pop() {
                if visited[i] {
                    continue;
                }
                visited[i] = true;
                let n = nodes[i];
                let service = if n.kind == Kind::Segment || service.is_empty() { n.name.clone() } else { service };
                for &c in children[i].iter().rev() {
                    stack.push((c, depth + 1, service.clone(), false));
                }
                rows.push(row(n, depth, service, missing));
            }
        }
        match (0..nodes.len()).filter(|&i| !visited[i]).min_by(by_start) {
            Some(i) => starts.push((i, true)),
            None => break,
        }
    }
    Timeline { start_time: trace.start(), end_time: trace.end(), rows }
}

fn row(n: &Document, depth: usize, service: String, missing: bool) -> Row {
    Row {
        id: n.id.clone(),
        name: n.name.clone(),
        parent_id: n.parent_id.clone(),
        depth,
        kind: if n.kind == Kind::Segment { "segment" } else { "subsegment" },
        service,
        start_time: n.start,
        end_time: n.end,
        outcome: outcome_name(n.outcome),
        http_status: n.http.status,
        remote: n.is_remote(),
        missing_parent: missing,
        details: Value::Object(n.fields.clone()),
    }
}

#[cfg(test)]
#[path = "timeline_tests.rs"]
mod tests;
