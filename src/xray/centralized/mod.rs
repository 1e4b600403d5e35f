//! Centralized sampling: the rules operators set in the X-Ray console, fetched through the daemon,
//! with the per-rule quotas the service shares out between every client.
//!
//! [`Centralized`] decides on the request path from an immutable rule set swapped in whole by the
//! [`poller`]; it answers `None` whenever the local rules must decide instead: before the first
//! rules, and once the rules are over an hour old. As in the X-Ray SDKs, the rules fetched last
//! keep deciding while the API cannot be reached (a daemon restarting must not turn the operators'
//! rules off); a quota past its TTL is not used, so each rule borrows, then applies its rate.

pub mod poller;
pub mod rule;
pub mod wire;

use arc_swap::ArcSwap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rule::{Counts, RequestFacts, Rule};
use wire::{RawRule, Statistics, TargetsResponse};

/// Rules older than this are not trusted: the local rules decide. An hour, as in the SDKs, however
/// long the API has been unreachable.
pub const RULES_MAX_AGE_SECS: u64 = 3600;

/// The rules in force and when they were fetched.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// In order: priority, then name, `Default` last.
    pub rules: Vec<Rule>,
    /// Epoch seconds of the fetch; 0 before the first. Targets announcing a later rule change
    /// trigger a fetch.
    pub fetched_at: u64,
}

/// The centralized sampling engine, shared by every connection and the poller.
#[derive(Debug)]
pub struct Centralized {
    rules: ArcSwap<RuleSet>,
    /// This process in the service's statistics: 24 hex characters.
    pub client_id: String,
    /// Our segment name, which `ServiceName` patterns match.
    service: Arc<str>,
    /// Our segment origin, which `ServiceType` patterns match (empty outside AWS environments).
    service_type: &'static str,
    /// Failed calls: [GetSamplingRules, SamplingTargets].
    pub poll_failures: [AtomicU64; 2],
    /// Requests decided by the local rules because the centralized ones could not.
    pub fallbacks: AtomicU64,
}

impl Centralized {
    /// An engine with no rules yet, for `service` of type `service_type`.
    pub fn new(service: Arc<str>, service_type: Option<&'static str>) -> Self {
        Centralized {
            rules: ArcSwap::from_pointee(RuleSet::default()),
            client_id: format!("{:024x}", rand::random::<u128>() >> 32),
            service,
            service_type: service_type.unwrap_or(""),
            poll_failures: Default::default(),
            fallbacks: AtomicU64::new(0),
        }
    }

