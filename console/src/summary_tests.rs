//! Tests of trace summaries and the list's filters on recorded documents.

use super::*;
use crate::filter::{Filter, StatusFilter, page};
use crate::testdata::{THREE_TIER, peer, store_of};

fn by_id(summaries: &TraceSummaries, prefix: &str) -> TraceSummary {
    summaries
        .trace_summaries
        .iter()
        .find(|s| s.id.starts_with(prefix))
        .cloned()
        .unwrap_or_else(|| panic!("no trace {prefix}"))
}

fn ids(summaries: &TraceSummaries) -> Vec<&str> {
    summaries.trace_summaries.iter().map(|s| &s.id[..10]).collect()
}

#[test]
fn summarizes_the_entry_request() {
    let store = store_of(THREE_TIER.lines());
    let all = page(store.traces(), &Filter::default(), 0, 100, 0.0);
    assert_eq!(ids(&all), ["1-6b05d0a3", "1-6b05d0a2", "1-6b05d0a1", "1-6b05d0a0"], "newest first");

    let ok = by_id(&all, "1-6b05d0a0");
    assert_eq!(ok.http.http_status, Some(200));
    assert_eq!(ok.http.client_ip.as_deref(), Some("10.0.3.17"));
    assert_eq!(ok.entry_point.as_ref().map(|e| e.name.as_str()), Some("front-end"));
    assert!((ok.duration - 0.060).abs() < 1e-6 && (ok.response_time.unwrap_or(0.0) - 0.060).abs() < 1e-6);
    assert!(!ok.has_error && !ok.has_fault && !ok.is_partial);
    assert_eq!(ok.annotations.len(), 1);
    // X-Ray's ValueWithServiceIds: the value once, with the services that gave it.
    let direction = &ok.annotations["direction"];
    assert_eq!(direction.len(), 1, "{direction:?}");
    assert_eq!(direction[0]["AnnotationValue"]["StringValue"], "inbound");
    assert_eq!(direction[0]["ServiceIds"][0]["Name"], "front-end", "{direction:?}");
    let names: Vec<&str> = ok.service_ids.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["back-end", "front-end"]);

    // Arrived out of order: still whole, entered at the front-end.
    let fault = by_id(&all, "1-6b05d0a1");
    assert!(fault.has_fault && !fault.is_partial);
    assert_eq!(fault.http.http_status, Some(500));
    assert_eq!(fault.segment_count, 3);

    let inferred = by_id(&all, "1-6b05d0a2");
    assert!(inferred.has_error);
    assert!(inferred.service_ids.iter().any(|s| s.name == "api.example.com" && s.kind == "remote"));

    // Only an in-progress back-end whose caller never came: partial, entered at the back-end.
    let partial = by_id(&all, "1-6b05d0a3");
    assert!(partial.is_partial);
    assert_eq!(partial.response_time, None);
    assert_eq!(partial.http.http_method.as_deref(), Some("POST"));
}

#[test]
fn filters_narrow_the_list() {
    let store = store_of(THREE_TIER.lines());
    let list =
        |f: Filter| ids(&page(store.traces(), &f, 0, 100, 0.0)).into_iter().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(list(Filter { status: Some(StatusFilter::Exact(500)), ..Filter::default() }), ["1-6b05d0a1"]);
    assert_eq!(list(Filter { status: Some(StatusFilter::Class(4)), ..Filter::default() }), ["1-6b05d0a2"]);
    assert_eq!(list(Filter { client_ip: Some("10.0.3.17".into()), ..Filter::default() }), ["1-6b05d0a2", "1-6b05d0a0"]);
    assert_eq!(list(Filter { url: Some("MISSING".into()), ..Filter::default() }), ["1-6b05d0a2"]);
    assert_eq!(list(Filter { service: Some("api.example.com".into()), ..Filter::default() }), ["1-6b05d0a2"]);
    assert_eq!(list(Filter { min_duration: Some(0.055), ..Filter::default() }), ["1-6b05d0a0"]);
    assert_eq!(list(Filter { max_duration: Some(0.035), ..Filter::default() }).len(), 2);
    // The page's expression box takes what the API takes, complex keywords included.
    let expression =
        |e: &str| Filter { expression: crate::filter_expression::Expr::parse(e).ok().flatten(), ..Filter::default() };
    assert_eq!(list(expression("edge(\"front-end\", \"back-end\") { fault }")), ["1-6b05d0a1"]);
    assert_eq!(
        list(expression("http.status = 404 OR service(\"back-end\") { partial }")),
        ["1-6b05d0a3", "1-6b05d0a2"]
    );
}

