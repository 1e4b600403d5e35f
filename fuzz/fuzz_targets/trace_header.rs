//! `X-Amzn-Trace-Id` from any client: parsing never panics, and what it keeps formats and re-parses
//! to the same header.
#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use xray_sidecar::xray::header::{Sampled, TraceHeader, for_response};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    let (header, _problem) = TraceHeader::parse(&value);
    if header.parent.is_some() {
        assert!(header.root.is_some(), "a parent is kept only with its root");
    }
    let (Some(root), Some(parent)) = (header.root, header.parent) else { return };
    let sampled = header.sampled == Sampled::Yes;
    let next = header.for_downstream(&root, &parent, sampled);
    let (again, problem) = TraceHeader::parse(&next);
    assert_eq!(problem, None, "our own header {next:?} must parse cleanly");
    assert_eq!(again.root, Some(root));
    assert_eq!(again.parent, Some(parent));
    assert_eq!(again.sampled, if sampled { Sampled::Yes } else { Sampled::No });
    assert_eq!(again.extra(), header.extra(), "unknown pairs pass on verbatim");
    let (back, problem) = TraceHeader::parse(&for_response(&root, sampled));
    assert_eq!((back.root, problem), (Some(root), None));
});
