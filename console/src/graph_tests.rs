//! Tests of the service map on recorded documents.

use super::*;
use crate::testdata::{THREE_TIER, peer, store_of};

const ALL: Window = Window { start: 0.0, end: f64::MAX };

fn node<'a>(graph: &'a ServiceGraph, name: &str) -> &'a Service {
    graph.services.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no node {name}: {:?}", names(graph)))
}

fn names(graph: &ServiceGraph) -> Vec<&str> {
    graph.services.iter().map(|s| s.name.as_str()).collect()
}

fn edge<'a>(graph: &'a ServiceGraph, from: &str, to: &str) -> &'a Edge {
    let to = node(graph, to).reference_id;
    node(graph, from)
        .edges
        .iter()
        .find(|e| e.reference_id == to)
        .unwrap_or_else(|| panic!("no edge to {to} from {from}"))
}

#[test]
fn draws_client_front_end_back_end() {
    let store = store_of(THREE_TIER.lines());
    let graph = build(store.traces(), ALL);
    assert_eq!(names(&graph), ["client", "back-end", "front-end", "api.example.com"]);

    let client = node(&graph, "client");
    assert_eq!(client.kind, "client");
    assert!(client.summary_statistics.is_none());
    let entry = edge(&graph, "client", "front-end");
    assert_eq!(entry.summary_statistics.total_count, 3);
    assert_eq!(entry.summary_statistics.fault_statistics.total_count, 1);
    assert_eq!(entry.summary_statistics.error_statistics.total_count, 1);
    assert!(node(&graph, "front-end").root);

    // Both the nested and the independent remote subsegment lead to the back-end's own node.
    let call = edge(&graph, "front-end", "back-end");
    assert_eq!(call.summary_statistics.total_count, 2);
    assert_eq!(call.summary_statistics.ok_count, 1);
    assert_eq!(call.summary_statistics.fault_statistics.total_count, 1);
    assert!((call.summary_statistics.total_response_time - 0.080).abs() < 1e-6);
    assert!((call.rates.p95_response_time - 0.040).abs() < 1e-6);

    let back_end = node(&graph, "back-end");
    assert_eq!(back_end.kind, "AWS::EKS::Container");
    assert!(!back_end.root, "the back-end is only called by the front-end");
    assert!(back_end.edges.is_empty());
    let stats = back_end.summary_statistics.as_ref().expect("service stats");
    // Three back-end segments arrived; the in-progress one has no response time yet.
    assert_eq!((stats.total_count, stats.fault_statistics.total_count), (2, 1));

    let inferred = node(&graph, "api.example.com");
    assert!(inferred.inferred);
    assert_eq!(inferred.kind, "remote");
    assert_eq!(edge(&graph, "front-end", "api.example.com").summary_statistics.error_statistics.total_count, 1);
}

#[test]
fn arrival_order_does_not_change_the_map() {
    let forward = serde_json::to_value(build(store_of(THREE_TIER.lines()).traces(), ALL));
    let backward = serde_json::to_value(build(store_of(THREE_TIER.lines().rev()).traces(), ALL));
    assert_eq!(forward.ok(), backward.ok());
}

#[test]
fn rates_use_the_time_span_of_the_requests() {
    let store = store_of(THREE_TIER.lines());
    let graph = build(store.traces(), ALL);
    // Traces span 1795540000.100 .. 1795540003.110; below ten seconds the span counts as ten.
    let rpm = edge(&graph, "client", "front-end").rates.requests_per_minute;
    assert!((rpm - 18.0).abs() < 1e-9, "{rpm}");
}

#[test]
fn window_leaves_out_older_documents() {
    let store = store_of(THREE_TIER.lines());
    let window = Window { start: 1795540001.0, end: 1795540001.9 };
    let graph = build(store.traces(), window);
    assert_eq!(edge(&graph, "client", "front-end").summary_statistics.total_count, 1);
    assert!(graph.services.iter().all(|s| s.name != "api.example.com"));
}

#[test]
fn independent_subsegment_before_its_segment_waits_for_it() {
    let lines: Vec<&str> = THREE_TIER.lines().filter(|l| l.contains("1-6b05d0a1")).collect();
    // Without the front-end segment the call has no known caller: no edge, the back-end still shows.
    let partial = store_of(lines.iter().copied().filter(|l| !l.contains("\"name\":\"front-end\"")));
    let graph = build(partial.traces(), ALL);
    assert_eq!(names(&graph), ["back-end"]);
    let whole = store_of(lines.iter().copied());
    let graph = build(whole.traces(), ALL);
    assert_eq!(edge(&graph, "front-end", "back-end").summary_statistics.total_count, 1);
}