#[test]
fn pages_with_a_next_token() {
    let store = store_of(THREE_TIER.lines());
    let first = page(store.traces(), &Filter::default(), 0, 3, 0.0);
    assert_eq!((first.trace_summaries.len(), first.matched_count), (3, 4));
    assert_eq!(first.next_token.as_deref(), Some("3"));
    let rest = page(store.traces(), &Filter::default(), 3, 3, 0.0);
    assert_eq!(ids(&rest), ["1-6b05d0a0"]);
    assert_eq!(rest.next_token, None);
}

#[test]
fn a_cursor_pages_past_traces_that_arrive_between_pages() {
    use crate::filter::{Cursor, Paging, page_matching};
    let segment = |trace: &str, start: f64| {
        format!(
            r#"{{"name": "late", "id": "{:016x}", "trace_id": "{trace}", "start_time": {start}, "end_time": {}}}"#,
            start as u64,
            start + 0.01
        )
    };
    let mut store = store_of(THREE_TIER.lines());
    let all = |store: &crate::store::Store, paging: &Paging| {
        page_matching(store.traces(), summarize, |_| true, paging, 2, 0.0)
    };
    let first = all(&store, &Paging::After(None));
    assert_eq!(ids(&first), ["1-6b05d0a3", "1-6b05d0a2"]);
    let token = first.next_token.clone().expect("a second page");
    assert_eq!(Cursor::parse(&token).map(|c| c.token()), Some(token.clone()), "the token reads back");

    // Between the pages a newer trace arrives (it sorts before the cursor) and an older one (after it).
    let mut insert = |line: String| {
        let datagram = format!("{{\"format\": \"json\", \"version\": 1}}\n{line}");
        store.insert(crate::datagram::parse(datagram.as_bytes()).expect("parses"));
    };
    insert(segment("1-7fffffff-000000000000000000000001", 2.1e9));
    insert(segment("1-00000001-000000000000000000000002", 1.0));
    let second = all(&store, &Paging::After(Cursor::parse(&token)));
    assert_eq!(ids(&second), ["1-6b05d0a1", "1-6b05d0a0"], "no row of the first page again");
    let third = all(&store, &Paging::After(second.next_token.as_deref().and_then(Cursor::parse)));
    assert_eq!(ids(&third), ["1-00000001"]);
    assert_eq!(third.next_token, None);

    // An offset would have shown the first page's last row again.
    assert_eq!(ids(&all(&store, &Paging::Offset(2))), ["1-6b05d0a2", "1-6b05d0a1"]);
    for garbage in ["2", "", "zzzzzzzzzzzzzzzz1-abc", "00000000000000001"] {
        assert!(Cursor::parse(garbage).is_none_or(|c| c.token() == garbage), "{garbage:?}");
    }
    assert_eq!(Cursor::parse("2"), None);
}

#[test]
fn peer_captures_summarize() {
    let envoy = peer("envoy-1.40-ingress.jsonl").expect("../shared/xray/peers beside the repository");
    let store = store_of(envoy.lines());
    let all = page(store.traces(), &Filter::default(), 0, 100, 0.0);
    assert_eq!(all.matched_count, 2);
    // Three Envoy segments share the curl-given trace id; their caller was never traced.
    let shared = by_id(&all, "1-5759e988");
    assert!(shared.is_partial);
    assert_eq!(shared.segment_count, 3);
    let not_found = by_id(&all, "1-6b05c6b9");
    assert_eq!(not_found.http.http_status, Some(404));
    assert!(not_found.has_error && !not_found.is_partial);
}

