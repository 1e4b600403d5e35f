#![allow(clippy::unwrap_used)]
use super::wire::{RawRule, RulesResponse, Target, TargetsResponse};
use super::*;

const NOW: u64 = 1_700_000_000;

fn rule(name: &str, priority: i64, rate: f64, service: &str, method: &str, path: &str) -> RawRule {
    RawRule {
        rule_name: Some(name.into()),
        resource_arn: Some("*".into()),
        priority: Some(priority),
        fixed_rate: Some(rate),
        reservoir_size: Some(1),
        service_name: Some(service.into()),
        service_type: Some("*".into()),
        host: Some("*".into()),
        http_method: Some(method.into()),
        url_path: Some(path.into()),
        version: Some(1),
        attributes: Some(Default::default()),
    }
}

fn facts<'a>(method: &'a str, path: &'a str) -> RequestFacts<'a> {
    RequestFacts { host: "shop.example:8080", method, path }
}

fn engine(rules: &[RawRule]) -> Centralized {
    let e = Centralized::new(Arc::from("Front-End"), Some("AWS::EKS::Container"));
    e.install(rules, NOW);
    e
}

#[test]
fn only_rules_an_agent_can_apply_to_this_service_are_kept_in_order() {
    let mut attrs = rule("attrs", 1, 1.0, "*", "*", "*");
    attrs.attributes = Some([("user".to_owned(), "x".to_owned())].into());
    let mut v2 = rule("v2", 1, 1.0, "*", "*", "*");
    v2.version = Some(2);
    let mut arn = rule("arn", 1, 1.0, "*", "*", "*");
    arn.resource_arn = Some("arn:aws:ecs:*".into());
    let mut lambda = rule("lambda", 1, 1.0, "*", "*", "*");
    lambda.service_type = Some("AWS::Lambda::Function".into());
    let e = engine(&[
        rule("Default", 10000, 0.05, "*", "*", "*"),
        rule("b-same-priority", 5, 0.0, "front-*", "*", "*"),
        rule("a-same-priority", 5, 0.0, "FRONT-END", "*", "*"),
        rule("other-service", 1, 1.0, "back-end", "*", "*"),
        rule("first", 2, 1.0, "*", "GET", "/api/?tems/*"),
        attrs,
        v2,
        arn,
        lambda,
        RawRule::default(),
    ]);
    let names: Vec<_> = e.rules.load().rules.iter().map(|r| r.name.clone()).collect();
    assert_eq!(names, ["first", "a-same-priority", "b-same-priority", "Default"]);
    assert_eq!(e.rule_for(&facts("get", "/API/Items/7")).as_deref(), Some("first"));
    assert_eq!(e.rule_for(&facts("POST", "/api/items/7")).as_deref(), Some("a-same-priority"));
}

