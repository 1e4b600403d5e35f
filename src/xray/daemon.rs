//! The X-Ray daemon's address as `AWS_XRAY_DAEMON_ADDRESS` gives it, and its resolution.
//!
//! In a cluster the daemon is a Service name (`xray-service.default:2000`), so names are accepted and
//! looked up again periodically rather than pinned to the first answer.

use std::fmt;
use std::net::SocketAddr;

/// Where the daemon listens: UDP for segments, TCP for the sampling API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonAddress {
    /// UDP `host:port`, where segment documents go.
    pub udp: HostPort,
    /// TCP `host:port`, the daemon's sampling proxy.
    pub tcp: HostPort,
}

/// A host (name or IP literal) and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP literal, without brackets.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Default for DaemonAddress {
    fn default() -> Self {
        let local = HostPort { host: "127.0.0.1".into(), port: 2000 };
        DaemonAddress { udp: local.clone(), tcp: local }
    }
}

impl std::str::FromStr for DaemonAddress {
    type Err = String;

    /// `host:port` (both protocols) or `tcp:host:port udp:host:port` in either order.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        match parts.as_slice() {
            [one] if !one.starts_with("tcp:") && !one.starts_with("udp:") => {
                let hp = parse_host_port(one)?;
                Ok(DaemonAddress { udp: hp.clone(), tcp: hp })
            }
            [a, b] => {
                let (mut udp, mut tcp) = (None, None);
                for p in [a, b] {
                    if let Some(rest) = p.strip_prefix("udp:") {
                        udp = Some(parse_host_port(rest)?);
                    } else if let Some(rest) = p.strip_prefix("tcp:") {
                        tcp = Some(parse_host_port(rest)?);
                    }
                }
                match (udp, tcp) {
                    (Some(udp), Some(tcp)) => Ok(DaemonAddress { udp, tcp }),
                    _ => Err(format!("expected `tcp:host:port udp:host:port`, got `{s}`")),
                }
            }
            _ => Err(format!("expected `host:port` or `tcp:host:port udp:host:port`, got `{s}`")),
        }
    }
}

fn parse_host_port(s: &str) -> Result<HostPort, String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("`{s}` has no port"))?;
    let port: u16 = port.parse().map_err(|_| format!("`{port}` is not a port number in `{s}`"))?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return Err(format!("`{s}` has no host"));
    }
    if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
        return Err(format!("`{host}` is not a valid IPv6 address"));
    }
    Ok(HostPort { host: host.to_owned(), port })
}

impl HostPort {
    /// Resolves to one socket address (IP literals without a look-up).
    pub async fn resolve(&self) -> std::io::Result<SocketAddr> {
        if let Ok(ip) = self.host.parse::<std::net::IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} has no address", self.host)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_documented_forms() {
        let one: DaemonAddress = "xray-service.default:2000".parse().expect("single");
        assert_eq!(one.udp, HostPort { host: "xray-service.default".into(), port: 2000 });
        assert_eq!(one.udp, one.tcp);
        let two: DaemonAddress = "udp:127.0.0.1:2001 tcp:10.0.0.1:2000".parse().expect("pair");
        assert_eq!(two.udp.to_string(), "127.0.0.1:2001");
        assert_eq!(two.tcp.to_string(), "10.0.0.1:2000");
        let v6: DaemonAddress = "[::1]:2000".parse().expect("v6");
        assert_eq!(v6.udp.host, "::1");
        assert_eq!(v6.udp.to_string(), "[::1]:2000");
    }

    #[test]
    fn rejects_what_it_cannot_use_with_a_reason() {
        for (bad, why) in [
            ("localhost", "has no port"),
            ("localhost:http", "not a port number"),
            (":2000", "has no host"),
            ("udp:127.0.0.1:2000", "expected"),
            ("tcp:a:1 tcp:b:2", "expected `tcp:host:port udp:host:port`"),
            ("a:1 b:2 c:3", "expected"),
            ("fe80::zz:2000", "not a valid IPv6"),
        ] {
            let err = bad.parse::<DaemonAddress>().err().unwrap_or_default();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
