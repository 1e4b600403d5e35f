//! The `X-Amzn-Trace-Id` header: parsed once at the boundary, written for the upstream and the client.
//!
//! Parsing never fails a request. What cannot be understood is reported as [`Malformed`] (the caller
//! logs it at debug level) and the request simply starts a fresh trace.

use bytes::{BufMut, BytesMut};
use http::{HeaderName, HeaderValue};
use std::fmt;

use super::id::{SegmentId, TraceId};

/// The header's name (HTTP header names are case-insensitive; `http` stores them lower-case).
pub const TRACE_HEADER: HeaderName = HeaderName::from_static("x-amzn-trace-id");

/// The caller's sampling instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampled {
    /// `Sampled=1`: record this request.
    Yes,
    /// `Sampled=0`: do not record it, but pass the decision on.
    No,
    /// `Sampled=?`: the caller asks us to decide and to echo the decision.
    Requested,
    /// No `Sampled` key: decide locally.
    Unset,
}

/// What was wrong with a header that was not taken as it came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// The value is not valid UTF-8 text.
    NotText,
    /// `Root` is not a valid trace id.
    Root,
    /// `Parent` is not 16 hex digits (or is zero).
    Parent,
    /// `Parent` came without a usable `Root`.
    ParentWithoutRoot,
    /// `Sampled` is not `1`, `0` or `?`.
    Sampled,
    /// A part is not a `key=value` pair.
    Pair,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::NotText => "header is not text",
            Malformed::Root => "Root is not a valid trace id",
            Malformed::Parent => "Parent is not 16 non-zero hex digits",
            Malformed::ParentWithoutRoot => "Parent without a valid Root",
            Malformed::Sampled => "Sampled is not 1, 0 or ?",
            Malformed::Pair => "a part is not a key=value pair",
        })
    }
}

/// A parsed `X-Amzn-Trace-Id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceHeader {
    /// The trace this request belongs to, when the caller gave a valid one.
    pub root: Option<TraceId>,
    /// The caller's segment or subsegment id.
    pub parent: Option<SegmentId>,
    /// The caller's sampling instruction.
    pub sampled: Sampled,
    /// A W3C `traceparent` naming this trace said its id is random in its right-most 7 bytes (the
    /// Level 2 random-trace-id flag), which goes on with it; X-Ray's own header says nothing of it.
    pub random: bool,
    /// Pairs we do not interpret (`Lineage` and the application's own), `;`-joined, passed on verbatim.
    extra: Option<Box<str>>,
}

impl TraceHeader {
    /// A header that says nothing: what a request without one is treated as.
    pub const EMPTY: TraceHeader =
        TraceHeader { root: None, parent: None, sampled: Sampled::Unset, random: false, extra: None };

    /// Whether the trace that goes on is random in its trace id's right-most 7 bytes (W3C Trace
    /// Context Level 2's random-trace-id flag): one started here, with 96 random bits after its
    /// time, or one whose `traceparent` said so.
    pub fn random_trace_id(&self) -> bool {
        self.root.is_none() || self.random
    }

    /// Parses a header value; the first problem found, if any, is returned beside what could be kept.
    pub fn parse(value: &HeaderValue) -> (TraceHeader, Option<Malformed>) {
        let Ok(text) = value.to_str() else {
            return (TraceHeader::EMPTY, Some(Malformed::NotText));
        };
        let mut h = TraceHeader::EMPTY;
        let mut problem = None;
        let mut note = |m| {
            problem.get_or_insert(m);
        };
        let mut parent_text = None;
        let mut extra = String::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, val)) = part.split_once('=') else {
                note(Malformed::Pair);
                continue;
            };
            let (key, val) = (key.trim(), val.trim());
            if key.is_empty() {
                // `=value` names nothing the next hop could read: not passed on.
                note(Malformed::Pair);
                continue;
            }
            if key.eq_ignore_ascii_case("Root") {
                if h.root.is_none() {
                    h.root = TraceId::parse(val);
                    if h.root.is_none() {
                        note(Malformed::Root);
                    }
                }
            } else if key.eq_ignore_ascii_case("Parent") {
                parent_text.get_or_insert(val);
            } else if key.eq_ignore_ascii_case("Sampled") {
                h.sampled = match val {
                    "1" => Sampled::Yes,
                    "0" => Sampled::No,
                    "?" => Sampled::Requested,
                    _ => {
                        note(Malformed::Sampled);
                        Sampled::Unset
                    }
                };
            } else if key.eq_ignore_ascii_case("Self") {
                // Set by load balancers for their own hop; the SDKs drop it too.
            } else {
                if !extra.is_empty() {
                    extra.push(';');
                }
                extra.push_str(part);
            }
        }
        if let Some(p) = parent_text {
            match (h.root, SegmentId::parse(p)) {
                (Some(_), Some(id)) => h.parent = Some(id),
                (Some(_), None) => note(Malformed::Parent),
                // A parent in some other trace would attach our segment to the wrong tree.
                (None, _) => note(Malformed::ParentWithoutRoot),
            }
        }
        if !extra.is_empty() {
            h.extra = Some(extra.into_boxed_str());
        }
        (h, problem)
    }

    /// The pairs passed on unchanged (`Lineage` and the application's), if any.
    pub fn extra(&self) -> Option<&str> {
        self.extra.as_deref()
    }

    /// The header for the next hop: `Root=..;Parent=..;Sampled=..` and the preserved pairs.
    pub fn for_downstream(&self, root: &TraceId, parent: &SegmentId, sampled: bool) -> HeaderValue {
        let extra = self.extra.as_deref().unwrap_or_default();
        let pairs: [&[u8]; 5] = [
            b"Root=",
            root.as_bytes(),
            b";Parent=",
            parent.as_bytes(),
            if sampled { b";Sampled=1" } else { b";Sampled=0" },
        ];
        // Exactly the length written: a buffer that has to grow costs a reallocation per request.
        let len = pairs.iter().map(|p| p.len()).sum::<usize>() + if extra.is_empty() { 0 } else { 1 + extra.len() };
        let mut b = BytesMut::with_capacity(len);
        for p in pairs {
            b.put_slice(p);
        }
        if !extra.is_empty() {
            b.put_u8(b';');
            b.put_slice(extra.as_bytes());
        }
        debug_assert_eq!(b.len(), len);
        // The extra pairs came from a valid header value, so this only fails on a bug; fall back to
        // the pairs we generated rather than dropping the header.
        HeaderValue::from_maybe_shared(b.freeze())
            .unwrap_or_else(|_| TraceHeader::EMPTY.for_downstream(root, parent, sampled))
    }
}

