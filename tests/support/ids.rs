//! Property-test strategies for the ids every document carries.

use proptest::prelude::*;
use xray_sidecar::xray::id::{SegmentId, TraceId};

/// Any trace id: any epoch, any random part.
pub fn trace_id() -> impl Strategy<Value = TraceId> {
    (any::<u32>(), any::<[u8; 12]>()).prop_map(|(epoch, random)| {
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        TraceId::parse(&format!("1-{epoch:08x}-{hex}")).unwrap()
    })
}

/// A valid (non-zero) segment id.
pub fn segment_id() -> impl Strategy<Value = SegmentId> {
    any::<[u8; 8]>().prop_filter_map("the zero id is invalid", SegmentId::from_bytes)
}
