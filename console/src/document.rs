//! A typed view of one X-Ray segment document: the fields the map, the list and the timeline use.

use serde_json::{Map, Value};

/// Longest id, trace id or name kept; longer ones mark the document as malformed.
const MAX_ID_LEN: usize = 128;
const MAX_NAME_LEN: usize = 250;

/// Why a document was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocumentError {
    /// The document is not a JSON object.
    #[error("the document is not a json object")]
    NotObject,
    /// A required field is absent or has the wrong type.
    #[error("field `{0}` is missing or not valid")]
    Field(&'static str),
}

/// Whether a document (or nested entry) is a segment or a subsegment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A service's own record of a request.
    Segment,
    /// Work inside a segment, nested or sent on its own with `type: subsegment`.
    Subsegment,
}

/// How one request ended, for the ok/error/fault/throttle shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered without error.
    Ok,
    /// A client error (4xx) other than a throttle.
    Error,
    /// A throttle (429); also counted as an error.
    Throttle,
    /// A server error (5xx).
    Fault,
}

/// HTTP facts from the `http` block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Http {
    /// `http.request.method`.
    pub method: Option<String>,
    /// `http.request.url`.
    pub url: Option<String>,
    /// `http.request.client_ip`.
    pub client_ip: Option<String>,
    /// `http.request.user_agent`.
    pub user_agent: Option<String>,
    /// `http.response.status`.
    pub status: Option<u16>,
}

/// One segment or subsegment, with its nested subsegments.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The 16-hex id.
    pub id: String,
    /// The service (segment) or operation (subsegment) name.
    pub name: String,
    /// The trace id; nested subsegments inherit their segment's.
    pub trace_id: String,
    /// The id of the caller's subsegment (segments) or of the enclosing entry (subsegments).
    pub parent_id: Option<String>,
    /// Segment or subsegment.
    pub kind: Kind,
    /// Start, epoch seconds.
    pub start: f64,
    /// End, epoch seconds; `None` while in progress.
    pub end: Option<f64>,
    /// `namespace`: `remote` or `aws` for downstream calls.
    pub namespace: Option<String>,
    /// `origin`, e.g. `AWS::EKS::Container`.
    pub origin: Option<String>,
    /// The `error`, `throttle` and `fault` flags, completed from the HTTP status.
    pub outcome: Outcome,
    /// HTTP request and response facts.
    pub http: Http,
    /// `annotations` with string, number or boolean values.
    pub annotations: Vec<(String, Value)>,
    /// Nested subsegments that parsed; broken ones are left out rather than losing the segment.
    pub subsegments: Vec<Document>,
    /// The entry as sent, without its nested subsegments (http, annotations, metadata, cause, ...),
    /// kept so the timeline shows every field without parsing the text again.
    pub fields: Map<String, Value>,
}

impl Document {
    /// Parses a top-level document (a segment or an independent subsegment).
    pub fn parse(value: &Value) -> Result<Self, DocumentError> {
        let obj = value.as_object().ok_or(DocumentError::NotObject)?;
        let trace_id = bounded_str(obj, "trace_id", MAX_ID_LEN)?;
        if !is_trace_id(&trace_id) {
            return Err(DocumentError::Field("trace_id"));
        }
        let kind = match obj.get("type").and_then(Value::as_str) {
            Some("subsegment") => Kind::Subsegment,
            _ => Kind::Segment,
        };
        let doc = Self::parse_entry(obj, kind, trace_id)?;
        if kind == Kind::Subsegment && doc.parent_id.is_none() {
            return Err(DocumentError::Field("parent_id"));
        }
        Ok(doc)
    }

