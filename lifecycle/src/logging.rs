//! The log set-up every binary of the project uses: `tracing` to stderr, filtered by `RUST_LOG`
//! (default `info`), as compact lines (coloured only on a terminal) or as one JSON object per line
//! for log shippers (Fluent Bit, the CloudWatch agent) to parse rather than guess at; and the
//! throttle for what happens in floods.

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;
use std::time::Duration;
use tokio::time::Instant;
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

/// For what can happen in floods (connections refused at the limit, datagrams a dead daemon
/// refuses): counts each, and says when to tell of them again, at once the first time and then at
/// most once per interval, with how many came since. A warning per event would bury the log.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    since: u64,
}

impl Throttle {
    /// Tells at most once per `every`.
    pub const fn new(every: Duration) -> Throttle {
        Throttle { every, last: None, since: 0 }
    }

    /// Counts `n` more; when it is time to tell, how many since the last time (these included).
    pub fn count(&mut self, n: u64) -> Option<u64> {
        self.since += n;
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < self.every) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_throttle_tells_at_once_then_once_per_interval_with_the_count() {
        let mut t = Throttle::new(Duration::from_secs(10));
        assert_eq!(t.count(1), Some(1));
        assert_eq!((t.count(3), t.count(1)), (None, None));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(t.count(2), Some(6));
        assert_eq!(t.count(1), None);
    }

    #[test]
    fn formats_read_back_as_written() {
        for f in [Format::Plain, Format::Json] {
            assert_eq!(f.to_string().parse::<Format>(), Ok(f));
        }
        assert!("JSON ".parse::<Format>().is_err());
    }
}
