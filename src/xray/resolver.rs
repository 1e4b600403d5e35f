//! Looking the daemon up on a task of its own: a slow or failing DNS answer never holds up the
//! sender, which picks up each new address between bursts and keeps sending to the last good one.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::watch;

use super::daemon::HostPort;
use super::delivery::DeliveryCounters;

/// How long one look-up may take before it counts as failed.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the look-ups have found so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// The first look-up has not answered yet.
    Pending,
    /// No address: the first look-up failed and none has succeeded since.
    Unknown,
    /// The latest address found.
    At(SocketAddr),
}

/// Looks `daemon` up now and every `every` until `closed` turns true, publishing each change. An
/// IP literal is known at once and never looked up.
pub fn spawn(
    daemon: HostPort,
    every: Duration,
    metrics: Arc<DeliveryCounters>,
    mut closed: watch::Receiver<bool>,
) -> watch::Receiver<Resolved> {
    if let Ok(ip) = daemon.host.parse::<IpAddr>() {
        let (tx, rx) = watch::channel(Resolved::At(SocketAddr::new(ip, daemon.port)));
        // Kept open so that the sender's receiver stays valid for the emitter's whole life.
        tokio::spawn(async move {
            let _ = closed.wait_for(|c| *c).await;
            drop(tx);
        });
        return rx;
    }
    let (tx, rx) = watch::channel(Resolved::Pending);
    tokio::spawn(async move {
        // Whether the last look-up failed: the first failure of a run is a warning (segments have
        // nowhere new to go), the rest of the run only debug lines, and the end of it is said.
        let mut failing = false;
        loop {
            let found = match tokio::time::timeout(LOOKUP_TIMEOUT, daemon.resolve()).await {
                Ok(Ok(addr)) => Ok(addr),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {LOOKUP_TIMEOUT:?}")),
            };
            if found.is_err() {
                metrics.daemon_resolve_errors.fetch_add(1, Relaxed);
            }
            failing = log(&daemon, found.as_ref().map(|_| ()).map_err(String::as_str), failing, *tx.borrow());
            tx.send_if_modified(|r| next(r, found.ok()));
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = closed.wait_for(|c| *c) => return,
            }
        }
    });
    rx
}

/// Says what a look-up found when it matters to whoever runs the proxy: the first failure of a run
/// (with what the sender does meanwhile, from `before`, what was known until then), and the first
/// success after one. Returns whether this look-up failed.
fn log(daemon: &HostPort, found: Result<(), &str>, failing: bool, before: Resolved) -> bool {
    match found {
        Ok(()) if failing => tracing::info!(daemon = %daemon, "the daemon's address resolves again"),
        Ok(()) => {}
        Err(e) if failing => tracing::debug!(daemon = %daemon, error = %e, "cannot resolve the daemon"),
        Err(e) => match before {
            Resolved::At(kept) => tracing::warn!(
                daemon = %daemon, error = %e, %kept,
                "cannot resolve the daemon; segments still go to its last address"
            ),
            Resolved::Pending | Resolved::Unknown => tracing::warn!(
                daemon = %daemon, error = %e,
                "cannot resolve the daemon; segments are counted as send errors until it resolves"
            ),
        },
    }
    found.is_err()
}

/// Moves `current` on after a look-up; true when it changed. A failure keeps the last address.
fn next(current: &mut Resolved, found: Option<SocketAddr>) -> bool {
    let new = match (found, *current) {
        (Some(addr), _) => Resolved::At(addr),
        (None, Resolved::Pending) => Resolved::Unknown,
        (None, kept) => kept,
    };
    let changed = new != *current;
    *current = new;
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_keep_the_last_good_address() {
        let a: SocketAddr = "10.0.0.1:2000".parse().expect("addr");
        let b: SocketAddr = "10.0.0.2:2000".parse().expect("addr");
        let mut r = Resolved::Pending;
        assert!(next(&mut r, None));
        assert_eq!(r, Resolved::Unknown);
        assert!(next(&mut r, Some(a)));
        assert!(!next(&mut r, None));
        assert_eq!(r, Resolved::At(a));
        assert!(!next(&mut r, Some(a)));
        assert!(next(&mut r, Some(b)));
        assert_eq!(r, Resolved::At(b));
    }

    #[tokio::test]
    async fn ip_literals_are_known_at_once() {
        let (_close, closed) = watch::channel(false);
        let hp = HostPort { host: "127.0.0.1".into(), port: 2000 };
        let rx = spawn(hp, Duration::from_secs(30), Arc::new(DeliveryCounters::default()), closed);
        assert_eq!(*rx.borrow(), Resolved::At("127.0.0.1:2000".parse().expect("addr")));
    }
}
