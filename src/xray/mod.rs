//! X-Ray concepts: identifiers, the trace header, sampling, segment documents and their delivery.

pub mod centralized;
pub mod daemon;
pub mod emitter;
pub mod header;
pub mod id;
pub mod reservoir;
pub mod sampling;
pub mod segment;
pub mod udp_batch;
