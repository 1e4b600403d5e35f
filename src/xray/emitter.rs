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

use super::daemon::HostPort;
use super::resolver::{self, Resolved};
use super::segment::{Document, Environment, Kind, Segment};
use super::udp_batch::{Datagrams, Sent, UdpBatch};
use crate::metrics::Metrics;

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
    queue: Mutex<Vec<Segment>>,
    wake: Notify,
    metrics: Arc<Metrics>,
}

/// Ends the emitter task after what is queued has been sent.
#[derive(Debug)]
pub struct Flush {
    close: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Emitter {
    /// Starts the sender task.
    pub fn spawn(daemon: HostPort, env: Environment, metrics: Arc<Metrics>) -> (Emitter, Flush) {
        let (close, closed) = watch::channel(false);
        let resolved = resolver::spawn(daemon, RESOLVE_EVERY, metrics.clone(), closed.clone());
        Emitter::spawn_resolved(resolved, env, metrics, close, closed)
    }

    /// Starts the sender task, sending wherever `resolved` says the daemon is.
    fn spawn_resolved(
        resolved: watch::Receiver<Resolved>,
        env: Environment,
        metrics: Arc<Metrics>,
        close: watch::Sender<bool>,
        closed: watch::Receiver<bool>,
    ) -> (Emitter, Flush) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::with_capacity(BURST)),
            wake: Notify::new(),
            metrics: metrics.clone(),
        });
        let udp = UdpBatch::new(metrics);
        let sender = Sender { env, shared: shared.clone(), out: Datagrams::default(), udp };
        let task = tokio::spawn(sender.run(closed, resolved));
        (Emitter { shared }, Flush { close, task })
    }

    /// Queues a segment; drops and counts it when the queue is full.
    pub fn emit(&self, segment: Segment) {
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

impl Flush {
    /// Sends what is queued, then stops; gives up after `grace`.
    pub async fn flush(self, grace: Duration) {
        let _ = self.close.send(true);
        if tokio::time::timeout(grace, self.task).await.is_err() {
            tracing::warn!(?grace, "segments still queued at shutdown were dropped");
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
    async fn connect(&self, addr: SocketAddr, previous: Option<Target>) -> Option<Target> {
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
            tracing::warn!(daemon = %addr, error = %e, "cannot address the daemon");
            return None;
        }
        tracing::debug!(daemon = %addr, "sending segments");
        Some(Target { addr, socket })
    }

    /// Encodes the batch and sends it, a burst at a time.
    async fn send_all(&mut self, batch: &mut Vec<Segment>, target: &Option<Target>) {
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
            serde_json::to_writer(buf, &doc)
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
mod tests {
    use super::*;
    use crate::xray::id::{SegmentId, TraceId};
    use crate::xray::segment::{Direction, Http};

    fn segment(subsegments: usize) -> Segment {
        let long_path = format!("/{}", "p".repeat(240));
        let mut seg = Segment {
            name: Arc::from("front-end"),
            id: SegmentId::new(),
            trace_id: TraceId::new(1_700_000_000),
            parent_id: None,
            start_time: 1_700_000_000.0,
            end_time: 1_700_000_000.5,
            kind: Kind::Segment,
            direction: Direction::Outbound,
            traced: false,
            http: Http {
                method: http::Method::GET,
                scheme: "http",
                host: Some(http::HeaderValue::from_static("back-end")),
                uri: long_path.parse().expect("uri"),
                client_ip: None,
                x_forwarded_for: false,
                user_agent: None,
                status: Some(200),
                content_length: Some(1),
            },
            failure: None,
            subsegments: Vec::new(),
            tunnel: None,
            grpc: None,
        };
        let mut sub = seg.clone();
        sub.kind = Kind::EmbeddedSubsegment;
        for _ in 0..subsegments {
            sub.id = SegmentId::new();
            seg.subsegments.push(sub.clone());
        }
        seg
    }

    async fn receive_all(socket: Arc<UdpSocket>) -> Vec<serde_json::Value> {
        let mut docs = Vec::new();
        let mut buf = vec![0u8; 70_000];
        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf)).await {
            assert!(n <= MAX_DATAGRAM, "datagram of {n} bytes");
            let body = buf[..n].strip_prefix(DATAGRAM_HEADER).expect("daemon header");
            docs.push(serde_json::from_slice(body).expect("json"));
        }
        docs
    }

    // The daemon reads on a thread of its own while the emitter sends, as a real one does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_segment_too_large_for_one_datagram_is_split_and_counted() {
        // A daemon's receive buffer as large as the system allows (the bench's sink does the same).
        let daemon = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).expect("socket");
        let _ = daemon.set_recv_buffer_size(4 << 20);
        daemon.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind");
        daemon.set_nonblocking(true).expect("nonblocking");
        let daemon = Arc::new(UdpSocket::from_std(daemon.into()).expect("tokio socket"));
        let addr = daemon.local_addr().expect("addr");
        let metrics = Arc::new(Metrics::default());
        let target = HostPort { host: "127.0.0.1".into(), port: addr.port() };
        let (emitter, flush) = Emitter::spawn(target, Environment::default(), metrics.clone());
        let big = segment(150);
        let (parent_id, trace_id) = (big.id, big.trace_id);
        let received = tokio::spawn(receive_all(daemon));
        emitter.emit(big);
        emitter.emit(segment(1));
        let docs = received.await.expect("receiver");
        flush.flush(Duration::from_secs(1)).await;
        // 150 independent subsegments, the parent without them, and the small one whole.
        assert_eq!(docs.len(), 152);
        let subs: Vec<_> = docs.iter().filter(|d| d["type"] == "subsegment").collect();
        assert_eq!(subs.len(), 150);
        assert!(subs.iter().all(|d| d["parent_id"] == parent_id.as_str() && d["trace_id"] == trace_id.as_str()));
        let parent = docs.iter().find(|d| d["id"] == parent_id.as_str()).expect("parent sent");
        assert!(parent.get("subsegments").is_none());
        let whole = docs.iter().filter(|d| d["subsegments"].as_array().map(Vec::len) == Some(1)).count();
        assert_eq!(whole, 1);
        assert_eq!(metrics.segments_split.load(Relaxed), 1);
        assert_eq!(metrics.segments_emitted.load(Relaxed), 152);
        // Documents of like size share a system call.
        let calls = metrics.datagram_send_calls.load(Relaxed);
        assert!(calls < 10, "{calls} system calls for 152 documents");
    }

    #[tokio::test]
    async fn segments_wait_for_the_first_look_up_and_then_all_go_out() {
        let daemon = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let metrics = Arc::new(Metrics::default());
        let (found, resolved) = watch::channel(Resolved::Pending);
        let (close, closed) = watch::channel(false);
        let (emitter, flush) =
            Emitter::spawn_resolved(resolved, Environment::default(), metrics.clone(), close, closed);
        for _ in 0..100 {
            emitter.emit(segment(0));
        }
        // A slow answer: nothing sent, nothing dropped meanwhile.
        assert!(receive_all(daemon.clone()).await.is_empty());
        assert_eq!(metrics.segments_dropped.load(Relaxed) + metrics.daemon_send_errors.load(Relaxed), 0);
        found.send_replace(Resolved::At(daemon.local_addr().expect("addr")));
        assert_eq!(receive_all(daemon.clone()).await.len(), 100);
        flush.flush(Duration::from_secs(1)).await;
        assert_eq!(metrics.segments_emitted.load(Relaxed), 100);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_blocking() {
        let metrics = Arc::new(Metrics::default());
        // Nobody receives: the sender task cannot run before we are done on this thread.
        let target = HostPort { host: "127.0.0.1".into(), port: 9 };
        let (emitter, _flush) = Emitter::spawn(target, Environment::default(), metrics.clone());
        for _ in 0..QUEUE_CAPACITY + 10 {
            emitter.emit(segment(0));
        }
        assert_eq!(metrics.segments_dropped.load(Relaxed), 10);
    }
}
