//! The sampling operations of the X-Ray API: the rules (get, create, update, delete), the clients'
//! targets, and the rules' recent statistics.

use super::clock::now;
use super::sampling_rules::{SamplingRule, SamplingRuleUpdate};
use super::sampling_targets::StatisticsDocument;
use super::state::State;
use super::xray_error::XrayError;
use super::xray_error::input;
use serde::Deserialize;
use serde_json::{Value, json};

/// The window `GetSamplingStatisticSummaries` sums over: the page's "last minutes".
const SUMMARY_SECONDS: u64 = 300;

fn to_value(v: impl serde::Serialize) -> Result<Value, XrayError> {
    serde_json::to_value(v).map_err(|e| XrayError::invalid(format!("cannot encode the answer: {e}")))
}

/// `GetSamplingRules`: every rule in evaluation order, on one page.
pub fn get_sampling_rules(state: &State, _body: &[u8]) -> Result<Value, XrayError> {
    let sampling = state.sampling();
    Ok(json!({ "SamplingRuleRecords": to_value(sampling.rules.list())? }))
}

/// `CreateSamplingRule`.
pub fn create_sampling_rule(state: &State, body: &[u8]) -> Result<Value, XrayError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        sampling_rule: SamplingRule,
    }
    let Input { sampling_rule } = input(body)?;
    let record = state.sampling().rules.create(sampling_rule, now())?;
    tracing::info!(rule = %record.sampling_rule.rule_name, "sampling rule created");
    Ok(json!({ "SamplingRuleRecord": to_value(record)? }))
}

/// `UpdateSamplingRule`.
pub fn update_sampling_rule(state: &State, body: &[u8]) -> Result<Value, XrayError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        sampling_rule_update: SamplingRuleUpdate,
    }
    let Input { sampling_rule_update } = input(body)?;
    let record = state.sampling().rules.update(sampling_rule_update, now())?;
    tracing::info!(rule = %record.sampling_rule.rule_name, "sampling rule updated");
    Ok(json!({ "SamplingRuleRecord": to_value(record)? }))
}

/// `DeleteSamplingRule`, by name or ARN.
pub fn delete_sampling_rule(state: &State, body: &[u8]) -> Result<Value, XrayError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        rule_name: Option<String>,
        #[serde(rename = "RuleARN")]
        rule_arn: Option<String>,
    }
    let input: Input = input(body)?;
    let mut sampling = state.sampling();
    let record = sampling.rules.delete(input.rule_name.as_deref(), input.rule_arn.as_deref(), now())?;
    sampling.targets.remove(&record.sampling_rule.rule_name);
    tracing::info!(rule = %record.sampling_rule.rule_name, "sampling rule deleted");
    Ok(json!({ "SamplingRuleRecord": to_value(record)? }))
}

/// `GetSamplingTargets`: records the statistics and answers each rule's quota for this client.
pub fn get_sampling_targets(state: &State, body: &[u8]) -> Result<Value, XrayError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        sampling_statistics_documents: Vec<StatisticsDocument>,
    }
    let input: Input = input(body)?;
    let mut sampling = state.sampling();
    let sampling = &mut *sampling;
    let answer = sampling.targets.report(&sampling.rules, &input.sampling_statistics_documents, now());
    to_value(answer)
}

/// `GetSamplingStatisticSummaries`: each rule's requests, sampled and borrowed over the last minutes,
/// with the clients reporting it.
pub fn get_sampling_statistic_summaries(state: &State, _body: &[u8]) -> Result<Value, XrayError> {
    let sampling = state.sampling();
    let now = now();
    let summaries: Vec<Value> = sampling
        .rules
        .list()
        .iter()
        .map(|record| {
            let name = &record.sampling_rule.rule_name;
            let stats = sampling.targets.statistics(name, now, SUMMARY_SECONDS);
            json!({
                "RuleName": name,
                "Timestamp": (now - stats.seconds as f64).floor(),
                "RequestCount": stats.requests,
                "SampledCount": stats.sampled,
                "BorrowCount": stats.borrowed,
                "Clients": stats.clients,
                "Seconds": stats.seconds,
            })
        })
        .collect();
    Ok(json!({ "SamplingStatisticSummaries": summaries }))
}
