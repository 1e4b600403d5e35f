//! Strict checks for the pod annotation values the injector turns into the sidecar's or the init
//! container's arguments and environment: each returns the exact value written, or why not.
//!
//! Annotations are written by whoever may create a pod, so a value must never become a second
//! flag, an extra environment variable, a `$(VAR)` expansion or thousands of iptables rules; and a
//! value the init container would refuse must be refused here, where the pod can still be admitted.

use std::str::FromStr;
use xray_sidecar::init::Cidr;
use xray_sidecar::xray::segment::{MAX_NAME_CHARS, is_name_char};

/// The most items a port or CIDR list may hold (each becomes iptables rules).
pub const MAX_LIST_ITEMS: usize = 64;

/// The longest ConfigMap name Kubernetes accepts (a DNS subdomain).
const MAX_CONFIG_MAP_NAME: usize = 253;

/// Why an annotation value is refused. Values are quoted escaped and cut short, so that the warning
/// the pod's owner sees stays one short line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    /// A list item that is not a port.
    #[error("`{0}` is not a port (1-65535)")]
    NotAPort(String),
    /// A list item that is not a CIDR.
    #[error("`{0}` is not a CIDR (address/prefix)")]
    NotACidr(String),
    /// A service name longer than X-Ray takes.
    #[error("longer than {MAX_NAME_CHARS} characters")]
    NameTooLong,
    /// A character X-Ray does not take in a name.
    #[error("{0:?} is not allowed in an X-Ray name")]
    NameChar(char),
    /// A value that would read as a command-line flag.
    #[error("`{0}` looks like a flag")]
    LooksLikeAFlag(String),
    /// Not a DNS subdomain.
    #[error("`{0}` is not a ConfigMap name")]
    NotAConfigMapName(String),
    /// Neither `true` nor `false`.
    #[error("`{0}` is not \"true\" or \"false\"")]
    NotABoolean(String),
    /// Not a whole number of seconds in range, written `75s`.
    #[error("`{0}` is not a number of seconds from 1s to {MAX_SECONDS}s")]
    NotSeconds(String),
    /// A control character or whitespace other than a plain space in a list.
    #[error("{0:?} is not allowed in a list")]
    ListChar(char),
    /// More items than [`MAX_LIST_ITEMS`].
    #[error("{0} items, at most {MAX_LIST_ITEMS}")]
    TooManyItems(usize),
    /// Not a Kubernetes quantity the resource takes.
    #[error("`{0}` is not {1}")]
    NotAQuantity(String, &'static str),
    /// A request above its limit, which the API server would refuse with the whole pod.
    #[error("the request {request} is above the limit {limit}")]
    RequestAboveLimit {
        /// The request, as written.
        request: String,
        /// The limit, as written.
        limit: String,
    },
}

/// A comma-separated list of ports, each 1-65535 in decimal digits; plain spaces around the commas
/// are dropped. Returns the list as the init container reads it (`80,443`).
pub fn ports(v: &str) -> Result<String, InvalidValue> {
    let items = list(v)?;
    for p in &items {
        let digits = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits || !matches!(p.parse::<u16>(), Ok(n) if n > 0) {
            return Err(InvalidValue::NotAPort(shown(p)));
        }
    }
    Ok(items.join(","))
}

/// A comma-separated list of CIDRs, read by the init container's own parser.
pub fn cidrs(v: &str) -> Result<String, InvalidValue> {
    let items = list(v)?;
    for c in &items {
        Cidr::from_str(c).map_err(|_| InvalidValue::NotACidr(shown(c)))?;
    }
    Ok(items.join(","))
}

/// An X-Ray service name: at most 200 of the characters X-Ray accepts (letters, digits, spaces,
/// `_ . : / % & # = + - @`), not starting with `-`. No `$`, so nothing for the API server to expand.
pub fn service_name(v: &str) -> Result<String, InvalidValue> {
    if v.chars().count() > MAX_NAME_CHARS {
        return Err(InvalidValue::NameTooLong);
    }
    if let Some(c) = v.chars().find(|c| !is_name_char(*c)) {
        return Err(InvalidValue::NameChar(c));
    }
    if v.starts_with('-') {
        return Err(InvalidValue::LooksLikeAFlag(shown(v)));
    }
    Ok(v.to_owned())
}

