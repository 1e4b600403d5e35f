//! Opaque TCP: connections that are not HTTP go to their original destination untouched.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

use xray_lifecycle::Held;

use super::error::ProxyError;
use super::guard::OwnListeners;
use super::relay;
use super::tunnel::{self, TunnelRecord};
use crate::xray::tunnel::Ended;

/// Connects to `dst` and copies bytes both ways until either side closes; with a `record` (TLS to
/// name), the connection is recorded as one subsegment.
///
/// A refused connection is passed on as a reset, the closest a proxy that already accepted the
/// client's connection can come to "connection refused". A destination that is the proxy itself
/// (a client that connected straight to a listener) is refused the same way instead of looping.
pub async fn tunnel(
    client: TcpStream,
    dst: SocketAddr,
    connect_timeout: Duration,
    own: &OwnListeners,
    record: Option<TunnelRecord>,
    held: Held,
) {
    if let Err(refusal) = own.check(dst) {
        tracing::warn!(%dst, peer = ?client.peer_addr().ok(), %refusal, "opaque connection refused");
        let _ = client.set_zero_linger();
        return;
    }
    let upstream = match connect(dst, connect_timeout).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%dst, error = %e, "opaque destination unreachable");
            let _ = client.set_zero_linger();
            if let Some(r) = record {
                r.finish(0, 0, Ended::ConnectFailed, Some(e.failure()));
            }
            return;
        }
    };
    match record {
        Some(r) => tunnel::relay(client, upstream, r, held).await,
        None => {
            let (mut client, mut upstream) = (client, upstream);
            match relay::copy_until_cut(&mut client, &mut upstream, &held).await {
                Ok((up, down)) => tracing::trace!(%dst, up, down, "opaque connection closed"),
                Err(e) => tracing::debug!(%dst, error = %e, "opaque connection failed"),
            }
        }
    }
}

/// A TCP connection to `dst` within `timeout`, with Nagle off as for every proxied connection.
pub async fn connect(dst: SocketAddr, timeout: Duration) -> Result<TcpStream, ProxyError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(dst)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(ProxyError::connecting(e)),
        Err(_) => return Err(ProxyError::connecting(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))),
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
