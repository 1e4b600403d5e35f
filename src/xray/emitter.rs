//! The emitter: a bounded queue in front of one task that writes segment documents to the daemon.
//!
//! Requests push a finished [`Segment`] under an uncontended lock and move on; a full queue drops
//! and counts. The sender wakes when the queue stops being empty, lets a few milliseconds of
//! segments gather, and sends them in one burst: one task wake-up per burst instead of one per
//! request, and the daemon, woken by the first datagram, reads the rest without sleeping again.
//! JSON is produced there, into one reused buffer, so the request path never formats, and the
//! burst leaves in a few system calls ([`super::udp_batch`]).

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, watch};
use xray_lifecycle::Flush;

use super::daemon::HostPort;
use super::delivery::DeliveryCounters;
use super::document::Document;
use super::resolver::{self, Resolved};
use super::segment::{Environment, Finished, Kind, Segment};
use super::udp_batch::{Datagrams, Sent, UdpBatch};

/// The daemon header that starts every datagram.
pub const DATAGRAM_HEADER: &[u8] = b"{\"format\": \"json\", \"version\": 1}\n";

/// The daemon reads 64 KiB at most; the SDKs keep a margin under it, and so do we.
pub const MAX_DATAGRAM: usize = 63 * 1024;

/// How often a daemon host name is looked up again.
const RESOLVE_EVERY: Duration = Duration::from_secs(30);

/// Queued segments before new ones are dropped. A queued segment keeps the few header bytes it
/// shares with its request's read buffer alive, so the bound is on memory as much as on count;
/// it holds several bursts, and a full queue means the daemon link cannot keep up anyway.
pub const QUEUE_CAPACITY: usize = 2048;

/// How long the first segment of a burst waits for others to join it.
const GATHER: Duration = Duration::from_millis(5);

/// Segments that wake the sender at once, without waiting for the gathering time.
const BURST: usize = 256;

/// The request path's handle: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct Emitter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Vec<Finished>>,
    wake: Notify,
    metrics: Arc<DeliveryCounters>,
}

impl Emitter {
    /// Starts the sender task.
    pub fn spawn(daemon: HostPort, env: Environment, metrics: Arc<DeliveryCounters>) -> (Emitter, Flush) {
        let (close, closed) = watch::channel(false);
        let resolved = resolver::spawn(daemon, RESOLVE_EVERY, metrics.clone(), closed.clone());
        Emitter::spawn_resolved(resolved, env, metrics, close, closed)
    }

    /// Starts the sender task, sending wherever `resolved` says the daemon is.
    fn spawn_resolved(
        resolved: watch::Receiver<Resolved>,
        env: Environment,
        metrics: Arc<DeliveryCounters>,
        close: watch::Sender<bool>,
        closed: watch::Receiver<bool>,
    ) -> (Emitter, Flush) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::with_capacity(BURST)),
            wake: Notify::new(),
            metrics: metrics.clone(),
        });
        let udp = UdpBatch::new(metrics);
        let sender = Sender { env, shared: shared.clone(), out: Datagrams::default(), udp, unaddressable: None };
        let task = tokio::spawn(sender.run(closed, resolved));
        (Emitter { shared }, Flush::new(close, task, "segments still queued at shutdown were dropped"))
    }

    /// Queues a segment; drops and counts it when the queue is full.
    pub fn emit(&self, segment: Finished) {
        let len = {
            let Ok(mut q) = self.shared.queue.lock() else { return };
            if q.len() >= QUEUE_CAPACITY {
                drop(q);
                self.shared.metrics.segments_dropped.fetch_add(1, Relaxed);
                return;
            }
            q.push(segment);
            q.len()
        };
        if len == 1 || len == BURST {
            self.shared.wake.notify_one();
        }
    }
}

struct Sender {
    env: Environment,
    shared: Arc<Shared>,
    /// The burst being encoded.
    out: Datagrams,
    /// How the burst goes out.
    udp: UdpBatch,
    /// The daemon address the last attempt could not address (a blackhole route, say): told once,
    /// not on every burst.
    unaddressable: Option<SocketAddr>,
}

/// The resolved daemon and a socket connected to it (a connected socket skips the route look-up
/// on every send).
struct Target {
    addr: SocketAddr,
    socket: UdpSocket,
}

