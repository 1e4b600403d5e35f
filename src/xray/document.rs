//! A segment as the JSON document X-Ray reads: written straight from the [`Segment`] and its
//! [`Environment`] into the emitter's buffer, with no intermediate values, off the request path.

use serde::ser::{Serialize, SerializeMap, Serializer};
use std::net::{IpAddr, Ipv4Addr};

use super::aws;
use super::cause::Failure;
use super::flags::Flags;
use super::grpc;
use super::id::SegmentId;
use super::segment::{Environment, Http, Kind, Segment};
use super::tunnel;

/// The longest string the schema allows in the `http` object.
pub const MAX_HTTP_STRING: usize = 250;

/// A segment with the environment it is written in: what the emitter serialises.
pub struct Document<'a> {
    /// The segment.
    pub segment: &'a Segment,
    /// Where the proxy runs.
    pub env: &'a Environment,
}

impl Serialize for Document<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (seg, env) = (self.segment, self.env);
        let top = seg.kind != Kind::EmbeddedSubsegment;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", &*seg.name)?;
        m.serialize_entry("id", seg.id.as_str())?;
        if top {
            m.serialize_entry("trace_id", seg.trace_id.as_str())?;
        }
        if let Some(p) = &seg.parent_id {
            m.serialize_entry("parent_id", p.as_str())?;
        }
        m.serialize_entry("start_time", &micros(seg.start_time))?;
        m.serialize_entry("end_time", &micros(seg.end_time))?;
        if seg.kind != Kind::Segment {
            if seg.kind == Kind::IndependentSubsegment {
                m.serialize_entry("type", "subsegment")?;
            }
            let aws = seg.aws();
            m.serialize_entry("namespace", if aws.is_some() { "aws" } else { "remote" })?;
            if let Some(aws) = &aws {
                m.serialize_entry("aws", &aws::AwsJson(aws))?;
            }
            if seg.traced {
                m.serialize_entry("traced", &true)?;
            }
        }
        let Flags { error, throttle, fault } = seg.flags();
        if error {
            m.serialize_entry("error", &true)?;
        }
        if throttle {
            m.serialize_entry("throttle", &true)?;
        }
        if fault {
            m.serialize_entry("fault", &true)?;
        }
        let method = seg.tunnel.as_ref().is_none_or(|t| t.explicit);
        m.serialize_entry("http", &HttpJson { http: &seg.http, inbound_segment: seg.kind == Kind::Segment, method })?;
        if let Some(f) = &seg.failure {
            m.serialize_entry("cause", &CauseJson(f))?;
        } else if let Some(f) = seg.grpc_failure() {
            m.serialize_entry("cause", &CauseJson(&f))?;
        }
        if seg.kind == Kind::Segment {
            if let Some(origin) = env.origin {
                m.serialize_entry("origin", origin)?;
            }
            m.serialize_entry("aws", &AwsJson(env))?;
        }
        if let Some(t) = &seg.tunnel {
            m.serialize_entry("metadata", &tunnel::MetadataJson(t))?;
        } else if let Some(g) = &seg.grpc {
            m.serialize_entry("metadata", &grpc::MetadataJson(g))?;
        }
        if top {
            m.serialize_entry("annotations", &Annotations { seg, env })?;
        }
        if !seg.subsegments.is_empty() {
            m.serialize_entry("subsegments", &Subsegments { seg, env })?;
        }
        m.end()
    }
}

