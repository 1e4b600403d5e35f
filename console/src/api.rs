//! The web routes: the embedded page and the JSON API modelled on X-Ray's.

use super::assemble;
use super::assets;
use super::clock::now;
use super::filter::{self, Filter};
use super::graph::{self, Window};
use super::query;
use super::state::State;
use super::summary;
use super::timeline;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use serde_json::json;

/// The graph's default window: the last five minutes, as the X-Ray console shows.
const DEFAULT_GRAPH_SECONDS: f64 = 300.0;
/// Trace summaries per page unless `limit` says otherwise, and the most it may say.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// Answers one request; never fails: bad input gets a 4xx with a JSON message.
pub fn handle<B>(state: &State, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error(StatusCode::METHOD_NOT_ALLOWED, "only GET is served");
    }
    let pairs = query::pairs(req.uri().query().unwrap_or(""));
    let path = req.uri().path();
    if let Some(asset) = assets::find(path) {
        return respond(StatusCode::OK, asset.content_type, Bytes::from_static(asset.body));
    }
    match path {
        "/api/service-graph" => service_graph(state, &pairs),
        "/api/trace-summaries" => trace_summaries(state, &pairs),
        "/api/stats" => json_response(StatusCode::OK, &state.stats()),
        _ => match path.strip_prefix("/api/traces/") {
            Some(id) if !id.is_empty() => trace(state, id),
            _ => error(StatusCode::NOT_FOUND, &format!("no such page: {path}")),
        },
    }
}

fn service_graph(state: &State, pairs: &[(String, String)]) -> Response<Full<Bytes>> {
    let window = (|| {
        let end = number(pairs, "end_time")?.unwrap_or_else(now);
        let start = number(pairs, "start_time")?.unwrap_or(end - DEFAULT_GRAPH_SECONDS);
        if start > end {
            return Err("start_time is after end_time".to_owned());
        }
        Ok(Window { start, end })
    })();
    let window = match window {
        Ok(w) => w,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let store = state.store();
    let graph = graph::build(store.traces(), window);
    drop(store);
    json_response(StatusCode::OK, &graph)
}

fn trace_summaries(state: &State, pairs: &[(String, String)]) -> Response<Full<Bytes>> {
    let parsed = Filter::from_query(pairs)
        .map_err(|e| e.to_string())
        .and_then(|f| Ok((f, number(pairs, "limit")?, number(pairs, "next_token")?)));
    let (filter, limit, offset) = match parsed {
        Ok(p) => p,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let limit = limit.map_or(DEFAULT_PAGE, |l| l as usize).clamp(1, MAX_PAGE);
    let offset = offset.map_or(0, |o| o as usize);
    let store = state.store();
    let page = filter::page(store.traces(), &filter, offset, limit, now());
    drop(store);
    json_response(StatusCode::OK, &page)
}

/// `BatchGetTraces` for one id, with the summary and the laid-out timeline alongside.
fn trace(state: &State, id: &str) -> Response<Full<Bytes>> {
    let store = state.store();
    let Some(trace) = store.get(id) else {
        drop(store);
        let body = json!({"message": format!("no trace {id} (never received, or evicted)"),
                          "Traces": [], "UnprocessedTraceIds": [id]});
        return json_response(StatusCode::NOT_FOUND, &body);
    };
    let summary = summary::summarize(trace);
    let body = json!({
        "Traces": [{
            "Id": trace.id,
            "Duration": summary.duration,
            "LimitExceeded": false,
            "Segments": assemble::segments(trace),
            "Summary": summary,
            "Timeline": timeline::build(trace),
        }],
        "UnprocessedTraceIds": [],
    });
    drop(store);
    json_response(StatusCode::OK, &body)
}

/// A non-negative number parameter, or the message saying it is not one.
fn number(pairs: &[(String, String)], name: &str) -> Result<Option<f64>, String> {
    let Some((_, value)) = pairs.iter().rev().find(|(n, v)| n == name && !v.trim().is_empty()) else {
        return Ok(None);
    };
    match value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
        _ => Err(format!("bad value {value:?} for `{name}`: expected a number")),
    }
}

pub(super) fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec(body) {
        Ok(bytes) => respond(status, "application/json", Bytes::from(bytes)),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot encode the answer: {e}")),
    }
}

pub(super) fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = json!({ "message": message }).to_string();
    respond(status, "application/json", Bytes::from(body))
}

pub(super) fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Everything is live data or an asset of this very binary: never serve a stale copy.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
