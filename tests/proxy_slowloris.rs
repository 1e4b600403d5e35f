//! Slowloris against the real binary: hundreds of connections trickling a request head byte by
//! byte neither slow other clients down nor outlive `--header-read-timeout`; at the connection
//! limit they make room for new clients; a partial HTTP/2 preface costs nothing while it waits.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::upstream::Upstream;
use support::{Daemon, Sidecar};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TRICKLERS: usize = 300;
const HEADER_TIMEOUT: Duration = Duration::from_secs(3);

/// One request on a new connection, as a normal client makes it: how long the answer took.
async fn timed_get(addr: SocketAddr) -> Duration {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.unwrap().unwrap();
    assert!(out.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&out));
    start.elapsed()
}

/// Requests made one after the other for `period` (at least 20): their median and slowest.
async fn latencies(addr: SocketAddr, period: Duration) -> (Duration, Duration) {
    let (start, mut took) = (Instant::now(), Vec::new());
    while start.elapsed() < period || took.len() < 20 {
        took.push(timed_get(addr).await);
    }
    took.sort();
    (took[took.len() / 2], took[took.len() - 1])
}

/// Connects and sends a head one byte every 200 ms, never finishing it; how long the proxy kept the
/// connection open, or `None` if it was still open after 20 s.
async fn trickle(addr: SocketAddr) -> Option<Duration> {
    let start = Instant::now();
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    w.write_all(b"GET / HTTP/1.1\r\nhost: a\r\nx-slow: ").await.unwrap();
    let mut buf = [0u8; 1024];
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            read = r.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(start.elapsed()),
                // A 408 may come before the close.
                Ok(_) => {}
            },
            _ = tick.tick() => {
                if start.elapsed() > Duration::from_secs(20) {
                    return None;
                }
                if w.write_all(b"a").await.is_err() {
                    return Some(start.elapsed());
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tricklers_are_cut_at_the_header_timeout_and_slow_nobody_else() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let timeout = format!("{}s", HEADER_TIMEOUT.as_secs());
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--header-read-timeout", &timeout]);
    let l = sc.listen;
    timed_get(l).await;
    let (baseline, _) = latencies(l, Duration::from_secs(1)).await;

    let tricklers: Vec<_> = (0..TRICKLERS).map(|_| tokio::spawn(trickle(l))).collect();
    // Let them all connect and start trickling, then measure a normal client meanwhile.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let (during, slowest) = latencies(l, Duration::from_secs(2)).await;
    let measured_for = started.elapsed();

    let mut cut = Vec::new();
    for t in tricklers {
        cut.push(t.await.unwrap().expect("a trickling connection was still open after 20 s"));
    }
    cut.sort();
    let (first, last) = (cut[0], cut[cut.len() - 1]);
    eprintln!(
        "slowloris: median latency {baseline:?} alone, {during:?} beside {TRICKLERS} tricklers \
         (slowest {slowest:?}, measured over {measured_for:?}); tricklers cut after {first:?} to {last:?}"
    );
    assert!(measured_for < HEADER_TIMEOUT, "the normal client was not measured while they trickled");
    // Generous: the machine is shared and small; what must not happen is waiting on the tricklers.
    assert!(during < baseline * 10 + Duration::from_millis(50), "{during:?} beside tricklers, {baseline:?} alone");
    assert!(slowest < Duration::from_secs(1), "one request took {slowest:?} beside the tricklers");
    assert!(first >= HEADER_TIMEOUT - Duration::from_millis(100), "a trickler was cut early: {first:?}");
    assert!(last < HEADER_TIMEOUT + Duration::from_secs(5), "a trickler outlived the timeout: {last:?}");
    // Nothing is left behind: the proxy's connections went with them.
    assert!(timed_get(l).await < Duration::from_secs(2));
}

/// At the connection limit, connections whose heads have stalled stand by to make room as idle
/// ones do: tricklers filling every slot (each within the header timeout) must not keep new
/// clients out, the kubelet's probes of the application among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_limit_tricklers_make_room_for_new_clients() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--max-connections", "20", "--header-read-timeout", "8s"]);
    let l = sc.listen;
    let tricklers: Vec<_> = (0..20).map(|_| tokio::spawn(trickle(l))).collect();
    // Stalled: seen arriving at one of the connection's looks (one a second), still at the next
    // (with a second to spare on a loaded machine).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for _ in 0..5 {
        // Answered 200 (a 503 fails inside).
        timed_get(l).await;
    }
    let mut made_room = 0;
    for t in tricklers {
        let cut = t.await.unwrap().expect("a trickling connection was still open after 20 s");
        made_room += usize::from(cut < Duration::from_secs(7));
    }
    // One is enough: each client's connection closes after its answer and leaves its slot free.
    assert!(made_room >= 1, "no trickler made room before the header timeout");
}

/// CPU time the process `pid` has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name (in parentheses, which may hold spaces): utime and stime are the
    // 12th and 13th fields, in clock ticks (100 a second on Linux).
    let fields: Vec<u64> = stat.rsplit_once(')').unwrap().1.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    Duration::from_millis((fields[10] + fields[11]) * 10)
}

/// A client that sends the first bytes of the HTTP/2 preface and stops (or closes) is waited for
/// without looking again until more comes: looking every few milliseconds, 600 of them kept a
/// fifth of a core busy for the whole header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_preface_costs_nothing_while_it_waits() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--header-read-timeout", "30s"]);
    let pid = sc.child.id();
    let mut held = Vec::new();
    for _ in 0..600 {
        let mut s = TcpStream::connect(sc.listen).await.unwrap();
        s.write_all(b"PRI * HTTP/2").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_time(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = cpu_time(pid) - before;
    // Closed after part of the preface: the sockets stay readable, with nothing more to come.
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_time(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let closed = cpu_time(pid) - before;
    eprintln!("600 partial prefaces: {waiting:?} of CPU in 3 s held, {closed:?} in 2 s once closed");
    assert!(waiting < Duration::from_millis(150), "{waiting:?} of CPU in 3 s for 600 waiting connections");
    assert!(closed < Duration::from_millis(150), "{closed:?} of CPU in 2 s after they closed");
    // Real clients of both versions are served.
    assert!(timed_get(sc.listen).await < Duration::from_secs(2));
}