impl Document<'_> {
    /// Appends the document to `out` as JSON: the bytes `serde_json::to_writer` writes for it
    /// (the tests compare them), written by hand because this runs for every segment. Keys and
    /// the other constant parts go out as they are rather than through serde's escaping, and a
    /// string without characters to escape is copied in one go; the rarer parts (the cause, the
    /// metadata, an AWS call's block) still go through their `Serialize` impls.
    pub fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let (seg, env) = (self.segment, self.env);
        let top = seg.kind != Kind::EmbeddedSubsegment;
        out.extend_from_slice(b"{\"name\":");
        string(out, &seg.name);
        // Ids are ASCII hex and dashes: nothing to escape.
        out.extend_from_slice(b",\"id\":");
        quoted(out, seg.id.as_bytes());
        if top {
            out.extend_from_slice(b",\"trace_id\":");
            quoted(out, seg.trace_id.as_bytes());
        }
        if let Some(p) = &seg.parent_id {
            out.extend_from_slice(b",\"parent_id\":");
            quoted(out, p.as_bytes());
        }
        out.extend_from_slice(b",\"start_time\":");
        seconds(out, seg.start_time)?;
        out.extend_from_slice(b",\"end_time\":");
        seconds(out, seg.end_time)?;
        if seg.kind != Kind::Segment {
            if seg.kind == Kind::IndependentSubsegment {
                out.extend_from_slice(b",\"type\":\"subsegment\"");
            }
            let aws = seg.aws();
            out.extend_from_slice(if aws.is_some() { b",\"namespace\":\"aws\"" } else { b",\"namespace\":\"remote\"" });
            if let Some(aws) = &aws {
                out.extend_from_slice(b",\"aws\":");
                serde_json::to_writer(&mut *out, &aws::AwsJson(aws))?;
            }
            if seg.traced {
                out.extend_from_slice(b",\"traced\":true");
            }
        }
        let Flags { error, throttle, fault } = seg.flags();
        for (set, field) in
            [(error, &b",\"error\":true"[..]), (throttle, b",\"throttle\":true"), (fault, b",\"fault\":true")]
        {
            if set {
                out.extend_from_slice(field);
            }
        }
        let method = seg.tunnel.as_ref().is_none_or(|t| t.explicit);
        out.extend_from_slice(b",\"http\":");
        HttpJson { http: &seg.http, inbound_segment: seg.kind == Kind::Segment, method }.write(out);
        if let Some(f) = &seg.failure {
            out.extend_from_slice(b",\"cause\":");
            serde_json::to_writer(&mut *out, &CauseJson(f))?;
        } else if let Some(f) = seg.grpc_failure() {
            out.extend_from_slice(b",\"cause\":");
            serde_json::to_writer(&mut *out, &CauseJson(&f))?;
        }
        if seg.kind == Kind::Segment {
            if let Some(origin) = env.origin {
                out.extend_from_slice(b",\"origin\":");
                string(out, origin);
            }
            out.extend_from_slice(b",\"aws\":");
            AwsJson(env).write(out);
        }
        if let Some(t) = &seg.tunnel {
            out.extend_from_slice(b",\"metadata\":");
            serde_json::to_writer(&mut *out, &tunnel::MetadataJson(t))?;
        } else if let Some(g) = &seg.grpc {
            out.extend_from_slice(b",\"metadata\":");
            serde_json::to_writer(&mut *out, &grpc::MetadataJson(g))?;
        }
        if top {
            out.extend_from_slice(b",\"annotations\":");
            (Annotations { seg, env }).write(out);
        }
        if !seg.subsegments.is_empty() {
            out.extend_from_slice(b",\"subsegments\":[");
            for (i, segment) in seg.subsegments.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                Document { segment, env }.write(out)?;
            }
            out.push(b']');
        }
        out.push(b'}');
        Ok(())
    }
}

/// `s` as a JSON string, escaped as serde_json escapes it: only `"`, `\\` and control characters.
fn string(out: &mut Vec<u8>, s: &str) {
    if plain(s) {
        quoted(out, s.as_bytes());
    } else {
        // Writing into memory cannot fail, and serde_json escapes a string without error.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Text known to need no escaping, as a JSON string.
fn quoted(out: &mut Vec<u8>, text: &[u8]) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text);
    out.push(b'"');
}

/// Whether `s` goes into a JSON string as it is.
fn plain(s: &str) -> bool {
    // No early exit, so that the check runs over whole words at a time.
    s.bytes().fold(true, |plain, b| plain & (b >= 0x20) & (b != b'"') & (b != b'\\'))
}

/// Whether `bytes` are printable ASCII other than `"` and `\\`: text (what `HeaderValue::to_str`
/// accepts, too) that goes into a JSON string as it is.
fn printable(bytes: &[u8]) -> bool {
    // No early exit, as in `plain`.
    bytes.iter().fold(true, |ok, &b| ok & (0x20..0x7f).contains(&b) & (b != b'"') & (b != b'\\'))
}

