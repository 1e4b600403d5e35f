//! The centralized sampling rules: X-Ray's `SamplingRule` records, validated and kept in memory.
//!
//! `Default` always exists, matches everything, comes last and can only have its rate and reservoir
//! changed, as in X-Ray. Names are unique; at most [`MAX_RULES`] rules besides `Default`.

use super::xray_error::XrayError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Rules an account may hold besides `Default` (X-Ray's quota).
pub const MAX_RULES: usize = 25;
/// The rule that matches whatever no other rule does.
pub const DEFAULT_RULE: &str = "Default";
/// `Default`'s priority: after every other rule (whose priorities are 1 to 9999).
const DEFAULT_PRIORITY: i64 = 10_000;

/// One sampling rule, field for field as the X-Ray API writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SamplingRule {
    /// Unique name, 1 to 32 letters, digits, `-` or `_`.
    pub rule_name: String,
    /// `arn:aws:xray:local::sampling-rule/<name>`, set by the console.
    #[serde(rename = "RuleARN", default, skip_deserializing)]
    pub rule_arn: String,
    /// Only `*` is applied by the SDKs.
    #[serde(rename = "ResourceARN")]
    pub resource_arn: String,
    /// Lower is evaluated first, 1 to 9999.
    pub priority: i64,
    /// Share of requests sampled beyond the reservoir, 0 to 1.
    pub fixed_rate: f64,
    /// Requests per second sampled before the rate applies, shared by all clients.
    pub reservoir_size: i64,
    /// Matches the segment's name (`*` and `?` wildcards).
    pub service_name: String,
    /// Matches the segment's origin.
    pub service_type: String,
    /// Matches the request's host.
    pub host: String,
    /// Matches the request's method.
    #[serde(rename = "HTTPMethod")]
    pub http_method: String,
    /// Matches the request's path.
    #[serde(rename = "URLPath")]
    pub url_path: String,
    /// Only 1 exists.
    pub version: i64,
    /// Matches segment attributes; rules with any are skipped by the SDKs.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// `UpdateSamplingRule`'s input: the rule by name or ARN, and the fields to change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SamplingRuleUpdate {
    /// The rule's name (or give its ARN).
    pub rule_name: Option<String>,
    /// The rule's ARN.
    #[serde(rename = "RuleARN")]
    pub rule_arn: Option<String>,
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
    priority: Option<i64>,
    fixed_rate: Option<f64>,
    reservoir_size: Option<i64>,
    host: Option<String>,
    service_name: Option<String>,
    service_type: Option<String>,
    #[serde(rename = "HTTPMethod")]
    http_method: Option<String>,
    #[serde(rename = "URLPath")]
    url_path: Option<String>,
    attributes: Option<BTreeMap<String, String>>,
}

/// A rule with its times (X-Ray's `SamplingRuleRecord`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuleRecord {
    /// The rule.
    pub sampling_rule: SamplingRule,
    /// When it was created, epoch seconds.
    pub created_at: f64,
    /// When it last changed, epoch seconds.
    pub modified_at: f64,
}

/// The rules of the console.
#[derive(Debug)]
pub struct Rules {
    records: HashMap<String, RuleRecord>,
    last_modification: f64,
}

fn arn(name: &str) -> String {
    format!("arn:aws:xray:local::sampling-rule/{name}")
}

impl Rules {
    /// Only `Default`: one request per second, then 5 % (X-Ray's own default).
    pub fn new(now: f64) -> Self {
        let default = SamplingRule {
            rule_name: DEFAULT_RULE.to_owned(),
            rule_arn: arn(DEFAULT_RULE),
            resource_arn: "*".to_owned(),
            priority: DEFAULT_PRIORITY,
            fixed_rate: 0.05,
            reservoir_size: 1,
            service_name: "*".to_owned(),
            service_type: "*".to_owned(),
            host: "*".to_owned(),
            http_method: "*".to_owned(),
            url_path: "*".to_owned(),
            version: 1,
            attributes: BTreeMap::new(),
        };
        let record = RuleRecord { sampling_rule: default, created_at: now, modified_at: now };
        Self { records: HashMap::from([(DEFAULT_RULE.to_owned(), record)]), last_modification: now }
    }

    /// Every rule in the order SDKs evaluate them: by priority, then name, `Default` last.
    pub fn list(&self) -> Vec<&RuleRecord> {
        let mut all: Vec<&RuleRecord> = self.records.values().collect();
        all.sort_by(|a, b| {
            let key = |r: &RuleRecord| (r.sampling_rule.rule_name == DEFAULT_RULE, r.sampling_rule.priority);
            key(a).cmp(&key(b)).then_with(|| a.sampling_rule.rule_name.cmp(&b.sampling_rule.rule_name))
        });
        all
    }

    /// The rule with this name.
    pub fn get(&self, name: &str) -> Option<&RuleRecord> {
        self.records.get(name)
    }

    /// When any rule last changed, epoch seconds (`GetSamplingTargets`' `LastRuleModification`).
    pub fn last_modification(&self) -> f64 {
        self.last_modification
    }

    /// `CreateSamplingRule`.
    pub fn create(&mut self, mut rule: SamplingRule, now: f64) -> Result<RuleRecord, XrayError> {
        validate_name(&rule.rule_name)?;
        if self.records.contains_key(&rule.rule_name) {
            return Err(XrayError::invalid(format!("a sampling rule named {} already exists", rule.rule_name)));
        }
        validate(&rule)?;
        if self.records.len() > MAX_RULES {
            return Err(XrayError::rule_limit(format!(
                "at most {MAX_RULES} sampling rules besides {DEFAULT_RULE}; delete one first"
            )));
        }
        rule.rule_arn = arn(&rule.rule_name);
        let record = RuleRecord { sampling_rule: rule, created_at: now, modified_at: now };
        self.records.insert(record.sampling_rule.rule_name.clone(), record.clone());
        self.last_modification = now;
        Ok(record)
    }

