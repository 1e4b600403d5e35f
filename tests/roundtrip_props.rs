//! Property tests: ids, `X-Amzn-Trace-Id` and `traceparent` survive parse ⇄ format for any valid
//! value.
#![allow(clippy::unwrap_used)]

mod support;

use http::HeaderValue;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::ids::{segment_id, trace_id};
use xray_sidecar::otel::traceparent::TraceParent;
use xray_sidecar::xray::header::{Sampled, TraceHeader};
use xray_sidecar::xray::id::{SegmentId, TraceId};

/// Text from `chars`, `len` long.
fn text(chars: &'static str, len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    let chars: Vec<char> = chars.chars().collect();
    proptest::collection::vec(proptest::sample::select(chars), len).prop_map(|v| v.into_iter().collect())
}

/// `Key=value` pairs the parser does not interpret, as callers send them (`Lineage`, the app's own).
fn extra_pairs() -> impl Strategy<Value = Vec<String>> {
    let key = text("abcdefghijklmnopqrstuvwxyzLABX-_", 1..10).prop_filter("keys the parser reads", |k| {
        !["root", "parent", "sampled", "self"].contains(&k.to_ascii_lowercase().as_str())
    });
    let pair = (key, text("abcdef0123456789:|=.-_", 0..24)).prop_map(|(k, v)| format!("{k}={v}"));
    proptest::collection::vec(pair, 0..4)
}

fn run<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let mut runner = TestRunner::new(Config { cases, ..Config::default() });
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

#[test]
fn ids_format_and_parse_back() {
    run(512, (trace_id(), segment_id(), any::<u32>()), |(trace, segment, epoch)| {
        prop_assert_eq!(TraceId::parse(trace.as_str()), Some(trace));
        prop_assert_eq!(TraceId::from_w3c(&trace.w3c()), Some(trace));
        let fresh = TraceId::new(u64::from(epoch));
        prop_assert_eq!(TraceId::parse(fresh.as_str()), Some(fresh));
        prop_assert_eq!(fresh.epoch_secs(), u64::from(epoch));
        prop_assert_eq!(SegmentId::parse(segment.as_str()), Some(segment));
        prop_assert_eq!(SegmentId::from_bytes(segment.to_bytes()), Some(segment));
        Ok(())
    });
}

#[test]
fn trace_header_parses_what_it_formats() {
    let sampled = proptest::sample::select(vec![("1", Sampled::Yes), ("0", Sampled::No), ("?", Sampled::Requested)]);
    run(512, (trace_id(), segment_id(), sampled, extra_pairs()), |(root, parent, (flag, want), extra)| {
        let mut text = format!("Root={root};Parent={parent};Sampled={flag}");
        for p in &extra {
            text.push(';');
            text.push_str(p);
        }
        let (h, problem) = TraceHeader::parse(&HeaderValue::from_str(&text).unwrap());
        prop_assert_eq!(problem, None);
        prop_assert_eq!((h.root, h.parent, h.sampled), (Some(root), Some(parent), want));
        let joined = extra.join(";");
        prop_assert_eq!(h.extra(), (!joined.is_empty()).then_some(joined.as_str()));
        let next = h.for_downstream(&root, &parent, want == Sampled::Yes);
        let (again, problem) = TraceHeader::parse(&next);
        prop_assert_eq!(problem, None);
        prop_assert_eq!((again.root, again.parent), (Some(root), Some(parent)));
        prop_assert_eq!(again.extra(), h.extra());
        Ok(())
    });
}

#[test]
fn traceparent_parses_what_it_formats() {
    run(512, (trace_id(), segment_id(), any::<bool>(), any::<bool>()), |(trace, parent, sampled, random)| {
        let value = TraceParent::format(&trace, &parent, sampled, random);
        let flags = u8::from(sampled) | u8::from(random) << 1;
        let expected = format!("00-{}-{parent}-0{flags}", std::str::from_utf8(&trace.w3c()).unwrap());
        prop_assert_eq!(value.to_str().unwrap(), expected.as_str());
        prop_assert_eq!(TraceParent::parse(&value), Ok(TraceParent { trace_id: trace, parent, sampled, random }));
        Ok(())
    });
}
