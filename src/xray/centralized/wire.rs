//! The sampling API's JSON shapes, as the X-Ray daemon, the CloudWatch agent and the ADOT collector's
//! `awsproxy` relay them: `POST /GetSamplingRules` and `POST /SamplingTargets`.
//!
//! Every field the service may leave out is optional here: a rule missing one is skipped by the
//! engine, never the whole answer.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// `POST /GetSamplingRules` request body.
#[derive(Debug, Serialize)]
pub struct RulesRequest<'a> {
    /// The page to fetch; `None` for the first.
    #[serde(rename = "NextToken")]
    pub next_token: Option<&'a str>,
}

/// `POST /GetSamplingRules` response body (one page).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RulesResponse {
    /// The rules on this page.
    #[serde(default)]
    pub sampling_rule_records: Vec<RuleRecord>,
    /// Set when there is another page.
    #[serde(default)]
    pub next_token: Option<String>,
}

/// One entry of `SamplingRuleRecords`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuleRecord {
    /// The rule itself.
    pub sampling_rule: Option<RawRule>,
}

/// A sampling rule as the console stores it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RawRule {
    /// Unique name; `Default` is the catch-all.
    pub rule_name: Option<String>,
    /// Must be `*` for a rule that applies to requests traced by an agent.
    #[serde(rename = "ResourceARN")]
    pub resource_arn: Option<String>,
    /// Lower goes first.
    pub priority: Option<i64>,
    /// Share sampled once the reservoir is used up.
    pub fixed_rate: Option<f64>,
    /// Requests a second the whole fleet takes first (shared out through targets).
    pub reservoir_size: Option<i64>,
    /// Segment name pattern.
    pub service_name: Option<String>,
    /// Segment `origin` pattern.
    pub service_type: Option<String>,
    /// Host pattern.
    pub host: Option<String>,
    /// Method pattern.
    #[serde(rename = "HTTPMethod")]
    pub http_method: Option<String>,
    /// Path pattern.
    #[serde(rename = "URLPath")]
    pub url_path: Option<String>,
    /// Only version 1 exists.
    pub version: Option<i64>,
    /// Segment attributes to match; agents cannot see them, so such rules never apply here.
    pub attributes: Option<HashMap<String, String>>,
}

/// `POST /SamplingTargets` request body.
#[derive(Debug, Serialize)]
pub struct TargetsRequest {
    /// One entry per rule that saw requests since the last report.
    #[serde(rename = "SamplingStatisticsDocuments")]
    pub documents: Vec<Statistics>,
}

/// What one rule saw since the last report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statistics {
    /// The rule.
    pub rule_name: String,
    /// This process, 24 hex characters.
    #[serde(rename = "ClientID")]
    pub client_id: String,
    /// When the counts were taken, epoch seconds.
    pub timestamp: f64,
    /// Requests the rule matched.
    pub request_count: u64,
    /// Of those, sampled from the quota or by the fixed rate; borrowed ones are not counted here.
    pub sampled_count: u64,
    /// Of those, sampled by borrowing while no quota was assigned.
    pub borrow_count: u64,
}

/// `POST /SamplingTargets` response body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TargetsResponse {
    /// New quotas and rates, per rule.
    pub sampling_target_documents: Vec<Target>,
    /// When any rule last changed, epoch seconds: newer than our rules means fetch them again.
    pub last_rule_modification: Option<f64>,
    /// Statistics the service could not use.
    pub unprocessed_statistics: Vec<serde_json::Value>,
}

/// A rule's assignment for this client.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Target {
    /// The rule.
    pub rule_name: Option<String>,
    /// The rate to apply beyond the quota.
    pub fixed_rate: Option<f64>,
    /// Requests a second this client may take; absent means none assigned this time.
    pub reservoir_quota: Option<i64>,
    /// Until when the quota holds, epoch seconds.
    #[serde(rename = "ReservoirQuotaTTL")]
    pub reservoir_quota_ttl: Option<f64>,
    /// Seconds until the next report is wanted.
    pub interval: Option<i64>,
}
