//! What delivering segments to the daemon counts. The emitter, the daemon look-up and the batched
//! UDP sender write these counters; the proxy's `Metrics` holds the one set and `/metrics` shows it.

use std::sync::atomic::AtomicU64;

/// Counters of segment delivery, written with relaxed atomics.
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    /// Segment documents handed to the UDP socket.
    pub segments_emitted: AtomicU64,
    /// Segments dropped because the emitter's queue was full.
    pub segments_dropped: AtomicU64,
    /// Segments too large for one datagram even after trimming.
    pub segments_too_large: AtomicU64,
    /// Segments whose subsegments had to be sent separately to fit.
    pub segments_split: AtomicU64,
    /// Datagrams the socket refused (daemon unreachable, no address).
    pub daemon_send_errors: AtomicU64,
    /// Failed look-ups of the daemon's host name.
    pub daemon_resolve_errors: AtomicU64,
    /// System calls that sent segment datagrams (one call may carry many).
    pub datagram_send_calls: AtomicU64,
    /// Times the kernel or route refused UDP GSO and sending moved to `sendmmsg`.
    pub gso_fallbacks: AtomicU64,
    /// Times the kernel refused `sendmmsg` and sending moved to one call per datagram.
    pub sendmmsg_fallbacks: AtomicU64,
}
