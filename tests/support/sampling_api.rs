//! A loopback server speaking the X-Ray sampling API (`POST /GetSamplingRules` with pages,
//! `POST /SamplingTargets`), as the daemon's TCP side relays it: serves the rules and targets a
//! test sets, records every statistics document it is sent, and can be stopped mid-test.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the server answers and what it was told.
#[derive(Default)]
pub struct ApiState {
    /// Pages of `SamplingRule` objects, served in order with `NextToken`s.
    pub pages: Vec<Vec<Value>>,
    /// `SamplingTargetDocuments` answered to every report (for rules it was sent statistics for).
    pub targets: Vec<Value>,
    /// `LastRuleModification` answered.
    pub last_rule_modification: f64,
    /// The `NextToken` of every rules request, in order.
    pub rules_requests: Vec<Value>,
    /// Every `SamplingStatisticsDocuments` entry received, in order.
    pub statistics: Vec<Value>,
}

/// A running sampling API.
pub struct SamplingApi {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<ApiState>>,
    task: JoinHandle<()>,
}

impl SamplingApi {
    pub async fn start(state: ApiState) -> SamplingApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(state));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        SamplingApi { addr, state, task }
    }

    /// Stops answering: the listener closes and open connections are dropped.
    pub fn stop(&self) {
        self.task.abort();
    }

    /// The statistics entries received for `rule`.
    pub fn statistics_for(&self, rule: &str) -> Vec<Value> {
        self.state.lock().unwrap().statistics.iter().filter(|d| d["RuleName"] == rule).cloned().collect()
    }
}

impl Drop for SamplingApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A version 1 rule for any resource, with no attributes.
pub fn rule(name: &str, priority: u32, rate: f64, service: &str, method: &str, path: &str) -> Value {
    json!({
        "RuleName": name, "RuleARN": format!("arn:aws:xray:us-east-1:123456789012:sampling-rule/{name}"),
        "ResourceARN": "*", "Priority": priority, "FixedRate": rate, "ReservoirSize": 1,
        "ServiceName": service, "ServiceType": "*", "Host": "*", "HTTPMethod": method, "URLPath": path,
        "Version": 1, "Attributes": {}
    })
}

async fn handle(state: Arc<Mutex<ApiState>>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return Ok(reply(StatusCode::BAD_REQUEST, json!({"message": "body is not JSON"})));
    };
    let mut s = state.lock().unwrap();
    let answer = match path.as_str() {
        "/GetSamplingRules" => {
            let token = body.get("NextToken").cloned().unwrap_or(Value::Null);
            s.rules_requests.push(token.clone());
            let page: usize =
                token.as_str().and_then(|t| t.strip_prefix("page-")).and_then(|n| n.parse().ok()).unwrap_or(0);
            let records: Vec<Value> = s
                .pages
                .get(page)
                .into_iter()
                .flatten()
                .map(|r| json!({"SamplingRule": r, "CreatedAt": 1.7e9, "ModifiedAt": 1.7e9}))
                .collect();
            let next = (page + 1 < s.pages.len()).then(|| format!("page-{}", page + 1));
            json!({"SamplingRuleRecords": records, "NextToken": next})
        }
        "/SamplingTargets" => {
            let docs = body["SamplingStatisticsDocuments"].as_array().cloned().unwrap_or_default();
            let names: Vec<Value> = docs.iter().map(|d| d["RuleName"].clone()).collect();
            s.statistics.extend(docs);
            let targets: Vec<Value> = s.targets.iter().filter(|t| names.contains(&t["RuleName"])).cloned().collect();
            json!({
                "SamplingTargetDocuments": targets,
                "LastRuleModification": s.last_rule_modification,
                "UnprocessedStatistics": []
            })
        }
        _ => return Ok(reply(StatusCode::NOT_FOUND, json!({"message": "unknown operation"}))),
    };
    Ok(reply(StatusCode::OK, answer))
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = status;
    res
}
