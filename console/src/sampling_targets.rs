//! `GetSamplingTargets`: takes the clients' per-rule statistics and hands each client its share of
//! every rule's reservoir, so that all the clients together sample about `ReservoirSize` per second.
//!
//! Shares are max-min fair over the clients that reported a rule in the last [`ACTIVE_SECONDS`]:
//! a client that needs less than an equal share gets what it needs, the rest is split among the
//! busier ones, and what nobody needs is spread evenly so a client whose traffic grows has room.
//! Units that do not split evenly go to each client in turn, one poll interval after another.

use super::sampling_rules::Rules;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// Seconds between the clients' target polls, as X-Ray tells them.
pub const INTERVAL_SECONDS: u64 = 10;
/// A client that has not reported a rule for this long no longer gets a share of it.
const ACTIVE_SECONDS: f64 = 3.0 * INTERVAL_SECONDS as f64;
/// A quota is good a little longer than one poll, so it does not lapse between two polls.
const QUOTA_TTL_SECONDS: f64 = 1.5 * INTERVAL_SECONDS as f64;
/// The statistics kept per rule for the page: 10-second buckets over five minutes.
const BUCKET_SECONDS: u64 = 10;
const BUCKETS: usize = 30;

/// One client's statistics for one rule since its previous report (X-Ray's `SamplingStatisticsDocument`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatisticsDocument {
    /// The rule.
    pub rule_name: String,
    /// The client's 24-character id.
    #[serde(rename = "ClientID")]
    pub client_id: String,
    /// Requests the rule matched.
    pub request_count: u64,
    /// Of which sampled from the client's quota or by the rule's rate.
    pub sampled_count: u64,
    /// Of which sampled by borrowing, while the client had no quota; the SDKs count these apart
    /// from `SampledCount`, so the requests recorded are the sum of both.
    #[serde(default)]
    pub borrow_count: u64,
}

/// What a client is to do for one rule until its next poll (X-Ray's `SamplingTargetDocument`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetDocument {
    /// The rule.
    pub rule_name: String,
    /// The rule's rate beyond the quota.
    pub fixed_rate: f64,
    /// Requests per second this client may sample before the rate applies.
    pub reservoir_quota: u64,
    /// When the quota lapses, epoch seconds.
    #[serde(rename = "ReservoirQuotaTTL")]
    pub reservoir_quota_ttl: f64,
    /// Seconds until the next poll.
    pub interval: u64,
}

/// A statistics document that was not taken (X-Ray's `UnprocessedStatistics`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Unprocessed {
    /// The rule named.
    pub rule_name: String,
    /// An HTTP-like code.
    pub error_code: String,
    /// Why.
    pub message: String,
}

/// `GetSamplingTargets`' answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetsAnswer {
    /// One per rule reported.
    pub sampling_target_documents: Vec<TargetDocument>,
    /// When any rule last changed: clients re-read the rules when this is newer than their copy.
    pub last_rule_modification: f64,
    /// Documents not taken.
    pub unprocessed_statistics: Vec<Unprocessed>,
}

/// A rule's statistics over recent minutes, as the page shows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuleStatistics {
    /// Requests the rule matched.
    pub requests: u64,
    /// Of which sampled from a quota or by the rate.
    pub sampled: u64,
    /// Of which borrowed (not in `sampled`).
    pub borrowed: u64,
    /// Clients reporting it now.
    pub clients: usize,
    /// The seconds these counts cover.
    pub seconds: u64,
}

#[derive(Debug, Clone, Copy)]
struct Demand {
    last_report: f64,
    per_second: f64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    start: u64,
    requests: u64,
    sampled: u64,
    borrowed: u64,
}

/// The clients' demands and the rules' recent statistics.
#[derive(Debug, Default)]
pub struct Targets {
    /// By rule, then client.
    demands: HashMap<String, HashMap<String, Demand>>,
    history: HashMap<String, VecDeque<Bucket>>,
}

impl Targets {
    /// Records the statistics, then answers each reported rule with this client's share.
    pub fn report(&mut self, rules: &Rules, docs: &[StatisticsDocument], now: f64) -> TargetsAnswer {
        let mut unprocessed = Vec::new();
        let mut reported: Vec<(&str, &str)> = Vec::new();
        for doc in docs {
            let problem = if rules.get(&doc.rule_name).is_none() {
                Some(format!("no sampling rule named {}", doc.rule_name))
            } else if doc.client_id.chars().count() != 24 {
                Some(format!("ClientID {:?} is not 24 characters", doc.client_id))
            } else if doc.sampled_count > doc.request_count || doc.borrow_count > doc.request_count {
                Some(format!(
                    "SampledCount {} and BorrowCount {} cannot exceed RequestCount {}",
                    doc.sampled_count, doc.borrow_count, doc.request_count
                ))
            } else {
                None
            };
            if let Some(message) = problem {
                unprocessed.push(Unprocessed { rule_name: doc.rule_name.clone(), error_code: "400".into(), message });
                continue;
            }
            self.record(doc, now);
            reported.push((&doc.rule_name, &doc.client_id));
        }
        self.forget_idle(now);
        let mut targets = Vec::new();
        for (rule_name, client) in reported {
            let Some(record) = rules.get(rule_name) else { continue };
            let rule = &record.sampling_rule;
            let reservoir = u64::try_from(rule.reservoir_size).unwrap_or(0);
            targets.push(TargetDocument {
                rule_name: rule_name.to_owned(),
                fixed_rate: rule.fixed_rate,
                reservoir_quota: self.share(rule_name, client, reservoir, now),
                reservoir_quota_ttl: (now + QUOTA_TTL_SECONDS).floor(),
                interval: INTERVAL_SECONDS,
            });
        }
        TargetsAnswer {
            sampling_target_documents: targets,
            last_rule_modification: rules.last_modification(),
            unprocessed_statistics: unprocessed,
        }
    }

