//! The syntax tree of an X-Ray filter expression: what the tokenizer and the parser build and
//! `filter_expression` applies to trace summaries.

/// Why an expression does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad FilterExpression at character {position}: {message}")]
pub struct ExpressionError {
    /// Where, counted in characters from 0.
    pub position: usize,
    /// What was wrong.
    pub message: String,
}

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Both hold.
    And(Box<Expr>, Box<Expr>),
    /// Either holds.
    Or(Box<Expr>, Box<Expr>),
    /// It does not hold.
    Not(Box<Expr>),
    /// One condition.
    Cond(Cond),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `CONTAINS`
    Contains,
    /// `BEGINSWITH`
    BeginsWith,
    /// `ENDSWITH`
    EndsWith,
}

/// A value compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A number.
    Number(f64),
    /// A quoted string.
    Text(String),
    /// `true` or `false`.
    Bool(bool),
}

/// One condition on a trace.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// `fault`, `error`, `throttle`, `ok` or `partial` (alone, negated or `= true|false`).
    Flag(Flag, bool),
    /// A keyword compared with a literal (`http.status >= 500`, `http.url CONTAINS "/x"`).
    Compare(Field, Op, Literal),
    /// `service("name")`, `service(id(…))` or `id(…)`: the trace went through a node the selector
    /// picks; with `{ filter }`, through one whose request there the filter keeps.
    Service(Selector, Option<Box<Expr>>),
    /// `edge(from, to)`: the trace called from one node to the other; with `{ filter }`, in a call
    /// the filter keeps.
    Edge(Selector, Selector, Option<Box<Expr>>),
    /// `annotation.KEY`, alone (the annotation exists) or compared.
    Annotation(String, Option<(Op, Literal)>),
}

/// Which nodes of the map a `service(…)` or an end of an `edge(…)` means: `"name"`, or
/// `id(name: "…", type: "…")` with either part left out; with neither (`service()`), every node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// The node's name.
    pub name: Option<String>,
    /// The node's type (`AWS::EKS::Container`, `client`, `remote`, ...).
    pub kind: Option<String>,
}

/// A boolean keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Some segment had a fault (5xx).
    Fault,
    /// Some segment had an error (4xx).
    Error,
    /// Some segment was throttled (429).
    Throttle,
    /// None of those.
    Ok,
    /// Some document is in progress or missing.
    Partial,
}

/// A keyword with a value. At the trace's level it is the entry request's; inside the filter of a
/// `service(…) { … }` or `edge(…) { … }`, the node's request's or the call's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The entry segment's own duration, seconds.
    ResponseTime,
    /// The whole trace's duration, seconds.
    Duration,
    /// The entry request's status.
    HttpStatus,
    /// The entry request's URL.
    HttpUrl,
    /// The entry request's method.
    HttpMethod,
    /// The entry request's user agent.
    HttpUserAgent,
    /// The entry request's client IP.
    HttpClientIp,
    /// The `user` of any segment.
    User,
}
