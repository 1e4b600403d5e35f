//! Request-target checks (RFC 9112 §3.2): a target the proxy would have to reinterpret before
//! forwarding is refused, so that the application never receives a request other than the one the
//! client sent (`GET foo` must not become `GET /`, nor `GET http://other/x` a request for our host).

use http::uri::{Authority, Scheme};
use http::{Method, Request, header};

/// Why a request's target cannot be forwarded as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadTarget {
    /// `GET host:port`: the authority form belongs to `CONNECT`.
    #[error("an authority-form target is only for CONNECT")]
    AuthorityForm,
    /// `GET *`: the asterisk form belongs to `OPTIONS`.
    #[error("an asterisk-form target is only for OPTIONS")]
    AsteriskForm,
    /// Anything else that is not a path.
    #[error("the request target is not a path")]
    NotAPath,
    /// `GET http://a/x` with `Host: b` where the destination is fixed: the target's host would be
    /// dropped, and the application would believe `b`.
    #[error("the request target names another host than the Host header")]
    HostMismatch,
    /// `GET https://a/x` to the explicit proxy, which forwards in plain HTTP: the request would
    /// go out unencrypted, to port 80. A client wanting TLS through a proxy asks with `CONNECT`;
    /// any other scheme is not HTTP at all.
    #[error("only http:// targets are forwarded; https:// goes through CONNECT")]
    Scheme,
}

/// Checks the target of a request about to be forwarded; `fixed` when the connection decides the
/// destination (inbound, intercepted outbound) rather than the target (the explicit proxy, where
/// `curl -H 'Host: b' -x proxy http://a/` is a client's way to reach `b` at `a`, and `b` is what
/// `a` will be told). `CONNECT` is not checked here: its authority form is its own, and the
/// listeners that serve it decide.
pub fn check<B>(req: &Request<B>, fixed: bool) -> Result<(), BadTarget> {
    if req.method() == Method::CONNECT {
        return Ok(());
    }
    let uri = req.uri();
    match (uri.scheme(), uri.authority()) {
        (None, Some(_)) => Err(BadTarget::AuthorityForm),
        (None, None) if uri.path() == "*" => {
            if req.method() == Method::OPTIONS {
                Ok(())
            } else {
                Err(BadTarget::AsteriskForm)
            }
        }
        (None, None) if uri.path().starts_with('/') => Ok(()),
        (None, None) | (Some(_), None) => Err(BadTarget::NotAPath),
        (Some(scheme), Some(target)) => {
            // Where the destination is fixed the scheme names what the client first spoke (an
            // HTTP/2 request's `:scheme` stays `https` behind TLS ended before us); where the target
            // is the destination, it must be what the proxy speaks.
            let allowed = *scheme == Scheme::HTTP || (fixed && *scheme == Scheme::HTTPS);
            if !allowed {
                return Err(BadTarget::Scheme);
            }
            // Absolute form (and every HTTP/2 request): a Host header, when there is one, must
            // name the same authority (RFC 9112 §3.2.2, RFC 9113 §8.3.1) when only one of them can
            // be passed on.
            let Some(host) = req.headers().get(header::HOST).filter(|_| fixed) else {
                return Ok(());
            };
            let same = host.to_str().ok().and_then(|h| h.parse::<Authority>().ok()).is_some_and(|h| {
                h.host().eq_ignore_ascii_case(target.host()) && port(&h, scheme) == port(target, scheme)
            });
            if same { Ok(()) } else { Err(BadTarget::HostMismatch) }
        }
    }
}

/// Whether a `Host` value is `uri-host [":" port]` (RFC 9112 §3.2, RFC 3986 §3.2.2): a name or
/// IPv4 address of unreserved, percent-encoded and sub-delimiter characters, or an IP literal in
/// brackets; a port of digits. A server must answer anything else `400`: passed on, a Host such
/// as `a/evil?x` or `a b` means one thing to the proxy, its records and its sampling rules and
/// another to the application. A `user:pass@` in front, an authority's userinfo, is let through as
/// HTTP/2 stacks let it through in `:authority` (nghttp2's check, Envoy's): the records drop it.
pub fn valid_host(v: &[u8]) -> bool {
    // `@` is no host byte: a Host with a userinfo fails the grammar and only then is read again,
    // so that the common one is read once.
    host_and_port(v)
        || v.iter()
            .rposition(|&b| b == b'@')
            .is_some_and(|at| v[..at].iter().all(|&b| literal_byte(b)) && host_and_port(&v[at + 1..]))
}

/// `uri-host [":" port]`, the grammar [`valid_host`] holds a Host to.
fn host_and_port(v: &[u8]) -> bool {
    let (host, port) = match v {
        [b'[', literal @ ..] => {
            let Some(close) = literal.iter().position(|&b| b == b']') else { return false };
            if !literal[..close].iter().all(|&b| literal_byte(b)) {
                return false;
            }
            match &literal[close + 1..] {
                [] => return true,
                [b':', port @ ..] => (&b""[..], port),
                _ => return false,
            }
        }
        _ => match v.iter().rposition(|&b| b == b':') {
            Some(colon) => (&v[..colon], &v[colon + 1..]),
            None => (v, &b""[..]),
        },
    };
    host.iter().all(|&b| host_byte(b)) && port.iter().all(u8::is_ascii_digit)
}

