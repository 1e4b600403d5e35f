//! The log set-up every binary of the project uses: `tracing` to stderr, filtered by `RUST_LOG`
//! (default `info`), as compact lines (coloured only on a terminal) or as one JSON object per line
//! for log shippers (Fluent Bit, the CloudWatch agent) to parse rather than guess at.

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// `2026-12-05T13:00:00Z  WARN target: message key=value`.
    #[default]
    Plain,
    /// `{"timestamp":"...","level":"WARN","message":"...","key":"value","target":"..."}`.
    Json,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "plain" => Ok(Format::Plain),
            "json" => Ok(Format::Json),
            other => Err(format!("{other:?} is no log format (plain or json)")),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Plain => "plain",
            Format::Json => "json",
        })
    }
}

/// Installs the process-wide subscriber; call once, first thing in `main`.
pub fn init(format: Format) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr);
    match format {
        Format::Plain => logs.with_ansi(std::io::stderr().is_terminal()).compact().init(),
        Format::Json => logs.json().flatten_event(true).with_current_span(false).with_span_list(false).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_read_back_as_written() {
        for f in [Format::Plain, Format::Json] {
            assert_eq!(f.to_string().parse::<Format>(), Ok(f));
        }
        assert!("JSON ".parse::<Format>().is_err());
    }
}
