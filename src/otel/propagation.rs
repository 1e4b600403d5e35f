//! Which trace context formats are read and written (`--propagation xray,w3c`), and how the two
//! headers become one context: `X-Amzn-Trace-Id` wins when they disagree, `traceparent` fills in
//! what it lacks. Pure apart from reading and writing a header map.

use http::{HeaderMap, HeaderName, HeaderValue};
use std::str::FromStr;

use super::traceparent::{Invalid, TRACEPARENT, TRACESTATE, TraceParent};
use crate::xray::header::{Malformed, Sampled, TRACE_HEADER, TraceHeader};
use crate::xray::id::{SegmentId, TraceId};

/// The formats the proxy reads from callers and writes for the next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Propagation {
    /// `X-Amzn-Trace-Id`.
    pub xray: bool,
    /// W3C `traceparent` (with `tracestate` passed on untouched when its `traceparent` is the
    /// context continued).
    pub w3c: bool,
}

impl Default for Propagation {
    fn default() -> Self {
        Propagation { xray: true, w3c: true }
    }
}

impl FromStr for Propagation {
    type Err = String;

    /// Parses a comma-separated list of `xray` and `w3c` (`tracecontext`, OpenTelemetry's name, too).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut p = Propagation { xray: false, w3c: false };
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name.to_ascii_lowercase().as_str() {
                "xray" => p.xray = true,
                "w3c" | "tracecontext" => p.w3c = true,
                other => return Err(format!("unknown format `{other}` (use xray, w3c or both)")),
            }
        }
        if !p.xray && !p.w3c {
            return Err("name at least one format: xray, w3c".into());
        }
        Ok(p)
    }
}

/// What reading a request's headers found wrong; each is logged at debug level by the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Problems {
    /// `X-Amzn-Trace-Id` could not be used as it came.
    pub xray: Option<Malformed>,
    /// `traceparent` was ignored.
    pub w3c: Option<Invalid>,
    /// Both named a trace, different ones: `X-Amzn-Trace-Id` was followed.
    pub disagree: bool,
    /// A `tracestate` came without a `traceparent` that is followed (none, an invalid one, or one
    /// naming another trace than `X-Amzn-Trace-Id`): it describes a context that does not go on,
    /// so it is not passed on either (W3C Trace Context, processing model).
    pub stale_tracestate: bool,
}

impl Propagation {
    /// The caller's context from the enabled headers, and what was wrong with them.
    pub fn read(&self, headers: &HeaderMap) -> (TraceHeader, Problems) {
        self.read_fields(&ContextFields::of(headers))
    }

    /// [`read`](Self::read), from context fields already found (by a caller's own pass over the
    /// head, see [`ContextFields::note`]).
    pub fn read_fields(&self, fields: &ContextFields<'_>) -> (TraceHeader, Problems) {
        let mut problems = Problems::default();
        let xray = match fields.xray.filter(|_| self.xray) {
            Some(v) => {
                let (h, bad) = TraceHeader::parse(v);
                problems.xray = bad;
                h
            }
            None => TraceHeader::EMPTY,
        };
        if !self.w3c {
            return (xray, problems);
        }
        let w3c = match fields.traceparent {
            None => None,
            Some(_) if fields.traceparent_repeated => {
                problems.w3c = Some(Invalid::Repeated);
                None
            }
            Some(v) => TraceParent::parse(v).map_err(|e| problems.w3c = Some(e)).ok(),
        };
        let had_w3c = w3c.is_some();
        let (merged, disagree) = merge(xray, w3c);
        problems.disagree = disagree;
        problems.stale_tracestate = (!had_w3c || disagree) && fields.tracestate.is_some();
        (merged, problems)
    }

    /// Writes the context for the next hop: `X-Amzn-Trace-Id` (keeping the caller's extra pairs)
    /// and `traceparent`, both naming `parent` in `root` with the same decision; a `tracestate`
    /// that [`read`](Self::read) found stale is removed.
    pub fn write(
        &self,
        headers: &mut HeaderMap,
        incoming: &TraceHeader,
        root: &TraceId,
        parent: &SegmentId,
        sampled: bool,
        stale_tracestate: bool,
    ) {
        if self.xray {
            headers.insert(TRACE_HEADER, incoming.for_downstream(root, parent, sampled));
        }
        if self.w3c {
            let random = incoming.random_trace_id();
            headers.insert(TRACEPARENT, TraceParent::format(root, parent, sampled, random));
            if stale_tracestate {
                headers.remove(&TRACESTATE);
            }
        }
    }
}

