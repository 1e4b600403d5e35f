//! The grammar of filter expressions, by recursive descent:
//! `or := and (OR and)*`, `and := unary (AND unary)*`, `unary := (NOT | !) unary | ( or ) | condition`.

use super::filter_ast::{Cond, Expr, ExpressionError, Field, Flag, Literal, Op};
use super::filter_tokens::{Tok, Token};

/// Reads tokens into an [`Expr`].
#[derive(Debug)]
pub struct Parser {
    tokens: Vec<Token>,
    next: usize,
    /// Where the text ends, for errors at the end.
    end: usize,
    depth_left: usize,
}

impl Parser {
    /// A parser over `tokens` of a text `end` characters long, nesting at most `max_depth` deep.
    pub fn new(tokens: Vec<Token>, end: usize, max_depth: usize) -> Self {
        Self { tokens, next: 0, end, depth_left: max_depth }
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
        while self.keyword("AND") {
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
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
        if lower == "service" {
            let name = match (self.eat(&Tok::Open), self.tokens.get(self.next).map(|t| &t.tok)) {
                (true, Some(Tok::Str(s))) => s.clone(),
                _ => return Err(self.err_at(pos, "expected service(\"name\")")),
            };
            self.next += 1;
            if !self.eat(&Tok::Close) {
                return Err(self.err_here("expected ) after the service name"));
            }
            return Ok(Cond::Service(name));
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
        Err(self.err_at(pos, format!("unknown keyword {word}")))
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
        _ => return None,
    })
}
