//! Trace and segment identifiers in X-Ray's wire formats.
//!
//! Both are kept as their ASCII form so that writing them into a header or a JSON document is a copy,
//! not a formatting step: they are written several times per request on the hot path.

use std::fmt;

/// An X-Ray trace id: `1-` + 8 hex digits of epoch seconds + `-` + 24 random hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 35]);

impl TraceId {
    /// A fresh trace id stamped with `epoch_secs`.
    pub fn new(epoch_secs: u64) -> Self {
        let mut b = [0u8; 35];
        b[0] = b'1';
        b[1] = b'-';
        b[2..10].copy_from_slice(&hex8(epoch_secs as u32));
        b[10] = b'-';
        // One draw for the 96 random bits: each draw from the thread's generator costs a look-up
        // of it.
        let random = rand::random::<u128>();
        b[11..27].copy_from_slice(&hex16(random as u64));
        b[27..35].copy_from_slice(&hex8((random >> 64) as u32));
        TraceId(b)
    }

    /// Parses a trace id, accepting upper-case hex (normalised to lower case) and nothing else.
    /// All 32 digits zero is refused: its W3C form is the invalid trace id, which OpenTelemetry
    /// services behind the proxy would drop to start traces of their own.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.as_bytes();
        if s.len() != 35 || &s[..2] != b"1-" || s[10] != b'-' {
            return None;
        }
        let mut b = [0u8; 35];
        b.copy_from_slice(s);
        let (time, random) = b.split_at_mut(10);
        let mut zero = true;
        for c in time[2..].iter_mut().chain(random[1..].iter_mut()) {
            if !c.is_ascii_hexdigit() {
                return None;
            }
            c.make_ascii_lowercase();
            zero &= *c == b'0';
        }
        (!zero).then_some(TraceId(b))
    }

    /// The id as written on the wire.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The text form's bytes (ASCII), without the UTF-8 check of [`TraceId::as_str`].
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The trace whose W3C form is these 32 lower-case hex digits: X-Ray accepts any W3C trace id,
    /// its first 8 digits standing where the time would be.
    pub fn from_w3c(hex32: &[u8]) -> Option<Self> {
        if hex32.len() != 32 || !hex32.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut b = [0u8; 35];
        b[..2].copy_from_slice(b"1-");
        b[2..10].copy_from_slice(&hex32[..8]);
        b[10] = b'-';
        b[11..].copy_from_slice(&hex32[8..]);
        Some(TraceId(b))
    }

    /// The W3C form: the 32 hex digits without the version and dashes.
    pub fn w3c(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..8].copy_from_slice(&self.0[2..10]);
        out[8..].copy_from_slice(&self.0[11..]);
        out
    }

    /// The 16 bytes OpenTelemetry's protocol carries.
    pub fn to_bytes(&self) -> [u8; 16] {
        let hex = self.w3c();
        let mut out = [0u8; 16];
        for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            *o = hex_value(pair[0]) << 4 | hex_value(pair[1]);
        }
        out
    }

    /// The epoch seconds encoded in the id.
    pub fn epoch_secs(&self) -> u64 {
        self.0[2..10].iter().fold(0, |acc, &c| acc << 4 | u64::from(hex_value(c)))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A segment, subsegment or exception id: 64 bits, never zero, written as 16 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentId([u8; 16]);

impl SegmentId {
    /// A fresh random id.
    pub fn new() -> Self {
        // Zero is reserved (OpenTelemetry's propagator rejects an all-zero parent).
        SegmentId(hex16(rand::random::<u64>().max(1)))
    }

    /// Parses 16 hex digits that are not all zero.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.as_bytes();
        if s.len() != 16 || !s.iter().all(u8::is_ascii_hexdigit) || s.iter().all(|&c| c == b'0') {
            return None;
        }
        let mut b = [0u8; 16];
        b.copy_from_slice(s);
        b.make_ascii_lowercase();
        Some(SegmentId(b))
    }

    /// The id as written on the wire.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The text form's bytes (ASCII hex), without the UTF-8 check of [`SegmentId::as_str`].
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The 8 bytes OpenTelemetry's protocol carries as a span id.
    pub fn to_bytes(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        for (o, pair) in out.iter_mut().zip(self.0.chunks_exact(2)) {
            *o = hex_value(pair[0]) << 4 | hex_value(pair[1]);
        }
        out
    }

    /// The id an OpenTelemetry span id names; `None` for the invalid all-zero id.
    pub fn from_bytes(bytes: [u8; 8]) -> Option<Self> {
        let v = u64::from_be_bytes(bytes);
        (v != 0).then(|| SegmentId(hex16(v)))
    }
}

