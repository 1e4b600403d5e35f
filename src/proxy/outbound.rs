//! The outbound side: calls the application makes, as an explicit HTTP proxy or redirected by
//! iptables, each recorded as a remote subsegment so that X-Ray can draw the edge to the callee.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

use super::forward::{Forward, Upstream};
use super::record::Tracer;
use super::server::HttpServer;
use super::trace::Trace;
use super::{Interception, opaque, orig_dst};
use crate::xray::segment::Direction;

/// What every outbound connection needs.
#[derive(Debug)]
pub struct Outbound {
    /// The upstream clients (pooled per destination).
    pub upstream: Upstream,
    /// Tracing state.
    pub tracer: Arc<Tracer>,
    /// Detection settings for redirected connections.
    pub interception: Interception,
}

impl Outbound {
    /// Runs one connection from the application.
    pub async fn handle(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, http: HttpServer) {
        // A redirected connection remembers where it was going; one made to our own address is an
        // explicit proxy client, whose requests name their destination.
        let local = stream.local_addr().ok();
        let redirected = orig_dst::original_dst(&stream).ok().filter(|dst| Some(*dst) != local);
        let authority = match redirected {
            None => None,
            Some(dst) => {
                if !self.interception.is_http(&stream, dst).await {
                    drop(http);
                    return opaque::tunnel(stream, dst, self.interception.connect_timeout).await;
                }
                orig_dst::authority(dst)
            }
        };
        let mut forward = Forward::new(self.upstream.clone(), authority, None);
        if let Some(own) = local {
            forward = forward.refusing_loops_to(own);
        }
        let service = Trace::new(forward, self.tracer.clone(), peer.ip(), Direction::Outbound);
        http.serve(stream, peer, service).await;
    }
}
