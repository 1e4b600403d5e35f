//! Where and how spans are exported: `--exporter`, `--otlp-endpoint` and the standard `OTEL_*`
//! variables, resolved once at start-up into [`OtlpSettings`]. Pure: the environment is passed in.

use http::{HeaderName, HeaderValue, Uri};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use std::str::FromStr;
use std::time::Duration;

use super::span::string;
use crate::xray::segment::Environment;

/// Where the collector listens when nothing says otherwise (OpenTelemetry's default for HTTP).
const DEFAULT_ENDPOINT: &str = "http://localhost:4318/v1/traces";
/// Bounds of `OTEL_BSP_SCHEDULE_DELAY`: the exporter wakes this often when idle, so 0 or a few
/// milliseconds would keep it spinning; a day is far beyond any sensible delay.
const DELAY_BOUNDS: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(86_400));
/// Bounds of `OTEL_BSP_EXPORT_TIMEOUT`: the deadline is computed from it, and an absurd value would
/// overflow the clock's arithmetic.
const TIMEOUT_BOUNDS: (Duration, Duration) = (Duration::from_millis(1), Duration::from_secs(3600));

/// The exporters a sampled request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exporters {
    /// Segment documents over UDP to the X-Ray daemon (or CloudWatch agent).
    pub xray: bool,
    /// OTLP/HTTP protobuf spans.
    pub otlp: bool,
}

impl FromStr for Exporters {
    type Err = String;

    /// Parses a comma-separated list of `xray` and `otlp`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut e = Exporters { xray: false, otlp: false };
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name.to_ascii_lowercase().as_str() {
                "xray" => e.xray = true,
                "otlp" => e.otlp = true,
                other => return Err(format!("unknown exporter `{other}` (use xray, otlp or both)")),
            }
        }
        if !e.xray && !e.otlp {
            return Err("name at least one exporter: xray, otlp".into());
        }
        Ok(e)
    }
}

/// Batching, as OpenTelemetry's batch span processor does it (`OTEL_BSP_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batching {
    /// Spans queued before new ones are dropped.
    pub max_queue: usize,
    /// Spans per export request.
    pub max_batch: usize,
    /// Longest a span waits for its batch to fill.
    pub delay: Duration,
    /// Longest one export, retries included, may take.
    pub timeout: Duration,
}

/// Everything the OTLP exporter needs.
#[derive(Clone, Debug)]
pub struct OtlpSettings {
    /// `http://host:port/v1/traces`.
    pub endpoint: Uri,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`), e.g. for authentication.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Resource attributes sent with every batch.
    pub resource: Vec<KeyValue>,
    /// Batching and its bounds.
    pub batching: Batching,
    /// How request bodies are compressed.
    pub compression: Compression,
}

/// `OTEL_EXPORTER_OTLP_COMPRESSION`: what the OpenTelemetry specification allows for OTLP/HTTP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Bodies sent as they are (the specification's default).
    #[default]
    None,
    /// Bodies gzip-compressed, with `Content-Encoding: gzip`.
    Gzip,
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            other => Err(format!("unknown compression `{other}` (use gzip or none)")),
        }
    }
}

/// Resolves the exporters: `--exporter` when given, else X-Ray plus OTLP when an endpoint is set.
pub fn resolve(
    exporters: Option<Exporters>,
    endpoint_flag: Option<&str>,
    service_name: &str,
    env_facts: &Environment,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(bool, Option<OtlpSettings>), String> {
    let traces_env = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").filter(|v| !v.is_empty());
    let base_env = env("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|v| !v.is_empty());
    let configured = endpoint_flag.is_some() || traces_env.is_some() || base_env.is_some();
    let chosen = exporters.unwrap_or(Exporters { xray: true, otlp: configured });
    if !chosen.otlp {
        return Ok((chosen.xray, None));
    }
    let (endpoint, source) = match (endpoint_flag, traces_env, base_env) {
        (Some(f), _, _) => (with_traces_path(f), "--otlp-endpoint"),
        (None, Some(t), _) => (t, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        (None, None, Some(b)) => (format!("{}/v1/traces", b.trim_end_matches('/')), "OTEL_EXPORTER_OTLP_ENDPOINT"),
        (None, None, None) => (DEFAULT_ENDPOINT.to_owned(), "default"),
    };
    let endpoint = parse_endpoint(&endpoint).map_err(|e| format!("{source} `{endpoint}`: {e}"))?;
    if let Some(protocol) = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL")) {
        check_protocol(&protocol)?;
    }
    let headers = match env("OTEL_EXPORTER_OTLP_TRACES_HEADERS").or_else(|| env("OTEL_EXPORTER_OTLP_HEADERS")) {
        Some(h) => parse_headers(&h).map_err(|e| format!("OTEL_EXPORTER_OTLP_HEADERS: {e}"))?,
        None => Vec::new(),
    };
    let resource = resource(service_name, env_facts, env("OTEL_SERVICE_NAME"), env("OTEL_RESOURCE_ATTRIBUTES"));
    let num = |name: &str, default: u64| -> Result<u64, String> {
        env(name).map_or(Ok(default), |v| v.trim().parse().map_err(|_| format!("{name} `{v}` is not a number")))
    };
    let max_queue = num("OTEL_BSP_MAX_QUEUE_SIZE", 2048)?.max(1) as usize;
    let batching = Batching {
        max_queue,
        max_batch: (num("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?.max(1) as usize).min(max_queue),
        delay: Duration::from_millis(num("OTEL_BSP_SCHEDULE_DELAY", 5000)?).clamp(DELAY_BOUNDS.0, DELAY_BOUNDS.1),
        timeout: Duration::from_millis(num("OTEL_BSP_EXPORT_TIMEOUT", 30_000)?)
            .clamp(TIMEOUT_BOUNDS.0, TIMEOUT_BOUNDS.1),
    };
    let compression =
        match env("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION").or_else(|| env("OTEL_EXPORTER_OTLP_COMPRESSION")) {
            Some(c) => c.parse().map_err(|e| format!("OTEL_EXPORTER_OTLP_COMPRESSION: {e}"))?,
            None => Compression::None,
        };
    Ok((chosen.xray, Some(OtlpSettings { endpoint, headers, resource, batching, compression })))
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL`: the exporter speaks OTLP/HTTP protobuf only. A `grpc` setting,
/// common for collectors on port 4317, would have every export fail unseen; it is refused at
/// start-up instead, with what to set.
fn check_protocol(protocol: &str) -> Result<(), String> {
    match protocol.trim() {
        "" | "http/protobuf" => Ok(()),
        other => Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL `{other}` is not supported: the sidecar exports OTLP/HTTP protobuf \
             (`http/protobuf`, the collector's port 4318)"
        )),
    }
}

