//! The AWS X-Ray API on the console's address: the REST-JSON operations boto3, the AWS CLI, the X-Ray
//! daemon and the SDKs call, with the paths and shapes of botocore's service model. Credentials and
//! signatures are not checked: this is a local stand-in.

use super::api::{json_response, respond};
use super::assemble;
use super::clock::now;
use super::datagram::Received;
use super::document::{Document, trace_id_epoch};
use super::filter;
use super::filter_expression::{Entity, Expr, summarizer};
use super::graph::{self, Window};
use super::sampling_api;
use super::state::State;
use super::store::{Inserted, Trace};
use super::summary;
use super::time_series;
use super::xray_error::{ErrorKind, XrayError, input};
use bytes::Bytes;
use http::StatusCode;
use http::header::HeaderValue;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

/// The largest request body read: X-Ray's own limit for `PutTraceSegments` is far below it.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// Trace summaries per `GetTraceSummaries` page.
const SUMMARY_PAGE: usize = 100;
/// Trace ids one `BatchGetTraces` or `GetTraceGraph` call may name.
const MAX_TRACE_IDS: usize = 100;

/// The operation a POST path names, if it is one of X-Ray's.
pub fn is_operation(path: &str) -> bool {
    OPERATIONS.iter().any(|(p, _)| *p == path)
}

type Operation = fn(&State, &[u8]) -> Result<Value, XrayError>;

const OPERATIONS: [(&str, Operation); 18] = [
    ("/TraceSegments", put_trace_segments),
    ("/ServiceGraph", get_service_graph),
    ("/TraceSummaries", get_trace_summaries),
    ("/Traces", batch_get_traces),
    ("/TraceGraph", get_trace_graph),
    ("/TelemetryRecords", put_telemetry_records),
    ("/GetSamplingRules", sampling_api::get_sampling_rules),
    ("/CreateSamplingRule", sampling_api::create_sampling_rule),
    ("/UpdateSamplingRule", sampling_api::update_sampling_rule),
    ("/DeleteSamplingRule", sampling_api::delete_sampling_rule),
    ("/SamplingTargets", sampling_api::get_sampling_targets),
    ("/SamplingStatisticSummaries", sampling_api::get_sampling_statistic_summaries),
    ("/TimeSeriesServiceStatistics", get_time_series_service_statistics),
    ("/Groups", get_groups),
    ("/GetGroup", get_group),
    ("/EncryptionConfig", get_encryption_config),
    ("/GetTraceSegmentDestination", get_trace_segment_destination),
    ("/InsightSummaries", get_insight_summaries),
];

/// Answers one X-Ray API call; errors are X-Ray's error shapes with a 4xx status.
pub fn handle(state: &State, path: &str, body: &[u8]) -> http::Response<Full<Bytes>> {
    let Some((_, operation)) = OPERATIONS.iter().find(|(p, _)| *p == path) else {
        return error_response(&XrayError::unknown_operation(format!(
            "this console does not offer the X-Ray operation at {path}"
        )));
    };
    match operation(state, body) {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err(e) => {
            tracing::debug!(path, error = %e, "refused an X-Ray API call");
            error_response(&e)
        }
    }
}

/// An X-Ray error: `x-amzn-ErrorType` and `__type` name the exception for botocore.
pub fn error_response(e: &XrayError) -> http::Response<Full<Bytes>> {
    let mut resp = respond(e.kind.status(), "application/json", Bytes::from(e.body().to_string()));
    if let Ok(v) = HeaderValue::from_str(e.kind.code()) {
        resp.headers_mut().insert("x-amzn-errortype", v);
    }
    resp
}

/// Reads a request body whole, within [`MAX_BODY`].
pub async fn read_body(body: hyper::body::Incoming) -> Result<Bytes, XrayError> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            let kind = if e.is::<LengthLimitError>() { ErrorKind::TooLarge } else { ErrorKind::InvalidRequest };
            Err(XrayError { kind, message: format!("cannot read the request body: {e}") })
        }
    }
}

/// The time range of a query; botocore sends timestamps as epoch seconds.
fn window(start: f64, end: f64) -> Result<Window, XrayError> {
    if !(start.is_finite() && end.is_finite()) || start > end {
        return Err(XrayError::invalid("StartTime must be a time before EndTime"));
    }
    Ok(Window { start, end })
}

/// The largest segment document X-Ray takes (the segment documents guide: "up to 64 kB"), as
/// large as a daemon datagram can carry.
const MAX_DOCUMENT: usize = 64 * 1024;

