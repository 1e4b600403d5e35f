//! gRPC as X-Ray sees it: a call's outcome is its `grpc-status` (HTTP says 200 either way), mapped to
//! `error`, `throttle` and `fault` the way HTTP's 4xx, 429 and 5xx are.

use serde::ser::{Serialize, SerializeMap, Serializer};
use std::fmt::Write;

use super::flags::Flags;

/// What a segment records about one gRPC call.
#[derive(Clone, Debug, Default)]
pub struct Grpc {
    /// `package.Service`, from the request path.
    pub service: String,
    /// The method name.
    pub method: String,
    /// The `grpc-status` code, once the trailers (or a trailers-only response) passed.
    pub status: Option<u32>,
    /// The `grpc-message`, percent-decoded.
    pub message: Option<String>,
    /// Length-prefixed messages the client sent.
    pub sent: u64,
    /// Length-prefixed messages the server sent.
    pub received: u64,
}

/// The status names of the gRPC codes 0 to 16.
const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// `CANCELLED`.
pub const CANCELLED: u32 = 1;
/// `UNKNOWN`: what a client makes of a response that ends without a status.
pub const UNKNOWN: u32 = 2;
/// `DEADLINE_EXCEEDED`.
pub const DEADLINE_EXCEEDED: u32 = 4;
/// `PERMISSION_DENIED`.
pub const PERMISSION_DENIED: u32 = 7;
/// `RESOURCE_EXHAUSTED`.
pub const RESOURCE_EXHAUSTED: u32 = 8;
/// `INTERNAL`: what a client makes of a status it cannot read.
pub const INTERNAL: u32 = 13;
/// `UNAVAILABLE`: the service cannot be reached; clients may retry.
pub const UNAVAILABLE: u32 = 14;

/// The name of a status code; codes outside the specification are `UNKNOWN`, as gRPC reads them.
pub fn status_name(code: u32) -> &'static str {
    usize::try_from(code).ok().and_then(|i| NAMES.get(i)).copied().unwrap_or("UNKNOWN")
}

/// The flags of a status code: the caller's mistakes are errors, running out of quota is a
/// throttle (and an error), the server's failures are faults.
pub fn flags(code: u32) -> Flags {
    let (error, throttle, fault) = match code {
        0 => (false, false, false),
        // CANCELLED, INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED,
        // FAILED_PRECONDITION, OUT_OF_RANGE, UNAUTHENTICATED
        1 | 3 | 5 | 6 | 7 | 9 | 11 | 16 => (true, false, false),
        8 => (true, true, false),
        // UNKNOWN, DEADLINE_EXCEEDED, ABORTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS and
        // codes outside the specification (read as UNKNOWN).
        _ => (false, false, true),
    };
    Flags { error, throttle, fault }
}

/// Whether a call that ended with `code` failed on the server's side, as OpenTelemetry's gRPC
/// conventions judge a SERVER span: `UNKNOWN`, `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`,
/// `UNAVAILABLE`, `DATA_LOSS`, and codes outside the specification (read as `UNKNOWN`).
pub fn server_failed(code: u32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15) || code > 16
}

/// `package.Service` and `Method` from a request path `/package.Service/Method`.
pub fn service_and_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/')).then_some((service, method))
}

/// Decodes `grpc-message`'s percent-encoding; bad escapes are kept as they came.
pub fn decode_message(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (raw[i], raw.get(i + 1).copied().and_then(hex), raw.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a `grpc-message`, as the gRPC specification asks: every byte outside printable
/// ASCII (space to `~`), and `%` itself, as `%XX`.
pub fn encode_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if (b' '..=b'~').contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The `metadata.grpc` object: message counts each way.
pub struct MetadataJson<'a>(pub &'a Grpc);

impl Serialize for MetadataJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let g = self.0;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(
            "grpc",
            &serde_json::json!({
                "service": g.service,
                "method": g.method,
                "messages_sent": g.sent,
                "messages_received": g.received,
            }),
        )?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_error_throttle_and_fault() {
        let kind = |c| match flags(c) {
            Flags { error: false, throttle: false, fault: false } => "ok",
            Flags { error: true, throttle: false, fault: false } => "error",
            Flags { error: true, throttle: true, fault: false } => "throttle",
            Flags { error: false, throttle: false, fault: true } => "fault",
            other => panic!("{other:?}"),
        };
        for (name, want) in [
            ("OK", "ok"),
            ("INVALID_ARGUMENT", "error"),
            ("NOT_FOUND", "error"),
            ("ALREADY_EXISTS", "error"),
            ("PERMISSION_DENIED", "error"),
            ("FAILED_PRECONDITION", "error"),
            ("OUT_OF_RANGE", "error"),
            ("UNAUTHENTICATED", "error"),
            ("CANCELLED", "error"),
            ("RESOURCE_EXHAUSTED", "throttle"),
            ("UNKNOWN", "fault"),
            ("DEADLINE_EXCEEDED", "fault"),
            ("UNIMPLEMENTED", "fault"),
            ("INTERNAL", "fault"),
            ("UNAVAILABLE", "fault"),
            ("DATA_LOSS", "fault"),
            ("ABORTED", "fault"),
        ] {
            let code = NAMES.iter().position(|n| *n == name).expect("known name") as u32;
            assert_eq!(status_name(code), name);
            assert_eq!(kind(code), want, "{name}");
        }
        assert_eq!((status_name(99), kind(99)), ("UNKNOWN", "fault"));
    }

    #[test]
    fn server_side_failures_are_the_six_codes_opentelemetry_names() {
        let failed: Vec<&str> = (0..=16).filter(|c| server_failed(*c)).map(status_name).collect();
        assert_eq!(failed, ["UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"]);
        assert!(server_failed(99));
    }

    #[test]
    fn paths_and_messages_are_read_as_grpc_writes_them() {
        assert_eq!(service_and_method("/shop.v1.Catalog/GetItem"), Some(("shop.v1.Catalog", "GetItem")));
        assert_eq!(service_and_method("/health"), None);
        assert_eq!(service_and_method("/a/b/c"), None);
        assert_eq!(decode_message(b"item %2342 not found %E2%9C%93"), "item #42 not found \u{2713}");
        assert_eq!(decode_message(b"100% sure %zz"), "100% sure %zz");
        for text in ["upstream refused the connection", "100% \u{2713}\nnext", ""] {
            let encoded = encode_message(text);
            assert!(encoded.bytes().all(|b| (b' '..=b'~').contains(&b)), "{encoded}");
            assert_eq!(decode_message(encoded.as_bytes()), text);
        }
        assert_eq!(encode_message("100% \u{2713}"), "100%25 %E2%9C%93");
    }
}