/// The `url` field in one pass over each part when every part is printable ASCII and the whole
/// fits [`MAX_HTTP_STRING`]: then it is what [`url_parts`] gives (nothing to cut, one byte a
/// character) with nothing to escape. Writes nothing and returns `false` otherwise.
fn printable_url(out: &mut Vec<u8>, h: &Http) -> bool {
    // `url_host` on bytes: a printable Host is text, so it is the one `url_host` takes (one that
    // is not goes the slow way, which falls back to the target's authority).
    let host = match &h.host {
        Some(v) => v.as_bytes(),
        None => h.uri.authority().map_or(&b""[..], |a| a.as_str().as_bytes()),
    };
    if !printable(host) {
        return false;
    }
    let host = &host[credentials_end(host)..];
    let (scheme, path) = (h.scheme.as_bytes(), h.uri.path().as_bytes());
    let len = scheme.len() + 3 + host.len() + path.len();
    if len > MAX_HTTP_STRING || !(printable(scheme) & printable(path)) {
        return false;
    }
    out.reserve(len + 2);
    out.push(b'"');
    for part in [scheme, b"://", host, path] {
        out.extend_from_slice(part);
    }
    out.push(b'"');
    true
}

/// A time in seconds as serde_json writes it once rounded to the microsecond ([`micros`]),
/// written from integers. From 1 s to 2^32 s (the year 2106) two microseconds are more than an
/// ulp apart, so the shortest decimal that reads back as the rounded float, serde_json's output,
/// is the count of microseconds itself with its trailing zeros dropped (`.0` for whole seconds).
/// Other times, which no clock gives, go through serde_json.
fn seconds(out: &mut Vec<u8>, t: f64) -> serde_json::Result<()> {
    let us = (t * 1e6).round();
    if !(1e6..4_294_967_296e6).contains(&us) {
        return serde_json::to_writer(&mut *out, &micros(t));
    }
    // A whole number below 2^53: exact as an integer.
    let us = us as u64;
    number(out, us / 1_000_000);
    let fraction = (us % 1_000_000) as usize;
    if fraction == 0 {
        out.extend_from_slice(b".0");
        return Ok(());
    }
    // Six digits, two at a time, then the trailing zeros dropped.
    let mut digits = [b'.'; 7];
    for (i, pair) in [fraction / 10_000, fraction / 100 % 100, fraction % 100].into_iter().enumerate() {
        digits[1 + 2 * i..3 + 2 * i].copy_from_slice(&DIGIT_PAIRS[2 * pair..2 * pair + 2]);
    }
    let len = digits.iter().rposition(|&d| d != b'0').map_or(1, |last| last + 1);
    out.extend_from_slice(&digits[..len]);
    Ok(())
}

/// `00` to `99`, each number's two digits at twice its index.
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// An unsigned number as JSON writes it (serde_json writes integers with the same crate).
fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Embedded subsegments, written straight from the parent's list (no intermediate vector).
struct Subsegments<'a> {
    seg: &'a Segment,
    env: &'a Environment,
}

impl Serialize for Subsegments<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let env = self.env;
        s.collect_seq(self.seg.subsegments.iter().map(|segment| Document { segment, env }))
    }
}

/// Rounds to the microsecond, the resolution X-Ray documents use.
fn micros(t: f64) -> f64 {
    (t * 1e6).round() / 1e6
}

/// The `http` object; `method` is left out for intercepted tunnels, where no request was seen.
#[derive(Clone, Copy)]
struct HttpJson<'a> {
    http: &'a Http,
    inbound_segment: bool,
    method: bool,
}

impl Serialize for HttpJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("request", &RequestJson(*self))?;
        if self.http.status.is_some() || self.http.content_length.is_some() {
            m.serialize_entry("response", &ResponseJson(self.http))?;
        }
        m.end()
    }
}

