//! Answers from the sampling API (`GetSamplingRules`, `SamplingTargets`): any body is parsed or
//! refused without panicking, and whatever parses installs into the engine and decides requests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use xray_sidecar::xray::centralized::Centralized;
use xray_sidecar::xray::centralized::rule::RequestFacts;
use xray_sidecar::xray::centralized::wire::{RulesResponse, TargetsResponse};

fuzz_target!(|data: &[u8]| {
    let engine = Centralized::new(Arc::from("fuzz"), None);
    let now = 1_700_000_000;
    if let Ok(rules) = serde_json::from_slice::<RulesResponse>(data) {
        let raw: Vec<_> = rules.sampling_rule_records.into_iter().filter_map(|r| r.sampling_rule).collect();
        let installed = engine.install(&raw, now);
        assert!(installed <= raw.len(), "never more rules than were sent");
    }
    if let Ok(targets) = serde_json::from_slice::<TargetsResponse>(data) {
        let _ = engine.apply_targets(&targets);
    }
    let req = RequestFacts { host: "example.com", method: "GET", path: "/" };
    let _ = engine.decide(&req, now);
    let _ = engine.rule_for(&req);
    let _ = engine.statistics(now as f64);
    let mut page = String::new();
    engine.render(&mut page, now);
});
