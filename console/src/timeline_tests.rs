//! Tests of the timeline's nesting on recorded and hostile documents.

use super::*;
use crate::testdata::{THREE_TIER, store_of};

fn layout(lines: &[&str], trace: &str) -> Vec<(String, usize, bool)> {
    let store = store_of(lines.iter().copied());
    let trace = store.get(trace).expect("stored trace");
    build(trace).rows.into_iter().map(|r| (r.name, r.depth, r.missing_parent)).collect()
}

fn rows(expected: &[(&str, usize, bool)]) -> Vec<(String, usize, bool)> {
    expected.iter().map(|(n, d, m)| (n.to_string(), *d, *m)).collect()
}

#[test]
fn nests_back_end_under_the_front_ends_call() {
    let lines: Vec<&str> = THREE_TIER.lines().collect();
    let got = layout(&lines, "1-6b05d0a0-0a1b2c3d4e5f60718293a4b5");
    assert_eq!(got, rows(&[("front-end", 0, false), ("back-end", 1, false), ("back-end", 2, false)]));
    let store = store_of(lines.iter().copied());
    let timeline = build(store.get("1-6b05d0a0-0a1b2c3d4e5f60718293a4b5").expect("trace"));
    let call = &timeline.rows[1];
    assert!(call.remote && call.kind == "subsegment" && call.service == "front-end");
    assert_eq!(timeline.rows[2].service, "back-end");
    assert_eq!(timeline.rows[0].details["http"]["request"]["client_ip"], "10.0.3.17");
    assert!(timeline.rows[0].details.get("subsegments").is_none(), "children are rows, not details");
    assert!((timeline.end_time - timeline.start_time - 0.060).abs() < 1e-6);
}

#[test]
fn out_of_order_arrival_nests_the_same() {
    let lines: Vec<&str> = THREE_TIER.lines().filter(|l| l.contains("1-6b05d0a1")).collect();
    let expected = rows(&[("front-end", 0, false), ("back-end", 1, false), ("back-end", 2, false)]);
    assert_eq!(layout(&lines, "1-6b05d0a1-1b2c3d4e5f60718293a4b5c6"), expected);
    let reversed: Vec<&str> = lines.iter().rev().copied().collect();
    assert_eq!(layout(&reversed, "1-6b05d0a1-1b2c3d4e5f60718293a4b5c6"), expected);
    let store = store_of(lines.iter().copied());
    let timeline = build(store.get("1-6b05d0a1-1b2c3d4e5f60718293a4b5c6").expect("trace"));
    assert_eq!(timeline.rows[2].outcome, "fault");
    assert_eq!(timeline.rows[2].details["cause"]["exceptions"][0]["message"], "database unavailable");
}

#[test]
fn partial_traces_still_show() {
    // The back-end and the front-end's independent call, but not the front-end segment.
    let lines: Vec<&str> =
        THREE_TIER.lines().filter(|l| l.contains("1-6b05d0a1") && !l.contains("\"name\":\"front-end\"")).collect();
    let got = layout(&lines, "1-6b05d0a1-1b2c3d4e5f60718293a4b5c6");
    assert_eq!(got, rows(&[("back-end", 0, true), ("back-end", 1, false)]));
    let in_progress = layout(&THREE_TIER.lines().collect::<Vec<_>>(), "1-6b05d0a3-3d4e5f60718293a4b5c6d7e8");
    assert_eq!(in_progress, rows(&[("back-end", 0, true)]));
}

/// The trace of the loop and chain test.
const LOOP: &str = "1-5759e988-000000000000000000000001";

#[test]
fn parent_loops_and_long_chains_do_not_hang_or_overflow() {
    let doc = |id: &str, parent: &str, start: f64| {
        format!(
            r#"{{"type":"subsegment","name":"s{id}","id":"{id:0>16}","parent_id":"{parent:0>16}","trace_id":"{LOOP}","start_time":{start},"end_time":{}}}"#,
            start + 1.0
        )
    };
    let looped = [doc("a", "b", 1.0), doc("b", "a", 2.0)];
    let got = layout(&looped.iter().map(String::as_str).collect::<Vec<_>>(), LOOP);
    assert_eq!(got, rows(&[("sa", 0, true), ("sb", 1, false)]));

    let chain: Vec<String> = (0..5000).map(|i| doc(&format!("{i}"), &format!("{}", i + 1), f64::from(i))).collect();
    let store = store_of(chain.iter().map(String::as_str));
    let timeline = build(store.get(LOOP).expect("trace"));
    assert_eq!(timeline.rows.len(), 100, "the store keeps at most 100 documents per trace here");
    assert_eq!(timeline.rows.last().map(|r| r.depth), Some(99));
}
