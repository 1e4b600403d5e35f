//! Interop: the real AWS X-Ray SDK for Python sends segments to the console, which shows the trace.

#[path = "support/console.rs"]
mod console_support;

use console_support::*;

#[tokio::test]
async fn python_sdk_segments_show_as_a_trace() {
    let running = start(loopback_config()).await;
    let (udp, http) = (running.console.udp_addr(), running.console.http_addr());
    let script = repo_root().join("tests/fixtures/console/sdk_client.py");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").arg(&script).arg(udp.to_string()).output()
    })
    .await
    .expect("the script's task")
    .expect("python3 runs (scripts/setup installs tests/requirements.txt)");
    assert!(
        out.status.success(),
        "the SDK script failed (is aws-xray-sdk installed? scripts/setup does it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(trace_id.len(), 35, "a trace id: {trace_id:?}");
    wait_for_stats(http, |s| s["Accepted"] == 2).await;

    let (status, body) = get(http, &format!("/api/traces/{trace_id}")).await;
    assert_eq!(status, 200, "{body}");
    let trace = &body["Traces"][0];
    assert_eq!(trace["Segments"].as_array().map(Vec::len), Some(2));
    let rows = timeline_rows(trace);
    let expected = [("sdk-front-end", 0), ("sdk-back-end", 1), ("sdk-back-end", 2), ("reserve-stock", 3)];
    assert_eq!(rows, expected.map(|(n, d)| (n.to_owned(), d)));
    let summary = &trace["Summary"];
    assert_eq!(summary["Http"]["HttpStatus"], 502);
    assert_eq!(summary["Http"]["ClientIp"], "10.0.9.9");
    assert_eq!(summary["HasFault"], true);
    assert_eq!(summary["Annotations"]["order_id"][0]["AnnotationValue"]["StringValue"], "A-1001");

    let (_, list) = get(http, "/api/trace-summaries?client_ip=10.0.9.9&status=502").await;
    assert_eq!(list["TraceSummaries"][0]["Id"], trace_id.as_str());

    let (_, graph) = get(http, "/api/service-graph").await;
    let services = graph["Services"].as_array().expect("services");
    let id_of = |name: &str| {
        services
            .iter()
            .find(|s| s["Name"] == name)
            .map(|s| s["ReferenceId"].clone())
            .unwrap_or_else(|| panic!("no node {name}: {graph}"))
    };
    let front = services.iter().find(|s| s["Name"] == "sdk-front-end").expect("front-end node");
    let call = &front["Edges"][0];
    assert_eq!(call["ReferenceId"], id_of("sdk-back-end"));
    assert_eq!(call["SummaryStatistics"]["FaultStatistics"]["TotalCount"], 1);
    let client = services.iter().find(|s| s["Name"] == "client").expect("client node");
    assert_eq!(client["Edges"][0]["ReferenceId"], id_of("sdk-front-end"));
}

#[tokio::test]
async fn node_sdk_streamed_subsegment_joins_its_trace() {
    let running = start(loopback_config()).await;
    let (udp, http) = (running.console.udp_addr(), running.console.http_addr());
    let dir = repo_root().join("tests/fixtures/console/node-sdk");
    assert!(
        dir.join("node_modules/aws-xray-sdk-core").is_dir(),
        "aws-xray-sdk-core is not installed in {}: run scripts/setup (npm ci there)",
        dir.display()
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node").arg("sdk_client.js").arg(udp.to_string()).current_dir(&dir).output()
    })
    .await
    .expect("the script's task")
    .expect("node runs");
    assert!(out.status.success(), "the SDK script failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let trace_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    wait_for_stats(http, |s| s["Accepted"] == 3).await;

    let (status, body) = get(http, &format!("/api/traces/{trace_id}")).await;
    assert_eq!(status, 200, "{body}");
    let trace = &body["Traces"][0];
    // Back-end segment and front-end segment: the streamed call (type subsegment) is back inside
    // the front-end's, as X-Ray compiles a trace.
    let docs = documents(trace);
    assert_eq!(docs.len(), 2, "{trace}");
    let front = docs.iter().find(|d| d["name"] == "node-front-end").expect("front-end segment");
    let back = docs.iter().find(|d| d["name"] == "node-back-end").expect("back-end segment");
    let streamed = front["subsegments"].as_array().and_then(|s| s.iter().find(|s| s["id"] == back["parent_id"]));
    assert!(streamed.is_some(), "the call the back-end names as its parent is in the front-end's segment: {trace}");
    let rows: Vec<(String, String, u64)> = trace["Timeline"]["Rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (text("Name"), text("Kind"), r["Depth"].as_u64().unwrap_or(99))
        })
        .collect();
    let expected =
        [("node-front-end", "segment", 0), ("node-back-end", "subsegment", 1), ("node-back-end", "segment", 2)];
    assert_eq!(rows, expected.map(|(n, k, d)| (n.to_owned(), k.to_owned(), d)));
    assert_eq!(trace["Summary"]["IsPartial"], false);
    assert_eq!(trace["Summary"]["Http"]["HttpStatus"], 404);

    let (_, graph) = get(http, "/api/service-graph").await;
    let services = graph["Services"].as_array().expect("services");
    let front = services.iter().find(|s| s["Name"] == "node-front-end").expect("front-end node");
    let back = services
        .iter()
        .find(|s| s["Name"] == "node-back-end" && s["Inferred"] == false)
        .expect("back-end's own node, not an inferred one");
    assert_eq!(front["Edges"][0]["ReferenceId"], back["ReferenceId"]);
    assert_eq!(front["Edges"][0]["SummaryStatistics"]["ErrorStatistics"]["TotalCount"], 1);
    assert_eq!(services.len(), 3, "client, front-end, back-end: {graph}");
}
