//! One centralized rule: what it matches, the quota the service assigned it, and what it saw.
//!
//! Everything a request touches is an atomic: the matching fields never change after the rule is
//! built, and the quota, rate and counters are single words.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::wire::{RawRule, Target};
use crate::xray::reservoir::PerSecond;
use crate::xray::sampling::{host_wildcard, wildcard};

/// No quota assigned (before the first targets, or when the service withheld one).
const NO_QUOTA: u64 = u64::MAX;
/// Indexes of the counters in [`RuleState`]'s arrays.
const REQUESTS: usize = 0;
const SAMPLED: usize = 1;
const BORROWED: usize = 2;

/// The facts of a request that rules match on.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    /// The `Host` (or authority) the request is for.
    pub host: &'a str,
    /// The method.
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
}

/// A rule that applies to this service.
#[derive(Debug)]
pub struct Rule {
    /// The console's name for it.
    pub name: String,
    /// Lower goes first.
    pub priority: i64,
    host: String,
    method: String,
    path: String,
    /// Whether a request may be borrowed while no quota holds: only for a rule whose
    /// `ReservoirSize` is not 0, as the SDKs do, so that a rule meant to record nothing records
    /// nothing.
    can_borrow: bool,
    /// Shared with the rule of the same name in the next rule set, so a refresh keeps the quota and
    /// the counts not yet reported.
    pub state: Arc<RuleState>,
}

/// A rule's changing part.
#[derive(Debug)]
pub struct RuleState {
    /// `f64` bits of the rate applied beyond the reservoir.
    fixed_rate: AtomicU64,
    /// Requests a second this client may take, or [`NO_QUOTA`].
    quota: AtomicU64,
    /// Epoch second the quota expires at.
    quota_expires: AtomicU64,
    reservoir: PerSecond,
    /// Since the last report: requests, sampled, borrowed.
    pending: [AtomicU64; 3],
    /// Already reported (or handed to a report in flight): requests, sampled, borrowed.
    reported: [AtomicU64; 3],
}

/// What a rule saw: requests, sampled, borrowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests matched.
    pub requests: u64,
    /// Of those, sampled from the quota or by the fixed rate.
    pub sampled: u64,
    /// Of those, sampled by borrowing while no quota held; not counted in `sampled`, as the SDKs
    /// report it (so a request sampled either way is `sampled + borrowed`).
    pub borrowed: u64,
}

impl Rule {
    /// Builds the rule if it applies to an agent tracing `service` of type `service_type`; `Err`
    /// says why not (for the debug log).
    pub fn build(raw: &RawRule, service: &str, service_type: &str) -> Result<Rule, String> {
        let name = raw.rule_name.clone().ok_or("no RuleName")?;
        if raw.version != Some(1) {
            return Err(format!("{name}: version {:?} is not 1", raw.version));
        }
        if raw.resource_arn.as_deref() != Some("*") {
            return Err(format!("{name}: ResourceARN is not `*`"));
        }
        if raw.attributes.as_ref().is_some_and(|a| !a.is_empty()) {
            return Err(format!("{name}: matches segment attributes, which a proxy cannot see"));
        }
        let rate = raw.fixed_rate.filter(|r| (0.0..=1.0).contains(r)).ok_or(format!("{name}: bad FixedRate"))?;
        let priority = raw.priority.ok_or(format!("{name}: no Priority"))?;
        let field = |v: &Option<String>, key: &str| {
            v.as_deref().map(str::to_ascii_lowercase).ok_or(format!("{name}: no {key}"))
        };
        let (service_name, service_kind) =
            (field(&raw.service_name, "ServiceName")?, field(&raw.service_type, "ServiceType")?);
        // Outside an AWS environment our type is unknown, and the SDKs take an unknown type to match
        // any `ServiceType`.
        let kind_matches = service_type.is_empty() || wildcard(&service_kind, service_type);
        if !wildcard(&service_name, service) || !kind_matches {
            return Err(format!("{name}: for another service"));
        }
        Ok(Rule {
            host: field(&raw.host, "Host")?,
            method: field(&raw.http_method, "HTTPMethod")?,
            path: field(&raw.url_path, "URLPath")?,
            can_borrow: raw.reservoir_size.is_some_and(|n| n != 0),
            name,
            priority,
            state: Arc::new(RuleState::new(rate)),
        })
    }

