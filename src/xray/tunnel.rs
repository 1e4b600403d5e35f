//! What a segment records about a tunnel (a `CONNECT` or an intercepted TLS connection): one record
//! per connection, not per request, since the requests inside are encrypted.

use serde::ser::{Serialize, SerializeMap, Serializer};

/// The facts of one tunnelled connection.
#[derive(Clone, Debug)]
pub struct Tunnel {
    /// Opened with `CONNECT` through the explicit proxy (else intercepted by iptables).
    pub explicit: bool,
    /// Bytes from the application to the destination.
    pub bytes_sent: u64,
    /// Bytes from the destination to the application.
    pub bytes_received: u64,
    /// How the connection ended.
    pub ended: Ended,
}

/// How a tunnel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed.
    Closed,
    /// A side reset or the copy failed midway.
    Broken,
    /// The destination could not be reached.
    ConnectFailed,
}

impl Ended {
    /// The metadata value.
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Closed => "closed",
            Ended::Broken => "broken",
            Ended::ConnectFailed => "connect_failed",
        }
    }
}

/// The `metadata` entry: `{"tunnel": {...}}`.
pub struct MetadataJson<'a>(pub &'a Tunnel);

impl Serialize for MetadataJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(
            "tunnel",
            &serde_json::json!({
                // Each record is a connection that may have carried many requests: never count these
                // as requests.
                "per_connection": true,
                "opened_by": if t.explicit { "connect" } else { "interception" },
                "bytes_sent": t.bytes_sent,
                "bytes_received": t.bytes_received,
                "ended": t.ended.as_str(),
            }),
        )?;
        m.end()
    }
}
