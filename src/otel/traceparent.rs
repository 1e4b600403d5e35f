//! The W3C Trace Context `traceparent` header: parsed strictly at the boundary, written for the next
//! hop. Parsing never fails a request: a value the specification says to ignore is reported as
//! [`Invalid`] and the request continues as if it had not come.

use bytes::{BufMut, BytesMut};
use http::{HeaderName, HeaderValue};
use std::fmt;

use crate::xray::id::{SegmentId, TraceId};

/// The header's name.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The vendor-specific companion header, passed on untouched.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Length of a version-00 value: `00-` + 32 + `-` + 16 + `-` + 2.
const LEN: usize = 55;

/// A valid `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace, in X-Ray's form (the same 128 bits).
    pub trace_id: TraceId,
    /// The caller's span: our parent.
    pub parent: SegmentId,
    /// The caller's sampled flag.
    pub sampled: bool,
    /// The random-trace-id flag (W3C Trace Context Level 2): the trace id's right-most 7 bytes
    /// are random, which samplers downstream may rely on.
    pub random: bool,
}

/// Why a `traceparent` value was ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// The value is not ASCII text.
    NotText,
    /// Wrong length for its version, or a later version without a `-` after the known fields.
    Length,
    /// The version is not two lower-case hex digits, or is the forbidden `ff`.
    Version,
    /// A field is not lower-case hex, or a separator is missing.
    Format,
    /// The trace id is all zeros.
    ZeroTraceId,
    /// The parent id is all zeros.
    ZeroParentId,
    /// More than one `traceparent` header came.
    Repeated,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invalid::NotText => "value is not text",
            Invalid::Length => "wrong length for its version",
            Invalid::Version => "version is not 2 lower-case hex digits other than ff",
            Invalid::Format => "a field is not lower-case hex or a dash is missing",
            Invalid::ZeroTraceId => "trace id is all zeros",
            Invalid::ZeroParentId => "parent id is all zeros",
            Invalid::Repeated => "more than one traceparent header",
        })
    }
}

impl TraceParent {
    /// Parses a value per the W3C Trace Context specification (level 1, with its rule for versions
    /// this parser does not know: read the version-00 fields and ignore what follows a `-`).
    pub fn parse(value: &HeaderValue) -> Result<TraceParent, Invalid> {
        let s = value.to_str().map_err(|_| Invalid::NotText)?.as_bytes();
        if s.len() < 2 {
            return Err(Invalid::Length);
        }
        let version = &s[..2];
        if !is_lower_hex(version) || version == b"ff" {
            return Err(Invalid::Version);
        }
        let length_ok = match version {
            b"00" => s.len() == LEN,
            _ => s.len() == LEN || (s.len() > LEN && s[LEN] == b'-'),
        };
        if !length_ok {
            return Err(Invalid::Length);
        }
        if s[2] != b'-' || s[35] != b'-' || s[52] != b'-' {
            return Err(Invalid::Format);
        }
        let (trace, parent, flags) = (&s[3..35], &s[36..52], &s[53..55]);
        if !is_lower_hex(trace) || !is_lower_hex(parent) || !is_lower_hex(flags) {
            return Err(Invalid::Format);
        }
        if trace.iter().all(|&c| c == b'0') {
            return Err(Invalid::ZeroTraceId);
        }
        let trace_id = TraceId::from_w3c(trace).ok_or(Invalid::Format)?;
        // Lower-case hex was checked above, so `parse` only refuses the all-zero id here.
        let parent = std::str::from_utf8(parent).ok().and_then(SegmentId::parse).ok_or(Invalid::ZeroParentId)?;
        let flags = hex_digit(flags[1]);
        Ok(TraceParent { trace_id, parent, sampled: flags & 1 == 1, random: flags & 2 == 2 })
    }

    /// The version-00 value naming `parent` in `trace`, with the sampled and random-trace-id flags
    /// set or clear (the other bits are not ours to set).
    pub fn format(trace: &TraceId, parent: &SegmentId, sampled: bool, random: bool) -> HeaderValue {
        let mut b = BytesMut::with_capacity(LEN);
        b.put_slice(b"00-");
        b.put_slice(&trace.w3c());
        b.put_u8(b'-');
        b.put_slice(parent.as_bytes());
        b.put_slice(match (random, sampled) {
            (false, false) => b"-00",
            (false, true) => b"-01",
            (true, false) => b"-02",
            (true, true) => b"-03",
        });
        // Only hex digits and dashes were written.
        HeaderValue::from_maybe_shared(b.freeze()).unwrap_or(HeaderValue::from_static(""))
    }
}

fn is_lower_hex(s: &[u8]) -> bool {
    s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex_digit(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn parse(s: &str) -> Result<TraceParent, Invalid> {
        TraceParent::parse(&HeaderValue::from_str(s).expect("test header"))
    }

    #[test]
    fn reads_the_specification_example_as_an_x_ray_root() {
        let tp = parse(EXAMPLE).expect("valid");
        assert_eq!(tp.trace_id.as_str(), "1-4bf92f35-77b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent.as_str(), "00f067aa0ba902b7");
        assert!(tp.sampled);
        assert!(!parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").expect("valid").sampled);
        // Other flag bits are not ours to interpret; only bit 0 is the sampled flag.
        assert!(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03").expect("valid").sampled);
        assert!(!parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe").expect("valid").sampled);
    }

    #[test]
    fn writes_what_it_reads() {
        let tp = parse(EXAMPLE).expect("valid");
        let out = TraceParent::format(&tp.trace_id, &tp.parent, tp.sampled, tp.random);
        assert_eq!(out.to_str().ok(), Some(EXAMPLE));
        let off = TraceParent::format(&tp.trace_id, &tp.parent, false, false);
        assert_eq!(parse(off.to_str().expect("text")).map(|t| t.sampled), Ok(false));
    }

    #[test]
    fn x_ray_time_prefixed_ids_are_valid_w3c_ids() {
        let root = TraceId::new(0x5759_e988);
        let id = SegmentId::new();
        let out = TraceParent::format(&root, &id, true, true);
        let read = TraceParent { trace_id: root, parent: id, sampled: true, random: true };
        assert_eq!(parse(out.to_str().expect("text")), Ok(read));
        assert!(out.to_str().is_ok_and(|v| v.ends_with("-03")));
    }

    #[test]
    fn later_versions_are_read_by_their_version_00_fields() {
        let v = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(parse(v).is_ok());
        assert!(parse(&format!("{v}-what-the-future-brings")).is_ok());
        assert_eq!(parse(&format!("{v}what")), Err(Invalid::Length));
    }

    #[test]
    fn values_the_specification_says_to_ignore_are_refused() {
        for (bad, why) in [
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Invalid::Version),
            ("0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Invalid::Version),
            ("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Invalid::Version),
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", Invalid::ZeroTraceId),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", Invalid::ZeroParentId),
            ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", Invalid::Format),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", Invalid::Format),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A", Invalid::Format),
            ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", Invalid::Length),
            ("00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01", Invalid::Length),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", Invalid::Length),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-701", Invalid::Format),
            ("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Invalid::Format),
            ("0", Invalid::Length),
            ("", Invalid::Length),
        ] {
            assert_eq!(parse(bad), Err(why), "{bad:?}");
        }
        let obs = HeaderValue::from_bytes(b"00-\xff").expect("obs-text");
        assert_eq!(TraceParent::parse(&obs), Err(Invalid::NotText));
    }
}
