use super::*;
use std::time::Duration;

/// Appends `data` as one datagram of at most `max` bytes.
fn push(out: &mut Datagrams, max: usize, data: &[u8]) -> Result<bool, ()> {
    out.push(max, |b| {
        b.extend_from_slice(data);
        Ok(())
    })
}

/// A receiving socket and a sending one connected to it, both on loopback.
async fn pair() -> (UdpSocket, UdpSocket) {
    let daemon = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.connect(daemon.local_addr().expect("addr")).await.expect("connect");
    (daemon, socket)
}

/// `n` JSON documents of assorted lengths (some far apart, so that there are several groups).
fn documents(n: usize) -> (Datagrams, Vec<Vec<u8>>) {
    let mut out = Datagrams::default();
    let mut docs = Vec::new();
    for i in 0..n {
        let filler = "x".repeat(200 + (i * 37) % 700 + if i % 10 == 0 { 3000 } else { 0 });
        let doc = serde_json::to_vec(&serde_json::json!({"n": i, "filler": filler})).expect("json");
        assert_eq!(push(&mut out, MAX_SEND, &doc), Ok(true));
        docs.push(doc);
    }
    (out, docs)
}

/// Receives until the socket stays quiet; checks each datagram is one sent document followed
/// only by spaces, and parses as JSON.
async fn receive(daemon: &UdpSocket, docs: &[Vec<u8>]) -> usize {
    let mut buf = vec![0u8; 70_000];
    let mut seen = vec![false; docs.len()];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), daemon.recv(&mut buf)).await {
        let value: serde_json::Value = serde_json::from_slice(&buf[..n]).expect("padded datagram is still JSON");
        let i = value["n"].as_u64().expect("n") as usize;
        let doc = &docs[i];
        assert_eq!(&buf[..doc.len()], &doc[..], "document {i} intact");
        assert!(buf[doc.len()..n].iter().all(|&b| b == b' '), "only spaces after document {i}");
        assert!(!seen[i], "document {i} received twice");
        seen[i] = true;
    }
    seen.iter().filter(|&&s| s).count()
}

#[tokio::test]
async fn gso_delivers_every_document_intact_in_a_few_calls() {
    let (daemon, socket) = pair().await;
    let metrics = Arc::new(DeliveryCounters::default());
    let mut udp = UdpBatch::new(metrics.clone());
    let (out, docs) = documents(60);
    let sent = udp.send(&socket, &out).await;
    assert_eq!(sent, Sent { sent: 60, failed: 0 });
    assert_eq!(receive(&daemon, &docs).await, 60);
    assert_eq!(udp.mode(), Mode::Gso);
    let calls = metrics.datagram_send_calls.load(Relaxed);
    assert!(calls <= 12, "{calls} system calls for 60 datagrams");
    assert_eq!(metrics.gso_fallbacks.load(Relaxed), 0);
}

#[tokio::test]
async fn a_kernel_refusing_gso_then_sendmmsg_still_gets_every_document() {
    let (daemon, socket) = pair().await;
    let metrics = Arc::new(DeliveryCounters::default());
    let mut udp = UdpBatch::new(metrics.clone());
    udp.refuse.push((Mode::Gso, Errno::EIO));
    let (out, docs) = documents(50);
    assert_eq!(udp.send(&socket, &out).await, Sent { sent: 50, failed: 0 });
    assert_eq!(receive(&daemon, &docs).await, 50);
    assert_eq!(udp.mode(), Mode::Mmsg);
    assert_eq!(metrics.gso_fallbacks.load(Relaxed), 1);
    assert_eq!(metrics.datagram_send_calls.load(Relaxed), 1, "one sendmmsg for the burst");

    udp.refuse.push((Mode::Mmsg, Errno::ENOSYS));
    assert_eq!(udp.send(&socket, &out).await, Sent { sent: 50, failed: 0 });
    assert_eq!(receive(&daemon, &docs).await, 50);
    assert_eq!(udp.mode(), Mode::Plain);
    assert_eq!(metrics.sendmmsg_fallbacks.load(Relaxed), 1);
    assert_eq!(metrics.datagram_send_calls.load(Relaxed), 51);
}