/// The header for the response to the client: `Root=..;Sampled=..`.
pub fn for_response(root: &TraceId, sampled: bool) -> HeaderValue {
    let mut b = BytesMut::with_capacity(50);
    b.put_slice(b"Root=");
    b.put_slice(root.as_bytes());
    b.put_slice(if sampled { b";Sampled=1" } else { b";Sampled=0" });
    HeaderValue::from_maybe_shared(b.freeze()).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";

    fn parse(s: &str) -> (TraceHeader, Option<Malformed>) {
        TraceHeader::parse(&HeaderValue::from_str(s).expect("test header"))
    }

    #[test]
    fn parses_the_documented_form_in_any_order_and_spacing() {
        let (h, bad) = parse(" Sampled=1 ; Parent=53995c3f42cd8ad8;Root=1-5759e988-bd862e3fe1be46a994272793 ");
        assert_eq!(bad, None);
        assert_eq!(h.root.map(|r| r.to_string()).as_deref(), Some(ROOT));
        assert_eq!(h.parent.map(|p| p.to_string()).as_deref(), Some("53995c3f42cd8ad8"));
        assert_eq!(h.sampled, Sampled::Yes);
        assert_eq!(h.extra(), None);
    }

    #[test]
    fn keeps_lineage_and_application_pairs_but_drops_self() {
        let (h, bad) = parse(&format!(
            "Self=1-67891234-12456789abcdef012345678;Root={ROOT};Lineage=a87bd80c:1|68fd508a:5;Sampled=?;tenant=blue"
        ));
        assert_eq!(bad, None);
        assert_eq!(h.sampled, Sampled::Requested);
        assert_eq!(h.extra(), Some("Lineage=a87bd80c:1|68fd508a:5;tenant=blue"));
        let root = h.root.expect("root");
        let parent = SegmentId::parse("0123456789abcdef").expect("id");
        let out = h.for_downstream(&root, &parent, true);
        assert_eq!(
            out.to_str().ok(),
            Some(format!("Root={ROOT};Parent=0123456789abcdef;Sampled=1;Lineage=a87bd80c:1|68fd508a:5;tenant=blue"))
                .as_deref()
        );
    }

    #[test]
    fn malformed_parts_are_reported_and_never_kept() {
        let (h, bad) = parse("Root=1-xyz;Parent=53995c3f42cd8ad8;Sampled=1");
        assert_eq!(bad, Some(Malformed::Root));
        assert_eq!((h.root, h.parent, h.sampled), (None, None, Sampled::Yes));

        let (h, bad) = parse(&format!("Root={ROOT};Parent=0000000000000000"));
        assert_eq!(bad, Some(Malformed::Parent));
        assert!(h.root.is_some() && h.parent.is_none());

        let (h, bad) = parse("Parent=53995c3f42cd8ad8");
        assert_eq!(bad, Some(Malformed::ParentWithoutRoot));
        assert_eq!(h.parent, None);

        let (h, bad) = parse(&format!("Root={ROOT};Sampled=yes"));
        assert_eq!((bad, h.sampled), (Some(Malformed::Sampled), Sampled::Unset));

        let (h, bad) = parse("garbage");
        assert_eq!((bad, h), (Some(Malformed::Pair), TraceHeader::EMPTY));

        let (h, bad) = parse(&format!(";;=x; =;Root={ROOT};Sampled=1"));
        assert_eq!((bad, h.extra()), (Some(Malformed::Pair), None));

        let (h, bad) = TraceHeader::parse(&HeaderValue::from_bytes(b"Root=\xff").expect("obs-text"));
        assert_eq!((bad, h), (Some(Malformed::NotText), TraceHeader::EMPTY));
    }

    #[test]
    fn header_keys_match_in_any_case() {
        let (h, bad) = parse(&format!("root={ROOT};PARENT=53995C3F42CD8AD8;sampled=0"));
        assert_eq!(bad, None);
        assert_eq!(h.parent.map(|p| p.to_string()).as_deref(), Some("53995c3f42cd8ad8"));
        assert_eq!(h.sampled, Sampled::No);
    }

    #[test]
    fn response_header_names_root_and_decision() {
        let root = TraceId::parse(ROOT).expect("root");
        assert_eq!(for_response(&root, false).to_str().ok(), Some(format!("Root={ROOT};Sampled=0")).as_deref());
    }
}
