//! The emitter: a bounded queue in front of one task that writes segment documents to the daemon.
//!
//! Requests hand over a finished [`Segment`] with `try_send` and move on; a full queue drops and
//! counts. JSON is produced here, into one reused buffer, so the request path never formats.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::daemon::HostPort;
use super::segment::{Document, Environment, Kind, Segment};
use crate::metrics::Metrics;

/// The daemon header that starts every datagram.
pub const DATAGRAM_HEADER: &[u8] = b"{\"format\": \"json\", \"version\": 1}\n";

/// The daemon reads 64 KiB at most; the SDKs keep a margin under it, and so do we.
pub const MAX_DATAGRAM: usize = 63 * 1024;

/// How often a daemon host name is looked up again.
const RESOLVE_EVERY: Duration = Duration::from_secs(30);

/// Queued segments before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 8192;

/// The request path's handle: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct Emitter {
    tx: mpsc::Sender<Segment>,
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
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (close, closed) = watch::channel(false);
        let sender = Sender { daemon, env, metrics: metrics.clone(), buf: Vec::with_capacity(4096) };
        let task = tokio::spawn(sender.run(rx, closed));
        (Emitter { tx, metrics }, Flush { close, task })
    }

    /// Queues a segment; drops and counts it when the queue is full.
    pub fn emit(&self, segment: Segment) {
        if self.tx.try_send(segment).is_err() {
            self.metrics.segments_dropped.fetch_add(1, Relaxed);
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
    daemon: HostPort,
    env: Environment,
    metrics: Arc<Metrics>,
    buf: Vec<u8>,
}

/// The resolved daemon and a socket of the matching family.
struct Target {
    addr: SocketAddr,
    socket: UdpSocket,
}

impl Sender {
    async fn run(mut self, mut rx: mpsc::Receiver<Segment>, mut closed: watch::Receiver<bool>) {
        let mut target = self.connect(None).await;
        let mut next_resolve = Instant::now() + RESOLVE_EVERY;
        let mut batch = Vec::with_capacity(64);
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, 64) => if n == 0 { break },
                _ = closed.changed() => {
                    // Take what is already queued, then stop.
                    rx.close();
                    while let Ok(s) = rx.try_recv() {
                        batch.push(s);
                    }
                    self.send_all(&mut batch, &target).await;
                    break;
                }
            }
            if Instant::now() >= next_resolve {
                target = self.connect(target).await;
                next_resolve = Instant::now() + RESOLVE_EVERY;
            }
            self.send_all(&mut batch, &target).await;
        }
    }

    /// Looks the daemon up, keeping the previous target when the look-up fails.
    async fn connect(&self, previous: Option<Target>) -> Option<Target> {
        let addr = match tokio::time::timeout(Duration::from_secs(2), self.daemon.resolve()).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => {
                self.metrics.daemon_resolve_errors.fetch_add(1, Relaxed);
                tracing::debug!(daemon = %self.daemon, error = %e, "cannot resolve the daemon");
                return previous;
            }
            Err(_) => {
                self.metrics.daemon_resolve_errors.fetch_add(1, Relaxed);
                tracing::debug!(daemon = %self.daemon, "daemon look-up timed out");
                return previous;
            }
        };
        if let Some(t) = previous.filter(|t| t.addr.is_ipv4() == addr.is_ipv4()) {
            return Some(Target { addr, socket: t.socket });
        }
        let bind: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        match UdpSocket::bind(bind).await {
            Ok(socket) => Some(Target { addr, socket }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a UDP socket for segments");
                None
            }
        }
    }

    async fn send_all(&mut self, batch: &mut Vec<Segment>, target: &Option<Target>) {
        for segment in batch.drain(..) {
            self.send(&segment, target).await;
        }
    }

    async fn send(&mut self, segment: &Segment, target: &Option<Target>) {
        if !self.encode(segment) {
            if segment.subsegments.is_empty() {
                self.metrics.segments_too_large.fetch_add(1, Relaxed);
                tracing::debug!(trace_id = %segment.trace_id, "segment too large for a datagram");
                return;
            }
            // Too large whole: send the subsegments as their own documents first, as the SDKs do.
            self.metrics.segments_split.fetch_add(1, Relaxed);
            for sub in &segment.subsegments {
                let mut sub = sub.clone();
                sub.kind = Kind::IndependentSubsegment;
                sub.trace_id = segment.trace_id;
                sub.parent_id = Some(segment.id);
                Box::pin(self.send(&sub, target)).await;
            }
            let mut alone = segment.clone();
            alone.subsegments.clear();
            return Box::pin(self.send(&alone, target)).await;
        }
        let Some(t) = target else {
            self.metrics.daemon_send_errors.fetch_add(1, Relaxed);
            return;
        };
        match t.socket.send_to(&self.buf, t.addr).await {
            Ok(_) => {
                self.metrics.segments_emitted.fetch_add(1, Relaxed);
            }
            Err(e) => {
                self.metrics.daemon_send_errors.fetch_add(1, Relaxed);
                tracing::debug!(daemon = %t.addr, error = %e, "cannot send a segment");
            }
        }
    }

    /// Writes the datagram into the buffer; false when it would not fit in one.
    fn encode(&mut self, segment: &Segment) -> bool {
        self.buf.clear();
        self.buf.extend_from_slice(DATAGRAM_HEADER);
        let doc = Document { segment, env: &self.env };
        if let Err(e) = serde_json::to_writer(&mut self.buf, &doc) {
            tracing::warn!(error = %e, "cannot encode a segment");
            return false;
        }
        self.buf.len() <= MAX_DATAGRAM
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
        };
        let mut sub = seg.clone();
        sub.kind = Kind::EmbeddedSubsegment;
        for _ in 0..subsegments {
            sub.id = SegmentId::new();
            seg.subsegments.push(sub.clone());
        }
        seg
    }

    async fn receive_all(socket: &UdpSocket) -> Vec<serde_json::Value> {
        let mut docs = Vec::new();
        let mut buf = vec![0u8; 70_000];
        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf)).await {
            assert!(n <= MAX_DATAGRAM, "datagram of {n} bytes");
            let body = buf[..n].strip_prefix(DATAGRAM_HEADER).expect("daemon header");
            docs.push(serde_json::from_slice(body).expect("json"));
        }
        docs
    }

    #[tokio::test]
    async fn a_segment_too_large_for_one_datagram_is_split_and_counted() {
        let daemon = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = daemon.local_addr().expect("addr");
        let metrics = Arc::new(Metrics::default());
        let target = HostPort { host: "127.0.0.1".into(), port: addr.port() };
        let (emitter, flush) = Emitter::spawn(target, Environment::default(), metrics.clone());
        let big = segment(300);
        let (parent_id, trace_id) = (big.id, big.trace_id);
        emitter.emit(big);
        emitter.emit(segment(1));
        let docs = receive_all(&daemon).await;
        flush.flush(Duration::from_secs(1)).await;
        // 300 independent subsegments, the parent without them, then the small one whole.
        assert_eq!(docs.len(), 302);
        let subs: Vec<_> = docs.iter().filter(|d| d["type"] == "subsegment").collect();
        assert_eq!(subs.len(), 300);
        assert!(subs.iter().all(|d| d["parent_id"] == parent_id.as_str() && d["trace_id"] == trace_id.as_str()));
        let parent = docs.iter().find(|d| d["id"] == parent_id.as_str()).expect("parent sent");
        assert!(parent.get("subsegments").is_none());
        assert_eq!(docs[301]["subsegments"].as_array().map(Vec::len), Some(1));
        assert_eq!(metrics.segments_split.load(Relaxed), 1);
        assert_eq!(metrics.segments_emitted.load(Relaxed), 302);
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
