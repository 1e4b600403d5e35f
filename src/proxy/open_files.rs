//! The process's open-file limit, raised to what the connection limit needs.
//!
//! Every connection the proxy serves holds a descriptor, and most hold an upstream one as well.
//! Container runtimes often start processes with a soft limit of 1,024 and a far higher hard one
//! (containerd 2 leaves systemd's default, 1024:524288), and Kubernetes has no field to change it:
//! with the default `--max-connections` and their upstreams the proxy would run out at about 500
//! connections, `accept` would fail with EMFILE, and new clients would wait in the backlog while the
//! limit said there was room. So at start the soft limit is raised to the hard one, as Go's runtime
//! does for every Go program; a hard limit too low for the connection limit is a warning.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Descriptors beyond two per connection: listeners, the daemon's socket, the sampling API's and
/// the collector's connections, parked upstream connections, the runtime's own.
const SPARE: u64 = 256;

/// The descriptors `max_connections` connections may need.
pub fn needed(max_connections: usize) -> u64 {
    (max_connections as u64).saturating_mul(2).saturating_add(SPARE)
}

/// Raises the soft open-file limit to the hard one (or, when the kernel refuses that, to what
/// `max_connections` needs), and says so when what it could get is short of that need. Returns the
/// soft limit now in force.
pub fn raise(max_connections: usize) -> Option<u64> {
    let needed = needed(max_connections);
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            return None;
        }
    };
    let mut now = soft;
    // The hard limit may be "unlimited", which the kernel refuses as a soft limit for files
    // (nr_open bounds it): then what the connections need is asked for instead.
    for want in [hard, needed.min(hard)] {
        if now >= want {
            break;
        }
        match setrlimit(Resource::RLIMIT_NOFILE, want, hard) {
            Ok(()) => now = want,
            Err(e) => tracing::debug!(error = %e, want, "cannot raise the open-file limit this far"),
        }
    }
    if now < needed {
        tracing::warn!(
            open_files = now,
            hard_limit = hard,
            max_connections,
            needed,
            "the open-file limit is below what --max-connections needs (two per connection): \
             connections beyond about half of it wait unserved until others close"
        );
    } else if now > soft {
        tracing::debug!(from = soft, to = now, "open-file limit raised");
    }
    Some(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_connection_limit_needs_more_than_the_usual_soft_limit() {
        let default = crate::contract::max_connections_for_memory(crate::contract::DEFAULT_PROXY_MEMORY_LIMIT_MIB);
        assert!(needed(default as usize) > 1024);
    }
}
