//! Opaque TCP: connections that are not HTTP go to their original destination untouched.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

use super::guard::OwnListeners;

/// Connects to `dst` and copies bytes both ways until either side closes.
///
/// A refused connection is passed on as a reset, the closest a proxy that already accepted the
/// client's connection can come to "connection refused". A destination that is the proxy itself
/// (a client that connected straight to a listener) is refused the same way instead of looping.
pub async fn tunnel(mut client: TcpStream, dst: SocketAddr, connect_timeout: Duration, own: &OwnListeners) {
    if let Err(refusal) = own.check(dst) {
        tracing::warn!(%dst, peer = ?client.peer_addr().ok(), %refusal, "opaque connection refused");
        let _ = client.set_zero_linger();
        return;
    }
    let mut upstream = match tokio::time::timeout(connect_timeout, TcpStream::connect(dst)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%dst, error = %e, "opaque destination unreachable");
            let _ = client.set_zero_linger();
            return;
        }
        Err(_) => {
            tracing::debug!(%dst, "opaque destination connect timed out");
            let _ = client.set_zero_linger();
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => tracing::trace!(%dst, up, down, "opaque connection closed"),
        Err(e) => tracing::debug!(%dst, error = %e, "opaque connection failed"),
    }
}
