//! The daemon's TCP side: like the X-Ray daemon, the console answers the sampling API
//! (`POST /GetSamplingRules`, `POST /SamplingTargets`) on the TCP port matching its UDP port, so SDKs
//! and sidecars given only `AWS_XRAY_DAEMON_ADDRESS` fetch their rules from it.
//!
//! With a forward daemon, each call is relayed there too and the real daemon's answer is returned
//! (the console still records the statistics for its page); if it cannot be reached in time, answers
//! with an error status, or answers something that is not the operation's JSON, the console answers
//! itself: a client never gets a worse answer than the console's own.

use super::state::State;
use super::xray_api;
use super::xray_error::XrayError;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// The paths the daemon serves over TCP, with the list every good answer to each carries.
const PATHS: [&str; 2] = ["/GetSamplingRules", "/SamplingTargets"];
const ANSWER_LISTS: [&str; 2] = ["SamplingRuleRecords", "SamplingTargetDocuments"];
/// How long a relayed call may take before the console answers itself.
const RELAY_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest answer taken from the real daemon.
const MAX_RELAYED_ANSWER: usize = 1024 * 1024;

/// Relays sampling calls to a real daemon's TCP side.
#[derive(Debug, Clone)]
pub struct Relay {
    client: Client<HttpConnector, Full<Bytes>>,
    target: String,
}

impl Relay {
    /// A relay to `target` (`host:port`, the same address the datagrams are relayed to).
    pub fn new(target: &str) -> Self {
        Self { client: Client::builder(TokioExecutor::new()).build_http(), target: target.to_owned() }
    }

    async fn send(&self, path: &str, body: Bytes) -> Result<Response<Full<Bytes>>, String> {
        let req = Request::post(format!("http://{}{path}", self.target))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let call = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let (parts, body) = resp.into_parts();
            if !parts.status.is_success() {
                return Err(format!("answered {}", parts.status));
            }
            let body = http_body_util::Limited::new(body, MAX_RELAYED_ANSWER)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            check_answer(path, &body)?;
            Ok(Response::from_parts(parts, Full::new(body)))
        };
        tokio::time::timeout(RELAY_TIMEOUT, call).await.map_err(|_| "timed out".to_owned())?
    }
}

/// Whether `body` is the JSON object an answer to `path` is: it carries the operation's list.
fn check_answer(path: &str, body: &[u8]) -> Result<(), String> {
    let list = PATHS.iter().position(|p| *p == path).map_or("", |i| ANSWER_LISTS[i]);
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("answered no JSON: {e}"))?;
    if value.get(list).is_some_and(serde_json::Value::is_array) {
        Ok(())
    } else {
        Err(format!("answered JSON without {list}"))
    }
}

/// Answers one call on the daemon's TCP port.
pub async fn answer(state: Arc<State>, relay: Option<Relay>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if req.method() != Method::POST || !PATHS.contains(&path.as_str()) {
        let mut resp = xray_api::error_response(&XrayError::invalid(format!(
            "the daemon port serves POST {} only",
            PATHS.join(" and ")
        )));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        return resp;
    }
    if super::server::from_another_site(&req) {
        return super::server::refused_cross_site();
    }
    let body = match xray_api::read_body(req.into_body()).await {
        Ok(body) => body,
        Err(e) => return xray_api::error_response(&e),
    };
    let local = xray_api::handle(&state, &path, &body);
    let Some(relay) = relay else { return local };
    match relay.send(&path, body).await {
        Ok(real) => real,
        Err(error) => {
            warn!(target = %relay.target, path, %error, "no usable answer from the real daemon to a sampling call; answering locally");
            local
        }
    }
}