fn put_trace_segments(state: &State, body: &[u8]) -> Result<Value, XrayError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        trace_segment_documents: Vec<String>,
    }
    let input: Input = input(body)?;
    let mut unprocessed = Vec::new();
    for text in input.trace_segment_documents {
        let parsed = if text.len() > MAX_DOCUMENT {
            Err(format!("the document is {} bytes: a segment document can be up to 64 kB", text.len()))
        } else {
            serde_json::from_str::<Value>(&text)
                .map_err(|e| e.to_string())
                .and_then(|v| Document::parse(&v).map_err(|e| e.to_string()))
        };
        match parsed {
            Ok(document) => {
                let id = document.id.clone();
                if state.store().insert(Received { text, document }) == Inserted::TraceFull {
                    unprocessed.push(json!({"Id": id, "ErrorCode": "TraceFull", "Message": "the trace holds its maximum of documents"}));
                } else {
                    state.put_segments.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(message) => {
                let id = serde_json::from_str::<Value>(&text).ok().and_then(|v| v["id"].as_str().map(str::to_owned));
                unprocessed
                    .push(json!({"Id": id.unwrap_or_default(), "ErrorCode": "InvalidSegment", "Message": message}));
            }
        }
    }
    Ok(json!({ "UnprocessedTraceSegments": unprocessed }))
}

fn get_service_graph(state: &State, body: &[u8]) -> Result<Value, XrayError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        start_time: f64,
        end_time: f64,
        #[serde(flatten)]
        group: Group,
    }
    let input: Input = input(body)?;
    let window = window(input.start_time, input.end_time)?;
    input.group.is_default()?;
    let graph = graph::build(state.store().traces(), window);
    serde_json::to_value(graph).map_err(|e| XrayError::invalid(e.to_string()))
}

fn get_trace_summaries(state: &State, body: &[u8]) -> Result<Value, XrayError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        start_time: f64,
        end_time: f64,
        filter_expression: Option<String>,
        next_token: Option<String>,
        #[serde(default)]
        time_range_type: TimeRangeType,
    }
    let input: Input = input(body)?;
    let window = window(input.start_time, input.end_time)?;
    let time_range = input.time_range_type;
    let expr =
        Expr::parse(input.filter_expression.as_deref().unwrap_or("")).map_err(|e| XrayError::invalid(e.to_string()))?;
    let after = match input.next_token.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(
            filter::Cursor::parse(t)
                .ok_or_else(|| XrayError::invalid(format!("NextToken {t:?} was not given by this console")))?,
        ),
    };
    let matches = |s: &summary::TraceSummary| expr.as_ref().is_none_or(|e| e.matches(s));
    let paging = filter::Paging::After(after);
    let summarize = summarizer(expr.as_ref());
    let store = state.store();
    let in_window = store.traces().filter(|t| time_range.within(t, window));
    let page = filter::page_matching(in_window, summarize, matches, &paging, SUMMARY_PAGE, now());
    serde_json::to_value(page).map_err(|e| XrayError::invalid(e.to_string()))
}

/// Which time of a trace `GetTraceSummaries` holds against its window (`TimeRangeType`).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
enum TimeRangeType {
    /// When the trace's events happened, taken as its earliest segment's start: the time the trace
    /// list shows, and the default.
    #[default]
    Event,
    /// When the trace id was made: the epoch seconds written in it.
    TraceId,
    /// When a service finished with it: any segment's end.
    Service,
}

