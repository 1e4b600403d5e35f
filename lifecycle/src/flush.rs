//! Ending a background sender at shutdown: tell it to close, give it a bounded time to send what it
//! still holds, then stop it. The UDP segment emitter and the OTLP exporter both end this way.

use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Ends a background task after what it holds has been sent; dropping it tells the task to close
/// too, without waiting.
#[derive(Debug)]
pub struct Flush {
    close: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// The warning logged when the task has not ended within the grace period.
    dropped: &'static str,
}

impl Flush {
    /// The flush of `task`, which sends what it holds and ends once the receiver of `close` turns
    /// true (or `close` is dropped); `dropped` says what is lost when it does not in time.
    pub fn new(close: watch::Sender<bool>, task: JoinHandle<()>, dropped: &'static str) -> Flush {
        Flush { close, task, dropped }
    }

    /// Tells the task to send what it holds and end; stops it after `grace`.
    pub async fn flush(mut self, grace: Duration) {
        let _ = self.close.send(true);
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            self.task.abort();
            tracing::warn!(?grace, "{}", self.dropped);
        }
    }
}
