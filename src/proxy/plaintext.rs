//! Plain HTTP inside a `CONNECT` tunnel. gRPC clients with `grpc_proxy`/`http_proxy` set (and many
//! HTTP clients) open a tunnel even for h2c and HTTP/1; relayed as opaque bytes, such a connection
//! would be one record with no request and no `grpc-status` in it. Its requests are served instead
//! exactly as explicit-proxy requests to the tunnel's destination: traced one by one as remote
//! subsegments, with the trace headers written and gRPC outcomes read.

use http::Version;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

use xray_lifecycle::Stopped;

use super::forward::{Forward, Upstream};
use super::orig_dst;
use super::record::Tracer;
use super::server::Http;
use super::trace::Trace;
use crate::xray::segment::Direction;

/// What serving HTTP found inside a tunnel needs; shared by every outbound connection.
#[derive(Debug)]
pub struct Plaintext {
    /// The upstream clients.
    pub upstream: Arc<Upstream>,
    /// Tracing state.
    pub tracer: Arc<Tracer>,
    /// The HTTP/1.1 and HTTP/2 servers, with the outbound listener's limits.
    pub http: Arc<Http>,
    /// The proxy's shutdown: a tunnel's connection then closes once its requests are answered.
    pub stopped: Stopped,
    /// How long to wait for the client's first bytes once the tunnel is open: a protocol where the
    /// server speaks first waits this long before it is relayed.
    pub detect_timeout: Duration,
    /// Destination ports whose tunnels are relayed at once, unlooked-at: their servers speak first
    /// (the same list interception skips), so waiting for the client would only delay them.
    pub skip_ports: Vec<u16>,
}

impl Plaintext {
    /// Serves the HTTP requests `client` sends through its tunnel to `dst` (in `version`: HTTP/2
    /// with prior knowledge, else HTTP/1.1), traced as calls made by `peer`.
    ///
    /// `dst` is the address the `CONNECT` was checked against and connected to (not its host name,
    /// which could resolve elsewhere the second time), so every check the tunnel passed holds for
    /// each request; a request cannot name another destination, nor open a tunnel of its own.
    pub async fn serve<T>(&self, client: T, version: Version, dst: SocketAddr, peer: IpAddr)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Some(authority) = orig_dst::authority(dst) else {
            return;
        };
        let forward = Forward::new(self.upstream.clone(), Some(authority), None);
        let service = Trace::new(forward, self.tracer.clone(), peer, Direction::Outbound);
        if let Err(e) = self.http.serve(client, version, service, self.stopped.clone()).await {
            tracing::debug!(%dst, %peer, error = %e, "HTTP inside a tunnel ended with an error");
        }
    }
}
