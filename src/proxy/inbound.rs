//! The inbound side: requests the application receives, traced and forwarded to it.

use http::uri::Authority;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

use super::forward::{Forward, Upstream};
use super::orig_dst;
use super::trace::{Trace, Tracer};

/// Where inbound requests go.
#[derive(Clone, Debug)]
pub enum Destination {
    /// Standalone: every connection goes to the configured upstream.
    Fixed(Authority),
    /// In a pod behind iptables: each connection goes where the client meant it to.
    OriginalDst,
}

/// Builds the service for one inbound connection: per-connection facts are worked out here once,
/// not per request.
pub fn service(
    stream: &TcpStream,
    peer: SocketAddr,
    destination: &Destination,
    upstream: &Upstream,
    tracer: &Arc<Tracer>,
) -> Option<Trace<Forward>> {
    let authority = match destination {
        Destination::Fixed(a) => a.clone(),
        Destination::OriginalDst => match orig_dst::original_dst(stream) {
            Ok(dst) => orig_dst::authority(dst)?,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "no original destination on a redirected connection");
                return None;
            }
        },
    };
    let forward = Forward::new(upstream.clone(), authority, peer.ip());
    Some(Trace::new(forward, tracer.clone(), peer.ip()))
}
