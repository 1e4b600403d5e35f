//! Local sampling: the X-Ray default (1 request a second, then 5 %) or a rules file in the X-Ray SDK
//! format, versions 1 and 2.
//!
//! The decision runs on every request that arrives without one, so it is lock-free: each rule's
//! per-second reservoir is a single atomic word ([`PerSecond`]).

use serde::Deserialize;
use std::path::Path;

use super::reservoir::PerSecond;

/// Why a rules file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file named on the command line.
        path: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the expected JSON.
    #[error("not a sampling rules document: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON is well formed but breaks a rule of the format.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct RulesFile {
    version: u32,
    default: RawRule,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
struct RawRule {
    description: Option<String>,
    host: Option<String>,
    service_name: Option<String>,
    http_method: Option<String>,
    url_path: Option<String>,
    fixed_target: Option<u64>,
    rate: Option<f64>,
}

/// A set of local rules, first match wins, with the default behind them.
#[derive(Debug)]
pub struct Sampler {
    rules: Vec<Rule>,
    default: Target,
}

#[derive(Debug)]
struct Rule {
    description: String,
    host: String,
    method: String,
    path: String,
    target: Target,
}

/// How many requests a second are always taken, and the share of the rest.
#[derive(Debug)]
struct Target {
    fixed_target: u64,
    rate: f64,
    reservoir: PerSecond,
}

impl Target {
    fn new(fixed_target: u64, rate: f64) -> Self {
        Target { fixed_target, rate, reservoir: PerSecond::default() }
    }

    fn sample(&self, now_secs: u64) -> bool {
        self.reservoir.take(now_secs, self.fixed_target) || (self.rate > 0.0 && rand::random::<f64>() < self.rate)
    }
}

impl Default for Sampler {
    /// The X-Ray default: one request each second, then 5 % of the rest.
    fn default() -> Self {
        Sampler { rules: Vec::new(), default: Target::new(1, 0.05) }
    }
}

impl Sampler {
    /// Reads and validates a rules file.
    pub fn from_file(path: &Path) -> Result<Self, RulesError> {
        let text =
            std::fs::read(path).map_err(|source| RulesError::Read { path: path.display().to_string(), source })?;
        Self::from_json(&text)
    }

    /// Parses and validates a rules document.
    pub fn from_json(json: &[u8]) -> Result<Self, RulesError> {
        let file: RulesFile = serde_json::from_slice(json)?;
        let host_key = match file.version {
            1 => "service_name",
            2 => "host",
            v => {
                return Err(RulesError::Invalid(format!("unsupported version {v} (expected 1 or 2)")));
            }
        };
        let d = &file.default;
        if d.host.is_some() || d.service_name.is_some() || d.http_method.is_some() || d.url_path.is_some() {
            return Err(RulesError::Invalid("the default rule takes only fixed_target and rate".into()));
        }
        let default = target(d, "default")?;
        let mut rules = Vec::with_capacity(file.rules.len());
        for (i, r) in file.rules.iter().enumerate() {
            let name = r.description.clone().unwrap_or_else(|| format!("rule {}", i + 1));
            let (host, wrong) = if file.version == 1 {
                (&r.service_name, r.host.is_some().then_some("host"))
            } else {
                (&r.host, r.service_name.is_some().then_some("service_name"))
            };
            if let Some(wrong) = wrong {
                return Err(RulesError::Invalid(format!(
                    "{name}: version {} rules use {host_key}, not {wrong}",
                    file.version
                )));
            }
            let field = |v: &Option<String>, key: &str| {
                v.as_deref()
                    .map(str::to_ascii_lowercase)
                    .ok_or_else(|| RulesError::Invalid(format!("{name}: missing {key}")))
            };
            rules.push(Rule {
                host: field(host, host_key)?,
                method: field(&r.http_method, "http_method")?,
                path: field(&r.url_path, "url_path")?,
                target: target(r, &name)?,
                description: name,
            });
        }
        Ok(Sampler { rules, default })
    }

    /// Decides for a request that arrived without a decision.
    pub fn sample(&self, host: &str, method: &str, path: &str, now_secs: u64) -> bool {
        self.matching(host, method, path).sample(now_secs)
    }

    /// The description of the rule that would decide for this request (`None` for the default).
    pub fn rule_for(&self, host: &str, method: &str, path: &str) -> Option<&str> {
        self.rules.iter().find(|r| r.matches(host, method, path)).map(|r| r.description.as_str())
    }

    fn matching(&self, host: &str, method: &str, path: &str) -> &Target {
        self.rules.iter().find(|r| r.matches(host, method, path)).map_or(&self.default, |r| &r.target)
    }
}

impl Rule {
    fn matches(&self, host: &str, method: &str, path: &str) -> bool {
        host_wildcard(&self.host, host) && wildcard(&self.method, method) && wildcard(&self.path, path)
    }
}

fn target(r: &RawRule, name: &str) -> Result<Target, RulesError> {
    let fixed = r.fixed_target.ok_or_else(|| RulesError::Invalid(format!("{name}: missing fixed_target")))?;
    let rate = r.rate.ok_or_else(|| RulesError::Invalid(format!("{name}: missing rate")))?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(RulesError::Invalid(format!("{name}: rate {rate} is not between 0 and 1")));
    }
    Ok(Target::new(fixed, rate))
}

/// [`wildcard`] for a host, which rules name without a port as often as with one: either matches.
pub fn host_wildcard(pattern: &str, host: &str) -> bool {
    let bare = host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()));
    wildcard(pattern, host) || bare.is_some_and(|(h, _)| wildcard(pattern, h))
}

/// Case-insensitive match with `*` (any run) and `?` (one character); `pattern` is lower case.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    if p == b"*" {
        return true;
    }
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti].to_ascii_lowercase()) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
#[path = "sampling_tests.rs"]
mod tests;
