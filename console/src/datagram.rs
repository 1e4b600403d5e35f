//! Splits a daemon datagram (`{"format": "json", "version": 1}\n{document}`) into a parsed document.

use super::document::{Document, DocumentError};
use serde_json::Value;

/// Why a datagram was dropped.
#[derive(Debug, thiserror::Error)]
pub enum DatagramError {
    /// No newline between the header and the document.
    #[error("no header line")]
    NoHeader,
    /// The header is not `{"format": "json", "version": 1}`.
    #[error("bad header: expected {{\"format\": \"json\", \"version\": 1}}")]
    BadHeader,
    /// Nothing after the header.
    #[error("empty document")]
    EmptyBody,
    /// The document is not UTF-8.
    #[error("the document is not utf-8")]
    NotUtf8,
    /// The document is not JSON.
    #[error("the document is not json: {0}")]
    Json(#[source] serde_json::Error),
    /// The document lacks what a segment needs.
    #[error("not a segment document: {0}")]
    Document(#[source] DocumentError),
}

/// A document accepted from a datagram: its text as received and its parsed view.
#[derive(Debug, Clone)]
pub struct Received {
    /// The document's JSON text, kept verbatim for `BatchGetTraces`' `Document`.
    pub text: String,
    /// The parsed view.
    pub document: Document,
}

/// Parses one datagram the way the daemon does: header line, then one JSON document.
pub fn parse(datagram: &[u8]) -> Result<Received, DatagramError> {
    let newline = datagram.iter().position(|&b| b == b'\n').ok_or(DatagramError::NoHeader)?;
    let (header, body) = (&datagram[..newline], &datagram[newline + 1..]);
    let header: Value = serde_json::from_slice(header).map_err(|_| DatagramError::BadHeader)?;
    let header_ok = header.get("format").and_then(Value::as_str) == Some("json")
        && header.get("version").and_then(Value::as_u64) == Some(1);
    if !header_ok {
        return Err(DatagramError::BadHeader);
    }
    let text = std::str::from_utf8(body).map_err(|_| DatagramError::NotUtf8)?.trim();
    if text.is_empty() {
        return Err(DatagramError::EmptyBody);
    }
    let value: Value = serde_json::from_str(text).map_err(DatagramError::Json)?;
    let document = Document::parse(&value).map_err(DatagramError::Document)?;
    Ok(Received { text: text.to_owned(), document })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"name":"a","id":"70de5b6f19ff9a0a","trace_id":"1-5759e988-bd862e3fe1be46a994272793","start_time":1.0,"end_time":2.0}"#;

    #[test]
    fn accepts_the_daemon_format() {
        let datagram = format!("{{\"format\": \"json\", \"version\": 1}}\n{DOC}\n");
        let received = parse(datagram.as_bytes()).expect("valid datagram");
        assert_eq!(received.text, DOC);
        assert_eq!(received.document.id, "70de5b6f19ff9a0a");
        // Compact headers, as some SDKs write them, are the same header.
        let compact = format!("{{\"format\":\"json\",\"version\":1}}\n{DOC}");
        assert!(parse(compact.as_bytes()).is_ok());
    }

    #[test]
    fn drops_malformed_datagrams() {
        let cases: [(&[u8], &str); 7] = [
            (DOC.as_bytes(), "no header line"),
            (b"{\"format\": \"xml\", \"version\": 1}\n{}", "bad header"),
            (b"{\"format\": \"json\", \"version\": 2}\n{}", "bad header"),
            (b"garbage\n{}", "bad header"),
            (b"{\"format\": \"json\", \"version\": 1}\n  \n", "empty document"),
            (b"{\"format\": \"json\", \"version\": 1}\n{\"name\":", "not json"),
            (b"{\"format\": \"json\", \"version\": 1}\n\xff\xfe", "not utf-8"),
        ];
        for (datagram, expected) in cases {
            let err = parse(datagram).expect_err("malformed").to_string();
            assert!(err.contains(expected), "{err:?} should say {expected:?}");
        }
        let no_id = b"{\"format\": \"json\", \"version\": 1}\n{\"name\":\"a\",\"trace_id\":\"t\",\"start_time\":1}";
        assert!(matches!(parse(no_id), Err(DatagramError::Document(_))));
    }
}
