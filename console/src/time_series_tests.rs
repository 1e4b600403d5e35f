//! Tests of the per-period statistics on the recorded three-tier traces.

use super::*;
use crate::testdata::{THREE_TIER, store_of};

fn totals(expression: &str, period: u32) -> Vec<(f64, u64, u64, bool)> {
    let store = store_of(THREE_TIER.lines());
    let entity = Entity::parse(expression).unwrap_or_else(|e| panic!("{expression}: {e}"));
    let window = Window { start: 0.0, end: f64::MAX };
    build(store.traces(), &entity, window, period)
        .into_iter()
        .map(|p| {
            let is_edge = p.edge_summary_statistics.is_some();
            let s = p.edge_summary_statistics.or(p.service_summary_statistics).expect("statistics");
            assert_eq!(p.response_time_histogram.iter().map(|h| h.count).sum::<u64>(), s.total_count);
            (p.timestamp, s.total_count, s.fault_statistics.total_count, is_edge)
        })
        .collect()
}

#[test]
fn counts_the_named_node_or_edge_per_period() {
    let start = |p: &(f64, u64, u64, bool)| p.0;
    let back_end = totals("service(\"back-end\")", 300);
    assert_eq!(back_end.iter().map(|p| (p.1, p.2, p.3)).collect::<Vec<_>>(), [(2, 1, false)], "a3 is in progress");
    assert!(back_end.iter().all(|p| start(p) % 300.0 == 0.0), "periods are aligned: {back_end:?}");
    assert_eq!(totals("id(name: \"back-end\", type: \"AWS::EKS::Container\")", 300), back_end);
    let edge = totals("edge(\"front-end\", \"back-end\")", 300);
    assert_eq!(edge.iter().map(|p| (p.1, p.2, p.3)).collect::<Vec<_>>(), [(2, 1, true)]);
    let entries = totals("", 300);
    assert_eq!(entries.iter().map(|p| (p.1, p.2, p.3)).collect::<Vec<_>>(), [(3, 1, true)], "client → front-end");
    assert!(totals("service(\"nobody\")", 60).is_empty());
    let by_minute: u64 = totals("", 60).iter().map(|p| p.1).sum();
    assert_eq!(by_minute, 3, "the same calls, however they are bucketed");
}

#[test]
fn an_entity_selector_is_one_node_or_edge() {
    for bad in ["fault", "service(\"a\") { fault }", "service(\"a\") OR service(\"b\")", "edge(\"a\")"] {
        assert!(Entity::parse(bad).is_err(), "{bad}");
    }
}