impl HttpJson<'_> {
    /// What its `Serialize` impl writes, by hand (see [`Document::write`]).
    fn write(&self, out: &mut Vec<u8>) {
        let h = self.http;
        out.extend_from_slice(b"{\"request\":{");
        let mut first = true;
        let mut field = |out: &mut Vec<u8>, key: &[u8]| {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(key);
        };
        if self.method {
            field(out, b"\"method\":");
            string(out, truncate(h.method.as_str(), MAX_HTTP_STRING));
        }
        field(out, b"\"url\":");
        if !printable_url(out, h) {
            string(out, &url(h));
        }
        if self.inbound_segment {
            if let Some(ip) = h.client_ip {
                field(out, b"\"client_ip\":");
                // Digits, dots, hex and colons: nothing to escape.
                with_ip_bytes(ip, |text| quoted(out, text));
                if h.x_forwarded_for {
                    field(out, b"\"x_forwarded_for\":true");
                }
            }
        }
        if let Some(ua) = &h.user_agent {
            // Printable ASCII within the limit is text that needs neither escaping nor cutting.
            if ua.len() <= MAX_HTTP_STRING && printable(ua.as_bytes()) {
                field(out, b"\"user_agent\":");
                quoted(out, ua.as_bytes());
            } else if let Some(ua) = h.user_agent_text() {
                field(out, b"\"user_agent\":");
                string(out, truncate(&ua, MAX_HTTP_STRING));
            }
        }
        out.push(b'}');
        if h.status.is_some() || h.content_length.is_some() {
            out.extend_from_slice(b",\"response\":{");
            if let Some(status) = h.status {
                out.extend_from_slice(b"\"status\":");
                number(out, u64::from(status));
            }
            if let Some(len) = h.content_length {
                if h.status.is_some() {
                    out.push(b',');
                }
                out.extend_from_slice(b"\"content_length\":");
                number(out, len);
            }
            out.push(b'}');
        }
        out.push(b'}');
    }
}

struct RequestJson<'a>(HttpJson<'a>);

impl Serialize for RequestJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (h, inbound_segment) = (self.0.http, self.0.inbound_segment);
        let mut m = s.serialize_map(None)?;
        if self.0.method {
            // Extension methods have no length limit of their own; the schema's is 250.
            m.serialize_entry("method", truncate(h.method.as_str(), MAX_HTTP_STRING))?;
        }
        m.serialize_entry("url", &UrlJson(h))?;
        // Who called is only known, and only meaningful, for the segment of a request we received.
        if inbound_segment {
            if let Some(ip) = h.client_ip {
                m.serialize_entry("client_ip", &ClientIp(ip))?;
                if h.x_forwarded_for {
                    m.serialize_entry("x_forwarded_for", &true)?;
                }
            }
        }
        if let Some(ua) = h.user_agent_text() {
            m.serialize_entry("user_agent", truncate(&ua, MAX_HTTP_STRING))?;
        }
        m.end()
    }
}

struct ResponseJson<'a>(&'a Http);

impl Serialize for ResponseJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        if let Some(status) = self.0.status {
            m.serialize_entry("status", &status)?;
        }
        if let Some(len) = self.0.content_length {
            m.serialize_entry("content_length", &len)?;
        }
        m.end()
    }
}

/// `scheme://host/path`: credentials and the query are left out, as the X-Ray SDKs do.
pub fn url(h: &Http) -> String {
    let mut url = String::new();
    url_parts(h, |part| url.push_str(part));
    url
}

/// The host a URL names: the Host header if it is text, else the target's authority, without the
/// `user:pass@` that can reach us through an absolute-form request or a Host header.
fn url_host(h: &Http) -> &str {
    let host =
        h.host.as_ref().and_then(|v| v.to_str().ok()).or_else(|| h.uri.authority().map(|a| a.as_str())).unwrap_or("");
    &host[credentials_end(host.as_bytes())..]
}

/// Where the `user:pass@` a host may start with ends (0 when there is none): after its last `@`.
/// A byte loop: a host is a dozen bytes, less than `rsplit_once`'s search sets out to.
fn credentials_end(host: &[u8]) -> usize {
    host.iter().rposition(|&b| b == b'@').map_or(0, |at| at + 1)
}

/// The parts of the `url` field, in order, cut at [`MAX_HTTP_STRING`] characters in all; a path
/// cut inside a percent-encoded byte loses the part of it that fits (`/caf%C3%A9` is cut before
/// `%C3`, never left ending in `%C` for whoever decodes it).
fn url_parts(h: &Http, mut out: impl FnMut(&str)) {
    let host = url_host(h);
    let mut left = MAX_HTTP_STRING;
    for (part, is_path) in [(h.scheme, false), ("://", false), (host, false), (h.uri.path(), true)] {
        let mut kept = truncate(part, left);
        if is_path && kept.len() < part.len() {
            let tail = &kept.as_bytes()[kept.len().saturating_sub(2)..];
            if let Some(escape) = tail.iter().position(|&b| b == b'%') {
                kept = &kept[..kept.len() - tail.len() + escape];
            }
        }
        out(kept);
        left -= kept.chars().count();
        if left == 0 {
            break;
        }
    }
}