    fn record(&mut self, doc: &StatisticsDocument, now: f64) {
        let clients = self.demands.entry(doc.rule_name.clone()).or_default();
        let elapsed = clients.get(&doc.client_id).map_or(INTERVAL_SECONDS as f64, |d| now - d.last_report);
        let per_second = doc.request_count as f64 / elapsed.max(1.0);
        clients.insert(doc.client_id.clone(), Demand { last_report: now, per_second });

        let start = (now.max(0.0) as u64) / BUCKET_SECONDS * BUCKET_SECONDS;
        let buckets = self.history.entry(doc.rule_name.clone()).or_default();
        if buckets.back().is_none_or(|b| b.start != start) {
            buckets.push_back(Bucket { start, ..Bucket::default() });
            if buckets.len() > BUCKETS {
                buckets.pop_front();
            }
        }
        if let Some(b) = buckets.back_mut() {
            // Counts come from any client that can reach the port: they saturate, never wrap.
            b.requests = b.requests.saturating_add(doc.request_count);
            b.sampled = b.sampled.saturating_add(doc.sampled_count);
            b.borrowed = b.borrowed.saturating_add(doc.borrow_count);
        }
    }

    fn forget_idle(&mut self, now: f64) {
        for clients in self.demands.values_mut() {
            clients.retain(|_, d| now - d.last_report <= ACTIVE_SECONDS);
        }
        self.demands.retain(|_, clients| !clients.is_empty());
    }

    /// This client's share of the rule's reservoir among the rule's active clients at `now`.
    fn share(&self, rule: &str, client: &str, reservoir: u64, now: f64) -> u64 {
        let Some(clients) = self.demands.get(rule) else { return reservoir };
        let mut ids: Vec<&String> = clients.keys().collect();
        ids.sort();
        let demands: Vec<f64> = ids.iter().map(|id| clients[*id].per_second).collect();
        // Every client polls once per interval: all the polls of one interval see the same turn, so
        // their shares add up to the reservoir, and the next interval hands the odd units on.
        let turn = (now.max(0.0) / INTERVAL_SECONDS as f64) as usize;
        let shares = fair_shares(reservoir, &demands, turn);
        ids.iter().position(|id| id.as_str() == client).and_then(|i| shares.get(i).copied()).unwrap_or(0)
    }

    /// The rule's statistics over the last `seconds` (at most five minutes).
    pub fn statistics(&self, rule: &str, now: f64, seconds: u64) -> RuleStatistics {
        let since = (now.max(0.0) as u64).saturating_sub(seconds);
        let mut stats = RuleStatistics {
            seconds: seconds.min(BUCKET_SECONDS * BUCKETS as u64),
            clients: self
                .demands
                .get(rule)
                .map_or(0, |c| c.values().filter(|d| now - d.last_report <= ACTIVE_SECONDS).count()),
            ..RuleStatistics::default()
        };
        for b in self.history.get(rule).into_iter().flatten().filter(|b| b.start + BUCKET_SECONDS > since) {
            stats.requests = stats.requests.saturating_add(b.requests);
            stats.sampled = stats.sampled.saturating_add(b.sampled);
            stats.borrowed = stats.borrowed.saturating_add(b.borrowed);
        }
        stats
    }

    /// Forgets a deleted rule.
    pub fn remove(&mut self, rule: &str) {
        self.demands.remove(rule);
        self.history.remove(rule);
    }
}

/// Splits `reservoir` among clients needing `demands` per second: max-min fair, all of it handed out.
///
/// Clients needing no more than an even split of what is left get what they need, quietest first;
/// the busier ones split the rest evenly (when everyone is served, everyone splits what nobody
/// needs). Whole units rarely split evenly: the odd ones go round the clients sharing them, starting
/// at `turn`, so that with a new `turn` each poll round equally busy clients take them by turns (a
/// reservoir of 1 shared by 3 clients would otherwise always go to the same one).
pub fn fair_shares(reservoir: u64, demands: &[f64], turn: usize) -> Vec<u64> {
    let n = demands.len();
    if n == 0 {
        return Vec::new();
    }
    let want: Vec<u64> = demands.iter().map(|d| if d.is_finite() && *d > 0.0 { d.ceil() as u64 } else { 0 }).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| want[i]);
    let mut shares = vec![0; n];
    let mut left = reservoir;
    let mut served = 0;
    for (k, &i) in order.iter().enumerate() {
        if want[i] > left / (n - k) as u64 {
            break;
        }
        shares[i] = want[i];
        left -= want[i];
        served += 1;
    }
    let mut sharing: Vec<usize> = if served < n { order[served..].to_vec() } else { (0..n).collect() };
    sharing.sort_unstable();
    let m = sharing.len();
    let (each, odd) = (left / m as u64, (left % m as u64) as usize);
    for (j, &i) in sharing.iter().enumerate() {
        shares[i] += each + u64::from((j + m - turn % m) % m < odd);
    }
    shares
}

#[cfg(test)]
#[path = "sampling_targets_tests.rs"]
mod tests;