/// The fields of a request head that carry a trace context, found in one pass over its fields:
/// a look-up by name hashes the name each time, and a head holds a handful of fields where three
/// are looked for on every request (a hundred at most: hyper's parser's limit).
#[derive(Default)]
pub struct ContextFields<'a> {
    /// The first `X-Amzn-Trace-Id`, as `HeaderMap::get` finds it.
    xray: Option<&'a HeaderValue>,
    /// The first `traceparent`.
    traceparent: Option<&'a HeaderValue>,
    /// More than one `traceparent` came, which makes them all invalid.
    traceparent_repeated: bool,
    /// The first `tracestate`.
    tracestate: Option<&'a HeaderValue>,
    /// More than one `tracestate` came: one list, split over several fields (RFC 9110 §5.3).
    tracestate_repeated: bool,
}

impl<'a> ContextFields<'a> {
    /// The context fields of `headers`.
    pub fn of(headers: &'a HeaderMap) -> Self {
        let mut found = ContextFields::default();
        for (name, value) in headers {
            found.note(name, value);
        }
        found
    }

    /// The first `X-Amzn-Trace-Id`.
    pub fn xray(&self) -> Option<&'a HeaderValue> {
        self.xray
    }

    /// The first `traceparent`.
    pub fn traceparent(&self) -> Option<&'a HeaderValue> {
        self.traceparent
    }

    /// The `tracestate` list as one string, its fields joined when it came in several (`headers` is
    /// the head these fields were found in, read again only then); none unless it is visible ASCII.
    pub fn tracestate(&self, headers: &HeaderMap) -> Option<Box<str>> {
        let first = self.tracestate?;
        if !self.tracestate_repeated {
            return first.to_str().ok().map(Box::from);
        }
        let parts: Result<Vec<&str>, _> = headers.get_all(&TRACESTATE).iter().map(HeaderValue::to_str).collect();
        parts.ok().map(|p| p.join(",").into_boxed_str())
    }

    /// Takes in one field of a head walked in the map's order (a name's values together, first to
    /// last); whether it was a context field.
    pub fn note(&mut self, name: &HeaderName, value: &'a HeaderValue) -> bool {
        let name = name.as_str();
        if name == TRACE_HEADER.as_str() {
            self.xray.get_or_insert(value);
        } else if name == TRACEPARENT.as_str() {
            self.traceparent_repeated |= self.traceparent.is_some();
            self.traceparent.get_or_insert(value);
        } else if name == TRACESTATE.as_str() {
            self.tracestate_repeated |= self.tracestate.is_some();
            self.tracestate.get_or_insert(value);
        } else {
            return false;
        }
        true
    }
}

/// One context from both headers; `true` when they named different traces.
///
/// `X-Amzn-Trace-Id` decides whenever it has a `Root`; a `traceparent` in the same trace only fills
/// in a missing parent or decision. Without a `Root`, `traceparent` supplies all three.
pub fn merge(mut xray: TraceHeader, w3c: Option<TraceParent>) -> (TraceHeader, bool) {
    let Some(tp) = w3c else {
        return (xray, false);
    };
    match xray.root {
        Some(root) if root != tp.trace_id => return (xray, true),
        Some(_) => xray.parent = xray.parent.or(Some(tp.parent)),
        None => {
            xray.root = Some(tp.trace_id);
            xray.parent = Some(tp.parent);
        }
    }
    xray.random = tp.random;
    if matches!(xray.sampled, Sampled::Unset | Sampled::Requested) {
        xray.sampled = if tp.sampled { Sampled::Yes } else { Sampled::No };
    }
    (xray, false)
}

#[cfg(test)]
#[path = "propagation_tests.rs"]
mod tests;