/// A ConfigMap name: a DNS subdomain (lowercase letters, digits, `-`, `.`; alphanumeric at both ends).
pub fn config_map_name(v: &str) -> Result<String, InvalidValue> {
    let alnum = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok = v.len() <= MAX_CONFIG_MAP_NAME
        && alnum(v.as_bytes().first())
        && alnum(v.as_bytes().last())
        && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok { Ok(v.to_owned()) } else { Err(InvalidValue::NotAConfigMapName(shown(v))) }
}

/// The longest duration an annotation may set: a day.
pub const MAX_SECONDS: u32 = 86_400;

/// A whole number of seconds, 1 to [`MAX_SECONDS`], written `75s`; returned as the sidecar reads
/// it.
pub fn seconds(v: &str) -> Result<String, InvalidValue> {
    let n = v.strip_suffix('s').filter(|n| (1..=5).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()));
    match n.and_then(|n| n.parse::<u32>().ok()).filter(|n| (1..=MAX_SECONDS).contains(n)) {
        Some(n) => Ok(format!("{n}s")),
        None => Err(InvalidValue::NotSeconds(shown(v))),
    }
}

/// The least memory limit the proxy may be given: its own start-up use and a few connections.
pub const MIN_MEMORY_LIMIT_MIB: u64 = 32;

/// A memory limit of at least [`MIN_MEMORY_LIMIT_MIB`] MiB (`256Mi`, `1Gi`, `300M`).
pub fn memory_limit(v: &str) -> Result<String, InvalidValue> {
    memory_of_at_least(v, MIN_MEMORY_LIMIT_MIB, "a memory quantity of at least 32Mi")
}

/// A memory request of at least 1 MiB (a request may be low: the scheduler reserves it, the proxy
/// is not held to it).
pub fn memory_request(v: &str) -> Result<String, InvalidValue> {
    memory_of_at_least(v, 1, "a memory quantity of at least 1Mi")
}

fn memory_of_at_least(v: &str, mib: u64, what: &'static str) -> Result<String, InvalidValue> {
    match crate::quantity::mebibytes(v) {
        Some(have) if have >= mib && plain_quantity(v) => Ok(v.to_owned()),
        _ => Err(InvalidValue::NotAQuantity(shown(v), what)),
    }
}

/// A CPU quantity above zero (`500m`, `2`).
pub fn cpu(v: &str) -> Result<String, InvalidValue> {
    match crate::quantity::value(v) {
        Some(cores) if cores >= 0.001 && plain_quantity(v) => Ok(v.to_owned()),
        _ => Err(InvalidValue::NotAQuantity(shown(v), "a CPU quantity of at least 1m")),
    }
}

/// Short, and digits, a point and a suffix's letters only: what reaches the pod spec is what was
/// checked.
fn plain_quantity(v: &str) -> bool {
    v.len() <= 20 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'+' || b == b'-')
}

/// `"true"` or `"false"` (any case).
pub fn boolean(v: &str) -> Result<bool, InvalidValue> {
    match v {
        _ if v.eq_ignore_ascii_case("true") => Ok(true),
        _ if v.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(InvalidValue::NotABoolean(shown(v))),
    }
}

/// Escapes `$` for an environment value: the kubelet expands `$(VAR)` and turns `$$` into `$`.
pub fn env_literal(v: &str) -> String {
    v.replace('$', "$$")
}

/// Splits a list on commas, refusing control characters and any whitespace but plain spaces (which
/// are trimmed around items), and more than [`MAX_LIST_ITEMS`] items.
fn list(v: &str) -> Result<Vec<&str>, InvalidValue> {
    if let Some(c) = v.chars().find(|c| c.is_control() || (c.is_whitespace() && *c != ' ')) {
        return Err(InvalidValue::ListChar(c));
    }
    let items: Vec<&str> = v.split(',').map(|i| i.trim_matches(' ')).collect();
    if items.len() > MAX_LIST_ITEMS {
        return Err(InvalidValue::TooManyItems(items.len()));
    }
    Ok(items)
}

/// A value as quoted in a warning: escaped and cut short, so a warning stays one short line.
fn shown(v: &str) -> String {
    const MAX: usize = 40;
    let escaped: String = v.chars().take(MAX).flat_map(char::escape_debug).collect();
    if v.chars().count() > MAX { format!("{escaped}...") } else { escaped }
}