#[test]
fn grpc_calls_show_and_filter_on_their_status_name() {
    let grpc = r#"{"name":"catalog","id":"5a2f11c3a8c04b0e","trace_id":"1-6b05d0b0-5759e988bd862e3fe1be46a9","start_time":1795577000.0,"end_time":1795577000.02,"error":true,"http":{"request":{"method":"POST","url":"http://catalog/shop.v1.Catalog/GetItem"},"response":{"status":200}},"annotations":{"direction":"inbound","grpc_service":"shop.v1.Catalog","grpc_method":"GetItem","grpc_status":"NOT_FOUND","grpc_status_code":5}}"#;
    let store = store_of(THREE_TIER.lines().chain([grpc]));
    let all = page(store.traces(), &Filter::default(), 0, 100, 0.0);
    let call = by_id(&all, "1-6b05d0b0");
    assert_eq!((call.grpc_status.as_deref(), call.http.http_status), (Some("NOT_FOUND"), Some(200)));
    assert!(call.has_error && !call.has_fault);
    assert_eq!(by_id(&all, "1-6b05d0a0").grpc_status, None);
    let json = serde_json::to_value(&call).expect("serialise");
    assert_eq!(json["GrpcStatus"], "NOT_FOUND");

    let only = |value: &str| {
        let filter = Filter { grpc_status: Some(value.to_owned()), ..Filter::default() };
        ids(&page(store.traces(), &filter, 0, 100, 0.0)).into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(only("not_found"), ["1-6b05d0b0"]);
    assert!(only("INTERNAL").is_empty());
}

#[test]
fn a_fault_downstream_the_client_never_saw_is_not_the_traces() {
    // The front-end answered 200 after its back-end call failed (and was throttled once): as in
    // X-Ray, the trace has no fault nor error (the root segment's), and a throttle (any segment's).
    let lines = [
        r#"{"name":"front-end","id":"a1b2c3d4e5f60718","trace_id":"1-6b05d0c0-1b2c3d4e5f60718293a4b5c6","start_time":1795540009.1,"end_time":1795540009.2,"http":{"response":{"status":200}},"subsegments":[{"name":"back-end","id":"b9c0d1e2f3a4b5c6","namespace":"remote","start_time":1795540009.11,"end_time":1795540009.12,"fault":true,"http":{"response":{"status":500}}},{"name":"quota","id":"b9c0d1e2f3a4b5c7","namespace":"remote","start_time":1795540009.12,"end_time":1795540009.13,"error":true,"throttle":true,"http":{"response":{"status":429}}}]}"#,
        r#"{"name":"back-end","id":"c0d1e2f3a4b5c6d7","trace_id":"1-6b05d0c0-1b2c3d4e5f60718293a4b5c6","parent_id":"b9c0d1e2f3a4b5c6","start_time":1795540009.111,"end_time":1795540009.119,"fault":true,"http":{"response":{"status":500}}}"#,
    ];
    let store = store_of(lines);
    let all = page(store.traces(), &Filter::default(), 0, 100, 0.0);
    let handled = by_id(&all, "1-6b05d0c0");
    assert_eq!(handled.http.http_status, Some(200));
    assert_eq!((handled.has_fault, handled.has_error, handled.has_throttle), (false, false, true));
}

#[test]
fn a_downstream_has_the_same_type_in_the_summary_as_on_the_map() {
    let line = r#"{"name":"web","id":"a1b2c3d4e5f60719","trace_id":"1-6b05d0c1-1b2c3d4e5f60718293a4b5c6","start_time":1795540009.1,"end_time":1795540009.2,"subsegments":[{"name":"DynamoDB","id":"b9c0d1e2f3a4b5c8","namespace":"aws","start_time":1795540009.11,"end_time":1795540009.12},{"name":"names.example.com","id":"b9c0d1e2f3a4b5c9","namespace":"remote","start_time":1795540009.12,"end_time":1795540009.13}]}"#;
    let store = store_of([line]);
    let summary = by_id(&page(store.traces(), &Filter::default(), 0, 100, 0.0), "1-6b05d0c1");
    let types: Vec<(&str, &str)> = summary.service_ids.iter().map(|s| (s.name.as_str(), s.kind.as_str())).collect();
    assert!(types.contains(&("DynamoDB", "AWS::DynamoDB")), "{types:?}");
    assert!(types.contains(&("names.example.com", "remote")), "{types:?}");
    let graph = crate::graph::build(store.traces(), crate::graph::Window { start: 0.0, end: f64::MAX });
    assert!(graph.services.iter().any(|s| s.name == "DynamoDB" && s.kind == "AWS::DynamoDB"));
}
