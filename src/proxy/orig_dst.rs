//! The destination a connection had before iptables `REDIRECT` sent it to us (`SO_ORIGINAL_DST`).

use http::uri::Authority;
use std::io;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// The original destination of a redirected connection, IPv4 or IPv6.
pub fn original_dst(stream: &TcpStream) -> io::Result<SocketAddr> {
    let sock = socket2::SockRef::from(stream);
    let local = stream.local_addr()?;
    let addr = if local.is_ipv4() { sock.original_dst_v4()? } else { sock.original_dst_v6()? };
    addr.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "original destination is not an IP address"))
}

/// `ip:port` as a URI authority.
pub fn authority(addr: SocketAddr) -> Option<Authority> {
    Authority::try_from(addr.to_string()).ok()
}
