//! The trace list's filters, parsed from query parameters, and the page of summaries that pass them.

use super::filter_expression::{Expr, summarizer};
use super::store::Trace;
use super::summary::{TraceSummaries, TraceSummary};

/// A query parameter that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad value {value:?} for `{name}`: {expected}")]
pub struct FilterError {
    /// The parameter.
    pub name: String,
    /// Its value.
    pub value: String,
    /// What would have been accepted, or why it was not.
    pub expected: String,
}

/// An HTTP status filter: `500` or a class such as `5xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Exactly this status.
    Exact(u16),
    /// Any status starting with this digit.
    Class(u16),
}

/// Which traces the list shows; every set field must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// The entry segment's HTTP status.
    pub status: Option<StatusFilter>,
    /// The entry segment's client IP, matched as a prefix (`10.0.3.` matches a subnet).
    pub client_ip: Option<String>,
    /// A part of the entry segment's URL, any case.
    pub url: Option<String>,
    /// The name of a service the trace went through, any case.
    pub service: Option<String>,
    /// The entry call's gRPC status name (`NOT_FOUND`), any case.
    pub grpc_status: Option<String>,
    /// Least duration, seconds.
    pub min_duration: Option<f64>,
    /// Greatest duration, seconds.
    pub max_duration: Option<f64>,
    /// Traces starting at or after this, epoch seconds.
    pub start_time: Option<f64>,
    /// Traces starting at or before this, epoch seconds.
    pub end_time: Option<f64>,
    /// An X-Ray filter expression (`edge("front-end", "back-end") { fault }`), as the API takes it.
    pub expression: Option<Expr>,
}

impl Filter {
    /// Reads the filter parameters from decoded query pairs; unknown names and empty values are ignored.
    pub fn from_query(pairs: &[(String, String)]) -> Result<Self, FilterError> {
        let mut filter = Self::default();
        for (name, value) in pairs {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let text = || Some(value.to_owned());
            match name.as_str() {
                "status" => filter.status = Some(parse_status(name, value)?),
                "client_ip" => filter.client_ip = text(),
                "url" => filter.url = text(),
                "service" => filter.service = text(),
                "grpc_status" => filter.grpc_status = text(),
                "min_duration" => filter.min_duration = Some(parse_seconds(name, value)?),
                "max_duration" => filter.max_duration = Some(parse_seconds(name, value)?),
                "start_time" => filter.start_time = Some(parse_seconds(name, value)?),
                "end_time" => filter.end_time = Some(parse_seconds(name, value)?),
                "expression" => {
                    filter.expression = Expr::parse(value).map_err(|e| FilterError {
                        name: name.clone(),
                        value: value.to_owned(),
                        expected: format!("an X-Ray filter expression ({e})"),
                    })?;
                }
                _ => {}
            }
        }
        Ok(filter)
    }

    /// True when the summary passes every set condition.
    pub fn matches(&self, s: &TraceSummary) -> bool {
        let http = &s.http;
        let status_ok = match (self.status, http.http_status) {
            (None, _) => true,
            (Some(StatusFilter::Exact(want)), Some(got)) => want == got,
            (Some(StatusFilter::Class(digit)), Some(got)) => got / 100 == digit,
            (Some(_), None) => false,
        };
        let contains =
            |hay: Option<&str>, needle: &str| hay.is_some_and(|h| h.to_lowercase().contains(&needle.to_lowercase()));
        status_ok
            && self.client_ip.as_deref().is_none_or(|ip| http.client_ip.as_deref().is_some_and(|c| c.starts_with(ip)))
            && self.url.as_deref().is_none_or(|u| contains(http.http_url.as_deref(), u))
            && self
                .service
                .as_deref()
                .is_none_or(|want| s.service_ids.iter().any(|id| id.name.eq_ignore_ascii_case(want)))
            && self
                .grpc_status
                .as_deref()
                .is_none_or(|want| s.grpc_status.as_deref().is_some_and(|got| got.eq_ignore_ascii_case(want)))
            && self.min_duration.is_none_or(|min| s.duration >= min)
            && self.max_duration.is_none_or(|max| s.duration <= max)
            && self.start_time.is_none_or(|t| s.start_time >= t)
            && self.end_time.is_none_or(|t| s.start_time <= t)
            && self.expression.as_ref().is_none_or(|e| e.matches(s))
    }

    /// How to sum up a trace for it: with the map's nodes and edges when its expression names some.
    pub fn summarize(&self) -> fn(&Trace) -> TraceSummary {
        summarizer(self.expression.as_ref())
    }
}

/// Where a page of the list starts, and what its `next_token` is.
#[derive(Debug, Clone, PartialEq)]
pub enum Paging {
    /// After this many matches; the next token is the next offset. The page's own list pages both
    /// ways with it.
    Offset(usize),
    /// After this row of the previous page (from the start when `None`); the next token is the page's
    /// last row. The API's `NextToken`: traces that arrive or are evicted between two calls shift
    /// nothing, so a client paging through sees each trace at most once and skips none that stayed.
    After(Option<Cursor>),
}

/// A row's place in the list's order (newest first, then trace id), as a `NextToken`: the start time's
/// exact bits in 16 hex digits, then the trace id.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    start_time: f64,
    id: String,
}

impl Cursor {
    fn at(s: &TraceSummary) -> Self {
        Cursor { start_time: s.start_time, id: s.id.clone() }
    }

