//! The inbound side: requests the application receives, traced and forwarded to it.

use http::uri::Authority;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

use super::detect::{FirstBytes, Interception};
use super::forward::{Forward, Upstream};
use super::record::Tracer;
use super::server::HttpServer;
use super::trace::Trace;
use super::{opaque, orig_dst};
use crate::xray::segment::Direction;

/// Where inbound requests go.
#[derive(Clone, Debug)]
pub enum Destination {
    /// Standalone: every connection goes to the configured upstream.
    Fixed(Authority),
    /// In a pod behind iptables: each connection goes where the client meant it to.
    OriginalDst,
}

/// What every inbound connection needs.
#[derive(Debug)]
pub struct Inbound {
    /// Where requests go.
    pub destination: Destination,
    /// The upstream clients.
    pub upstream: Arc<Upstream>,
    /// Tracing state.
    pub tracer: Arc<Tracer>,
    /// Detection settings for redirected connections.
    pub interception: Interception,
}

impl Inbound {
    /// Runs one accepted connection: per-connection facts are worked out here once, not per request.
    pub async fn handle(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, http: HttpServer) {
        let authority = match &self.destination {
            Destination::Fixed(a) => a.clone(),
            Destination::OriginalDst => {
                let dst = match orig_dst::original_dst(&stream) {
                    Ok(dst) => dst,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "no original destination on a redirected connection");
                        return;
                    }
                };
                // Boxed, as is the tunnel: inline, their state would size every HTTP connection's
                // task.
                if Box::pin(self.interception.first_bytes(&stream, dst)).await != FirstBytes::Http {
                    drop(http);
                    let own = self.upstream.own();
                    let held = self.upstream.lingering().hold();
                    let tunnel = opaque::tunnel(stream, dst, self.interception.connect_timeout, own, None, held);
                    return Box::pin(tunnel).await;
                }
                match orig_dst::authority(dst) {
                    Some(a) => a,
                    None => return,
                }
            }
        };
        let forward = Forward::new(self.upstream.clone(), Some(authority), Some(peer.ip()));
        let service = Trace::new(forward, self.tracer.clone(), peer.ip(), Direction::Inbound);
        http.serve(stream, peer, service).await;
    }
}
