use super::super::summary::{HttpSummary, ServiceId, TraceSummary, summarize, summarize_with_hops};
use super::super::testdata::{THREE_TIER, store_of};
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
        users: Vec::new(),
        segment_count: services.len(),
        grpc_status: None,
        nodes: Vec::new(),
        edges: Vec::new(),
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
        ("fault 500", 6, "expected AND, OR"),
        ("colour = \"red\"", 0, "unknown keyword colour"),
        ("service(pay)", 0, "expected a node: \"name\" or id("),
        ("service(\"a\") { service(\"b\") }", 15, "cannot be used inside"),
        ("service(\"a\") { fault", 20, "expected }"),
        ("edge(\"a\")", 8, "expected , between"),
        ("edge(\"a\", \"b\"", 13, "expected )"),
        ("id(colour: \"red\")", 0, "takes name: and type:"),
        ("id(name: \"a\", name: \"b\")", 0, "takes name: once"),
        ("id(name \"a\")", 8, "expected :"),
        ("rootcause.fault.service { name = \"a\" }", 0, "not kept by this console"),
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

/// The trace ids (their distinguishing digits) of the three-tier fixture that the expression keeps.
fn three_tier(expression: &str) -> Vec<String> {
    let expr = Expr::parse(expression).unwrap_or_else(|e| panic!("{expression}: {e}"));
    let store = store_of(THREE_TIER.lines());
    let hops = expr.as_ref().is_some_and(Expr::needs_hops);
    let mut kept: Vec<String> = store
        .traces()
        .map(if hops { summarize_with_hops } else { summarize })
        .filter(|s| expr.as_ref().is_none_or(|e| e.matches(s)))
        .map(|s| s.id[8..10].to_owned())
        .collect();
    kept.sort();
    kept
}

#[test]
fn complex_keywords_look_at_each_node_and_edge() {
    // a0: client → front-end → back-end, all 200; a1: the same with the back-end's 500; a2: the
    // front-end's call to api.example.com (no segment of its own) answers 404; a3: a back-end still
    // in progress whose caller never arrived.
    assert_eq!(three_tier("service(\"back-end\")"), ["a0", "a1", "a3"]);
    assert_eq!(three_tier("service(\"back-end\") { fault }"), ["a1"]);
    assert_eq!(three_tier("service(\"back-end\") { ok AND responsetime < 1 }"), ["a0"]);
    assert_eq!(three_tier("service(\"front-end\") { http.status = 404 }"), ["a2"]);
    assert_eq!(three_tier("service(id(name: \"back-end\", type: \"AWS::EKS::Container\"))"), ["a0", "a1", "a3"]);
    assert_eq!(three_tier("service(id(type: \"remote\")) { error }"), ["a2"]);
    assert_eq!(three_tier("service(id(name: \"back-end\", type: \"AWS::Lambda\"))"), Vec::<String>::new());
    assert_eq!(three_tier("id(name : \"api.example.com\")"), ["a2"]);
    assert_eq!(three_tier("service() { partial }"), ["a3"]);
    assert_eq!(three_tier("service(\"front-end\") { annotation.direction = \"inbound\" }"), ["a0", "a1"]);
    assert_eq!(three_tier("!service(\"back-end\")"), ["a2"]);

    assert_eq!(three_tier("edge(\"front-end\", \"back-end\")"), ["a0", "a1"]);
    assert_eq!(three_tier("edge(\"front-end\", \"back-end\") { fault = true }"), ["a1"]);
    assert_eq!(three_tier("edge(\"back-end\", \"front-end\")"), Vec::<String>::new(), "edges have a direction");
    assert_eq!(three_tier("edge(\"front-end\", id(type: \"remote\")) { http.status >= 400 }"), ["a2"]);
    assert_eq!(three_tier("edge(id(type: \"client\"), \"front-end\") { http.clientip = \"10.0.3.17\" }"), ["a0", "a2"]);
    assert_eq!(three_tier("edge(id(type: \"client\"), \"back-end\")"), Vec::<String>::new(), "a3's caller is unknown");

    // Complex and simple keywords together, and X-Ray's own example of conditions side by side.
    assert_eq!(three_tier("service(\"back-end\") { fault } OR http.status = 404"), ["a1", "a2"]);
    assert_eq!(three_tier("ok !partial duration < 3"), ["a0"]);
}

#[test]
fn user_is_any_segments_user() {
    let lines = [
        r#"{"trace_id":"1-6b05d0b0-000000000000000000000001","id":"00000000000000b1","name":"shop","start_time":1796000000.0,"end_time":1796000000.1,"user":"alice","http":{"response":{"status":200}}}"#,
        r#"{"trace_id":"1-6b05d0b0-000000000000000000000001","id":"00000000000000b2","name":"cart","parent_id":"00000000000000c1","start_time":1796000000.01,"end_time":1796000000.05,"user":"bob"}"#,
        r#"{"trace_id":"1-6b05d0b1-000000000000000000000002","id":"00000000000000b3","name":"shop","start_time":1796000001.0,"end_time":1796000001.1}"#,
    ];
    let store = store_of(lines);
    let kept = |expression: &str| {
        let expr = Expr::parse(expression).unwrap_or_else(|e| panic!("{expression}: {e}")).expect("an expression");
        let summarize = if expr.needs_hops() { summarize_with_hops } else { summarize };
        store.traces().map(summarize).filter(|s| expr.matches(s)).map(|s| s.id[8..10].to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(kept("user = \"alice\""), ["b0"]);
    assert_eq!(kept("user = \"bob\""), ["b0"], "any segment's user");
    assert_eq!(kept("user BEGINSWITH \"c\""), Vec::<String>::new());
    assert_eq!(kept("service(\"cart\") { user = \"alice\" }"), Vec::<String>::new(), "the node's own user");
    let summary = store.traces().map(summarize).find(|s| s.id.starts_with("1-6b05d0b0")).expect("the trace");
    let users: Vec<(&str, Vec<&str>)> = summary
        .users
        .iter()
        .map(|u| (u.user_name.as_str(), u.service_ids.iter().map(|s| s.name.as_str()).collect()))
        .collect();
    assert_eq!(users, [("alice", vec!["shop"]), ("bob", vec!["cart"])]);
}
