//! The outbound side: calls the application makes, as an explicit HTTP proxy or redirected by
//! iptables, each recorded as a remote subsegment so that X-Ray can draw the edge to the callee.

use http::Request;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

use super::forward::{Forward, Upstream};
use super::server::HttpServer;
use super::trace::{self, Begun, Started, Trace, Tracer};
use super::{Interception, opaque, orig_dst};
use crate::xray::id::SegmentId;
use crate::xray::segment::{Direction, Kind, Segment, sanitize_name};

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

/// Starts the record of a call the application makes.
///
/// A call that carries `Root` and `Parent` (an instrumented application, or one that forwards the
/// header it received) gets an independent subsegment under that parent. A call without one starts
/// a trace: a segment for this service holding the remote subsegment. Either way the callee is told
/// the subsegment is its parent, which is what joins the two nodes with an edge.
pub fn start<B>(tracer: &Tracer, req: &mut Request<B>) -> Started {
    let Begun { wall, incoming, root, host, sampled } = trace::begin(tracer, req);
    let sub_id = SegmentId::new();
    let segment = sampled.then(|| {
        let name = host.as_ref().and_then(|h| h.to_str().ok()).map_or_else(|| "unknown".to_owned(), destination_name);
        let http = trace::http_facts(req, host.clone(), None, false);
        let mut sub = Segment {
            name: Arc::from(sanitize_name(&name)),
            id: sub_id,
            trace_id: root,
            parent_id: incoming.parent,
            start_time: wall.as_secs_f64(),
            end_time: 0.0,
            kind: Kind::IndependentSubsegment,
            direction: Direction::Outbound,
            traced: false,
            http,
            failure: None,
            subsegments: Vec::new(),
        };
        if incoming.parent.is_some() {
            return Box::new(sub);
        }
        let mut seg = sub.clone();
        seg.name = tracer.service_name.clone();
        seg.id = SegmentId::new();
        seg.kind = Kind::Segment;
        sub.kind = Kind::EmbeddedSubsegment;
        seg.subsegments.push(sub);
        Box::new(seg)
    });
    tracer.propagation.write(req.headers_mut(), &incoming, &root, &sub_id, sampled);
    Started { root, sampled, segment, echo: false }
}

/// The name X-Ray shows for a destination: the Kubernetes Service name for `svc`, `svc.ns`,
/// `svc.ns.svc` and `svc.ns.svc.cluster.local`, else the host without its port.
pub fn destination_name(host: &str) -> String {
    let host = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.');
    if host.parse::<std::net::IpAddr>().is_ok() {
        return host.to_owned();
    }
    let labels: Vec<&str> = host.split('.').collect();
    let service = match labels.as_slice() {
        [svc] => Some(*svc),
        // `svc.ns`, unless it is plainly a public name such as `example.com`.
        [svc, ns] if !PUBLIC_SUFFIXES.contains(&ns.to_ascii_lowercase().as_str()) => Some(*svc),
        [svc, _, s] if s.eq_ignore_ascii_case("svc") => Some(*svc),
        [svc, _, s, c, l]
            if s.eq_ignore_ascii_case("svc")
                && c.eq_ignore_ascii_case("cluster")
                && l.eq_ignore_ascii_case("local") =>
        {
            Some(*svc)
        }
        _ => None,
    };
    service.unwrap_or(host).to_owned()
}

/// Common public suffixes that make a two-label host a domain rather than `service.namespace`.
const PUBLIC_SUFFIXES: [&str; 16] =
    ["com", "net", "org", "io", "dev", "app", "co", "ai", "cloud", "edu", "gov", "info", "biz", "me", "us", "uk"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_service_hosts_are_named_after_the_service() {
        for (host, name) in [
            ("back-end", "back-end"),
            ("back-end:8080", "back-end"),
            ("back-end.shop", "back-end"),
            ("back-end.shop.svc", "back-end"),
            ("back-end.shop.svc.cluster.local", "back-end"),
            ("back-end.shop.svc.cluster.local.:80", "back-end"),
            ("api.example.com", "api.example.com"),
            ("example.com:443", "example.com"),
            ("10.0.0.7:8080", "10.0.0.7"),
            ("[::1]:8080", "::1"),
        ] {
            assert_eq!(destination_name(host), name, "{host}");
        }
    }
}
