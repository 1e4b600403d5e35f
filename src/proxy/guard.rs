//! Destinations the proxy never connects to, and clients it never serves: its own listeners (a
//! connection there comes straight back, and again, until sockets or memory run out), link-local
//! addresses such as instance metadata (interception never redirects them, so the proxy must not be
//! a way to reach them either), and, on the outbound listener, clients outside the pod.

use http::uri::Authority;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// Why a destination is refused; carried through the upstream client's error so that the client
/// gets the matching status and the segment the matching cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The destination is one of the proxy's own listeners.
    #[error("{0} is this proxy's own listener: forwarding there would loop")]
    Loop(SocketAddr),
    /// The destination is link-local (instance metadata and the like).
    #[error("{0} is link-local: the proxy does not forward to instance metadata or link-local addresses")]
    LinkLocal(IpAddr),
}

/// The addresses the proxy listens on.
#[derive(Clone, Debug, Default)]
pub struct OwnListeners(Arc<[SocketAddr]>);

impl OwnListeners {
    /// The bound addresses of every listener (inbound, outbound, admin).
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        OwnListeners(addrs.into_iter().collect())
    }

    /// Whether connecting to `dst` would reach one of our listeners.
    pub fn contains(&self, dst: SocketAddr) -> bool {
        let ip = dst.ip().to_canonical();
        self.0.iter().filter(|own| own.port() == dst.port()).any(|own| {
            let own_ip = own.ip().to_canonical();
            // Connecting to 0.0.0.0 or :: reaches the local host.
            ip == own_ip || ip.is_unspecified() || (own_ip.is_unspecified() && is_local(ip))
        })
    }

    /// Checks a destination before connecting to it.
    pub fn check(&self, dst: SocketAddr) -> Result<(), Refusal> {
        if self.contains(dst) {
            return Err(Refusal::Loop(dst));
        }
        if is_link_local(dst.ip()) {
            return Err(Refusal::LinkLocal(dst.ip()));
        }
        Ok(())
    }

    /// Checks a request's destination when it is an address literal (names are checked once
    /// resolved and connected, by [`GuardedConnector`]).
    pub fn check_authority(&self, a: &Authority) -> Result<(), Refusal> {
        let host = a.host().trim_start_matches('[').trim_end_matches(']');
        let port = a.port_u16().unwrap_or(80);
        match host.parse::<IpAddr>() {
            Ok(ip) => self.check(SocketAddr::new(ip, port)),
            Err(_) if host.eq_ignore_ascii_case("localhost") => {
                self.check(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port))
            }
            Err(_) => Ok(()),
        }
    }
}

/// Whether `ip` is an address of this host (network namespace). Binding is the kernel's own
/// answer, and this is asked only for destinations on one of our ports.
pub fn is_local(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    ip.is_loopback() || ip.is_unspecified() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Link-local ranges, which include the instance metadata service (`169.254.169.254`,
/// `fd00:ec2::254`).
pub fn is_link_local(ip: IpAddr) -> bool {
    const EC2_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local() || v6 == EC2_METADATA_V6,
    }
}

/// The upstream connector, refusing connections that ended up at a refused address: a host name
/// can resolve to anything, so the check is made on the connected socket before any byte is sent.
#[derive(Clone, Debug)]
pub struct GuardedConnector {
    inner: HttpConnector,
    own: OwnListeners,
    /// Where to connect whatever the request names (see [`GuardedConnector::pinned_to`]).
    pinned: Option<http::Uri>,
}

impl GuardedConnector {
    /// Wraps `inner`.
    pub fn new(inner: HttpConnector, own: OwnListeners) -> Self {
        GuardedConnector { inner, own, pinned: None }
    }

    /// The same connector, connecting to `to` whatever authority the requests carry: a client
    /// built on it passes the caller's `:authority` on unchanged while the connection goes to the
    /// destination the proxy chose.
    pub fn pinned_to(&self, to: &http::uri::Authority) -> Result<Self, http::Error> {
        let uri = http::Uri::builder().scheme("http").authority(to.clone()).path_and_query("/").build()?;
        Ok(GuardedConnector { inner: self.inner.clone(), own: self.own.clone(), pinned: Some(uri) })
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, crate::BoxError>> + Send>>;

impl tower::Service<http::Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = crate::BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Connecting {
        let connecting = self.inner.call(self.pinned.clone().unwrap_or(uri));
        let own = self.own.clone();
        // One allocation per new upstream connection; pooled connections skip this.
        Box::pin(async move {
            let io = connecting.await?;
            let peer = io.inner().peer_addr()?;
            own.check(peer)?;
            Ok(io)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> OwnListeners {
        OwnListeners::new(["0.0.0.0:15100", "127.0.0.1:15101", "[::]:15102"].map(|a| a.parse().expect("addr")))
    }

    #[test]
    fn our_own_listeners_are_refused_on_every_local_address() {
        let own = own();
        for (dst, refused) in [
            ("127.0.0.1:15100", true),
            ("0.0.0.0:15100", true),
            ("[::ffff:127.0.0.1]:15100", true),
            ("127.0.0.1:15101", true),
            ("[::1]:15102", true),
            ("127.0.0.1:8080", false),
            // Another pod's inbound listener is a legitimate destination.
            ("192.0.2.7:15100", false),
        ] {
            let dst: SocketAddr = dst.parse().expect("addr");
            assert_eq!(own.contains(dst), refused, "{dst}");
        }
    }

    #[test]
    fn metadata_and_link_local_are_refused() {
        let own = own();
        for dst in ["169.254.169.254:80", "[fd00:ec2::254]:80", "[fe80::1]:80"] {
            let dst: SocketAddr = dst.parse().expect("addr");
            assert_eq!(own.check(dst), Err(Refusal::LinkLocal(dst.ip())), "{dst}");
        }
        assert_eq!(own.check("10.0.0.1:80".parse().expect("addr")), Ok(()));
    }

    #[test]
    fn authorities_are_checked_when_they_are_literals() {
        let own = own();
        let check = |a: &str| own.check_authority(&a.parse().expect("authority"));
        assert!(matches!(check("localhost:15100"), Err(Refusal::Loop(_))));
        assert!(matches!(check("[::1]:15102"), Err(Refusal::Loop(_))));
        assert!(matches!(check("169.254.169.254"), Err(Refusal::LinkLocal(_))));
        assert_eq!(check("back-end:15100"), Ok(()));
        assert_eq!(check("example.com"), Ok(()));
    }
}