    /// The decision of the first rule that matches, or `None` when the local rules must decide.
    pub fn decide(&self, req: &RequestFacts<'_>, now_secs: u64) -> Option<bool> {
        let set = self.rules.load();
        let usable = set.fetched_at != 0 && now_secs.saturating_sub(set.fetched_at) <= RULES_MAX_AGE_SECS;
        let rule = usable.then(|| set.rules.iter().find(|r| r.matches(req))).flatten();
        match rule {
            Some(rule) => Some(rule.sample(now_secs)),
            None => {
                self.fallbacks.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// The name of the rule that would decide for this request, if the centralized rules decide.
    pub fn rule_for(&self, req: &RequestFacts<'_>) -> Option<String> {
        self.rules.load().rules.iter().find(|r| r.matches(req)).map(|r| r.name.clone())
    }

    /// Puts freshly fetched rules in force, keeping the quota and unreported counts of rules that
    /// carry over by name. Returns how many apply to this service.
    pub fn install(&self, raw: &[RawRule], now_secs: u64) -> usize {
        let old = self.rules.load();
        let mut rules: Vec<Rule> = Vec::with_capacity(raw.len());
        for r in raw {
            match Rule::build(r, &self.service, self.service_type) {
                Ok(mut rule) => {
                    if let Some(prev) = old.rules.iter().find(|p| p.name == rule.name) {
                        prev.state.set_fixed_rate(rule.state.fixed_rate());
                        rule.state = prev.state.clone();
                    }
                    if !rules.iter().any(|x| x.name == rule.name) {
                        rules.push(rule);
                    }
                }
                Err(why) => tracing::debug!(%why, "sampling rule skipped"),
            }
        }
        rules.sort_by(|a, b| (a.is_default(), a.priority, &a.name).cmp(&(b.is_default(), b.priority, &b.name)));
        let n = rules.len();
        self.rules.store(Arc::new(RuleSet { rules, fetched_at: now_secs }));
        n
    }

    /// How old the rules in force are; `None` before the first fetch.
    pub fn rules_age(&self, now_secs: u64) -> Option<u64> {
        let set = self.rules.load();
        (set.fetched_at != 0).then(|| now_secs.saturating_sub(set.fetched_at))
    }

    /// The statistics to report: one document per rule that saw requests, with the counts handed
    /// over (give them back with [`Centralized::restore`] if the report fails).
    pub fn statistics(&self, now: f64) -> Vec<Statistics> {
        let set = self.rules.load();
        set.rules
            .iter()
            .filter_map(|r| {
                let c = r.state.take_pending();
                (c.requests > 0).then(|| Statistics {
                    rule_name: r.name.clone(),
                    client_id: self.client_id.clone(),
                    timestamp: now,
                    request_count: c.requests,
                    sampled_count: c.sampled,
                    borrow_count: c.borrowed,
                })
            })
            .collect()
    }

    /// Gives back the counts of a report that did not reach the service.
    pub fn restore(&self, docs: &[Statistics]) {
        let set = self.rules.load();
        for d in docs {
            if let Some(r) = set.rules.iter().find(|r| r.name == d.rule_name) {
                r.state.restore(Counts {
                    requests: d.request_count,
                    sampled: d.sampled_count,
                    borrowed: d.borrow_count,
                });
            }
        }
    }

    /// Applies targets; returns whether the rules changed since we fetched them.
    pub fn apply_targets(&self, res: &TargetsResponse) -> bool {
        let set = self.rules.load();
        for t in &res.sampling_target_documents {
            match set.rules.iter().find(|r| Some(&r.name) == t.rule_name.as_ref()) {
                Some(r) => r.state.apply(t),
                None => tracing::debug!(rule = ?t.rule_name, "sampling target for a rule we do not have"),
            }
        }
        res.last_rule_modification.is_some_and(|m| m > set.fetched_at as f64)
    }

    /// Appends the per-rule counters and the poller's state in the Prometheus text format.
    pub fn render(&self, o: &mut String, now_secs: u64) {
        let set = self.rules.load();
        for (metric, help) in [
            ("requests", "Requests each centralized sampling rule matched."),
            (
                "sampled",
                "Requests each centralized sampling rule sampled from its quota or by its rate (borrowed ones apart).",
            ),
            ("borrowed", "Requests each centralized sampling rule sampled by borrowing, without a quota."),
        ] {
            let _ = writeln!(o, "# HELP xray_sidecar_sampling_rule_{metric}_total {help}");
            let _ = writeln!(o, "# TYPE xray_sidecar_sampling_rule_{metric}_total counter");
            for r in &set.rules {
                let t = r.state.totals();
                let n = match metric {
                    "requests" => t.requests,
                    "sampled" => t.sampled,
                    _ => t.borrowed,
                };
                let name = r.name.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = writeln!(o, "xray_sidecar_sampling_rule_{metric}_total{{rule=\"{name}\"}} {n}");
            }
        }
        let age = self.rules_age(now_secs).map_or(-1.0, |a| a as f64);
        let _ = writeln!(
            o,
            "# HELP xray_sidecar_sampling_rules_age_seconds Age of the centralized rules in force (-1: none yet).\n\
             # TYPE xray_sidecar_sampling_rules_age_seconds gauge\nxray_sidecar_sampling_rules_age_seconds {age}"
        );
        let _ = writeln!(
            o,
            "# HELP xray_sidecar_sampling_rules_applied Centralized rules that apply to this service.\n\
             # TYPE xray_sidecar_sampling_rules_applied gauge\nxray_sidecar_sampling_rules_applied {}",
            set.rules.len()
        );
        o.push_str("# HELP xray_sidecar_sampling_poll_failures_total Failed calls to the sampling API.\n");
        o.push_str("# TYPE xray_sidecar_sampling_poll_failures_total counter\n");
        for (call, n) in ["GetSamplingRules", "SamplingTargets"].iter().zip(&self.poll_failures) {
            let _ = writeln!(o, "xray_sidecar_sampling_poll_failures_total{{call=\"{call}\"}} {}", n.load(Relaxed));
        }
        let _ = writeln!(
            o,
            "# HELP xray_sidecar_sampling_fallbacks_total Decisions left to the local rules (no usable centralized rule).\n\
             # TYPE xray_sidecar_sampling_fallbacks_total counter\nxray_sidecar_sampling_fallbacks_total {}",
            self.fallbacks.load(Relaxed)
        );
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