/// A byte of an IP literal or a userinfo: a host byte or `:`.
fn literal_byte(b: u8) -> bool {
    host_byte(b) || b == b':'
}

/// A byte of a reg-name or IPv4 address: unreserved, a sub-delimiter, or `%` of an escape.
fn host_byte(b: u8) -> bool {
    HOST_BYTES[usize::from(b)]
}

/// [`host_byte`] as a table: every request's Host is checked, a byte at a time.
const HOST_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'~' | b'%' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')')
            || matches!(c, b'*' | b'+' | b',' | b';' | b'=');
        b += 1;
    }
    table
};

/// The authority's port, or the scheme's default.
fn port(a: &Authority, scheme: &Scheme) -> Option<u16> {
    a.port_u16().or(if *scheme == Scheme::HTTPS { Some(443) } else { Some(80) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &str, host: Option<&str>) -> Request<()> {
        let mut b = Request::builder().method(method).uri(target);
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        b.body(()).expect("request")
    }

    fn check_fixed<B>(r: &Request<B>) -> Result<(), BadTarget> {
        check(r, true)
    }

    #[test]
    fn paths_and_matching_absolute_targets_pass() {
        assert_eq!(check_fixed(&req("GET", "/x?y=1", Some("a"))), Ok(()));
        assert_eq!(check_fixed(&req("GET", "/../etc/passwd", Some("a"))), Ok(()));
        assert_eq!(check_fixed(&req("OPTIONS", "*", Some("a"))), Ok(()));
        assert_eq!(check_fixed(&req("GET", "http://a/x", Some("a"))), Ok(()));
        assert_eq!(check_fixed(&req("GET", "http://A:80/x", Some("a"))), Ok(()));
        assert_eq!(check_fixed(&req("GET", "http://a:8080/x", Some("a:8080"))), Ok(()));
        assert_eq!(check_fixed(&req("GET", "http://a/x", None)), Ok(()));
        assert_eq!(check_fixed(&req("CONNECT", "a:443", Some("a:443"))), Ok(()));
    }

    #[test]
    fn targets_that_would_be_reinterpreted_are_refused() {
        assert_eq!(check_fixed(&req("GET", "foo", Some("a"))), Err(BadTarget::AuthorityForm));
        assert_eq!(check_fixed(&req("GET", "a:80", Some("a"))), Err(BadTarget::AuthorityForm));
        assert_eq!(check_fixed(&req("GET", "*", Some("a"))), Err(BadTarget::AsteriskForm));
        assert_eq!(check_fixed(&req("GET", "http://evil/x", Some("a"))), Err(BadTarget::HostMismatch));
        assert_eq!(check_fixed(&req("GET", "http://a:81/x", Some("a"))), Err(BadTarget::HostMismatch));
        assert_eq!(check_fixed(&req("GET", "http://a/x", Some("a b"))), Err(BadTarget::HostMismatch));
    }

    #[test]
    fn a_host_is_a_name_or_address_and_a_port() {
        for ok in [
            "a",
            "svc.ns.svc.cluster.local:8080",
            "10.0.0.1",
            "[::1]",
            "[::1]:80",
            "[fe80::1%25eth0]",
            "a_b-c~",
            "user:secret@shop.example.com:8080",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        // Empty, as a request whose target has no authority sends it; a port of no digits.
        assert!(valid_host(b"") && valid_host(b"a:"));
        for bad in ["a/evil?x#y", "a b", "a\"b", "a\tb", "u/x@b", "a:80:90", "[::1", "[::1]x", "a:8o", "\u{e9}x"] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn the_explicit_proxy_connects_to_the_target_and_passes_host_on() {
        assert_eq!(check(&req("GET", "http://10.0.0.1/x", Some("vhost")), false), Ok(()));
        assert_eq!(check(&req("GET", "foo", Some("a")), false), Err(BadTarget::AuthorityForm));
    }

    #[test]
    fn the_explicit_proxy_forwards_only_http_targets() {
        assert_eq!(check(&req("GET", "https://a/x", Some("a")), false), Err(BadTarget::Scheme));
        assert_eq!(check(&req("GET", "ftp://a/x", Some("a")), false), Err(BadTarget::Scheme));
        assert_eq!(check(&req("GET", "HTTP://a/x", Some("a")), false), Ok(()));
        // A fixed destination takes HTTP/2's `https` as the scheme the client first spoke.
        assert_eq!(check_fixed(&req("GET", "https://a/x", Some("a"))), Ok(()));
        assert_eq!(check_fixed(&req("GET", "ftp://a/x", Some("a"))), Err(BadTarget::Scheme));
    }
}