#[test]
fn peer_captures_draw_their_nodes() {
    let (Some(envoy), Some(python)) = (peer("envoy-1.40-ingress.jsonl"), peer("aws-xray-sdk-python-2.15-flask.jsonl"))
    else {
        panic!("../shared/xray/peers is missing beside the repository");
    };
    let store = store_of(envoy.lines().chain(python.lines()));
    let graph = build(store.traces(), ALL);
    let frontend = node(&graph, "frontend");
    assert_eq!(frontend.kind, "AWS::EKS::Container");
    let stats = frontend.summary_statistics.as_ref().expect("stats");
    assert_eq!((stats.total_count, stats.error_statistics.total_count), (4, 1));
    // Only the requests without a caller (no parent_id) come from the client node.
    assert_eq!(edge(&graph, "client", "frontend").summary_statistics.total_count, 1);
    assert_eq!(edge(&graph, "client", "sdk-backend").summary_statistics.total_count, 1);
    let sdk = node(&graph, "sdk-backend");
    assert_eq!(sdk.kind, "service");
    assert_eq!(sdk.summary_statistics.as_ref().map(|s| s.ok_count), Some(2));
}

#[test]
fn a_call_sent_twice_counts_once() {
    let lines: Vec<&str> = THREE_TIER.lines().filter(|l| l.contains("1-6b05d0a0")).collect();
    // The same remote call, streamed on its own after being sent nested in its segment.
    let streamed = r#"{"type":"subsegment","name":"back-end","id":"7a8b9c0d1e2f3a4b","trace_id":"1-6b05d0a0-0a1b2c3d4e5f60718293a4b5","parent_id":"6f1a2b3c4d5e6f70","namespace":"remote","start_time":1795540000.110,"end_time":1795540000.150}"#;
    let store = store_of(lines.iter().copied().chain([streamed]));
    let graph = build(store.traces(), ALL);
    assert_eq!(edge(&graph, "front-end", "back-end").summary_statistics.total_count, 1);
}

#[test]
fn a_segment_under_another_segment_is_called_by_its_node() {
    // A sidecar's segment, and the instrumented application behind it continuing the trace with
    // the sidecar's segment as its parent; then an OpenTelemetry app under a local subsegment.
    let trace = "1-6b05d0b0-0a1b2c3d4e5f60718293a4b5";
    let sidecar = format!(
        r#"{{"name":"svc-b","id":"1000000000000001","trace_id":"{trace}","start_time":10.0,"end_time":10.5,"origin":"AWS::EKS::Container","subsegments":[{{"name":"local","id":"1000000000000002","start_time":10.1,"end_time":10.2}}]}}"#
    );
    let app = format!(
        r#"{{"name":"app-b","id":"2000000000000001","trace_id":"{trace}","parent_id":"1000000000000001","start_time":10.01,"end_time":10.4,"http":{{"response":{{"status":503}}}}}}"#
    );
    let otel = format!(
        r#"{{"name":"app-c","id":"3000000000000001","trace_id":"{trace}","parent_id":"1000000000000002","start_time":10.11,"end_time":10.19}}"#
    );
    // The same service recorded twice (a sidecar and an SDK both named svc-b): no edge to itself.
    let twin = format!(
        r#"{{"name":"svc-b","id":"4000000000000001","trace_id":"{trace}","parent_id":"1000000000000001","origin":"AWS::EKS::Container","start_time":10.02,"end_time":10.3}}"#
    );
    let store = store_of([sidecar.as_str(), &app, &otel, &twin]);
    let graph = build(store.traces(), ALL);
    assert_eq!(edge(&graph, "client", "svc-b").summary_statistics.total_count, 1);
    let call = edge(&graph, "svc-b", "app-b");
    assert_eq!((call.summary_statistics.total_count, call.summary_statistics.fault_statistics.total_count), (1, 1));
    assert_eq!(edge(&graph, "svc-b", "app-c").summary_statistics.total_count, 1);
    let svc = node(&graph, "svc-b");
    assert_eq!(svc.edges.len(), 2, "no edge from svc-b to itself");
    assert!(!node(&graph, "app-b").root, "called by svc-b, not by a client");
}