    /// Parses one entry; nested subsegments get `parent_id` = the enclosing entry's id.
    fn parse_entry(obj: &Map<String, Value>, kind: Kind, trace_id: String) -> Result<Self, DocumentError> {
        let id = bounded_str(obj, "id", MAX_ID_LEN)?;
        if !is_hex(&id, 16) {
            return Err(DocumentError::Field("id"));
        }
        let name = bounded_str(obj, "name", MAX_NAME_LEN)?;
        let start = obj
            .get("start_time")
            .and_then(Value::as_f64)
            .filter(|t| t.is_finite())
            .ok_or(DocumentError::Field("start_time"))?;
        let in_progress = obj.get("in_progress").and_then(Value::as_bool) == Some(true);
        let end = if in_progress {
            None
        } else {
            // X-Ray takes either an end time or `in_progress` (PutTraceSegments); an end before
            // the start is shown as in progress rather than refused.
            let end = obj.get("end_time").and_then(Value::as_f64).ok_or(DocumentError::Field("end_time"))?;
            Some(end).filter(|t| t.is_finite() && *t >= start)
        };
        let parent_id = optional_str(obj, "parent_id", MAX_ID_LEN);
        let http = parse_http(obj.get("http"));
        let flag = |k: &str| obj.get(k).and_then(Value::as_bool) == Some(true);
        let outcome = outcome(flag("error"), flag("throttle"), flag("fault"), http.status);
        let subsegments = obj
            .get("subsegments")
            .and_then(Value::as_array)
            .map(|subs| {
                subs.iter()
                    .filter_map(Value::as_object)
                    .filter_map(|s| Self::parse_entry(s, Kind::Subsegment, trace_id.clone()).ok())
                    .map(|mut s| {
                        s.parent_id = Some(id.clone());
                        s
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            id,
            name,
            trace_id,
            parent_id,
            kind,
            start,
            end,
            namespace: optional_str(obj, "namespace", MAX_NAME_LEN),
            origin: optional_str(obj, "origin", MAX_NAME_LEN),
            outcome,
            http,
            annotations: parse_annotations(obj.get("annotations")),
            subsegments,
            fields: obj.iter().filter(|(k, _)| *k != "subsegments").map(|(k, v)| (k.clone(), v.clone())).collect(),
        })
    }

    /// Seconds from start to end, or `None` while in progress.
    pub fn duration(&self) -> Option<f64> {
        self.end.map(|end| end - self.start)
    }

    /// True for a call to another service (`namespace` `remote` or `aws`): an edge on the map.
    pub fn is_remote(&self) -> bool {
        matches!(self.namespace.as_deref(), Some("remote" | "aws"))
    }

    /// The type of the node a call to a downstream stands for when the downstream sends nothing of
    /// its own: `AWS::<name>` for an AWS service (namespace `aws`), else `remote`.
    pub fn downstream_type(&self) -> String {
        match self.namespace.as_deref() {
            Some("aws") => format!("AWS::{}", self.name),
            _ => "remote".into(),
        }
    }

    /// The latest end among this entry and its nested subsegments (start when all are in progress).
    pub fn latest_end(&self) -> f64 {
        self.subsegments.iter().map(Document::latest_end).fold(self.end.unwrap_or(self.start), f64::max)
    }

    /// Visits this entry and every nested subsegment, depth first.
    pub fn walk<'a>(&'a self, visit: &mut impl FnMut(&'a Document)) {
        visit(self);
        for sub in &self.subsegments {
            sub.walk(visit);
        }
    }
}

/// Combines the flags and the status the way X-Ray does: 429 throttles, 4xx errs, 5xx faults.
fn outcome(error: bool, throttle: bool, fault: bool, status: Option<u16>) -> Outcome {
    let status = status.unwrap_or(0);
    if fault || (500..600).contains(&status) {
        Outcome::Fault
    } else if throttle || status == 429 {
        Outcome::Throttle
    } else if error || (400..500).contains(&status) {
        Outcome::Error
    } else {
        Outcome::Ok
    }
}

fn parse_http(http: Option<&Value>) -> Http {
    let request = http.and_then(|h| h.get("request")).and_then(Value::as_object);
    let response = http.and_then(|h| h.get("response"));
    let req = |k: &str| request.and_then(|r| optional_str(r, k, 2048));
    Http {
        method: req("method"),
        url: req("url"),
        client_ip: req("client_ip"),
        user_agent: req("user_agent"),
        status: response.and_then(|r| r.get("status")).and_then(Value::as_u64).and_then(|s| u16::try_from(s).ok()),
    }
}

/// Keeps scalar annotations only, as X-Ray indexes no others.
fn parse_annotations(annotations: Option<&Value>) -> Vec<(String, Value)> {
    let Some(map) = annotations.and_then(Value::as_object) else {
        return Vec::new();
    };
    map.iter()
        .filter(|(_, v)| v.is_string() || v.is_number() || v.is_boolean())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `1-` + 8 hex digits (the epoch seconds) + `-` + 24 hex digits, as X-Ray writes a trace id.
fn is_trace_id(s: &str) -> bool {
    let mut parts = s.split('-');
    matches!((parts.next(), parts.next(), parts.next(), parts.next()), (Some("1"), Some(t), Some(r), None) if is_hex(t, 8) && is_hex(r, 24))
}

/// The epoch seconds written in a trace id, when the trace was started.
pub fn trace_id_epoch(id: &str) -> Option<u32> {
    let time = id.strip_prefix("1-")?.get(..8)?;
    if is_hex(time, 8) { u32::from_str_radix(time, 16).ok() } else { None }
}

/// `len` hex digits.
fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn bounded_str(obj: &Map<String, Value>, key: &'static str, max: usize) -> Result<String, DocumentError> {
    match obj.get(key).and_then(Value::as_str) {
        Some(s) if !s.is_empty() && s.len() <= max => Ok(s.to_owned()),
        _ => Err(DocumentError::Field(key)),
    }
}

fn optional_str(obj: &Map<String, Value>, key: &str, max: usize) -> Option<String> {
    obj.get(key).and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= max).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_trace_id_tells_when_it_was_made() {
        assert_eq!(trace_id_epoch("1-5759e988-bd862e3fe1be46a994272793"), Some(0x5759_e988));
        assert_eq!(trace_id_epoch("1-ffffffff-bd862e3fe1be46a994272793"), Some(u32::MAX));
        for bad in ["2-5759e988-bd862e3fe1be46a994272793", "1-+759e988-bd8", "1-5759", ""] {
            assert_eq!(trace_id_epoch(bad), None, "{bad}");
        }
    }

    fn segment() -> Value {
        json!({"name": "front-end", "id": "70de5b6f19ff9a0a", "trace_id": "1-5759e988-bd862e3fe1be46a994272793",
            "start_time": 100.0, "end_time": 100.5,
            "http": {"request": {"method": "GET", "url": "http://front/", "client_ip": "10.0.0.7"},
                     "response": {"status": 200}},
            "subsegments": [{"name": "back-end", "id": "53995c3f42cd8ad8", "namespace": "remote",
                             "start_time": 100.1, "end_time": 100.4, "http": {"response": {"status": 503}}},
                            {"id": "broken"}]})
    }

    #[test]
    fn parses_a_segment_with_nested_subsegments() {
        let doc = Document::parse(&segment()).expect("valid segment");
        assert_eq!(doc.kind, Kind::Segment);
        assert_eq!(doc.http.client_ip.as_deref(), Some("10.0.0.7"));
        assert_eq!(doc.outcome, Outcome::Ok);
        assert_eq!(doc.subsegments.len(), 1, "the broken nested entry is left out");
        let sub = &doc.subsegments[0];
        assert!(sub.is_remote());
        assert_eq!(sub.parent_id.as_deref(), Some("70de5b6f19ff9a0a"));
        assert_eq!(sub.outcome, Outcome::Fault);
        assert_eq!(doc.latest_end(), 100.5);
    }

    #[test]
    fn independent_subsegment_needs_a_parent() {
        let v = json!({"type": "subsegment", "name": "x", "id": "000000000000000a", "trace_id": TRACE, "start_time": 1.0, "end_time": 2.0});
        assert_eq!(Document::parse(&v), Err(DocumentError::Field("parent_id")));
    }

    const TRACE: &str = "1-5759e988-bd862e3fe1be46a994272793";

    #[test]
    fn refuses_what_x_ray_refuses() {
        // PutTraceSegments: an id of 16 hex digits, a trace id as X-Ray writes it, and an end time
        // or `in_progress`.
        for (key, bad) in [
            ("id", json!("NOT-HEX")),
            ("id", json!("70de5b6f19ff9a0")),
            ("trace_id", json!("garbage-1796531501")),
            ("trace_id", json!("1-5759e988-bd862e3fe1be46a99427279")),
            ("trace_id", json!("2-5759e988-bd862e3fe1be46a994272793")),
        ] {
            let mut v = segment();
            v[key] = bad.clone();
            assert_eq!(Document::parse(&v), Err(DocumentError::Field(key)), "{key}: {bad}");
        }
        let mut v = segment();
        v.as_object_mut().map(|o| o.remove("end_time"));
        assert_eq!(Document::parse(&v), Err(DocumentError::Field("end_time")));
    }

    #[test]
    fn refuses_missing_required_fields() {
        for key in ["id", "name", "trace_id", "start_time"] {
            let mut v = segment();
            v.as_object_mut().map(|o| o.remove(key));
            assert_eq!(Document::parse(&v), Err(DocumentError::Field(key)), "{key}");
        }
        assert_eq!(Document::parse(&json!([1])), Err(DocumentError::NotObject));
    }

    #[test]
    fn in_progress_has_no_end() {
        let v =
            json!({"name": "a", "id": "000000000000000b", "trace_id": TRACE, "start_time": 1.0, "in_progress": true});
        let doc = Document::parse(&v).expect("valid");
        assert_eq!(doc.end, None);
        assert_eq!(doc.duration(), None);
    }

    #[test]
    fn outcome_follows_flags_and_status() {
        assert_eq!(outcome(false, false, false, Some(404)), Outcome::Error);
        assert_eq!(outcome(true, true, false, Some(429)), Outcome::Throttle);
        assert_eq!(outcome(false, false, false, Some(502)), Outcome::Fault);
        assert_eq!(outcome(true, false, false, None), Outcome::Error);
        assert_eq!(outcome(false, false, false, Some(201)), Outcome::Ok);
    }
}
