use super::super::summary::{HttpSummary, ServiceId, TraceSummary};
use super::*;
use serde_json::json;
use std::collections::BTreeMap;

fn trace(status: u16, url: &str, response_time: f64, services: &[&str], annotations: &[(&str, Value)]) -> TraceSummary {
    let id = |name: &str| ServiceId { name: name.to_owned(), names: vec![name.to_owned()], kind: "service".into() };
    let mut notes: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (key, value) in annotations {
        notes.entry((*key).to_owned()).or_default().push(json!({"AnnotationValue": value}));
    }
    TraceSummary {
        id: format!("1-00000000-{status:024}"),
        start_time: 1.0,
        duration: response_time + 0.01,
        response_time: Some(response_time),
        has_error: (400..500).contains(&status),
        has_fault: status >= 500,
        has_throttle: status == 429,
        is_partial: false,
        http: HttpSummary {
            http_url: Some(url.to_owned()),
            http_status: Some(status),
            http_method: Some("GET".into()),
            client_ip: Some("10.0.3.17".into()),
            user_agent: Some("curl/8.5".into()),
        },
        annotations: notes,
        service_ids: services.iter().map(|s| id(s)).collect(),
        entry_point: services.first().map(|s| id(s)),
        segment_count: services.len(),
        grpc_status: None,
    }
}

fn traces() -> Vec<TraceSummary> {
    vec![
        trace(200, "http://shop/cart", 0.05, &["front", "back"], &[("tier", json!({"StringValue": "gold"}))]),
        trace(500, "http://shop/pay", 1.5, &["front", "pay"], &[("items", json!({"NumberValue": 3}))]),
        trace(404, "http://shop/missing", 0.01, &["front"], &[("cached", json!({"BooleanValue": true}))]),
        trace(429, "http://api/cart", 0.2, &["api"], &[]),
    ]
}

/// The statuses of the traces the expression keeps.
fn statuses(expression: &str) -> Vec<u16> {
    let expr = Expr::parse(expression).unwrap_or_else(|e| panic!("{expression}: {e}"));
    traces().iter().filter(|t| expr.as_ref().is_none_or(|e| e.matches(t))).filter_map(|t| t.http.http_status).collect()
}

#[test]
fn keywords_from_the_xray_docs() {
    assert_eq!(statuses(""), [200, 500, 404, 429]);
    assert_eq!(statuses("http.status = 500"), [500]);
    assert_eq!(statuses("http.status >= 400"), [500, 404, 429]);
    assert_eq!(statuses("http.status != 200 AND http.status < 500"), [404, 429]);
    assert_eq!(statuses("http.url CONTAINS \"/cart\""), [200, 429]);
    assert_eq!(statuses("http.url BEGINSWITH \"http://shop\" AND http.url ENDSWITH \"y\""), [500]);
    assert_eq!(statuses("http.url = \"http://shop/pay\""), [500]);
    assert_eq!(statuses("http.method = \"get\" AND http.clientip = \"10.0.3.17\""), [200, 500, 404, 429]);
    assert_eq!(statuses("service(\"pay\")"), [500]);
    assert_eq!(statuses("service(\"front\") AND NOT service(\"back\")"), [500, 404]);
    assert_eq!(statuses("responsetime > 1"), [500]);
    assert_eq!(statuses("duration < 0.1"), [200, 404]);
    assert_eq!(statuses("fault"), [500]);
    assert_eq!(statuses("error"), [404, 429]);
    assert_eq!(statuses("throttle"), [429]);
    assert_eq!(statuses("!fault AND !error"), [200]);
    assert_eq!(statuses("ok"), [200]);
    assert_eq!(statuses("fault = false AND throttle != true"), [200, 404]);
    assert_eq!(statuses("annotation.tier = \"gold\""), [200]);
    assert_eq!(statuses("annotation.items >= 2"), [500]);
    assert_eq!(statuses("annotation.cached = true"), [404]);
    assert_eq!(statuses("annotation.cached"), [404]);
    assert_eq!(statuses("annotation.tier = 3"), Vec::<u16>::new(), "a string is not a number");
}

#[test]
fn and_binds_tighter_than_or_and_parentheses_group() {
    assert_eq!(statuses("fault OR error AND service(\"api\")"), [500, 429]);
    assert_eq!(statuses("(fault OR error) AND service(\"front\")"), [500, 404]);
    assert_eq!(statuses("NOT (fault OR error)"), [200]);
    assert_eq!(statuses("http.status = 500 or http.status = 200"), [200, 500], "keywords in any case");
}

#[test]
fn bad_expressions_say_where_and_why() {
    let cases = [
        ("http.status = ", 14, "expected a number"),
        ("http.status CONTAINS 5", 0, "compares with a number"),
        ("http.url = 5", 0, "quoted string"),
        ("(fault", 6, "expected )"),
        ("fault error", 6, "expected AND, OR"),
        ("colour = \"red\"", 0, "unknown keyword colour"),
        ("service(pay)", 0, "service(\"name\")"),
        ("http.url = \"open", 11, "unterminated"),
        ("fault = 1", 0, "true or false"),
        ("annotation. = 1", 0, "annotation.KEY"),
        ("http.status # 5", 12, "unexpected '#'"),
        ("AND fault", 0, "unknown keyword AND"),
        (")", 0, "expected a keyword"),
    ];
    for (text, position, why) in cases {
        let err = Expr::parse(text).expect_err(text);
        assert_eq!(err.position, position, "{text}: {err}");
        assert!(err.message.contains(why), "{text}: {err}");
    }
    let deep = format!("{}fault{}", "(".repeat(100), ")".repeat(100));
    assert!(Expr::parse(&deep).expect_err("too deep").message.contains("deeply"));
    assert!(Expr::parse(&"!".repeat(5000)).is_err(), "too long");
}
