//! The emitter against a real UDP socket: a segment too large for a datagram is split, segments
//! wait for the daemon's first look-up, and a full queue drops and counts.

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
        random_trace_id: false,
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
        trace_state: None,
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
    let metrics = Arc::new(DeliveryCounters::default());
    let target = HostPort { host: "127.0.0.1".into(), port: addr.port() };
    let (emitter, flush) = Emitter::spawn(target, Environment::default(), metrics.clone());
    let big = segment(150);
    let (parent_id, trace_id) = (big.id, big.trace_id);
    let received = tokio::spawn(receive_all(daemon));
    emitter.emit(Box::new(big));
    emitter.emit(Box::new(segment(1)));
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
    let metrics = Arc::new(DeliveryCounters::default());
    let (found, resolved) = watch::channel(Resolved::Pending);
    let (close, closed) = watch::channel(false);
    let (emitter, flush) = Emitter::spawn_resolved(resolved, Environment::default(), metrics.clone(), close, closed);
    for _ in 0..100 {
        emitter.emit(Box::new(segment(0)));
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
    let metrics = Arc::new(DeliveryCounters::default());
    // Nobody receives: the sender task cannot run before we are done on this thread.
    let target = HostPort { host: "127.0.0.1".into(), port: 9 };
    let (emitter, _flush) = Emitter::spawn(target, Environment::default(), metrics.clone());
    for _ in 0..QUEUE_CAPACITY + 10 {
        emitter.emit(Box::new(segment(0)));
    }
    assert_eq!(metrics.segments_dropped.load(Relaxed), 10);
}