#[tokio::test]
async fn a_closed_daemon_port_counts_failures_without_falling_back() {
    let (daemon, socket) = pair().await;
    drop(daemon);
    let metrics = Arc::new(DeliveryCounters::default());
    let mut udp = UdpBatch::new(metrics.clone());
    let (out, _) = documents(20);
    // The first burst provokes the port-unreachable answer; the next meets it.
    let first = udp.send(&socket, &out).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = udp.send(&socket, &out).await;
    assert_eq!(first.sent + first.failed + second.sent + second.failed, 40);
    assert!(first.failed + second.failed > 0, "a refused port is a failure: {first:?} {second:?}");
    assert_eq!(udp.mode(), Mode::Gso);
    assert_eq!(metrics.gso_fallbacks.load(Relaxed) + metrics.sendmmsg_fallbacks.load(Relaxed), 0);
}

#[test]
fn a_route_refusing_large_groups_keeps_gso_for_smaller_ones() {
    let mut udp = UdpBatch::new(Arc::new(DeliveryCounters::default()));
    assert!(udp.refused_gso(&io::Error::from(Errno::EINVAL), 9000));
    assert_eq!((udp.mode(), udp.gso_limit), (Mode::Gso, 9000));
    assert!(!udp.refused_gso(&io::Error::from(Errno::ECONNREFUSED), 600));
    assert_eq!(udp.mode(), Mode::Gso);
    assert!(udp.refused_gso(&io::Error::from(Errno::EINVAL), 600));
    assert_eq!(udp.mode(), Mode::Mmsg);
    assert_eq!(udp.metrics.gso_fallbacks.load(Relaxed), 2);
}

/// Datagrams of the given lengths.
fn of_lengths(lens: impl IntoIterator<Item = usize>) -> Datagrams {
    let mut out = Datagrams::default();
    for len in lens {
        assert_eq!(push(&mut out, MAX_SEND, &vec![b'x'; len]), Ok(true));
    }
    out
}

#[test]
fn groups_are_bounded_by_padding_count_and_size() {
    let lens = [100, 150, 356, 357, 2000, 2100, 2200];
    let out = of_lengths(lens);
    let order: Vec<usize> = (0..lens.len()).collect();
    assert_eq!(group(&out, &order, 0, usize::MAX), (3, 356), "357 would need 257 bytes of padding");
    assert_eq!(group(&out, &order, 3, usize::MAX), (4, 357));
    assert_eq!(group(&out, &order, 4, usize::MAX), (7, 2200));
    assert_eq!(group(&out, &order, 4, 2100), (5, 2000), "the route refused 2100-byte groups");
    assert_eq!(group(&out, &order, 5, 2100), (6, 2100), "alone, to go by sendmmsg");

    let order: Vec<usize> = (0..100).collect();
    let many = of_lengths([1500; 100]);
    assert_eq!(group(&many, &order, 0, usize::MAX), (43, 1500), "43 x 1500 bytes fit in one send");
    let tiny = of_lengths([1; 100]);
    assert_eq!(group(&tiny, &order, 0, usize::MAX), (MAX_SEGMENTS, 1));
}

#[test]
fn a_datagram_too_large_or_failing_to_encode_is_not_kept() {
    let mut out = Datagrams::default();
    assert_eq!(push(&mut out, 4, b"abc"), Ok(true));
    assert_eq!(push(&mut out, 4, b"abcde"), Ok(false));
    let failed = out.push(4, |b| {
        b.push(b'z');
        Err("broken")
    });
    assert_eq!(failed, Err("broken"));
    assert_eq!(push(&mut out, 4, b"de"), Ok(true));
    assert_eq!((out.len(), out.get(0), out.get(1)), (2, &b"abc"[..], &b"de"[..]));
}