impl Sender {
    async fn run(mut self, mut closed: watch::Receiver<bool>, mut resolved: watch::Receiver<Resolved>) {
        let mut target = None;
        let mut batch = Vec::with_capacity(BURST);
        loop {
            let closing = tokio::select! {
                _ = self.shared.wake.notified() => false,
                _ = closed.changed() => true,
            };
            if !closing && self.queued() < BURST {
                // Let the burst gather, unless shutdown comes first.
                tokio::select! {
                    _ = tokio::time::sleep(GATHER) => {}
                    _ = closed.changed() => {}
                }
            }
            // Until the first look-up answers, segments stay queued (the queue is bounded) rather
            // than be dropped for want of an address.
            while *resolved.borrow() == Resolved::Pending && !*closed.borrow() {
                tokio::select! {
                    r = resolved.changed() => if r.is_err() { break },
                    r = closed.changed() => if r.is_err() { break },
                }
            }
            // A new address is picked up between bursts; binding a socket to it does not wait.
            if resolved.has_changed().unwrap_or(false) || target.is_none() {
                let now = *resolved.borrow_and_update();
                if let Resolved::At(addr) = now {
                    target = self.connect(addr, target).await;
                }
            }
            // Keep sending until the queue is empty: more may arrive while a burst goes out.
            loop {
                if let Ok(mut q) = self.shared.queue.lock() {
                    std::mem::swap(&mut *q, &mut batch);
                }
                if batch.is_empty() {
                    break;
                }
                self.send_all(&mut batch, &target).await;
            }
            if closing || *closed.borrow() {
                break;
            }
        }
    }

    fn queued(&self) -> usize {
        self.shared.queue.lock().map(|q| q.len()).unwrap_or(0)
    }

    /// A socket connected to `addr`, reusing `previous` when it already is.
    async fn connect(&mut self, addr: SocketAddr, previous: Option<Target>) -> Option<Target> {
        if let Some(t) = previous.filter(|t| t.addr == addr) {
            return Some(t);
        }
        let bind: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let socket = match UdpSocket::bind(bind).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a UDP socket for segments");
                return None;
            }
        };
        if let Err(e) = socket.connect(addr).await {
            // Tried again on every burst: a flood of identical warnings would help nobody.
            if self.unaddressable.replace(addr) == Some(addr) {
                tracing::debug!(daemon = %addr, error = %e, "cannot address the daemon");
            } else {
                tracing::warn!(daemon = %addr, error = %e, "cannot address the daemon; segments are counted as send errors until it can be");
            }
            return None;
        }
        self.unaddressable = None;
        tracing::debug!(daemon = %addr, "sending segments");
        Some(Target { addr, socket })
    }

    /// Encodes the batch and sends it, a burst at a time.
    async fn send_all(&mut self, batch: &mut Vec<Finished>, target: &Option<Target>) {
        while !batch.is_empty() {
            let n = batch.len().min(BURST);
            for segment in batch.drain(..n) {
                self.encode(&segment);
            }
            let sent = match target {
                Some(t) => self.udp.send(&t.socket, &self.out).await,
                None => Sent { sent: 0, failed: self.out.len() },
            };
            self.out.clear();
            let m = &self.shared.metrics;
            m.segments_emitted.fetch_add(sent.sent as u64, Relaxed);
            m.daemon_send_errors.fetch_add(sent.failed as u64, Relaxed);
        }
    }

    /// Appends the segment's datagram to the burst, or, when it is too large for one, its
    /// subsegments as their own documents and then itself without them, as the SDKs do.
    fn encode(&mut self, segment: &Segment) {
        let doc = Document { segment, env: &self.env };
        let fits = self.out.push(MAX_DATAGRAM, |buf| {
            buf.extend_from_slice(DATAGRAM_HEADER);
            doc.write(buf)
        });
        match fits {
            Ok(true) => {}
            Ok(false) if segment.subsegments.is_empty() => {
                self.shared.metrics.segments_too_large.fetch_add(1, Relaxed);
                tracing::debug!(trace_id = %segment.trace_id, "segment too large for a datagram");
            }
            Ok(false) => {
                self.shared.metrics.segments_split.fetch_add(1, Relaxed);
                for sub in &segment.subsegments {
                    let mut sub = sub.clone();
                    sub.kind = Kind::IndependentSubsegment;
                    sub.trace_id = segment.trace_id;
                    sub.parent_id = Some(segment.id);
                    self.encode(&sub);
                }
                let mut alone = segment.clone();
                alone.subsegments.clear();
                self.encode(&alone);
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode a segment"),
        }
    }
}

#[cfg(test)]
#[path = "emitter_tests.rs"]
mod tests;
