//! The console under bad and excessive input: malformed datagrams are counted and dropped, and a flood
//! of traces stays within `max_traces`, while the API keeps answering.

#[path = "support/console.rs"]
mod console_support;

use console_support::*;
use serde_json::json;

#[tokio::test]
async fn malformed_datagrams_are_counted_and_dropped() {
    let running = start(loopback_config()).await;
    let (udp, http) = (running.console.udp_addr(), running.console.http_addr());
    let huge = vec![b'x'; 65_000];
    let garbage: Vec<&[u8]> = vec![
        b"",
        b"no header at all",
        b"{\"format\": \"json\", \"version\": 1}\n",
        b"{\"format\": \"json\", \"version\": 1}\n{\"name\": \"truncated",
        b"{\"format\": \"json\", \"version\": 1}\n[1, 2, 3]",
        b"{\"format\": \"json\", \"version\": 1}\n{\"name\": \"no-ids\", \"start_time\": 1}",
        b"{\"format\": \"xml\", \"version\": 1}\n{}",
        b"{\"format\": \"json\", \"version\": 1}\n\xff\xfe\xfd",
        b"{\"format\": \"json\", \"version\": 1}\n{\"type\": \"subsegment\", \"name\": \"orphan\", \"id\": \"a\", \"trace_id\": \"t\", \"start_time\": 1}",
        &huge,
    ];
    send_raw(udp, &garbage).await;
    let good = fixture_documents("three-tier.jsonl");
    send_documents(udp, &good[..1]).await;
    let stats = wait_for_stats(http, |s| s["Received"] == garbage.len() + 1).await;
    assert_eq!(stats["Malformed"], garbage.len());
    assert_eq!(stats["Accepted"], 1);
    assert!(stats["LastMalformedReason"].is_string());
    // Still serving, with the good document in place.
    let (status, list) = get(http, "/api/trace-summaries").await;
    assert_eq!((status, list["MatchedCount"].as_u64()), (200, Some(1)));
}

#[tokio::test]
async fn a_flood_of_traces_stays_within_max_traces() {
    let mut config = loopback_config();
    config.max_traces = 100;
    let running = start(config).await;
    let (udp, http) = (running.console.udp_addr(), running.console.http_addr());
    let sent: u32 = 3000;
    let base = now() - 100.0;
    let docs: Vec<String> = (0..sent)
        .map(|i| {
            json!({"name": "front-end", "id": format!("{i:016x}"), "trace_id": format!("1-6b05d0a0-{i:024x}"),
                   "start_time": base + f64::from(i) * 0.01, "end_time": base + f64::from(i) * 0.01 + 0.005,
                   "http": {"request": {"method": "GET", "url": "http://front-end/"}, "response": {"status": 200}}})
            .to_string()
        })
        .collect();
    send_documents(udp, &docs).await;
    let stats = wait_until_quiet(http).await;
    assert!(stats["Received"].as_u64().unwrap_or(0) <= u64::from(sent));
    // UDP may drop under a flood; whatever was accepted, only the newest 100 traces remain.
    let accepted = stats["Accepted"].as_u64().unwrap_or(0);
    assert!(accepted > 100, "{stats}");
    assert_eq!(stats["Traces"], 100);
    assert_eq!(stats["EvictedTraces"].as_u64(), Some(accepted - 100));
    let (_, list) = get(http, "/api/trace-summaries?limit=1000").await;
    assert_eq!(list["MatchedCount"], 100);
    let newest = format!("1-6b05d0a0-{:024x}", sent - 1);
    assert_eq!(list["TraceSummaries"][0]["Id"], newest.as_str(), "the newest trace is kept");
    assert_eq!(get(http, "/api/traces/1-6b05d0a0-000000000000000000000000").await.0, 404, "the oldest is gone");
    let (_, graph) = get(http, "/api/service-graph?start_time=0").await;
    assert!(graph["Services"].as_array().is_some_and(|s| !s.is_empty()));
}

#[tokio::test]
async fn one_trace_cannot_grow_without_bound() {
    let mut config = loopback_config();
    config.max_documents_per_trace = 50;
    let running = start(config).await;
    let (udp, http) = (running.console.udp_addr(), running.console.http_addr());
    let docs: Vec<String> = (0..200)
        .map(|i| {
            json!({"type": "subsegment", "name": "loop", "id": format!("{i:016x}"), "parent_id": "00000000000000ff",
                   "trace_id": "1-6b05d0a0-000000000000000000000001", "start_time": 1.0, "end_time": 2.0})
            .to_string()
        })
        .collect();
    send_documents(udp, &docs).await;
    let stats = wait_for_stats(http, |s| s["Received"] == 200).await;
    assert_eq!((stats["Documents"].as_u64(), stats["RefusedDocuments"].as_u64()), (Some(50), Some(150)));
}