    /// `UpdateSamplingRule`: changes the given fields of the rule named (or whose ARN is given).
    pub fn update(&mut self, update: SamplingRuleUpdate, now: f64) -> Result<RuleRecord, XrayError> {
        let name = self.find(update.rule_name.as_deref(), update.rule_arn.as_deref())?;
        let Some(record) = self.records.get_mut(&name) else {
            return Err(XrayError::invalid(format!("no sampling rule named {name}")));
        };
        let mut rule = record.sampling_rule.clone();
        let u = update;
        if name == DEFAULT_RULE {
            let changes_match = u.resource_arn.is_some()
                || u.priority.is_some()
                || u.host.is_some()
                || u.service_name.is_some()
                || u.service_type.is_some()
                || u.http_method.is_some()
                || u.url_path.is_some()
                || u.attributes.is_some();
            if changes_match {
                return Err(XrayError::invalid("only FixedRate and ReservoirSize of the Default rule can be changed"));
            }
        }
        let set = |field: &mut String, value: Option<String>| {
            if let Some(v) = value {
                *field = v;
            }
        };
        set(&mut rule.resource_arn, u.resource_arn);
        set(&mut rule.host, u.host);
        set(&mut rule.service_name, u.service_name);
        set(&mut rule.service_type, u.service_type);
        set(&mut rule.http_method, u.http_method);
        set(&mut rule.url_path, u.url_path);
        rule.priority = u.priority.unwrap_or(rule.priority);
        rule.fixed_rate = u.fixed_rate.unwrap_or(rule.fixed_rate);
        rule.reservoir_size = u.reservoir_size.unwrap_or(rule.reservoir_size);
        rule.attributes = u.attributes.unwrap_or(rule.attributes);
        validate(&rule)?;
        record.sampling_rule = rule;
        record.modified_at = now;
        self.last_modification = now;
        Ok(record.clone())
    }

    /// `DeleteSamplingRule`: removes the rule named (or whose ARN is given); `Default` stays.
    pub fn delete(&mut self, name: Option<&str>, rule_arn: Option<&str>, now: f64) -> Result<RuleRecord, XrayError> {
        let name = self.find(name, rule_arn)?;
        if name == DEFAULT_RULE {
            return Err(XrayError::invalid("the Default rule cannot be deleted"));
        }
        let record =
            self.records.remove(&name).ok_or_else(|| XrayError::invalid(format!("no sampling rule named {name}")))?;
        self.last_modification = now;
        Ok(record)
    }

    /// The name of the rule given by name or ARN (both must agree when both are given).
    fn find(&self, name: Option<&str>, rule_arn: Option<&str>) -> Result<String, XrayError> {
        let from_arn = rule_arn.map(|a| a.rsplit_once("sampling-rule/").map_or(a, |(_, n)| n));
        let name = match (name, from_arn) {
            (Some(n), Some(a)) if n != a => {
                return Err(XrayError::invalid(format!(
                    "RuleName {n} and RuleARN {} name different rules",
                    rule_arn.unwrap_or_default()
                )));
            }
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => return Err(XrayError::invalid("give RuleName or RuleARN")),
        };
        if !self.records.contains_key(name) {
            return Err(XrayError::invalid(format!("no sampling rule named {name}")));
        }
        Ok(name.to_owned())
    }
}

fn validate_name(name: &str) -> Result<(), XrayError> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if name.is_empty() || name.len() > 32 || !ok_chars {
        return Err(XrayError::invalid(format!("RuleName {name:?} must be 1 to 32 letters, digits, '-' or '_'")));
    }
    Ok(())
}

/// X-Ray's constraints on a rule's fields.
pub fn validate(rule: &SamplingRule) -> Result<(), XrayError> {
    let is_default = rule.rule_name == DEFAULT_RULE;
    if !is_default && !(1..=9999).contains(&rule.priority) {
        return Err(XrayError::invalid(format!("Priority {} is not between 1 and 9999", rule.priority)));
    }
    if !(0.0..=1.0).contains(&rule.fixed_rate) {
        return Err(XrayError::invalid(format!("FixedRate {} is not between 0 and 1", rule.fixed_rate)));
    }
    if !(0..=i64::from(i32::MAX)).contains(&rule.reservoir_size) {
        return Err(XrayError::invalid(format!("ReservoirSize {} is negative or too large", rule.reservoir_size)));
    }
    if rule.version != 1 {
        return Err(XrayError::invalid(format!("Version {} is not supported; only 1 is", rule.version)));
    }
    let lengths = [
        ("ResourceARN", &rule.resource_arn, 500),
        ("ServiceName", &rule.service_name, 64),
        ("ServiceType", &rule.service_type, 64),
        ("Host", &rule.host, 64),
        ("HTTPMethod", &rule.http_method, 10),
        ("URLPath", &rule.url_path, 128),
    ];
    for (field, value, max) in lengths {
        if value.is_empty() || value.chars().count() > max {
            return Err(XrayError::invalid(format!("{field} must be 1 to {max} characters (use * for any)")));
        }
    }
    if rule.attributes.len() > 5 {
        return Err(XrayError::invalid("at most 5 Attributes"));
    }
    for (key, value) in &rule.attributes {
        if key.is_empty() || key.chars().count() > 32 || value.is_empty() || value.chars().count() > 32 {
            return Err(XrayError::invalid(format!("attribute {key:?} and its value must be 1 to 32 characters")));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "sampling_rules_tests.rs"]
mod tests;
