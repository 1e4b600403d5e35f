//! X-Ray filter expressions (`GetTraceSummaries`' `FilterExpression`), parsed and applied to trace
//! summaries: `http.status = 500 AND (service("api") OR responsetime > 1)`, `!fault`,
//! `annotation.tier = "gold"`, `http.url CONTAINS "/cart"`, and the complex keywords the X-Ray
//! console writes when a node or an edge of the map is chosen:
//! `service(id(name: "back-end", type: "AWS::EKS::Container")) { fault OR responsetime > 1 }`,
//! `edge("front-end", "back-end") { error }`.
//!
//! Keywords and operators are matched in any case; string values are compared as written.

use super::document::Outcome;
use super::filter_ast::{Cond, Field, Flag, Literal, Op, Selector};
use super::filter_parser::Parser;
use super::filter_tokens::tokenize;
use super::store::Trace;
use super::summary::{Hop, HttpSummary, ServiceId, TraceSummary, summarize, summarize_with_hops};
use serde_json::Value;
use std::collections::BTreeMap;

pub use super::filter_ast::{Expr, ExpressionError};

/// Longest expression taken, as X-Ray limits it.
const MAX_LENGTH: usize = 2000;
/// Deepest nesting of parentheses and `NOT`s, so a crafted expression cannot exhaust the stack.
const MAX_DEPTH: usize = 32;

impl Expr {
    /// Parses an expression; an empty one is `None` (every trace matches).
    pub fn parse(text: &str) -> Result<Option<Self>, ExpressionError> {
        if text.chars().count() > MAX_LENGTH {
            return Err(ExpressionError {
                position: MAX_LENGTH,
                message: format!("longer than {MAX_LENGTH} characters"),
            });
        }
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Ok(None);
        }
        let mut parser = Parser::new(tokens, text.chars().count(), MAX_DEPTH);
        parser.expression().map(Some)
    }

    /// True when the trace matches; one whose expression [`Expr::needs_hops`] is given a summary
    /// from [`super::summary::summarize_with_hops`].
    pub fn matches(&self, s: &TraceSummary) -> bool {
        self.holds(&|c: &Cond| c.matches(s))
    }

    /// Whether it names nodes or edges (`service(…)`, `edge(…)`, `id(…)`), which are matched
    /// against a summary from [`super::summary::summarize_with_hops`].
    pub fn needs_hops(&self) -> bool {
        match self {
            Self::And(a, b) | Self::Or(a, b) => a.needs_hops() || b.needs_hops(),
            Self::Not(e) => e.needs_hops(),
            Self::Cond(c) => matches!(c, Cond::Service(..) | Cond::Edge(..)),
        }
    }

    /// Whether the expression holds when each of its conditions is decided by `cond`.
    fn holds(&self, cond: &dyn Fn(&Cond) -> bool) -> bool {
        match self {
            Self::And(a, b) => a.holds(cond) && b.holds(cond),
            Self::Or(a, b) => a.holds(cond) || b.holds(cond),
            Self::Not(e) => !e.holds(cond),
            Self::Cond(c) => cond(c),
        }
    }
}

impl Cond {
    fn matches(&self, s: &TraceSummary) -> bool {
        match self {
            // The list's services (as before the map's nodes were here: a remote call whose
            // enclosing segment has not arrived is one, and an AWS call's type is `remote`) or the
            // map's nodes (`AWS::DynamoDB`): a trace either names matches.
            Self::Service(selector, None) => {
                s.service_ids.iter().chain(s.nodes.iter().map(|n| &n.node)).any(|id| selector.picks(id))
            }
            Self::Service(selector, Some(filter)) => s
                .nodes
                .iter()
                .filter(|n| selector.picks(&n.node))
                .any(|n| filter.holds(&|c: &Cond| c.holds_for(&n.hop))),
            Self::Edge(from, to, filter) => s
                .edges
                .iter()
                .filter(|e| from.picks(&e.from) && to.picks(&e.to))
                .any(|e| filter.as_ref().is_none_or(|f| f.holds(&|c: &Cond| c.holds_for(&e.hop)))),
            _ => self.holds_for(s),
        }
    }

    /// Decides a simple condition (a flag, a comparison, an annotation) on a trace or on one
    /// request or call; `service(…)` and `edge(…)`, which the parser keeps out of `{ … }`, hold
    /// for no single request.
    fn holds_for(&self, subject: &impl Subject) -> bool {
        match self {
            Self::Flag(flag, want) => subject.flag(*flag) == *want,
            Self::Compare(field, op, literal) => {
                let literal = match (field, literal) {
                    (Field::HttpMethod, Literal::Text(t)) => Literal::Text(t.to_ascii_uppercase()),
                    (_, l) => l.clone(),
                };
                subject.values(*field).iter().any(|v| compare(v, *op, &literal))
            }
            Self::Annotation(key, test) => subject.annotations().get(key).is_some_and(|values| match test {
                None => !values.is_empty(),
                Some((op, literal)) => values.iter().filter_map(annotation_literal).any(|v| compare(&v, *op, literal)),
            }),
            Self::Service(..) | Self::Edge(..) => false,
        }
    }
}

impl Selector {
    fn picks(&self, id: &ServiceId) -> bool {
        self.picks_node(&id.name, &id.kind) || id.names.iter().any(|name| self.picks_node(name, &id.kind))
    }

    /// Whether it picks the node of this name and type.
    pub fn picks_node(&self, name: &str, kind: &str) -> bool {
        self.name.as_deref().is_none_or(|n| n == name) && self.kind.as_deref().is_none_or(|k| k == kind)
    }
}