    /// Reads a token [`Cursor::token`] made; `None` for anything else.
    pub fn parse(token: &str) -> Option<Self> {
        let (hex, id) = (token.get(..16)?, token.get(16..)?);
        if id.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let bits = u64::from_str_radix(hex, 16).ok()?;
        Some(Cursor { start_time: f64::from_bits(bits), id: id.to_owned() })
    }

    /// The token naming this place.
    pub fn token(&self) -> String {
        format!("{:016x}{}", self.start_time.to_bits(), self.id)
    }

    /// Whether `s` comes after this place in the list.
    fn precedes(&self, s: &TraceSummary) -> bool {
        list_order(self.start_time, &self.id, s.start_time, &s.id).is_lt()
    }
}

/// The list's order: newest first, then by trace id, so that every row has one place.
fn list_order(a_start: f64, a_id: &str, b_start: f64, b_id: &str) -> std::cmp::Ordering {
    b_start.total_cmp(&a_start).then_with(|| a_id.cmp(b_id))
}

/// The page of matching summaries, newest first, starting after `offset` matches.
pub fn page<'a>(
    traces: impl IntoIterator<Item = &'a Trace>,
    filter: &Filter,
    offset: usize,
    limit: usize,
    now: f64,
) -> TraceSummaries {
    page_matching(traces, filter.summarize(), |s| filter.matches(s), &Paging::Offset(offset), limit, now)
}

/// The page of the summaries `matches` keeps (the API's filter expressions) of the traces as
/// `summarize` sums them up, newest first, starting where `paging` says.
pub fn page_matching<'a>(
    traces: impl IntoIterator<Item = &'a Trace>,
    summarize: fn(&Trace) -> TraceSummary,
    matches: impl Fn(&TraceSummary) -> bool,
    paging: &Paging,
    limit: usize,
    now: f64,
) -> TraceSummaries {
    let mut processed = 0;
    let mut matched: Vec<TraceSummary> =
        traces.into_iter().inspect(|_| processed += 1).map(summarize).filter(|s| matches(s)).collect();
    matched.sort_by(|a, b| list_order(a.start_time, &a.id, b.start_time, &b.id));
    let matched_count = matched.len();
    let skip = match paging {
        Paging::Offset(offset) => (*offset).min(matched_count),
        Paging::After(None) => 0,
        Paging::After(Some(cursor)) => matched.partition_point(|s| !cursor.precedes(s)),
    };
    let end = skip.saturating_add(limit).min(matched_count);
    let trace_summaries: Vec<TraceSummary> = matched.drain(skip..end).collect();
    let next_token = (end < matched_count)
        .then(|| match paging {
            Paging::Offset(_) => Some(end.to_string()),
            Paging::After(_) => trace_summaries.last().map(|s| Cursor::at(s).token()),
        })
        .flatten();
    TraceSummaries {
        trace_summaries,
        matched_count,
        traces_processed_count: processed,
        approximate_time: now,
        next_token,
    }
}

fn parse_status(name: &str, value: &str) -> Result<StatusFilter, FilterError> {
    let err = || FilterError {
        name: name.to_owned(),
        value: value.to_owned(),
        expected: "a status such as 500 or a class such as 5xx".into(),
    };
    let lower = value.to_ascii_lowercase();
    if let Some(digit) = lower.strip_suffix("xx") {
        return match digit.parse::<u16>() {
            Ok(d @ 1..=5) => Ok(StatusFilter::Class(d)),
            _ => Err(err()),
        };
    }
    match value.parse::<u16>() {
        Ok(s @ 100..=599) => Ok(StatusFilter::Exact(s)),
        _ => Err(err()),
    }
}

fn parse_seconds(name: &str, value: &str) -> Result<f64, FilterError> {
    value.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| FilterError {
        name: name.to_owned(),
        value: value.to_owned(),
        expected: "a number of seconds".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_every_filter() {
        let f = Filter::from_query(&pairs(&[
            ("status", "5xx"),
            ("client_ip", "10.0.3."),
            ("url", "/api"),
            ("service", "back-end"),
            ("min_duration", "0.01"),
            ("max_duration", "2"),
            ("limit", "10"),
            ("end_time", ""),
            ("expression", "edge(\"front-end\", \"back-end\") { fault }"),
        ]))
        .expect("valid");
        assert!(f.expression.as_ref().is_some_and(Expr::needs_hops));
        assert_eq!(f.status, Some(StatusFilter::Class(5)));
        assert_eq!(f.client_ip.as_deref(), Some("10.0.3."));
        assert_eq!((f.min_duration, f.max_duration, f.end_time), (Some(0.01), Some(2.0), None));
        let exact = Filter::from_query(&pairs(&[("status", "404")])).expect("valid");
        assert_eq!(exact.status, Some(StatusFilter::Exact(404)));
    }

    #[test]
    fn refuses_bad_values_with_the_parameter_named() {
        for (name, value) in [
            ("status", "oops"),
            ("status", "9xx"),
            ("status", "42"),
            ("min_duration", "-1"),
            ("max_duration", "NaN"),
            ("expression", "edge("),
        ] {
            let err = Filter::from_query(&pairs(&[(name, value)])).expect_err("bad value");
            assert_eq!(err.name, name);
            assert!(err.to_string().contains(value));
        }
    }
}