impl Default for SegmentId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `v` as 8 lower-case hex digits, most significant first. Ids are written on every traced request:
/// this spreads the nibbles one to a byte and turns them into digits eight at a time, where a
/// table look-up per digit costs several times as many instructions.
fn hex8(v: u32) -> [u8; 8] {
    let mut x = u64::from(v);
    x = (x & 0xffff_0000) << 16 | (x & 0xffff);
    x = (x & 0x0000_ff00_0000_ff00) << 8 | (x & 0x0000_00ff_0000_00ff);
    x = (x & 0x00f0_00f0_00f0_00f0) << 4 | (x & 0x000f_000f_000f_000f);
    // Each byte now holds one nibble; those of 10 and more get a 1 here, and `'a' - '0' - 10` more.
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (x + 0x3030_3030_3030_3030 + letters * (b'a' - b'0' - 10) as u64).to_be_bytes()
}

/// `v` as 16 lower-case hex digits.
fn hex16(v: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&hex8((v >> 32) as u32));
    out[8..].copy_from_slice(&hex8(v as u32));
    out
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digits_are_those_format_writes() {
        let edges = [0, 1, 9, 10, 15, 16, 0x99, 0xaa, 0x0f0f_0f0f, 0xf0f0_f0f0, u32::MAX / 2, u32::MAX];
        let random = (0..100_000).map(|_| rand::random::<u32>());
        for v in edges.into_iter().chain(random) {
            assert_eq!(hex8(v), *format!("{v:08x}").as_bytes(), "{v:#x}");
            let wide = u64::from(v) << 32 | u64::from(v.rotate_left(13));
            assert_eq!(hex16(wide), *format!("{wide:016x}").as_bytes(), "{wide:#x}");
        }
    }

    #[test]
    fn trace_id_round_trips_and_carries_its_time() {
        let id = TraceId::new(0x5759_e988);
        assert_eq!(id.as_str().len(), 35);
        assert!(id.as_str().starts_with("1-5759e988-"));
        assert_eq!(id.epoch_secs(), 0x5759_e988);
        assert_eq!(TraceId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn trace_id_rejects_malformed_and_normalises_case() {
        for bad in [
            "",
            "1-5759e988",
            "2-5759e988-bd862e3fe1be46a994272793",
            "1-5759e988-bd862e3fe1be46a99427279",
            "1-5759e988-bd862e3fe1be46a99427279z",
            "1-5759e98g-bd862e3fe1be46a994272793",
            "1_5759e988-bd862e3fe1be46a994272793",
            "1-00000000-000000000000000000000000",
        ] {
            assert_eq!(TraceId::parse(bad), None, "{bad:?}");
        }
        let upper = TraceId::parse("1-5759E988-BD862E3FE1BE46A994272793").map(|t| t.to_string());
        assert_eq!(upper.as_deref(), Some("1-5759e988-bd862e3fe1be46a994272793"));
        // Zero time or zero random bits alone is a valid W3C id.
        for ok in ["1-00000000-bd862e3fe1be46a994272793", "1-5759e988-000000000000000000000000"] {
            assert_eq!(TraceId::parse(ok).map(|t| t.to_string()).as_deref(), Some(ok));
        }
    }

    #[test]
    fn w3c_trace_ids_map_to_x_ray_roots_and_back() {
        let root = TraceId::from_w3c(b"4bf92f3577b34da6a3ce929d0e0e4736").map(|t| t.to_string());
        assert_eq!(root.as_deref(), Some("1-4bf92f35-77b34da6a3ce929d0e0e4736"));
        let id = TraceId::parse("1-4bf92f35-77b34da6a3ce929d0e0e4736").expect("root");
        assert_eq!(&id.w3c(), b"4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(id.to_bytes()[..4], [0x4b, 0xf9, 0x2f, 0x35]);
        assert_eq!(id.to_bytes()[15], 0x36);
        for bad in [
            &b"4BF92F3577B34DA6A3CE929D0E0E4736"[..],
            b"4bf92f3577b34da6a3ce929d0e0e473",
            b"4bf92f3577b34da6a3ce929d0e0e473g",
        ] {
            assert_eq!(TraceId::from_w3c(bad), None);
        }
    }

    #[test]
    fn segment_ids_convert_to_span_id_bytes() {
        let id = SegmentId::parse("00f067aa0ba902b7").expect("id");
        assert_eq!(id.to_bytes(), [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(SegmentId::from_bytes(id.to_bytes()), Some(id));
        assert_eq!(SegmentId::from_bytes([0; 8]), None);
    }

    #[test]
    fn segment_ids_are_16_hex_and_never_zero() {
        let id = SegmentId::new();
        assert_eq!(id.as_str().len(), 16);
        assert_ne!(SegmentId::new(), id);
        assert_eq!(SegmentId::parse(id.as_str()), Some(id));
        assert_eq!(SegmentId::parse("0000000000000000"), None);
        assert_eq!(SegmentId::parse("53995c3f42cd8ad"), None);
        assert_eq!(SegmentId::parse("53995c3f42cd8adx"), None);
    }
}