/// How to sum up the traces `expr` is matched against: with the map's nodes and edges when it
/// names some ([`Expr::needs_hops`]), else as the list does, which costs less.
pub fn summarizer(expr: Option<&Expr>) -> fn(&Trace) -> TraceSummary {
    match expr {
        Some(e) if e.needs_hops() => summarize_with_hops,
        _ => summarize,
    }
}

/// What `GetTimeSeriesServiceStatistics`' `EntitySelectorExpression` names: the nodes or the edges
/// whose requests are counted.
#[derive(Debug, Clone, PartialEq)]
pub enum Entity {
    /// `service(…)` or `id(…)`: the requests through these nodes.
    Service(Selector),
    /// `edge(…, …)`: the calls along these edges.
    Edge(Selector, Selector),
    /// No expression: the calls from the client, that is all the traffic entering the map.
    Entries,
}

impl Entity {
    /// Parses an entity selector: one `service(…)`, `edge(…, …)` or `id(…)`, without a filter.
    pub fn parse(text: &str) -> Result<Self, ExpressionError> {
        match Expr::parse(text)? {
            None => Ok(Self::Entries),
            Some(Expr::Cond(Cond::Service(selector, None))) => Ok(Self::Service(selector)),
            Some(Expr::Cond(Cond::Edge(from, to, None))) => Ok(Self::Edge(from, to)),
            Some(_) => Err(ExpressionError {
                position: 0,
                message: "an entity selector is one service(…), edge(…, …) or id(…), without { }".into(),
            }),
        }
    }
}

/// What simple conditions are decided on: a whole trace, or one request through a node or call
/// along an edge.
trait Subject {
    fn flag(&self, flag: Flag) -> bool;
    /// The keyword's values: one, or none when it is absent (the trace's `user`: one per user).
    fn values(&self, field: Field) -> Vec<Literal>;
    fn annotations(&self) -> &BTreeMap<String, Vec<Value>>;
}

impl Subject for TraceSummary {
    fn flag(&self, flag: Flag) -> bool {
        match flag {
            Flag::Fault => self.has_fault,
            Flag::Error => self.has_error,
            Flag::Throttle => self.has_throttle,
            // What the client got: a throttle downstream that was handled does not make it not ok.
            Flag::Ok => !(self.has_fault || self.has_error),
            Flag::Partial => self.is_partial,
        }
    }

    fn values(&self, field: Field) -> Vec<Literal> {
        match field {
            Field::ResponseTime => self.response_time.map(Literal::Number).into_iter().collect(),
            Field::Duration => vec![Literal::Number(self.duration)],
            Field::User => self.users.iter().map(|u| Literal::Text(u.user_name.clone())).collect(),
            http => http_value(&self.http, http).into_iter().collect(),
        }
    }

    fn annotations(&self) -> &BTreeMap<String, Vec<Value>> {
        &self.annotations
    }
}

impl Subject for Hop {
    fn flag(&self, flag: Flag) -> bool {
        match flag {
            Flag::Fault => self.outcome == Outcome::Fault,
            Flag::Error => matches!(self.outcome, Outcome::Error | Outcome::Throttle),
            Flag::Throttle => self.outcome == Outcome::Throttle,
            Flag::Ok => self.outcome == Outcome::Ok,
            Flag::Partial => self.in_progress,
        }
    }

    fn values(&self, field: Field) -> Vec<Literal> {
        match field {
            Field::ResponseTime | Field::Duration => self.response_time.map(Literal::Number).into_iter().collect(),
            Field::User => self.user.clone().map(Literal::Text).into_iter().collect(),
            http => http_value(&self.http, http).into_iter().collect(),
        }
    }

    fn annotations(&self) -> &BTreeMap<String, Vec<Value>> {
        &self.annotations
    }
}

/// An HTTP keyword's value; the method upper-cased, as it is compared in any case.
fn http_value(http: &HttpSummary, field: Field) -> Option<Literal> {
    match field {
        Field::HttpStatus => http.http_status.map(|v| Literal::Number(f64::from(v))),
        Field::HttpUrl => http.http_url.clone().map(Literal::Text),
        Field::HttpMethod => http.http_method.as_ref().map(|m| Literal::Text(m.to_ascii_uppercase())),
        Field::HttpUserAgent => http.user_agent.clone().map(Literal::Text),
        Field::HttpClientIp => http.client_ip.clone().map(Literal::Text),
        Field::ResponseTime | Field::Duration | Field::User => None,
    }
}

/// The literal inside X-Ray's `{"AnnotationValue": {"NumberValue": 1}}`.
fn annotation_literal(v: &Value) -> Option<Literal> {
    let typed = v.get("AnnotationValue")?;
    if let Some(n) = typed.get("NumberValue").and_then(Value::as_f64) {
        return Some(Literal::Number(n));
    }
    if let Some(b) = typed.get("BooleanValue").and_then(Value::as_bool) {
        return Some(Literal::Bool(b));
    }
    typed.get("StringValue").and_then(Value::as_str).map(|s| Literal::Text(s.to_owned()))
}

/// Compares a trace's value with the expression's; values of different kinds never match.
fn compare(value: &Literal, op: Op, want: &Literal) -> bool {
    match (value, want) {
        (Literal::Number(a), Literal::Number(b)) => match op {
            Op::Eq => a == b,
            Op::Ne => a != b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Contains | Op::BeginsWith | Op::EndsWith => false,
        },
        (Literal::Text(a), Literal::Text(b)) => match op {
            Op::Eq => a == b,
            Op::Ne => a != b,
            Op::Contains => a.contains(b.as_str()),
            Op::BeginsWith => a.starts_with(b.as_str()),
            Op::EndsWith => a.ends_with(b.as_str()),
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
        },
        (Literal::Bool(a), Literal::Bool(b)) => match op {
            Op::Eq => a == b,
            Op::Ne => a != b,
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
#[path = "filter_expression_tests.rs"]
mod tests;
