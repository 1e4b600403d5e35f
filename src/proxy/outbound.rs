//! The outbound side: calls the application makes, as an explicit HTTP proxy or redirected by
//! iptables, each recorded as a remote subsegment so that X-Ray can draw the edge to the callee.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

use super::connect::{Connect, ConnectPolicy};
use super::detect::{FirstBytes, Interception};
use super::forward::{Forward, Upstream};
use super::plaintext::Plaintext;
use super::record::Tracer;
use super::server::{self, HttpServer};
use super::trace::Trace;
use super::tunnel::{Opened, Target, TunnelRecord};
use super::{guard, opaque, orig_dst, sni};
use crate::xray::segment::Direction;

/// What every outbound connection needs.
#[derive(Debug)]
pub struct Outbound {
    /// The upstream clients (pooled per destination).
    pub upstream: Arc<Upstream>,
    /// Tracing state.
    pub tracer: Arc<Tracer>,
    /// Detection settings for redirected connections.
    pub interception: Interception,
    /// Which `CONNECT` tunnels may be opened.
    pub connect: Arc<ConnectPolicy>,
    /// How plain HTTP inside a tunnel is served.
    pub plaintext: Arc<Plaintext>,
}

impl Outbound {
    /// Runs one connection from the application.
    pub async fn handle(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, http: HttpServer) {
        // Only the pod's own processes may use the outbound side: anyone else would have an open
        // proxy with the pod's identity.
        if !guard::is_local(peer.ip()) {
            drop(http);
            tracing::warn!(%peer, "refused an outbound connection from outside the pod");
            let why = "this proxy serves only its own pod";
            return Box::pin(server::refuse(stream, http::StatusCode::FORBIDDEN, why)).await;
        }
        // A redirected connection remembers where it was going; one made to our own address is an
        // explicit proxy client, whose requests name their destination.
        let local = stream.local_addr().ok();
        let redirected = orig_dst::original_dst(&stream).ok().filter(|dst| Some(*dst) != local);
        let authority = match redirected {
            None => None,
            Some(dst) => {
                // Boxed, as is the pass-through: inline, their state would size every HTTP
                // connection's task.
                let first = Box::pin(self.interception.first_bytes(&stream, dst)).await;
                if first != FirstBytes::Http {
                    drop(http);
                    return Box::pin(self.pass_through(stream, dst, first)).await;
                }
                orig_dst::authority(dst)
            }
        };
        let forward = Forward::new(self.upstream.clone(), authority, None);
        let service = Trace::new(forward, self.tracer.clone(), peer.ip(), Direction::Outbound);
        if redirected.is_some() {
            return http.serve(stream, peer, service).await;
        }
        let connect = Connect::new(service, self.connect.clone(), self.plaintext.clone(), peer.ip());
        http.serve(stream, peer, connect).await;
    }

    /// Passes a connection that is not HTTP through; TLS is recorded as a tunnel named after the
    /// server name its ClientHello asks for (or the address, without one). A connection whose
    /// `first` bytes were never read (see [`FirstBytes::Unread`]) goes at once, unrecorded.
    async fn pass_through(&self, stream: TcpStream, dst: SocketAddr, first: FirstBytes) {
        let timeout = self.interception.connect_timeout;
        let opened = Opened::now();
        let hello = match first {
            FirstBytes::Unread => sni::Hello::NotTls,
            _ => sni::peek(&stream, self.interception.detect_timeout).await,
        };
        let record = match hello {
            sni::Hello::Tls(name) => {
                let ip = dst.ip().to_string();
                let host = name.as_deref().unwrap_or(&ip);
                Some(TunnelRecord::start(&self.tracer, Target { host, port: dst.port(), explicit: false }, opened))
            }
            sni::Hello::NotTls | sni::Hello::Incomplete => None,
        };
        let held = self.upstream.lingering().hold();
        opaque::tunnel(stream, dst, timeout, self.upstream.own(), record, held).await
    }
}