/// The `url` field, put together on the stack: it is written for every document, and the
/// formatting machinery (`collect_str`) costs more than the rest of the field.
struct UrlJson<'a>(&'a Http);

impl Serialize for UrlJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // At most MAX_HTTP_STRING characters of at most 4 bytes each.
        let mut buf = [0u8; MAX_HTTP_STRING * 4];
        let mut len = 0;
        url_parts(self.0, |part| {
            buf[len..len + part.len()].copy_from_slice(part.as_bytes());
            len += part.len();
        });
        // Whole characters were copied, so this is always text.
        s.serialize_str(std::str::from_utf8(&buf[..len]).unwrap_or_default())
    }
}

/// The client's address; IPv4, the common case, is written by hand for the same reason.
struct ClientIp(IpAddr);

impl Serialize for ClientIp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        with_ip_text(self.0, |text| s.serialize_str(text))
    }
}

/// Calls `f` with `ip` as `Display` writes it. IPv4, the common case, is written on the stack: for
/// every client address, the formatting machinery and an allocation cost more than the rest of
/// the field.
pub fn with_ip_text<R>(ip: IpAddr, f: impl FnOnce(&str) -> R) -> R {
    // Digits, dots, hex and colons only.
    with_ip_bytes(ip, |text| f(std::str::from_utf8(text).unwrap_or_default()))
}

/// [`with_ip_text`] as bytes, for a writer of bytes: no check that they are text.
fn with_ip_bytes<R>(ip: IpAddr, f: impl FnOnce(&[u8]) -> R) -> R {
    match ip {
        IpAddr::V4(v4) => {
            let mut buf = [0u8; 15];
            let len = ipv4_text(v4, &mut buf);
            f(&buf[..len])
        }
        IpAddr::V6(_) => f(ip.to_string().as_bytes()),
    }
}

/// Writes `ip` in dotted-decimal form into `buf`; returns the length.
fn ipv4_text(ip: Ipv4Addr, buf: &mut [u8; 15]) -> usize {
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            buf[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            buf[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + octet % 10;
        len += 1;
    }
    len
}

/// The longest prefix of `s` of at most `max` characters.
pub fn truncate(s: &str, max: usize) -> &str {
    // No more bytes than `max` means no more characters either: the common case, without a scan.
    if s.len() <= max {
        return s;
    }
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

struct CauseJson<'a>(&'a Failure);

impl Serialize for CauseJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.0;
        let exception = serde_json::json!({
            "id": SegmentId::new().as_str(),
            "type": f.kind.exception_type(),
            "message": &*f.message,
            "remote": f.remote(),
        });
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("exceptions", &[exception])?;
        m.end()
    }
}

struct AwsJson<'a>(&'a Environment);

impl Serialize for AwsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let env = self.0;
        let mut m = s.serialize_map(None)?;
        if env.origin.is_some() {
            m.serialize_entry("eks", &EksJson(env))?;
        }
        m.serialize_entry("xray", &XrayJson)?;
        m.end()
    }
}

impl AwsJson<'_> {
    /// What its `Serialize` impl writes: the environment's block, rendered by the first document.
    fn write(&self, out: &mut Vec<u8>) {
        let env = self.0;
        out.extend_from_slice(env.aws_json.get_or_init(|| {
            let mut block = Vec::new();
            self.render(&mut block);
            block.into_boxed_slice()
        }));
    }

    /// The block by hand (see [`Document::write`]).
    fn render(&self, out: &mut Vec<u8>) {
        let env = self.0;
        out.push(b'{');
        if env.origin.is_some() {
            out.extend_from_slice(b"\"eks\":{");
            let mut first = true;
            for (k, v) in [
                (&b"\"cluster_name\":"[..], &env.cluster_name),
                (b"\"container_id\":", &env.container_id),
                (b"\"pod\":", &env.pod),
            ] {
                if let Some(v) = v {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    out.extend_from_slice(k);
                    string(out, v);
                }
            }
            out.extend_from_slice(b"},");
        }
        out.extend_from_slice(
            concat!("\"xray\":{\"sdk\":\"xray-sidecar\",\"sdk_version\":\"", env!("CARGO_PKG_VERSION"), "\"}}")
                .as_bytes(),
        );
    }
}

