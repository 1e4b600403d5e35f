//! X-Ray concepts: identifiers, the trace header, sampling, segment documents and their delivery.

pub mod aws;
pub mod cause;
pub mod centralized;
pub mod daemon;
pub mod delivery;
pub mod document;
pub mod emitter;
pub mod flags;
pub mod grpc;
pub mod header;
pub mod id;
pub mod reservoir;
pub mod resolver;
pub mod sampling;
pub mod segment;
pub mod tunnel;
pub mod udp_batch;
