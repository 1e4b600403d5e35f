//! The inbound side: requests the application receives, traced and forwarded to it.

use http::Request;
use http::uri::Authority;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpStream;

use super::forward::{Forward, Upstream};
use super::server::HttpServer;
use super::trace::{self, Begun, Started, Trace, Tracer};
use super::{Interception, opaque, orig_dst};
use crate::xray::id::SegmentId;
use crate::xray::segment::{Direction, Kind, Segment};

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
    pub upstream: Upstream,
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
                if !self.interception.is_http(&stream, dst).await {
                    drop(http);
                    return opaque::tunnel(stream, dst, self.interception.connect_timeout).await;
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

/// Starts the record of a request the application receives: continues the caller's trace or starts
/// one, decides sampling, and tells the application our segment is its parent.
pub fn start<B>(tracer: &Tracer, peer: IpAddr, req: &mut Request<B>) -> Started {
    let Begun { wall, incoming, root, host, sampled } = trace::begin(tracer, req);
    let id = SegmentId::new();
    let segment = sampled.then(|| {
        let (client_ip, xff) = match trace::forwarded_for(req.headers()) {
            Some(ip) => (ip, true),
            None => (peer, false),
        };
        Box::new(Segment {
            name: tracer.service_name.clone(),
            id,
            trace_id: root,
            parent_id: incoming.parent,
            start_time: wall.as_secs_f64(),
            end_time: 0.0,
            kind: Kind::Segment,
            direction: Direction::Inbound,
            traced: false,
            http: trace::http_facts(req, host, Some(client_ip), xff),
            failure: None,
            subsegments: Vec::new(),
        })
    });
    tracer.propagation.write(req.headers_mut(), &incoming, &root, &id, sampled);
    Started { root, sampled, segment, echo: tracer.propagation.xray }
}
