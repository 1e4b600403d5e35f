//! `GetTimeSeriesServiceStatistics`: a node's or an edge's requests counted per period, the figures
//! behind the X-Ray and CloudWatch consoles' charts of a service.

use super::filter_expression::Entity;
use super::graph::{self, Place, Window};
use super::stats::{Accumulator, HistogramEntry, SummaryStatistics};
use super::store::Trace;
use serde::Serialize;
use std::collections::BTreeMap;

/// One period's figures (X-Ray's `TimeSeriesServiceStatistics`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Point {
    /// The period's start, epoch seconds.
    pub timestamp: f64,
    /// The calls along the edges, when the entity is an edge (or none was named).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge_summary_statistics: Option<SummaryStatistics>,
    /// The requests through the nodes, when the entity is a service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_summary_statistics: Option<SummaryStatistics>,
    /// Their response times.
    pub response_time_histogram: Vec<HistogramEntry>,
}

/// The periods of `window` (each `period` seconds, aligned to the epoch) in which the entity had
/// requests, oldest first; documents are counted in the period they start in.
pub fn build<'a>(
    traces: impl IntoIterator<Item = &'a Trace>,
    entity: &Entity,
    window: Window,
    period: u32,
) -> Vec<Point> {
    let period = f64::from(period.max(1));
    let mut buckets: BTreeMap<i64, Accumulator> = BTreeMap::new();
    for trace in traces {
        let all: Vec<&_> = trace.documents.iter().map(|s| &s.document).collect();
        graph::walk(&all, |d| window.contains(d.start), &mut |place| {
            let doc = match (&place, entity) {
                (Place::Node(key, doc, _), Entity::Service(s))
                    if key.kind != "client" && s.picks_node(&key.name, &key.kind) =>
                {
                    doc
                }
                (Place::Edge(from, to, doc), Entity::Edge(a, b))
                    if a.picks_node(&from.name, &from.kind) && b.picks_node(&to.name, &to.kind) =>
                {
                    doc
                }
                (Place::Edge(from, _, doc), Entity::Entries) if from.kind == "client" => doc,
                _ => return,
            };
            // What is still in progress has no response time yet; the map's statistics leave it out too.
            let Some(rt) = doc.duration() else { return };
            let bucket = (doc.start / period).floor() as i64;
            buckets.entry(bucket).or_default().add(doc.outcome, rt);
        });
    }
    let is_edge = !matches!(entity, Entity::Service(_));
    buckets
        .into_iter()
        .map(|(bucket, acc)| {
            let summary = acc.summary();
            Point {
                timestamp: bucket as f64 * period,
                edge_summary_statistics: is_edge.then(|| summary.clone()),
                service_summary_statistics: (!is_edge).then_some(summary),
                response_time_histogram: acc.histogram(),
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "time_series_tests.rs"]
mod tests;
