//! X-Ray filter expressions (`GetTraceSummaries`' `FilterExpression`), parsed and applied to trace
//! summaries: `http.status = 500 AND (service("api") OR responsetime > 1)`, `!fault`,
//! `annotation.tier = "gold"`, `http.url CONTAINS "/cart"` and so on.
//!
//! Keywords and operators are matched in any case; string values are compared as written.

use super::filter_ast::{Cond, Field, Flag, Literal, Op};
use super::filter_parser::Parser;
use super::filter_tokens::tokenize;
use super::summary::TraceSummary;
use serde_json::Value;

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

    /// True when the trace matches.
    pub fn matches(&self, s: &TraceSummary) -> bool {
        match self {
            Self::And(a, b) => a.matches(s) && b.matches(s),
            Self::Or(a, b) => a.matches(s) || b.matches(s),
            Self::Not(e) => !e.matches(s),
            Self::Cond(c) => c.matches(s),
        }
    }
}

impl Cond {
    fn matches(&self, s: &TraceSummary) -> bool {
        match self {
            Self::Flag(flag, want) => {
                let got = match flag {
                    Flag::Fault => s.has_fault,
                    Flag::Error => s.has_error,
                    Flag::Throttle => s.has_throttle,
                    Flag::Ok => !(s.has_fault || s.has_error || s.has_throttle),
                    Flag::Partial => s.is_partial,
                };
                got == *want
            }
            Self::Compare(field, op, literal) => {
                let http = &s.http;
                let value = match field {
                    Field::ResponseTime => s.response_time.map(Literal::Number),
                    Field::Duration => Some(Literal::Number(s.duration)),
                    Field::HttpStatus => http.http_status.map(|v| Literal::Number(f64::from(v))),
                    Field::HttpUrl => http.http_url.clone().map(Literal::Text),
                    Field::HttpMethod => http.http_method.as_ref().map(|m| Literal::Text(m.to_ascii_uppercase())),
                    Field::HttpUserAgent => http.user_agent.clone().map(Literal::Text),
                    Field::HttpClientIp => http.client_ip.clone().map(Literal::Text),
                };
                let literal = match (field, literal) {
                    (Field::HttpMethod, Literal::Text(t)) => Literal::Text(t.to_ascii_uppercase()),
                    (_, l) => l.clone(),
                };
                value.is_some_and(|v| compare(&v, *op, &literal))
            }
            Self::Service(name) => s.service_ids.iter().any(|id| id.name == *name || id.names.contains(name)),
            Self::Annotation(key, test) => s.annotations.get(key).is_some_and(|values| match test {
                None => !values.is_empty(),
                Some((op, literal)) => values.iter().filter_map(annotation_literal).any(|v| compare(&v, *op, literal)),
            }),
        }
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
