//! How large an HTTP/1 message head was, from its parsed parts: what `--max-header-size` holds;
//! and, in the same pass over its fields, what else forwarding needs to know of them.
//!
//! hyper stops reading a head only once its buffer has reached the limit, and a single read may
//! carry the buffer up to about twice the limit first, so a head of 100 KB passed a limit of
//! 64 KiB. The parsed head is measured again instead: each field as `name: value\r\n`, the start
//! line and the blank line. hyper trims the optional whitespace around values, so a head padded
//! with it counts a few bytes short; nothing else is missed.

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Uri, header};

use super::{hop, target};

/// A head's fields, read once: each look-up by name hashes the name, and forwarding would
/// otherwise ask for `Host`, `Upgrade` and the hop-by-hop headers one by one, on every request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scan {
    /// `name: value\r\n` for each field, and the blank line that ends the head.
    fields: usize,
    /// How many `Host` fields there are.
    pub hosts: usize,
    /// Whether a `Host` field is not a host and port ([`target::valid_host`]).
    pub bad_host: bool,
    /// Which hop-by-hop fields there are.
    pub hops: hop::Found,
}

impl Scan {
    /// Reads `h`'s fields, each once.
    pub fn of(h: &HeaderMap) -> Self {
        let mut scan = Scan { fields: 2, ..Scan::default() };
        for (name, value) in h {
            scan.fields += field(name, value);
            if name == header::HOST {
                scan.hosts += 1;
                scan.bad_host |= !target::valid_host(value.as_bytes());
            }
            scan.hops.note(name);
        }
        scan
    }
}

/// The bytes of one field on the wire: `name: value\r\n`.
pub fn field(name: &HeaderName, value: &HeaderValue) -> usize {
    name.as_str().len() + 2 + value.len() + 2
}

/// The request-target as the client wrote it: origin-form, or absolute-form with its scheme and
/// authority.
fn target(uri: &Uri) -> usize {
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + 3);
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let path = uri.path_and_query().map_or(0, |p| p.as_str().len());
    scheme + authority + path
}

/// The size of a request's head: `METHOD target HTTP/1.1\r\n` and its fields (`scan` of its
/// headers).
pub fn request<B>(req: &Request<B>, scan: &Scan) -> usize {
    req.method().as_str().len() + 1 + target(req.uri()) + " HTTP/1.1\r\n".len() + scan.fields
}

/// The size of a response's head: `HTTP/1.1 200 OK\r\n` (its reason phrase counted as the
/// standard one) and its fields (`scan` of its headers).
pub fn response<B>(res: &Response<B>, scan: &Scan) -> usize {
    let reason = res.status().canonical_reason().map_or(0, str::len);
    "HTTP/1.1 200 \r\n".len() + reason + scan.fields
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_head_measures_what_it_was_on_the_wire() {
        let raw = "GET /a?b=c HTTP/1.1\r\nhost: example\r\nx-long: 0123456789\r\n\r\n";
        let req = Request::get("/a?b=c").header("host", "example").header("x-long", "0123456789").body(()).unwrap();
        assert_eq!(request(&req, &Scan::of(req.headers())), raw.len());
        let raw = "GET http://example:8080/x HTTP/1.1\r\nhost: example:8080\r\n\r\n";
        let req = Request::get("http://example:8080/x").header("host", "example:8080").body(()).unwrap();
        assert_eq!(request(&req, &Scan::of(req.headers())), raw.len());
        let raw = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        let res = Response::builder().status(404).header("content-length", "0").body(()).unwrap();
        assert_eq!(response(&res, &Scan::of(res.headers())), raw.len());
    }

    #[test]
    fn repeated_fields_count_once_each() {
        let req = Request::get("/").header("a", "1").header("a", "22").body(()).unwrap();
        assert_eq!(request(&req, &Scan::of(req.headers())), "GET / HTTP/1.1\r\na: 1\r\na: 22\r\n\r\n".len());
    }
}