    /// Whether the request is this rule's. A fact the request lacks (no `Host`) matches any
    /// pattern, as in the SDKs.
    pub fn matches(&self, r: &RequestFacts<'_>) -> bool {
        let fits = |pattern: &str, fact: &str, by: fn(&str, &str) -> bool| fact.is_empty() || by(pattern, fact);
        fits(&self.host, r.host, host_wildcard)
            && fits(&self.method, r.method, wildcard)
            && fits(&self.path, r.path, wildcard)
    }

    /// Decides for a request this rule matched.
    pub fn sample(&self, now_secs: u64) -> bool {
        self.state.sample(now_secs, self.can_borrow)
    }

    /// Whether this is the catch-all that goes last.
    pub fn is_default(&self) -> bool {
        self.name == "Default"
    }
}

impl RuleState {
    fn new(fixed_rate: f64) -> Self {
        RuleState {
            fixed_rate: AtomicU64::new(fixed_rate.to_bits()),
            quota: AtomicU64::new(NO_QUOTA),
            quota_expires: AtomicU64::new(0),
            reservoir: PerSecond::default(),
            pending: Default::default(),
            reported: Default::default(),
        }
    }

    /// Decides for a request a rule matched, as the SDKs do: the assigned quota while it holds (its
    /// TTL second included); without one, one borrowed request a second if `can_borrow`; then the
    /// fixed rate. A borrowed request counts as borrowed, not sampled.
    pub fn sample(&self, now_secs: u64, can_borrow: bool) -> bool {
        self.pending[REQUESTS].fetch_add(1, Relaxed);
        let quota = self.quota.load(Relaxed);
        if quota != NO_QUOTA && now_secs <= self.quota_expires.load(Relaxed) {
            if self.reservoir.take(now_secs, quota) {
                self.pending[SAMPLED].fetch_add(1, Relaxed);
                return true;
            }
        } else if can_borrow && self.reservoir.take(now_secs, 1) {
            self.pending[BORROWED].fetch_add(1, Relaxed);
            return true;
        }
        let sampled = rand::random::<f64>() < self.fixed_rate();
        if sampled {
            self.pending[SAMPLED].fetch_add(1, Relaxed);
        }
        sampled
    }

    /// The rate applied beyond the reservoir.
    pub fn fixed_rate(&self) -> f64 {
        f64::from_bits(self.fixed_rate.load(Relaxed))
    }

    /// Sets the rate the console now has (a refreshed rule, before its next target).
    pub fn set_fixed_rate(&self, rate: f64) {
        self.fixed_rate.store(rate.to_bits(), Relaxed);
    }

    /// Applies what the service assigned this client.
    pub fn apply(&self, t: &Target) {
        if let Some(rate) = t.fixed_rate.filter(|r| (0.0..=1.0).contains(r)) {
            self.set_fixed_rate(rate);
        }
        // A target without a quota leaves the last one to run out at its TTL, as the SDKs do.
        if let (Some(quota), Some(ttl)) = (t.reservoir_quota, t.reservoir_quota_ttl) {
            self.quota.store(u64::try_from(quota).unwrap_or(0), Relaxed);
            self.quota_expires.store(if ttl > 0.0 { ttl as u64 } else { 0 }, Relaxed);
        }
    }

    /// The quota and its expiry, when one is assigned.
    pub fn quota(&self) -> Option<(u64, u64)> {
        let q = self.quota.load(Relaxed);
        (q != NO_QUOTA).then(|| (q, self.quota_expires.load(Relaxed)))
    }

    /// Takes the counts since the last report, moving them to the reported totals.
    pub fn take_pending(&self) -> Counts {
        let [r, s, b] = [0, 1, 2].map(|i| {
            let n = self.pending[i].swap(0, Relaxed);
            self.reported[i].fetch_add(n, Relaxed);
            n
        });
        Counts { requests: r, sampled: s, borrowed: b }
    }

    /// Puts back counts whose report did not reach the service, for the next one.
    pub fn restore(&self, c: Counts) {
        for (i, n) in [c.requests, c.sampled, c.borrowed].into_iter().enumerate() {
            self.reported[i].fetch_sub(n, Relaxed);
            self.pending[i].fetch_add(n, Relaxed);
        }
    }

    /// Everything the rule saw since start-up.
    pub fn totals(&self) -> Counts {
        let [r, s, b] = [0, 1, 2].map(|i| self.reported[i].load(Relaxed) + self.pending[i].load(Relaxed));
        Counts { requests: r, sampled: s, borrowed: b }
    }
}
