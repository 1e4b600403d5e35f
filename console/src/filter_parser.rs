//! The grammar of filter expressions, by recursive descent:
//! `or := and (OR and)*`, `and := unary (AND? unary)*`, `unary := (NOT | !) unary | ( or ) | condition`,
//! where a condition may be `service(selector?) block?`, `edge(selector, selector) block?` or
//! `id(…) block?`, `selector := "name" | id(name: "…", type: "…")` and `block := { or }`. Two
//! conditions side by side are both required, as in X-Ray's own example `ok !partial duration < 3`.

use super::filter_ast::{Cond, Expr, ExpressionError, Field, Flag, Literal, Op, Selector};
use super::filter_tokens::{Tok, Token};

/// Reads tokens into an [`Expr`].
#[derive(Debug)]
pub struct Parser {
    tokens: Vec<Token>,
    next: usize,
    /// Where the text ends, for errors at the end.
    end: usize,
    depth_left: usize,
    /// Inside the `{ … }` of a `service(…)` or `edge(…)`, where those cannot appear again.
    in_block: bool,
}

impl Parser {
    /// A parser over `tokens` of a text `end` characters long, nesting at most `max_depth` deep.
    pub fn new(tokens: Vec<Token>, end: usize, max_depth: usize) -> Self {
        Self { tokens, next: 0, end, depth_left: max_depth, in_block: false }
    }

    /// The whole expression; anything left over is an error.
    pub fn expression(&mut self) -> Result<Expr, ExpressionError> {
        let expr = self.or()?;
        match self.tokens.get(self.next) {
            None => Ok(expr),
            Some(t) => Err(self.err_at(t.pos, "expected AND, OR or the end")),
        }
    }

