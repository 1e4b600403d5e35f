use super::super::xray_error::ErrorKind;
use super::*;
use serde_json::json;

fn rule(name: &str, priority: i64) -> SamplingRule {
    serde_json::from_value(json!({
        "RuleName": name, "ResourceARN": "*", "Priority": priority, "FixedRate": 0.1, "ReservoirSize": 2,
        "ServiceName": "*", "ServiceType": "*", "Host": "*", "HTTPMethod": "GET", "URLPath": "/health",
        "Version": 1
    }))
    .expect("a valid rule")
}

fn names(rules: &Rules) -> Vec<&str> {
    rules.list().iter().map(|r| r.sampling_rule.rule_name.as_str()).collect()
}

#[test]
fn lists_by_priority_with_default_last_and_serializes_like_the_api() {
    let mut rules = Rules::new(1.0);
    rules.create(rule("b", 20), 2.0).expect("created");
    rules.create(rule("a", 20), 3.0).expect("created");
    rules.create(rule("first", 1), 4.0).expect("created");
    assert_eq!(names(&rules), ["first", "a", "b", "Default"]);
    assert_eq!(rules.last_modification(), 4.0);
    let json = serde_json::to_value(rules.get("a").expect("a")).expect("serializes");
    assert_eq!(json["SamplingRule"]["RuleARN"], "arn:aws:xray:local::sampling-rule/a");
    assert_eq!(json["SamplingRule"]["HTTPMethod"], "GET");
    assert_eq!(json["SamplingRule"]["URLPath"], "/health");
    assert_eq!(json["SamplingRule"]["Attributes"], json!({}));
    assert_eq!(json["CreatedAt"], 3.0);
}

#[test]
fn refuses_what_xray_refuses() {
    let mut rules = Rules::new(0.0);
    rules.create(rule("taken", 5), 0.0).expect("created");
    let bad = [
        (rule("taken", 5), "already exists"),
        (rule("Default", 5), "already exists"),
        (rule("", 5), "RuleName"),
        (rule("has space", 5), "RuleName"),
        (rule(&"x".repeat(33), 5), "RuleName"),
        (rule("p0", 0), "Priority"),
        (rule("p10000", 10_000), "Priority"),
        (SamplingRule { fixed_rate: 1.5, ..rule("rate", 5) }, "FixedRate"),
        (SamplingRule { reservoir_size: -1, ..rule("res", 5) }, "ReservoirSize"),
        (SamplingRule { version: 2, ..rule("v2", 5) }, "Version"),
        (SamplingRule { host: String::new(), ..rule("host", 5) }, "Host"),
        (SamplingRule { url_path: "/".repeat(129), ..rule("path", 5) }, "URLPath"),
    ];
    for (r, why) in bad {
        let err = rules.create(r.clone(), 1.0).expect_err(&format!("{r:?} must be refused"));
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(err.message.contains(why), "{err} should mention {why}");
    }
    assert_eq!(names(&rules), ["taken", "Default"], "nothing refused was kept");
}

#[test]
fn limits_the_number_of_rules() {
    let mut rules = Rules::new(0.0);
    for i in 0..MAX_RULES {
        rules.create(rule(&format!("r{i}"), 100), 0.0).expect("within the limit");
    }
    let err = rules.create(rule("one-more", 100), 0.0).expect_err("over the limit");
    assert_eq!(err.kind, ErrorKind::RuleLimitExceeded);
    rules.delete(Some("r0"), None, 0.0).expect("deleted");
    rules.create(rule("one-more", 100), 0.0).expect("room again");
}

#[test]
fn updates_by_name_or_arn_and_guards_default() {
    let mut rules = Rules::new(0.0);
    rules.create(rule("slow", 5), 1.0).expect("created");
    let update: SamplingRuleUpdate = serde_json::from_value(json!({
        "RuleARN": "arn:aws:xray:local::sampling-rule/slow", "FixedRate": 0.5, "URLPath": "/slow/*"
    }))
    .expect("update");
    let record = rules.update(update, 7.0).expect("updated");
    assert_eq!((record.sampling_rule.fixed_rate, record.sampling_rule.url_path.as_str()), (0.5, "/slow/*"));
    assert_eq!((record.created_at, record.modified_at, rules.last_modification()), (1.0, 7.0, 7.0));

    let bad_rate: SamplingRuleUpdate =
        serde_json::from_value(json!({"RuleName": "slow", "FixedRate": 2.0})).expect("update");
    assert!(rules.update(bad_rate, 8.0).is_err());
    assert_eq!(rules.get("slow").map(|r| r.sampling_rule.fixed_rate), Some(0.5), "a refused update changes nothing");

    let default_rate: SamplingRuleUpdate =
        serde_json::from_value(json!({"RuleName": "Default", "FixedRate": 0.2, "ReservoirSize": 3})).expect("update");
    rules.update(default_rate, 9.0).expect("Default's rate can change");
    let default_path: SamplingRuleUpdate =
        serde_json::from_value(json!({"RuleName": "Default", "URLPath": "/x"})).expect("update");
    assert!(rules.update(default_path, 9.0).is_err(), "Default keeps matching everything");
    let missing: SamplingRuleUpdate = serde_json::from_value(json!({"RuleName": "nope"})).expect("update");
    assert!(rules.update(missing, 9.0).expect_err("unknown").message.contains("nope"));
}

#[test]
fn deletes_but_never_default() {
    let mut rules = Rules::new(0.0);
    rules.create(rule("gone", 5), 1.0).expect("created");
    let deleted = rules.delete(None, Some("arn:aws:xray:local::sampling-rule/gone"), 3.0).expect("deleted");
    assert_eq!(deleted.sampling_rule.rule_name, "gone");
    assert_eq!(rules.last_modification(), 3.0);
    assert!(rules.delete(Some("gone"), None, 4.0).is_err());
    assert!(rules.delete(Some(DEFAULT_RULE), None, 4.0).expect_err("kept").message.contains("Default"));
    assert!(rules.delete(None, None, 4.0).is_err());
    assert_eq!(names(&rules), ["Default"]);
}
