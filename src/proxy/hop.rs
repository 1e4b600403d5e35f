//! Hop-by-hop hygiene (RFC 9110 §7.6.1): the headers that describe one connection are not passed
//! on, nor is anything a `Connection` header names, except what the next hop needs to make sense
//! of the message (an upgrade's own headers, `te: trailers`, transfer codings other than chunked),
//! `Host` and the trace context headers, which no client may strip on their way to the next hop.

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};

use crate::otel::traceparent::{TRACEPARENT, TRACESTATE};
use crate::xray::header::TRACE_HEADER;

/// What a `Connection` option cannot remove: the trace context the proxy writes (or passes on
/// beside what it writes), which a client could otherwise use to cut the application off from its
/// parent; and `Host`, which every HTTP/1.1 request needs: without it the application would hear
/// the address the proxy connects to (a loopback one, in a pod) while the record keeps the
/// client's.
const NEVER_HOP_BY_HOP: [HeaderName; 4] = [header::HOST, TRACE_HEADER, TRACEPARENT, TRACESTATE];

const HOPS: usize = 6;

/// Where `Connection` is in [`HOP_BY_HOP`].
const CONNECTION_AT: usize = 0;

/// Headers that describe one hop and must not be passed on (`strip` reads the first and the last
/// two by position).
const HOP_BY_HOP: [HeaderName; HOPS] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
];

/// The same names where they are only read: a `const` array is built (and dropped) anew at each
/// use, which pays where the optimiser cannot see through it, while `Found::note` is faster with
/// the `const`, whose comparisons it folds.
static HOP_NAMES: [HeaderName; HOPS] = HOP_BY_HOP;

/// Which hop-by-hop headers, and whether `Upgrade`, a head carries: found in a pass over its
/// names that the caller makes anyway ([`super::head::Scan`]), so that only the headers present
/// cost a look-up by name.
#[derive(Clone, Copy, Debug, Default)]
pub struct Found {
    present: [bool; HOPS],
    upgrade: bool,
}

impl Found {
    /// Notes one field's name.
    pub fn note(&mut self, name: &HeaderName) {
        if let Some(i) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            self.present[i] = true;
        }
        self.upgrade |= name == header::UPGRADE;
    }
}

/// Whether a request asks to switch protocols (`Connection: upgrade` in any `Connection` header,
/// and an `Upgrade` header offering something other than `h2c`); `found` is what its headers
/// carry.
///
/// `Upgrade: h2c` (what `curl --http2` sends in plain text) asks this hop to speak HTTP/2 from the
/// next response on; passed on, an upstream that took it would turn the connection into an opaque
/// tunnel with nothing after the first request traced. RFC 9113 has dropped the mechanism and a
/// server may ignore it: the request is forwarded as an ordinary one, its `Upgrade` removed, and
/// the client goes on in HTTP/1.1 (as through Envoy).
pub fn is_upgrade(h: &HeaderMap, found: &Found) -> bool {
    found.upgrade
        && connection_tokens(h).any(|t| t.eq_ignore_ascii_case("upgrade"))
        && comma_tokens(h, header::UPGRADE).any(|t| !t.eq_ignore_ascii_case("h2c"))
}

/// Whether an HTTP/1.0 request asks to keep its connection (`Connection: keep-alive`), which it
/// keeps only if the answer says so too.
pub fn asks_keep_alive(h: &HeaderMap, found: &Found) -> bool {
    found.present[CONNECTION_AT] && connection_tokens(h).any(|t| t.eq_ignore_ascii_case("keep-alive"))
}

/// The comma-separated tokens of every `Connection` header.
fn connection_tokens(h: &HeaderMap) -> impl Iterator<Item = &str> {
    comma_tokens(h, header::CONNECTION)
}

