use super::*;

fn shared(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/xray/sampling").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn wildcards_match_like_the_sdks() {
    assert!(wildcard("*", ""));
    assert!(wildcard("/api/*", "/API/users"));
    assert!(wildcard("/a?c", "/abc"));
    assert!(!wildcard("/a?c", "/ac"));
    assert!(wildcard("*.example.com", "shop.example.com"));
    assert!(!wildcard("*.example.com", "example.com"));
    assert!(wildcard("a*b*c", "aXXbYYbc"));
    assert!(!wildcard("get", "POST"));
    assert!(wildcard("", ""));
}

#[test]
fn the_sdks_rule_files_load_or_fail_as_they_do() {
    for ok in [
        "aws-xray-sdk-go__resources_DefaultSamplingRules.json",
        "aws-xray-sdk-go__resources_ExampleSamplingRules.json",
        "aws-xray-sdk-go__strategy_sampling_testdata_rule-v1-sampling.json",
        "aws-xray-sdk-go__strategy_sampling_testdata_rule-v2-sampling.json",
        "aws-xray-sdk-python__aws_xray_sdk_core_sampling_local_sampling_rule.json",
    ] {
        Sampler::from_json(&shared(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (bad, why) in [
        ("aws-xray-sdk-go__strategy_sampling_testdata_rule-v1-invalid.json", "not a sampling rules"),
        ("aws-xray-sdk-go__strategy_sampling_testdata_rule-v2-contains-service-name.json", "not service_name"),
        ("aws-xray-sdk-go__strategy_sampling_testdata_rule-v1-contains-host.json", "not host"),
    ] {
        let err = Sampler::from_json(&shared(bad)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(why), "{bad}: {err:?}");
    }
}

#[test]
fn invalid_values_are_named() {
    let cases = [
        (r#"{"version": 3, "default": {"fixed_target": 1, "rate": 0.1}}"#, "unsupported version 3"),
        (r#"{"version": 2, "default": {"fixed_target": 1, "rate": 1.5}}"#, "rate 1.5"),
        (r#"{"version": 2, "default": {"rate": 0.5}}"#, "missing fixed_target"),
        (r#"{"version": 2, "default": {"fixed_target": 1, "rate": 0.5, "url_path": "/"}}"#, "default rule"),
        (
            r#"{"version": 2, "default": {"fixed_target": 1, "rate": 0.5},
                "rules": [{"description": "r", "host": "*", "url_path": "*", "fixed_target": 1, "rate": 1}]}"#,
            "r: missing http_method",
        ),
    ];
    for (json, want) in cases {
        let err = Sampler::from_json(json.as_bytes()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(want), "{json}: {err:?}");
    }
}

#[test]
fn first_matching_rule_wins_on_host_method_and_path() {
    let rules = br#"{"version": 2, "default": {"fixed_target": 0, "rate": 0},
        "rules": [
          {"description": "health", "host": "*", "http_method": "GET", "url_path": "/health*", "fixed_target": 0, "rate": 0},
          {"description": "shop", "host": "shop.example.com", "http_method": "*", "url_path": "*", "fixed_target": 0, "rate": 1},
          {"description": "all-api", "host": "*", "http_method": "*", "url_path": "/api/*", "fixed_target": 0, "rate": 1}
        ]}"#;
    let s = Sampler::from_json(rules).expect("rules");
    assert_eq!(s.rule_for("shop.example.com", "GET", "/healthz"), Some("health"));
    assert_eq!(s.rule_for("shop.example.com:8080", "POST", "/healthz"), Some("shop"));
    assert_eq!(s.rule_for("other", "GET", "/api/x"), Some("all-api"));
    assert_eq!(s.rule_for("other", "GET", "/"), None);
    assert!(!s.sample("shop.example.com", "GET", "/health", 100));
    assert!(s.sample("shop.example.com", "GET", "/", 100));
    assert!(!s.sample("other", "GET", "/", 100));
}

#[test]
fn reservoir_takes_fixed_target_each_second_then_the_rate() {
    let s = Sampler::from_json(br#"{"version": 2, "default": {"fixed_target": 3, "rate": 0}}"#).expect("rules");
    let taken = (0..10).filter(|_| s.sample("h", "GET", "/", 1000)).count();
    assert_eq!(taken, 3);
    let next = (0..10).filter(|_| s.sample("h", "GET", "/", 1001)).count();
    assert_eq!(next, 3);

    let d = Sampler::default();
    let n = 20_000;
    let taken = (0..n).filter(|_| d.sample("h", "GET", "/", 5)).count();
    // 1 from the reservoir, then 5 % of the rest: 1000 expected, far outside chance below 800 or above 1200.
    assert!((800..1200).contains(&taken), "{taken}");
}
