//! Black-box tests of the console: real UDP datagrams in, the real HTTP API out.

#[path = "support/console.rs"]
mod console_support;

use console_support::*;
use serde_json::Value;
use std::time::Duration;

fn service<'a>(graph: &'a Value, name: &str) -> &'a Value {
    graph["Services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["Name"] == name))
        .unwrap_or_else(|| panic!("no node {name} in {graph}"))
}

fn edge<'a>(graph: &'a Value, from: &str, to: &str) -> &'a Value {
    let to = &service(graph, to)["ReferenceId"];
    service(graph, from)["Edges"]
        .as_array()
        .and_then(|e| e.iter().find(|e| &e["ReferenceId"] == to))
        .unwrap_or_else(|| panic!("no edge {from} -> {to}"))
}

async fn trace_ids(http: std::net::SocketAddr, query: &str) -> Vec<String> {
    let (status, body) = get(http, &format!("/api/trace-summaries?{query}")).await;
    assert_eq!(status, 200, "{body}");
    body["TraceSummaries"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["Id"].as_str()).map(|s| s[..10].to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn assembles_recorded_datagrams_into_map_list_and_timeline() {
    let running = start(loopback_config()).await;
    let (udp, http) = (running.console.udp_addr(), running.console.http_addr());
    let docs = fixture_documents("three-tier.jsonl");
    send_documents(udp, &docs).await;
    wait_for_stats(http, |s| s["Accepted"] == docs.len()).await;

    // The fixtures are from the past: ask for everything, as the page's "everything stored" does.
    let (status, graph) = get(http, "/api/service-graph?start_time=0").await;
    assert_eq!(status, 200);
    assert_eq!(service(&graph, "client")["Type"], "client");
    let entry = edge(&graph, "client", "front-end");
    assert_eq!(entry["SummaryStatistics"]["TotalCount"], 3);
    assert_eq!(entry["SummaryStatistics"]["FaultStatistics"]["TotalCount"], 1);
    let call = edge(&graph, "front-end", "back-end");
    assert_eq!(call["SummaryStatistics"]["TotalCount"], 2);
    assert!(call["RequestsPerMinute"].as_f64().is_some_and(|r| r > 0.0));
    assert!(call["P95ResponseTime"].as_f64().is_some_and(|p| (p - 0.040).abs() < 1e-6));
    assert_eq!(service(&graph, "back-end")["Type"], "AWS::EKS::Container");
    assert_eq!(service(&graph, "api.example.com")["Inferred"], true);
    // The default window is the last five minutes: these old fixtures are not in it.
    let (_, recent) = get(http, "/api/service-graph").await;
    assert_eq!(recent["Services"], Value::Array(vec![]));

    assert_eq!(trace_ids(http, "").await, ["1-6b05d0a3", "1-6b05d0a2", "1-6b05d0a1", "1-6b05d0a0"]);
    assert_eq!(trace_ids(http, "status=500").await, ["1-6b05d0a1"]);
    assert_eq!(trace_ids(http, "status=4xx").await, ["1-6b05d0a2"]);
    assert_eq!(trace_ids(http, "client_ip=10.0.3.17").await, ["1-6b05d0a2", "1-6b05d0a0"]);
    assert_eq!(trace_ids(http, "url=%2Fmissing").await, ["1-6b05d0a2"]);
    assert_eq!(trace_ids(http, "service=api.example.com").await, ["1-6b05d0a2"]);
    assert_eq!(trace_ids(http, "min_duration=0.055&max_duration=1").await, ["1-6b05d0a0"]);
    assert_eq!(trace_ids(http, "limit=1&next_token=1").await, ["1-6b05d0a2"]);
    let (status, bad) = get(http, "/api/trace-summaries?status=abc").await;
    assert_eq!(status, 400);
    assert!(bad["message"].as_str().is_some_and(|m| m.contains("status")), "{bad}");

    // The 500 trace arrived out of order (back-end, independent subsegment, front-end).
    let id = "1-6b05d0a1-1b2c3d4e5f60718293a4b5c6";
    let (status, body) = get(http, &format!("/api/traces/{id}")).await;
    assert_eq!(status, 200);
    let trace = &body["Traces"][0];
    assert_eq!(trace["Id"], id);
    // As X-Ray compiles them: the subsegment sent on its own is back inside the segment it names
    // as its parent, where the back-end's parent is found; the other document comes back as sent.
    let segments = trace["Segments"].as_array().expect("segments");
    assert_eq!(segments.len(), 2, "{segments:?}");
    let text = |i: usize| segments[i]["Document"].as_str().expect("Document is a JSON string");
    assert!(docs.iter().any(|d| d == text(0)), "an untouched document comes back as sent");
    let front: Value = serde_json::from_str(text(1)).expect("json");
    assert_eq!((&segments[1]["Id"], &front["name"]), (&"a1b2c3d4e5f60718".into(), &"front-end".into()));
    assert_eq!(front["subsegments"][0]["id"], "b9c0d1e2f3a4b5c6");
    let back: Value = serde_json::from_str(text(0)).expect("json");
    assert_eq!(back["parent_id"], front["subsegments"][0]["id"]);
    let rows = timeline_rows(trace);
    let expected = [("front-end", 0), ("back-end", 1), ("back-end", 2)].map(|(n, d)| (n.to_owned(), d));
    assert_eq!(rows, expected);
    assert_eq!(get(http, "/api/traces/1-00000000-000000000000000000000000").await.0, 404);
}

#[tokio::test]
async fn peer_captures_from_envoy_and_the_python_sdk() {
    let running = start(loopback_config()).await;
    let (udp, http) = (running.console.udp_addr(), running.console.http_addr());
    let mut docs = peer_documents("envoy-1.40-ingress.jsonl");
    docs.extend(peer_documents("aws-xray-sdk-python-2.15-flask.jsonl"));
    send_documents(udp, &docs).await;
    wait_for_stats(http, |s| s["Accepted"] == docs.len()).await;
    let (_, graph) = get(http, "/api/service-graph?start_time=0").await;
    assert_eq!(service(&graph, "frontend")["SummaryStatistics"]["TotalCount"], 4);
    assert_eq!(service(&graph, "sdk-backend")["SummaryStatistics"]["OkCount"], 2);
    assert_eq!(edge(&graph, "client", "frontend")["SummaryStatistics"]["TotalCount"], 1);
    let (_, list) = get(http, "/api/trace-summaries").await;
    // Envoy and the SDK both used the curl-given trace id: one partial trace of four segments.
    let shared = list["TraceSummaries"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["Id"] == "1-5759e988-bd862e3fe1be46a994272793"))
        .expect("shared trace");
    assert_eq!((shared["SegmentCount"].as_u64(), shared["IsPartial"].as_bool()), (Some(4), Some(true)));
    assert_eq!(list["MatchedCount"], 3);
}

#[tokio::test]
async fn live_traffic_shows_in_the_default_window() {
    let running = start(loopback_config()).await;
    let (udp, http) = (running.console.udp_addr(), running.console.http_addr());
    let start_at = now() - 30.0;
    let docs: Vec<String> = (0..30)
        .flat_map(|i| three_tier(start_at + f64::from(i), if i % 10 == 9 { 500 } else { 200 }, "10.0.3.17"))
        .collect();
    send_documents(udp, &docs).await;
    wait_for_stats(http, |s| s["Accepted"] == docs.len()).await;
    let (_, graph) = get(http, "/api/service-graph").await;
    let call = edge(&graph, "front-end", "back-end");
    assert_eq!(call["SummaryStatistics"]["TotalCount"], 30);
    // One request a second for 30 seconds: about 60 a minute.
    let rpm = call["RequestsPerMinute"].as_f64().unwrap_or(0.0);
    assert!((55.0..=65.0).contains(&rpm), "{rpm}");
    assert!((call["FaultRate"].as_f64().unwrap_or(0.0) - 0.1).abs() < 1e-9);
}

#[tokio::test]
async fn serves_the_embedded_page() {
    let running = start(loopback_config()).await;
    let http = running.console.http_addr();
    let (status, content_type, body) = get_raw(http, "/").await;
    assert_eq!((status, content_type.as_str()), (200, "text/html; charset=utf-8"));
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("id=\"map-svg\"") && page.contains("/app.js"));
    assert!(!page.contains("http://") && !page.contains("https://"), "no network fetches");
    for (path, kind) in
        [("/app.js", "javascript"), ("/map.js", "javascript"), ("/timeline.js", "javascript"), ("/style.css", "css")]
    {
        let (status, content_type, body) = get_raw(http, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(content_type.contains(kind) && !body.is_empty(), "{path}: {content_type}");
    }
    assert_eq!(get(http, "/nope").await.0, 404);
    assert_eq!(get(http, "/api/service-graph?start_time=soon").await.0, 400);
}

#[tokio::test]
async fn forwards_every_datagram_unchanged() {
    let daemon = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("daemon socket");
    let mut config = loopback_config();
    config.forward = Some(daemon.local_addr().expect("addr").to_string());
    let running = start(config).await;
    let doc = &fixture_documents("three-tier.jsonl")[0];
    let valid = datagram(doc);
    let garbage: &[u8] = b"not a datagram";
    send_raw(running.console.udp_addr(), &[&valid, garbage]).await;
    let mut buf = vec![0u8; 70_000];
    for expected in [valid.as_slice(), garbage] {
        let (len, _) = tokio::time::timeout(Duration::from_secs(5), daemon.recv_from(&mut buf))
            .await
            .expect("relayed within 5 s")
            .expect("recv");
        assert_eq!(&buf[..len], expected);
    }
    let stats = wait_for_stats(running.console.http_addr(), |s| s["Forwarded"] == 2).await;
    assert_eq!((stats["Accepted"].as_u64(), stats["Malformed"].as_u64()), (Some(1), Some(1)));
}

#[tokio::test]
async fn stops_when_the_shutdown_future_completes() {
    let running = start(loopback_config()).await;
    let http = running.console.http_addr();
    assert_eq!(get(http, "/api/stats").await.0, 200);
    let _ = running.stop.send(());
    tokio::time::timeout(Duration::from_secs(10), running.console.wait()).await.expect("stops within 10 s");
    assert!(tokio::net::TcpStream::connect(http).await.is_err(), "the listener is closed");
}
