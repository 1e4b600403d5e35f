//! W3C `traceparent` from any client: parsing never panics, and an accepted value formats and
//! re-parses to the same ids (byte-for-byte for version 00 with flags 00 to 03: sampled and
//! random-trace-id, the bits the proxy writes).
#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use xray_sidecar::otel::traceparent::TraceParent;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    let Ok(tp) = TraceParent::parse(&value) else { return };
    let formatted = TraceParent::format(&tp.trace_id, &tp.parent, tp.sampled, tp.random);
    assert_eq!(TraceParent::parse(&formatted), Ok(tp), "{formatted:?} must re-parse to the same ids");
    if data.starts_with(b"00-") && [&b"-00"[..], b"-01", b"-02", b"-03"].iter().any(|f| data.ends_with(f)) {
        assert_eq!(formatted.as_bytes(), data);
    }
});
