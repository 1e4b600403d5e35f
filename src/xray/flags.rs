//! A document's `error`, `throttle` and `fault` flags: how X-Ray tells the caller's mistakes, being
//! throttled, and the server's failures apart, whether they come from an HTTP status, a gRPC status
//! or a failure the proxy saw.

use std::ops::BitOr;

/// A document's `error`, `throttle` and `fault` flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// A client error (4xx, or the client went away).
    pub error: bool,
    /// Throttled (429).
    pub throttle: bool,
    /// A server fault (5xx, or the proxy could not get a whole response).
    pub fault: bool,
}

impl BitOr for Flags {
    type Output = Flags;

    /// Each flag set by either side.
    fn bitor(self, other: Flags) -> Flags {
        Flags {
            error: self.error | other.error,
            throttle: self.throttle | other.throttle,
            fault: self.fault | other.fault,
        }
    }
}