    fn or(&mut self) -> Result<Expr, ExpressionError> {
        let mut left = self.and()?;
        while self.keyword("OR") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ExpressionError> {
        let mut left = self.unary()?;
        while self.keyword("AND") || self.term_follows() {
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    /// Whether the next token begins another condition (one written beside the last, no `AND`).
    fn term_follows(&self) -> bool {
        match self.tokens.get(self.next).map(|t| &t.tok) {
            Some(Tok::Bang | Tok::Open) => true,
            Some(Tok::Word(w)) => !w.eq_ignore_ascii_case("OR") && !w.eq_ignore_ascii_case("AND"),
            _ => false,
        }
    }

    fn unary(&mut self) -> Result<Expr, ExpressionError> {
        if self.depth_left == 0 {
            return Err(self.err_here("nested too deeply"));
        }
        self.depth_left -= 1;
        let expr = if self.keyword("NOT") || self.eat(&Tok::Bang) {
            Expr::Not(Box::new(self.unary()?))
        } else if self.eat(&Tok::Open) {
            let inner = self.or()?;
            if !self.eat(&Tok::Close) {
                return Err(self.err_here("expected )"));
            }
            inner
        } else {
            Expr::Cond(self.condition()?)
        };
        self.depth_left += 1;
        Ok(expr)
    }

    fn condition(&mut self) -> Result<Cond, ExpressionError> {
        let (word, pos) = match self.tokens.get(self.next) {
            Some(Token { tok: Tok::Word(w), pos }) => (w.clone(), *pos),
            _ => return Err(self.err_here("expected a keyword such as http.status, service(\"name\") or fault")),
        };
        self.next += 1;
        let lower = word.to_ascii_lowercase();
        if let Some(flag) = flag(&lower) {
            let Some(op) = self.op() else { return Ok(Cond::Flag(flag, true)) };
            let value = match self.literal()? {
                Literal::Bool(b) if op == Op::Eq => b,
                Literal::Bool(b) if op == Op::Ne => !b,
                _ => return Err(self.err_at(pos, format!("{word} compares only with = or != true or false"))),
            };
            return Ok(Cond::Flag(flag, value));
        }
        if let Some(field) = field(&lower) {
            let op = self.op().ok_or_else(|| self.err_here(format!("expected an operator after {word}")))?;
            let literal = self.literal()?;
            let numeric = matches!(field, Field::ResponseTime | Field::Duration | Field::HttpStatus);
            let fits = match (&literal, numeric) {
                (Literal::Number(_), true) => !matches!(op, Op::Contains | Op::BeginsWith | Op::EndsWith),
                (Literal::Text(_), false) => true,
                _ => false,
            };
            if !fits {
                let kind = if numeric { "a number" } else { "a quoted string" };
                return Err(self.err_at(pos, format!("{word} compares with {kind}")));
            }
            return Ok(Cond::Compare(field, op, literal));
        }
        if matches!(lower.as_str(), "service" | "edge" | "id") {
            if self.in_block {
                return Err(
                    self.err_at(pos, format!("{word}() cannot be used inside the {{ }} of service() or edge()"))
                );
            }
            if !self.eat(&Tok::Open) {
                return Err(self.err_at(pos, format!("expected ( after {word}")));
            }
            return match lower.as_str() {
                "service" => {
                    let selector = if self.eat(&Tok::Close) {
                        Selector::default()
                    } else {
                        let selector = self.selector(pos)?;
                        self.close(format!("expected ) after the {word}'s name"))?;
                        selector
                    };
                    Ok(Cond::Service(selector, self.block()?))
                }
                "edge" => {
                    let from = self.selector(pos)?;
                    if !self.eat(&Tok::Comma) {
                        return Err(self.err_here("expected , between the edge's two ends"));
                    }
                    let to = self.selector(pos)?;
                    self.close("expected ) after the edge's two ends")?;
                    Ok(Cond::Edge(from, to, self.block()?))
                }
                _ => {
                    let selector = self.id_arguments(pos)?;
                    Ok(Cond::Service(selector, self.block()?))
                }
            };
        }
        if let Some(key) = lower.strip_prefix("annotation.").map(|_| &word["annotation.".len()..]) {
            if key.is_empty() {
                return Err(self.err_at(pos, "expected annotation.KEY"));
            }
            let test = match self.op() {
                Some(op) => Some((op, self.literal()?)),
                None => None,
            };
            return Ok(Cond::Annotation(key.to_owned(), test));
        }
        if lower.starts_with("rootcause.") || lower.starts_with("group.") || lower == "json" {
            return Err(self.err_at(pos, format!("{word}: root causes, groups and json are not kept by this console")));
        }
        Err(self.err_at(pos, format!("unknown keyword {word}")))
    }

    /// A node: `"name"` or `id(…)`.
    fn selector(&mut self, keyword_at: usize) -> Result<Selector, ExpressionError> {
        match self.tokens.get(self.next).map(|t| &t.tok) {
            Some(Tok::Str(name)) => {
                let name = name.clone();
                self.next += 1;
                Ok(Selector { name: Some(name), kind: None })
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("id") => {
                let at = self.tokens[self.next].pos;
                self.next += 1;
                if !self.eat(&Tok::Open) {
                    return Err(self.err_here("expected ( after id"));
                }
                self.id_arguments(at)
            }
            _ => Err(self.err_at(keyword_at, "expected a node: \"name\" or id(name: \"…\", type: \"…\")")),
        }
    }

    /// What follows `id(`: `name: "…"` and `type: "…"`, either or both, in any order, then `)`.
    fn id_arguments(&mut self, id_at: usize) -> Result<Selector, ExpressionError> {
        let mut selector = Selector::default();
        loop {
            let key = match self.tokens.get(self.next).map(|t| &t.tok) {
                Some(Tok::Word(w)) => w.to_ascii_lowercase(),
                _ => return Err(self.err_here("expected name: or type: in id()")),
            };
            self.next += 1;
            let key = match key.strip_suffix(':') {
                Some(key) => key.to_owned(),
                None if self.eat(&Tok::Colon) => key,
                None => return Err(self.err_here("expected : after the argument's name")),
            };
            let value = match self.tokens.get(self.next).map(|t| &t.tok) {
                Some(Tok::Str(v)) => v.clone(),
                _ => return Err(self.err_here(format!("expected a quoted string after {key}:"))),
            };
            self.next += 1;
            let slot = match key.as_str() {
                "name" => &mut selector.name,
                "type" => &mut selector.kind,
                _ => return Err(self.err_at(id_at, format!("id() takes name: and type:, not {key}:"))),
            };
            if slot.replace(value).is_some() {
                return Err(self.err_at(id_at, format!("id() takes {key}: once")));
            }
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.close("expected ) after id's arguments")?;
        Ok(selector)
    }

    /// The optional `{ filter }` after a `service(…)` or `edge(…)`.
    fn block(&mut self) -> Result<Option<Box<Expr>>, ExpressionError> {
        if !self.eat(&Tok::OpenBrace) {
            return Ok(None);
        }
        self.in_block = true;
        let inner = self.or();
        self.in_block = false;
        let inner = inner?;
        if !self.eat(&Tok::CloseBrace) {
            return Err(self.err_here("expected }"));
        }
        Ok(Some(Box::new(inner)))
    }

    /// Consumes a `)` or says what was expected.
    fn close(&mut self, message: impl Into<String>) -> Result<(), ExpressionError> {
        if self.eat(&Tok::Close) { Ok(()) } else { Err(self.err_here(message)) }
    }

    /// A comparison operator, if one comes next.
    fn op(&mut self) -> Option<Op> {
        let op = match &self.tokens.get(self.next)?.tok {
            Tok::Op(op) => *op,
            Tok::Word(w) if w.eq_ignore_ascii_case("CONTAINS") => Op::Contains,
            Tok::Word(w) if w.eq_ignore_ascii_case("BEGINSWITH") => Op::BeginsWith,
            Tok::Word(w) if w.eq_ignore_ascii_case("ENDSWITH") => Op::EndsWith,
            _ => return None,
        };
        self.next += 1;
        Some(op)
    }

    fn literal(&mut self) -> Result<Literal, ExpressionError> {
        let literal = match self.tokens.get(self.next).map(|t| &t.tok) {
            Some(Tok::Num(n)) => Literal::Number(*n),
            Some(Tok::Str(s)) => Literal::Text(s.clone()),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            _ => return Err(self.err_here("expected a number, a quoted string, true or false")),
        };
        self.next += 1;
        Ok(literal)
    }

    fn keyword(&mut self, word: &str) -> bool {
        let found =
            matches!(self.tokens.get(self.next), Some(Token { tok: Tok::Word(w), .. }) if w.eq_ignore_ascii_case(word));
        self.next += usize::from(found);
        found
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        let found = self.tokens.get(self.next).is_some_and(|t| t.tok == *tok);
        self.next += usize::from(found);
        found
    }

    fn err_here(&self, message: impl Into<String>) -> ExpressionError {
        let pos = self.tokens.get(self.next).map_or(self.end, |t| t.pos);
        self.err_at(pos, message)
    }

    fn err_at(&self, position: usize, message: impl Into<String>) -> ExpressionError {
        ExpressionError { position, message: message.into() }
    }
}

fn flag(word: &str) -> Option<Flag> {
    Some(match word {
        "fault" => Flag::Fault,
        "error" => Flag::Error,
        "throttle" => Flag::Throttle,
        "ok" => Flag::Ok,
        "partial" => Flag::Partial,
        _ => return None,
    })
}

fn field(word: &str) -> Option<Field> {
    Some(match word {
        "responsetime" => Field::ResponseTime,
        "duration" => Field::Duration,
        "http.status" => Field::HttpStatus,
        "http.url" => Field::HttpUrl,
        "http.method" => Field::HttpMethod,
        "http.useragent" => Field::HttpUserAgent,
        "http.clientip" => Field::HttpClientIp,
        "user" => Field::User,
        _ => return None,
    })
}