struct EksJson<'a>(&'a Environment);

impl Serialize for EksJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let env = self.0;
        let mut m = s.serialize_map(None)?;
        for (k, v) in [("cluster_name", &env.cluster_name), ("container_id", &env.container_id), ("pod", &env.pod)] {
            if let Some(v) = v {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

struct XrayJson;

impl Serialize for XrayJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("sdk", "xray-sidecar")?;
        m.serialize_entry("sdk_version", env!("CARGO_PKG_VERSION"))?;
        m.end()
    }
}

struct Annotations<'a> {
    seg: &'a Segment,
    env: &'a Environment,
}

impl Serialize for Annotations<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Keys must match ^[a-zA-Z0-9_]+$ or X-Ray drops the whole document's annotations.
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("direction", self.seg.direction.as_str())?;
        if let Some(ns) = &self.env.namespace {
            m.serialize_entry("k8s_namespace", truncate(ns, 1000))?;
        }
        if self.seg.failure.as_ref().is_some_and(Failure::client_aborted) {
            m.serialize_entry("client_aborted", &true)?;
        }
        if let Some(g) = &self.seg.grpc {
            m.serialize_entry("grpc_service", truncate(&g.service, 1000))?;
            m.serialize_entry("grpc_method", truncate(&g.method, 1000))?;
            if let Some(code) = g.status {
                m.serialize_entry("grpc_status_code", &code)?;
                m.serialize_entry("grpc_status", grpc::status_name(code))?;
            }
        }
        m.end()
    }
}

impl Annotations<'_> {
    /// What its `Serialize` impl writes, by hand (see [`Document::write`]).
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"direction\":");
        string(out, self.seg.direction.as_str());
        if let Some(ns) = &self.env.namespace {
            out.extend_from_slice(b",\"k8s_namespace\":");
            string(out, truncate(ns, 1000));
        }
        if self.seg.failure.as_ref().is_some_and(Failure::client_aborted) {
            out.extend_from_slice(b",\"client_aborted\":true");
        }
        if let Some(g) = &self.seg.grpc {
            out.extend_from_slice(b",\"grpc_service\":");
            string(out, truncate(&g.service, 1000));
            out.extend_from_slice(b",\"grpc_method\":");
            string(out, truncate(&g.method, 1000));
            if let Some(code) = g.status {
                out.extend_from_slice(b",\"grpc_status_code\":");
                number(out, u64::from(code));
                out.extend_from_slice(b",\"grpc_status\":");
                string(out, grpc::status_name(code));
            }
        }
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_serde_json_writes_them_rounded_to_the_microsecond() {
        use rand::Rng;
        let mut rng = rand::rng();
        let edges = [0.0, 1e-7, 1e-6, 0.5, 0.999_999_4, 0.999_999_6, 1.0, 1.000_001, 10.1, 1_733_412_345.0];
        let late = [1_733_412_345.123_456, 2_147_483_647.999_999, 4_294_967_295.999_999, 4_294_967_296.0, 1e12];
        let random = (0..200_000).map(|i| {
            let t: f64 = rng.random_range(0.0..4.5e9);
            // Whole and few-digit times too, whose trailing zeros are dropped.
            if i % 3 == 0 { (t * 1e3).round() / 1e3 } else { t }
        });
        for t in edges.into_iter().chain(late).chain(random) {
            let mut ours = Vec::new();
            seconds(&mut ours, t).expect("writing into memory");
            let theirs = serde_json::to_vec(&micros(t)).expect("a float");
            assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs), "{t}");
        }
    }

    #[test]
    fn ipv4_is_written_as_display_writes_it() {
        let mut buf = [0u8; 15];
        for ip in [[0, 0, 0, 0], [255, 255, 255, 255], [10, 0, 9, 100], [192, 168, 10, 99], [1, 20, 200, 7]] {
            let ip = Ipv4Addr::from(ip);
            let len = ipv4_text(ip, &mut buf);
            assert_eq!(std::str::from_utf8(&buf[..len]), Ok(ip.to_string().as_str()));
        }
        for n in (0..=u32::MAX).step_by(65_537) {
            let ip = Ipv4Addr::from(n);
            let len = ipv4_text(ip, &mut buf);
            assert_eq!(std::str::from_utf8(&buf[..len]), Ok(ip.to_string().as_str()));
        }
    }
}
