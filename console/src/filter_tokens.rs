//! Splits a filter expression into tokens: words, quoted strings, numbers, operators, brackets,
//! braces and the punctuation of arguments.

use super::filter_ast::{ExpressionError, Op};

/// One token.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A keyword or a name (`http.status`, `AND`, `annotation.tier`, `true`).
    Word(String),
    /// A double-quoted string, unescaped.
    Str(String),
    /// A number.
    Num(f64),
    /// `=`, `!=`, `<`, `<=`, `>`, `>=`.
    Op(Op),
    /// `(`
    Open,
    /// `)`
    Close,
    /// `!`
    Bang,
    /// `,` between the arguments of `edge(…)` and `id(…)`.
    Comma,
    /// `:` after an argument's name in `id(name: "…")` when a space parts them.
    Colon,
    /// `{`, opening the filter of `service(…) { … }` and `edge(…) { … }`.
    OpenBrace,
    /// `}`
    CloseBrace,
}

/// A token and the character it starts at.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Its position, in characters.
    pub pos: usize,
}

fn err(position: usize, message: impl Into<String>) -> ExpressionError {
    ExpressionError { position, message: message.into() }
}

/// The tokens of `text`, or where it stops making sense.
pub fn tokenize(text: &str) -> Result<Vec<Token>, ExpressionError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let tok = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => Tok::Open,
            ')' => Tok::Close,
            ',' => Tok::Comma,
            ':' => Tok::Colon,
            '{' => Tok::OpenBrace,
            '}' => Tok::CloseBrace,
            '=' => Tok::Op(Op::Eq),
            '!' if chars.get(i + 1) == Some(&'=') => {
                i += 1;
                Tok::Op(Op::Ne)
            }
            '!' => Tok::Bang,
            '<' | '>' => {
                let or_equal = chars.get(i + 1) == Some(&'=');
                if or_equal {
                    i += 1;
                }
                Tok::Op(match (c, or_equal) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                })
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err(start, "unterminated string")),
                        Some('"') => break,
                        Some('\\') if i + 1 < chars.len() => {
                            s.push(chars[i + 1]);
                            i += 2;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                Tok::Str(s)
            }
            c if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                let mut end = i + 1;
                while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '.') {
                    end += 1;
                }
                let word: String = chars[i..end].iter().collect();
                i = end - 1;
                Tok::Num(word.parse().map_err(|_| err(start, format!("{word:?} is not a number")))?)
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut end = i + 1;
                while end < chars.len() && (chars[end].is_alphanumeric() || matches!(chars[end], '_' | '.' | '-' | ':'))
                {
                    end += 1;
                }
                let word: String = chars[i..end].iter().collect();
                i = end - 1;
                Tok::Word(word)
            }
            other => return Err(err(start, format!("unexpected {other:?}"))),
        };
        out.push(Token { tok, pos: start });
        i += 1;
    }
    Ok(out)
}