/// The comma-separated tokens of every header called `name`.
fn comma_tokens(h: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes the hop-by-hop headers (`found` among its fields) from a message about to be
/// forwarded. An upgrade keeps `Connection: upgrade` and `Upgrade`, and loses everything else that
/// is hop-by-hop.
pub fn strip(h: &mut HeaderMap, upgrade: bool, found: Found) {
    // This runs twice on every request, and most messages carry none of these headers or only
    // `Connection`: only the ones present cost a look-up.
    let Found { mut present, upgrade: upgrade_header } = found;
    let [.., te, transfer_encoding] = present;
    if !upgrade && !upgrade_header && !present.contains(&true) {
        return;
    }
    // `Connection: keep-alive` alone, what most messages carry, names nothing else to remove: it
    // goes in the look-up that reads it.
    if present[CONNECTION_AT] {
        if let Entry::Occupied(e) = h.entry(header::CONNECTION) {
            if e.iter().all(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"keep-alive")) {
                e.remove();
                present[CONNECTION_AT] = false;
            }
        }
    }
    if present[CONNECTION_AT] {
        // Only the options that name a header actually present cost a name of their own
        // (`keep-alive`, the common one, is a hop-by-hop header removed below anyway).
        let listed: Vec<HeaderName> = connection_tokens(h)
            .filter(|t| !t.eq_ignore_ascii_case("keep-alive"))
            .filter(|t| h.contains_key(*t))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in listed {
            let kept = NEVER_HOP_BY_HOP.contains(&name) || (upgrade && name == header::UPGRADE);
            if !kept {
                h.remove(name);
            }
        }
    }
    let trailers = te
        && h.get_all(header::TE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("trailers")));
    // `gzip, chunked` says the body is gzip-coded as well as chunked: the next hop must know; bare
    // `chunked` is the connection's framing, redone by whoever sends it on, and `identity` (no
    // coding, no longer registered) says nothing.
    let codings = transfer_encoding
        .then(|| h.get(header::TRANSFER_ENCODING))
        .flatten()
        .filter(|v| {
            v.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii).any(|coding| {
                !coding.is_empty()
                    && !coding.eq_ignore_ascii_case(b"chunked")
                    && !coding.eq_ignore_ascii_case(b"identity")
            })
        })
        .cloned();
    // A message framed by Transfer-Encoding has no length of its own: a Content-Length beside it
    // is wrong or an attack, and must not reach the next hop, which would trust it and cut the
    // body (RFC 9112 §6.3).
    if transfer_encoding {
        h.remove(header::CONTENT_LENGTH);
    }
    for (name, _) in HOP_NAMES.iter().zip(present).filter(|(_, there)| *there) {
        h.remove(name);
    }
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if upgrade_header {
        h.remove(header::UPGRADE);
    }
    // gRPC needs `te: trailers` to reach the server.
    if trailers {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(codings) = codings {
        h.insert(header::TRANSFER_ENCODING, codings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(h: &HeaderMap) -> Found {
        let mut found = Found::default();
        h.keys().for_each(|name| found.note(name));
        found
    }

    fn strip_all(h: &mut HeaderMap, upgrade: bool) {
        let found = found(h);
        strip(h, upgrade, found);
    }

    fn names(h: &HeaderMap) -> Vec<String> {
        let mut names: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_in_any_connection_header_are_removed() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.append(header::CONNECTION, HeaderValue::from_static("x-second"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-second", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_all(&mut h, false);
        assert_eq!(names(&h), ["te", "x-kept"]);
    }

    #[test]
    fn a_lone_keep_alive_goes_with_the_rest_and_hides_nothing_another_connection_header_names() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static(" Keep-Alive "));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_all(&mut h, false);
        assert_eq!(names(&h), ["x-kept"]);
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        h.append(header::CONNECTION, HeaderValue::from_static("x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        strip_all(&mut h, false);
        assert!(h.is_empty(), "{:?}", names(&h));
    }

    #[test]
    fn host_and_the_trace_context_survive_being_named_in_connection() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Host, X-Amzn-Trace-Id, Traceparent, tracestate, x-other"),
        );
        h.insert(header::HOST, HeaderValue::from_static("a"));
        h.insert(TRACE_HEADER, HeaderValue::from_static("Root=1-5759e988-bd862e3fe1be46a994272793"));
        h.insert(TRACEPARENT, HeaderValue::from_static("00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"));
        h.insert(TRACESTATE, HeaderValue::from_static("rojo=00f067aa0ba902b7"));
        h.insert("x-other", HeaderValue::from_static("1"));
        strip_all(&mut h, false);
        assert_eq!(names(&h), ["host", "traceparent", "tracestate", "x-amzn-trace-id"]);
    }

    #[test]
    fn upgrades_keep_their_own_headers_and_lose_the_other_hop_by_hop_ones() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade, x-secret"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::PROXY_AUTHORIZATION, HeaderValue::from_static("Basic Zm9vOmJhcg=="));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        assert!(is_upgrade(&h, &found(&h)));
        strip_all(&mut h, true);
        assert_eq!(names(&h), ["connection", "upgrade"]);
        assert_eq!(h[header::CONNECTION], "upgrade");
    }

    #[test]
    fn an_h2c_upgrade_is_an_ordinary_request() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade, HTTP2-Settings"));
        h.insert(header::UPGRADE, HeaderValue::from_static("H2C"));
        h.insert("http2-settings", HeaderValue::from_static("AAMAAABkAAQCAAAAAAIAAAAA"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert!(!is_upgrade(&h, &found(&h)));
        strip_all(&mut h, false);
        assert_eq!(names(&h), ["accept"]);
        // Offered beside another protocol, the other is still asked for.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.append(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.append(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h, &found(&h)));
    }

    #[test]
    fn transfer_codings_other_than_chunked_and_te_trailers_are_kept() {
        let mut h = HeaderMap::new();
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip, chunked"));
        h.insert(header::TE, HeaderValue::from_static("trailers, deflate"));
        strip_all(&mut h, false);
        assert_eq!(h[header::TRANSFER_ENCODING], "gzip, chunked");
        assert_eq!(h[header::TE], "trailers");
        let mut h = HeaderMap::new();
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        strip_all(&mut h, false);
        assert!(h.is_empty());
        let mut h = HeaderMap::new();
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("Identity , chunked"));
        strip_all(&mut h, false);
        assert!(h.is_empty());
    }

    #[test]
    fn a_content_length_beside_a_transfer_encoding_goes() {
        for coding in ["chunked", "gzip, chunked", "identity"] {
            let mut h = HeaderMap::new();
            h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static(coding));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
            strip_all(&mut h, false);
            assert!(!h.contains_key(header::CONTENT_LENGTH), "{coding}");
        }
    }
}