impl TimeRangeType {
    fn within(self, trace: &Trace, window: Window) -> bool {
        match self {
            TimeRangeType::Event => window.contains(trace.start()),
            TimeRangeType::TraceId => trace_id_epoch(&trace.id).is_some_and(|t| window.contains(f64::from(t))),
            TimeRangeType::Service => {
                trace.documents.iter().any(|d| d.document.end.is_some_and(|t| window.contains(t)))
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TraceIds {
    trace_ids: Vec<String>,
}

fn trace_ids(body: &[u8]) -> Result<Vec<String>, XrayError> {
    let TraceIds { trace_ids } = input(body)?;
    if trace_ids.len() > MAX_TRACE_IDS {
        return Err(XrayError::invalid(format!("at most {MAX_TRACE_IDS} TraceIds per call")));
    }
    Ok(trace_ids)
}

fn batch_get_traces(state: &State, body: &[u8]) -> Result<Value, XrayError> {
    let ids = trace_ids(body)?;
    let store = state.store();
    let (mut traces, mut missing) = (Vec::new(), Vec::new());
    for id in ids {
        let Some(trace) = store.get(&id) else {
            missing.push(id);
            continue;
        };
        traces.push(json!({
            "Id": trace.id,
            "Duration": (trace.end() - trace.start()).max(0.0),
            "LimitExceeded": false,
            "Segments": assemble::segments(trace),
        }));
    }
    Ok(json!({ "Traces": traces, "UnprocessedTraceIds": missing }))
}

fn get_trace_graph(state: &State, body: &[u8]) -> Result<Value, XrayError> {
    let ids = trace_ids(body)?;
    let store = state.store();
    let traces = ids.iter().filter_map(|id| store.get(id));
    let graph = graph::build(traces, Window { start: f64::NEG_INFINITY, end: f64::INFINITY });
    Ok(json!({ "Services": serde_json::to_value(graph.services).map_err(|e| XrayError::invalid(e.to_string()))? }))
}

fn put_telemetry_records(state: &State, body: &[u8]) -> Result<Value, XrayError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        telemetry_records: Vec<Value>,
    }
    let input: Input = input(body)?;
    state.telemetry_records.fetch_add(input.telemetry_records.len() as u64, Ordering::Relaxed);
    Ok(json!({}))
}

/// The periods `GetTimeSeriesServiceStatistics` takes, seconds: X-Ray's one and five minutes.
const PERIODS: [u32; 2] = [60, 300];

fn get_time_series_service_statistics(state: &State, body: &[u8]) -> Result<Value, XrayError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Input {
        start_time: f64,
        end_time: f64,
        entity_selector_expression: Option<String>,
        period: Option<u32>,
        #[serde(flatten)]
        group: Group,
    }
    let input: Input = input(body)?;
    let window = window(input.start_time, input.end_time)?;
    input.group.is_default()?;
    let period = input.period.unwrap_or(PERIODS[0]);
    if !PERIODS.contains(&period) {
        return Err(XrayError::invalid(format!("Period must be 60 or 300 seconds, not {period}")));
    }
    let entity = Entity::parse(input.entity_selector_expression.as_deref().unwrap_or(""))
        .map_err(|e| XrayError::invalid(format!("EntitySelectorExpression: {e}")))?;
    let store = state.store();
    let points = time_series::build(store.traces(), &entity, window, period);
    drop(store);
    Ok(json!({ "TimeSeriesServiceStatistics": points, "ContainsOldGroupVersions": false }))
}

/// The one group there is: X-Ray's `Default`, every trace.
fn default_group_record() -> Value {
    json!({
        "GroupName": "Default",
        "GroupARN": DEFAULT_GROUP_ARN,
        "FilterExpression": "",
        "InsightsConfiguration": {"InsightsEnabled": false, "NotificationsEnabled": false},
    })
}

/// Shaped like the sampling rules' ARNs (`sampling_rules`): region `local`, no account.
const DEFAULT_GROUP_ARN: &str = "arn:aws:xray:local::group/Default";

/// The group an operation names, by `GroupName` or `GroupARN` (either left out means `Default`).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Group {
    group_name: Option<String>,
    #[serde(rename = "GroupARN")]
    group_arn: Option<String>,
}

impl Group {
    /// Refuses any group but `Default`.
    fn is_default(&self) -> Result<(), XrayError> {
        let named_other = self.group_name.as_deref().is_some_and(|n| !n.is_empty() && n != "Default");
        let arn_other = self
            .group_arn
            .as_deref()
            .is_some_and(|a| !a.is_empty() && !a.ends_with(":group/Default") && a != DEFAULT_GROUP_ARN);
        if named_other || arn_other {
            return Err(XrayError::invalid("this console has one group, Default (every trace)"));
        }
        Ok(())
    }
}

fn get_groups(_: &State, _: &[u8]) -> Result<Value, XrayError> {
    Ok(json!({ "Groups": [default_group_record()] }))
}

fn get_group(_: &State, body: &[u8]) -> Result<Value, XrayError> {
    let group: Group = input(body)?;
    group.is_default()?;
    Ok(json!({ "Group": default_group_record() }))
}

/// Nothing here is encrypted with a key of the account's: X-Ray's default.
fn get_encryption_config(_: &State, _: &[u8]) -> Result<Value, XrayError> {
    Ok(json!({ "EncryptionConfig": {"Status": "ACTIVE", "Type": "NONE"} }))
}

/// Segments go to X-Ray's own store, which is what this console stands in for.
fn get_trace_segment_destination(_: &State, _: &[u8]) -> Result<Value, XrayError> {
    Ok(json!({ "Destination": "XRay", "Status": "ACTIVE" }))
}

/// No insights are generated here; the answer says so rather than failing a tool that asks.
fn get_insight_summaries(_: &State, _: &[u8]) -> Result<Value, XrayError> {
    Ok(json!({ "InsightSummaries": [] }))
}