#[test]
fn without_a_quota_one_request_a_second_is_borrowed_then_the_fixed_rate() {
    let e = engine(&[rule("Default", 10000, 0.0, "*", "*", "*")]);
    let yes = (0..50).filter(|_| e.decide(&facts("GET", "/"), NOW).unwrap()).count();
    assert_eq!(yes, 1);
    assert_eq!(e.decide(&facts("GET", "/"), NOW + 1), Some(true));
    let docs = e.statistics(NOW as f64);
    assert_eq!(docs.len(), 1);
    // Borrowed requests count as borrowed only, as the SDKs report them.
    assert_eq!((docs[0].request_count, docs[0].sampled_count, docs[0].borrow_count), (51, 0, 2));
    assert_eq!(docs[0].client_id.len(), 24);
    assert!(docs[0].client_id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(e.statistics(NOW as f64).is_empty(), "counts are reported once");
}

#[test]
fn a_rule_with_no_reservoir_never_borrows() {
    let mut none = rule("none", 1, 0.0, "*", "*", "/noisy*");
    none.reservoir_size = Some(0);
    let mut unset = rule("unset", 2, 0.0, "*", "*", "/unset*");
    unset.reservoir_size = None;
    let e = engine(&[none, unset, rule("Default", 10000, 0.0, "*", "*", "*")]);
    for sec in NOW..NOW + 3 {
        for path in ["/noisy", "/unset"] {
            assert!((0..20).all(|_| e.decide(&facts("GET", path), sec) == Some(false)), "{path} at {sec}");
        }
    }
    // An expired quota does not open borrowing either.
    e.apply_targets(&TargetsResponse {
        sampling_target_documents: vec![Target {
            rule_name: Some("none".into()),
            reservoir_quota: Some(0),
            reservoir_quota_ttl: Some((NOW + 3) as f64),
            ..Default::default()
        }],
        ..Default::default()
    });
    assert!((0..20).all(|_| e.decide(&facts("GET", "/noisy"), NOW + 10) == Some(false)));
    let by_rule = |name: &str| e.statistics(NOW as f64).into_iter().find(|d| d.rule_name == name);
    let d = by_rule("none").unwrap();
    assert_eq!((d.request_count, d.sampled_count, d.borrow_count), (80, 0, 0));

    // A refresh giving the rule a reservoir lets it borrow again; taking it away stops it.
    e.install(&[rule("none", 1, 0.0, "*", "*", "/noisy*")], NOW + 20);
    assert_eq!((0..20).filter(|_| e.decide(&facts("GET", "/noisy"), NOW + 20).unwrap()).count(), 1);
    let mut none = rule("none", 1, 0.0, "*", "*", "/noisy*");
    none.reservoir_size = Some(0);
    e.install(&[none], NOW + 21);
    assert_eq!((0..20).filter(|_| e.decide(&facts("GET", "/noisy"), NOW + 21).unwrap()).count(), 0);
}

#[test]
fn an_unknown_service_type_or_host_matches_any_pattern() {
    let mut eks = rule("eks-only", 1, 1.0, "*", "*", "*");
    eks.service_type = Some("AWS::EKS::Container".into());
    let mut ec2 = rule("ec2-only", 2, 1.0, "*", "*", "*");
    ec2.service_type = Some("AWS::EC2::Instance".into());
    let mut api_host = rule("api-host", 0, 1.0, "*", "*", "*");
    api_host.host = Some("api.*".into());
    let raw = [api_host, eks, ec2];

    // Not in a pod nor on an instance: no origin, so the type matches whatever the rule says.
    let nowhere = Centralized::new(Arc::from("svc"), None);
    assert_eq!(nowhere.install(&raw, NOW), 3);
    // In a pod: only the rules for its type (or `*`).
    let in_pod = Centralized::new(Arc::from("svc"), Some("AWS::EKS::Container"));
    assert_eq!(in_pod.install(&raw, NOW), 2);
    assert_eq!(in_pod.rule_for(&facts("GET", "/")).as_deref(), Some("eks-only"));

    // A request without a `Host` matches a host pattern; one with another host does not.
    let no_host = RequestFacts { host: "", method: "GET", path: "/" };
    assert_eq!(in_pod.rule_for(&no_host).as_deref(), Some("api-host"));
    assert_eq!(in_pod.rule_for(&RequestFacts { host: "API.example:80", ..no_host }).as_deref(), Some("api-host"));
}

#[test]
fn an_assigned_quota_is_honoured_until_its_ttl_then_borrowing_resumes() {
    let e = engine(&[rule("Default", 10000, 0.0, "*", "*", "*")]);
    let target = Target {
        rule_name: Some("Default".into()),
        fixed_rate: Some(0.0),
        reservoir_quota: Some(3),
        reservoir_quota_ttl: Some((NOW + 10) as f64),
        interval: Some(10),
    };
    let changed = e.apply_targets(&TargetsResponse {
        sampling_target_documents: vec![target],
        last_rule_modification: Some((NOW - 5) as f64),
        ..Default::default()
    });
    assert!(!changed);
    let take = |sec| (0..20).filter(|_| e.decide(&facts("GET", "/"), sec).unwrap()).count();
    assert_eq!(take(NOW), 3);
    assert_eq!(take(NOW + 10), 3, "the quota holds through its TTL second, as in the SDKs");
    assert_eq!(take(NOW + 11), 1, "expired: borrow one a second");
    let d = &e.statistics(NOW as f64)[0];
    assert_eq!((d.request_count, d.sampled_count, d.borrow_count), (60, 6, 1));
}

#[test]
fn fixed_rate_applies_beyond_the_reservoir() {
    let e = engine(&[rule("all", 1, 1.0, "*", "*", "/all"), rule("Default", 10000, 0.0, "*", "*", "*")]);
    assert!((0..100).all(|_| e.decide(&facts("GET", "/all"), NOW).unwrap()));
    let rate = TargetsResponse {
        sampling_target_documents: vec![Target {
            rule_name: Some("all".into()),
            fixed_rate: Some(0.0),
            ..Default::default()
        }],
        ..Default::default()
    };
    e.apply_targets(&rate);
    assert_eq!((0..100).filter(|_| e.decide(&facts("GET", "/all"), NOW + 1).unwrap()).count(), 1);
}

#[test]
fn the_local_rules_decide_before_rules_and_when_rules_are_an_hour_old() {
    let e = Centralized::new(Arc::from("svc"), None);
    assert_eq!(e.decide(&facts("GET", "/"), NOW), None);
    e.install(&[rule("only-posts", 1, 1.0, "*", "POST", "*")], NOW);
    assert_eq!(e.decide(&facts("POST", "/"), NOW), Some(true));
    assert_eq!(e.decide(&facts("GET", "/"), NOW), None, "no rule matches");
    // However long the API has not answered, the rules decide for their hour.
    assert_eq!(e.decide(&facts("POST", "/"), NOW + RULES_MAX_AGE_SECS), Some(true));
    assert_eq!(e.decide(&facts("POST", "/"), NOW + RULES_MAX_AGE_SECS + 1), None);
    assert_eq!(e.fallbacks.load(Relaxed), 3);
}

#[test]
fn a_refresh_keeps_quota_and_unreported_counts_and_takes_the_new_rate() {
    let e = engine(&[rule("Default", 10000, 0.0, "*", "*", "*")]);
    e.apply_targets(&TargetsResponse {
        sampling_target_documents: vec![Target {
            rule_name: Some("Default".into()),
            reservoir_quota: Some(5),
            reservoir_quota_ttl: Some((NOW + 60) as f64),
            ..Default::default()
        }],
        ..Default::default()
    });
    e.decide(&facts("GET", "/"), NOW);
    e.install(&[rule("Default", 10000, 0.5, "*", "*", "*")], NOW + 1);
    let r = &e.rules.load().rules[0];
    assert_eq!(r.state.quota(), Some((5, NOW + 60)));
    assert_eq!(r.state.fixed_rate(), 0.5);
    assert_eq!(e.statistics(NOW as f64)[0].request_count, 1);
    let newer = TargetsResponse { last_rule_modification: Some((NOW + 2) as f64), ..Default::default() };
    assert!(e.apply_targets(&newer), "a later rule change asks for a fetch");
}

#[test]
fn failed_reports_are_given_back_and_counts_are_exact_under_concurrency() {
    let e = Arc::new(engine(&[rule("Default", 10000, 0.25, "*", "*", "*")]));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let e = e.clone();
            std::thread::spawn(move || (0..5000).filter(|_| e.decide(&facts("GET", "/"), NOW).unwrap()).count())
        })
        .collect();
    let sampled: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let docs = e.statistics(NOW as f64);
    e.restore(&docs);
    let again = e.statistics(NOW as f64);
    assert_eq!(docs, again);
    assert_eq!(again[0].request_count, 20_000);
    assert_eq!(again[0].borrow_count, 1);
    assert_eq!(again[0].sampled_count + again[0].borrow_count, sampled as u64);
    let mut text = String::new();
    e.render(&mut text, NOW + 3);
    assert!(text.contains("xray_sidecar_sampling_rule_requests_total{rule=\"Default\"} 20000"), "{text}");
    assert!(text.contains("xray_sidecar_sampling_rules_age_seconds 3"), "{text}");
}

#[test]
fn the_documented_examples_parse() {
    let path =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/xray/sampling/docs__GetSamplingRules_response_example.json");
    let text = std::fs::read(path).unwrap();
    let res: RulesResponse = serde_json::from_slice(&text).unwrap();
    let raw: Vec<_> = res.sampling_rule_records.into_iter().filter_map(|r| r.sampling_rule).collect();
    let e = Centralized::new(Arc::from("Scorekeep"), None);
    assert_eq!(e.install(&raw, NOW), 3);
    assert_eq!(e.rule_for(&facts("GET", "/api/state/1")).as_deref(), Some("polling-scorekeep"));
    let targets =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/xray/sampling/docs__GetSamplingTargets_response_example.json");
    let res: TargetsResponse = serde_json::from_slice(&std::fs::read(targets).unwrap()).unwrap();
    assert_eq!(res.sampling_target_documents.len(), 2);
}