/// A bare `http://host:port` gets the traces path; anything with a path is used as it is.
fn with_traces_path(url: &str) -> String {
    match url.parse::<Uri>() {
        Ok(u) if matches!(u.path(), "" | "/") => format!("{}/v1/traces", url.trim_end_matches('/')),
        _ => url.to_owned(),
    }
}

fn parse_endpoint(url: &str) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err("https is not supported: send to a local collector or agent over http".into()),
        _ => return Err("expected http://host:port/v1/traces".into()),
    }
    if uri.host().is_none() {
        return Err("no host".into());
    }
    Ok(uri)
}

/// `key=value,key2=value2` with percent-encoded values, as the OpenTelemetry specification says.
fn parse_headers(s: &str) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    pairs(s)?
        .into_iter()
        .map(|(k, v)| {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("`{k}` is not a header name"))?;
            let value = HeaderValue::from_str(&v).map_err(|_| format!("the value of `{k}` is not a header value"))?;
            Ok((name, value))
        })
        .collect()
}

fn pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').ok_or_else(|| format!("`{p}` is not key=value"))?;
            Ok((k.trim().to_owned(), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The resource: `OTEL_RESOURCE_ATTRIBUTES`, then what the proxy knows of where it runs, then
/// `service.name` (`OTEL_SERVICE_NAME`, else the attribute, else `--service-name`) and `telemetry.sdk.*`.
fn resource(
    service_name: &str,
    facts: &Environment,
    otel_name: Option<String>,
    attrs: Option<String>,
) -> Vec<KeyValue> {
    let mut kv: Vec<(String, String)> = attrs.as_deref().and_then(|a| pairs(a).ok()).unwrap_or_default();
    let mut set = |k: &str, v: &str| {
        kv.retain(|(key, _)| key != k);
        kv.push((k.to_owned(), v.to_owned()));
    };
    let name = otel_name
        .filter(|n| !n.is_empty())
        .or_else(|| {
            attrs.as_deref().and_then(|a| pairs(a).ok())?.into_iter().find(|(k, _)| k == "service.name").map(|(_, v)| v)
        })
        .unwrap_or_else(|| service_name.to_owned());
    set("service.name", &name);
    set("telemetry.sdk.name", "xray-sidecar");
    set("telemetry.sdk.language", "rust");
    set("telemetry.sdk.version", env!("CARGO_PKG_VERSION"));
    set("cloud.provider", "aws");
    if facts.origin.is_some() {
        set("cloud.platform", "aws_eks");
    }
    if let Some(c) = &facts.cluster_name {
        set("k8s.cluster.name", c);
    }
    if let Some(p) = &facts.pod {
        set("k8s.pod.name", p);
    }
    if let Some(n) = &facts.namespace {
        set("k8s.namespace.name", n);
    }
    kv.iter().map(|(k, v)| string(k, v)).collect()
}

#[cfg(test)]
#[path = "settings_tests.rs"]
mod tests;
