//! Connection limits of the real binary: silent connections are closed, a connection limit answers
//! clearly beyond it (idle connections, HTTP/1.1 or HTTP/2, make room rather than keep a new one out), and
//! the admin listener holds nobody for ever either, nor lets those it holds keep a probe out.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::upstream::Upstream;
use support::{Daemon, Launch, Sidecar};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Waits for the server to close `stream`; the time it took, or `None` if still open after `max`.
async fn closed_within(stream: &mut TcpStream, max: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((start + max).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends one request on a new connection and returns the raw answer.
async fn raw_get(addr: SocketAddr) -> String {
    raw_get_path(addr, "/").await
}

/// Sends one request for `path` on a new connection and returns the raw answer.
async fn raw_get_path(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_send_nothing_are_closed_at_the_header_timeout() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--header-read-timeout", "1s"]);
    // Nothing at all; the first byte of the HTTP/2 preface and nothing more; an admin connection
    // that sends nothing.
    let mut silent = TcpStream::connect(sc.listen).await.unwrap();
    let mut preface = TcpStream::connect(sc.listen).await.unwrap();
    preface.write_all(b"PRI").await.unwrap();
    let mut admin = TcpStream::connect(sc.admin).await.unwrap();
    for (what, s) in [("silent", &mut silent), ("partial preface", &mut preface), ("admin", &mut admin)] {
        let took = closed_within(s, Duration::from_secs(5)).await;
        let took = took.unwrap_or_else(|| panic!("{what} connection still open after 5 s"));
        assert!(took < Duration::from_secs(3), "{what}: closed after {took:?}");
    }
    // Real clients were never affected.
    assert!(raw_get(sc.listen).await.starts_with("HTTP/1.1 200"));
}

/// Any pod can reach the admin port: connections held open there, each having sent a byte of a
/// head, must not keep the kubelet's probes out (the pod would be taken out of service).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_held_on_the_admin_port_do_not_keep_probes_out() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &[]);
    let mut held = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(sc.admin).await.unwrap();
        s.write_all(b"G").await.unwrap();
        held.push(s);
    }
    for _ in 0..3 {
        let answer =
            tokio::time::timeout(Duration::from_secs(2), raw_get_path(sc.admin, "/ready")).await.unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.1 200"), "the probe was kept out: {answer:?}");
    }
    // The oldest held connections were closed to make room; the newest are still open.
    let newest = held.last_mut().unwrap();
    assert!(closed_within(newest, Duration::from_millis(100)).await.is_none(), "the newest was closed");
    assert!(closed_within(&mut held[0], Duration::from_millis(500)).await.is_some(), "the oldest is still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_clients_get_a_clear_503() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--max-connections", "5"]);
    let held = hold(&[sc.listen; 5]).await;
    let answer = raw_get(sc.listen).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many connections"), "{answer}");
    // A flood beyond the limit is refused as cheaply, and every refusal is counted.
    for _ in 0..20 {
        assert!(raw_get(sc.listen).await.starts_with("HTTP/1.1 503"));
    }
    assert!(sc.metrics().await.contains("xray_sidecar_connections_refused_total 21"));
    // Freed slots serve again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = raw_get(sc.listen).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "still refused after the held connections closed: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_limit_the_longest_idle_keep_alive_connection_makes_room() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--max-connections", "3"]);
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(sc.listen).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        idle.push(s);
        // Idle long enough to have been taken apart (after a second or two of quiet), in order.
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A new connection is served, in place of the one idle longest, which alone was closed.
    assert!(raw_get(sc.listen).await.starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut idle[0], Duration::from_secs(1)).await.is_some(), "the oldest was not closed");
    for s in &mut idle[1..] {
        assert!(closed_within(s, Duration::from_millis(300)).await.is_none(), "a newer idle connection closed");
    }
    assert!(sc.metrics().await.contains("xray_sidecar_connections_refused_total 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_limit_an_idle_http2_connection_makes_room_too() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--max-connections", "2"]);
    // Two HTTP/2 connections that open no stream (hyper's pings alone would keep them for ever).
    let (_first, first_closed) = support::h2_connection(sc.listen).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_second, second_closed) = support::h2_connection(sc.listen).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(raw_get(sc.listen).await.starts_with("HTTP/1.1 200"), "the new connection was refused");
    let first = tokio::time::timeout(Duration::from_secs(1), first_closed).await;
    assert!(first.is_ok(), "the connection idle longest was not closed");
    assert!(!second_closed.is_finished(), "the newer idle connection was closed");
    assert!(sc.metrics().await.contains("xray_sidecar_connections_refused_total 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_beyond_a_connection_s_first_share_the_connection_limit() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--max-connections", "3"]);
    let (send, _closed) = support::h2_connection(sc.listen).await;
    // Forty slow streams at once on one connection: the first rides on the connection's slot, two
    // take the two slots left, and the rest are answered 503 at once. (hyper calls each stream's
    // service on the stream's own task: streams opening together on both workers once each found
    // none in flight and rode on the connection's slot together.)
    let started = Instant::now();
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let mut send = send.clone();
            tokio::spawn(async move { (support::h2_get(&mut send, "/slow/1500").await, started.elapsed()) })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    let ok: Vec<_> = answers.iter().filter(|(status, _)| *status == 200).collect();
    let refused: Vec<_> = answers.iter().filter(|(status, _)| *status == 503).collect();
    assert_eq!((ok.len(), refused.len()), (3, 37), "{answers:?}");
    assert!(refused.iter().all(|(_, after)| *after < Duration::from_millis(1000)), "{answers:?}");
    assert!(sc.metrics().await.contains("xray_sidecar_streams_refused_total 37"));
    // The slots came back with the responses.
    let mut send = send.clone();
    assert_eq!(support::h2_get(&mut send, "/").await, 200);
    assert!(raw_get(sc.listen).await.starts_with("HTTP/1.1 200"));
}

/// The proxy's resident memory, in KB.
fn rss_kb(sc: &Sidecar) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", sc.child.id())).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok()).unwrap()
}

/// The proxy's open file descriptors.
fn open_files(sc: &Sidecar) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", sc.child.id())).map(Iterator::count).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_is_shared_by_inbound_and_outbound() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc =
        Sidecar::start(&up.url(), daemon.addr, &["--max-connections", "6", "--outbound-listen", support::ANY_PORT]);
    let outbound = sc.outbound.unwrap();
    let held = hold(&[sc.listen, sc.listen, sc.listen, sc.listen, outbound, outbound]).await;
    // Each side alone is under the limit; together they are at it.
    for addr in [sc.listen, outbound] {
        let answer = raw_get(addr).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{addr}: {answer}");
    }
    // What an operator's dashboard reads: the limit, how much of it is taken, and the process's
    // own figures under the names Prometheus clients give them.
    let m = sc.metrics().await;
    let value = |name: &str| support::metric(&m, name).unwrap_or_else(|| panic!("no {name} in {m}"));
    assert_eq!((value("xray_sidecar_connection_limit"), value("xray_sidecar_connections_in_use")), (6.0, 6.0));
    assert!(value("process_open_fds") >= 6.0 && value("process_open_fds") < value("process_max_fds"), "{m}");
    assert!(value("process_resident_memory_bytes") > 1e6 && value("process_cpu_seconds_total") > 0.0, "{m}");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !raw_get(sc.listen).await.starts_with("HTTP/1.1 200") {
        assert!(Instant::now() < deadline, "still refused after the held connections closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_the_limit_holds_few_sockets() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--max-connections", "5"]);
    let _held = hold(&[sc.listen; 5]).await;
    let idle = open_files(&sc);
    // 400 connections beyond the limit that never read their answer nor close: each answer may
    // wait up to a second for its client, so only a bounded number of them may be in progress.
    let mut flood = Vec::new();
    for _ in 0..400 {
        flood.push(TcpStream::connect(sc.listen).await.unwrap());
    }
    let mut most = 0;
    for _ in 0..10 {
        most = most.max(open_files(&sc));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    eprintln!("open files: {idle} at the limit, at most {most} during a flood of 400 more");
    assert!(most <= idle + 64 + 16, "{most} open files during the flood ({idle} before)");
    // Every one was refused and counted, with an answer or a close, and none was served.
    let mut buf = [0u8; 256];
    for s in &mut flood {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) => assert!(n == 0 || buf.starts_with(b"HTTP/1.1 503"), "{:?}", &buf[..n]),
            Ok(Err(_)) => {}
            Err(_) => panic!("a refused connection was left open"),
        }
    }
    let m = sc.metrics().await;
    assert!(m.contains("xray_sidecar_connections_refused_total 400"), "{m}");
}

/// The limit a pod gets when nobody sets one, from the binary's own help.
fn default_max_connections() -> u64 {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_xray-sidecar")).args(["proxy", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let flag = &help[help.find("--max-connections").unwrap()..];
    let default = &flag[flag.find("[default: ").unwrap() + 10..];
    default[..default.find(']').unwrap()].parse().unwrap()
}

/// The memory limit the injector gives the proxy container, in KB.
fn injected_memory_limit_kb() -> u64 {
    let config = std::fs::read_to_string(support::repo_root().join("injector/src/config.rs")).unwrap();
    let line = config.lines().find(|l| l.contains("\"XRAY_INJECTOR_PROXY_MEMORY_LIMIT\"")).unwrap();
    let value = line.split("default_value = \"").nth(1).unwrap();
    value.split("Mi\"").next().unwrap().parse::<u64>().unwrap() * 1024
}

/// Opens `n` connections that each send `raw` and nothing more; returns them with the RSS each
/// added, in KB. The connections are kept, so that what they freed cannot make room for others.
async fn hold_costly(sc: &Sidecar, raw: &[u8], n: u64) -> (Vec<TcpStream>, f64) {
    let before = rss_kb(sc);
    let mut held = Vec::new();
    for _ in 0..n {
        let mut s = TcpStream::connect(sc.listen).await.unwrap();
        s.write_all(raw).await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    (held, rss_kb(sc).saturating_sub(before) as f64 / n as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_limit_of_costly_connections_fits_the_injected_memory_limit() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--max-connections", "1000", "--header-read-timeout", "60s"]);
    assert!(raw_get(sc.listen).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = rss_kb(&sc);
    // The costliest connections a client can hold, with heads just under the 64 KiB limit: one
    // unfinished (hyper's read buffer grown to take it), and one complete, forwarded to an
    // application slow to answer (the read buffer, still pinned by the request, and the upstream
    // connection's write buffer holding the head it sent: 120 KB against 75 in release builds).
    let fields = |path: &str| {
        let mut head = format!("GET {path} HTTP/1.1\r\nhost: a\r\n");
        while head.len() < 60_000 {
            // Long fields, so that the head stays under hyper's 100 fields.
            head.push_str(&format!("x-pad-{:05}: {}\r\n", head.len(), "a".repeat(1000)));
        }
        head
    };
    const N: u64 = 300;
    let (_unfinished, unfinished) = hold_costly(&sc, fields("/").as_bytes(), N).await;
    let (_waiting, waiting) = hold_costly(&sc, format!("{}\r\n", fields("/slow/30000")).as_bytes(), N).await;
    let per_connection = unfinished.max(waiting);
    let (limit, memory) = (default_max_connections(), injected_memory_limit_kb());
    let at_limit = start as f64 + per_connection * limit as f64;
    eprintln!(
        "per connection with a 60 KB head: {unfinished:.1} KB unfinished, {waiting:.1} KB waiting for the \
         application; {limit} of the costlier: {at_limit:.0} KB of {memory} KB"
    );
    assert!(unfinished > 30.0 && waiting > 30.0, "the measurement saw no cost: {unfinished:.1}, {waiting:.1} KB");
    assert!(at_limit < memory as f64 * 0.9, "{limit} connections would need {at_limit:.0} KB of {memory} KB");
}

/// Opens a connection to each of `addrs` and gives the proxy time to accept them all, so that the
/// next one is beyond the limit.
async fn hold(addrs: &[std::net::SocketAddr]) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for addr in addrs {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    held
}

/// The proxy's soft and hard open-file limits.
fn open_file_limits(sc: &Sidecar) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", sc.child.id())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let mut fields = line.split_whitespace().skip(3).map(|v| v.parse().unwrap());
    (fields.next().unwrap(), fields.next().unwrap())
}

/// A sidecar with `--max-connections 400` started under `prlimit --nofile=NOFILE`, logging to a file
/// of its own; with its upstream and daemon, which must outlive it, and the log's path.
async fn under_open_file_limit(nofile: &str, test: &str) -> (Sidecar, Upstream, Daemon, std::path::PathBuf) {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let log = std::env::temp_dir().join(format!("xray-{test}-{}.log", std::process::id()));
    let nofile = format!("--nofile={nofile}");
    let launch = Launch { log: Some(&log), wrapper: &["prlimit", &nofile, "--"], ..Launch::default() };
    let sc = Sidecar::launch(&up.url(), daemon.addr, &["--max-connections", "400"], launch);
    (sc, up, daemon, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_soft_open_file_limit_is_raised_for_the_connection_limit() {
    // Container runtimes often start processes with a soft limit of 1,024 under a far higher hard
    // one (containerd 2: 1024:524288); here 128 under 4,096.
    let (sc, _up, _daemon, log) = under_open_file_limit("128:4096", "open-files-raised").await;
    assert_eq!(open_file_limits(&sc), (4096, 4096));
    // 300 requests at once, each holding its client's connection and one upstream: 600 descriptors,
    // far beyond the 128 the proxy was started with. Every one is served.
    let mut held = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(sc.listen).await.unwrap();
        s.write_all(b"GET /slow/1500 HTTP/1.1\r\nhost: a\r\n\r\n").await.unwrap();
        held.push(s);
    }
    for (i, s) in held.iter_mut().enumerate() {
        let mut buf = [0u8; 12];
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(_))), "request {i} unanswered: {read:?}");
        assert_eq!(&buf, b"HTTP/1.1 200", "request {i}");
    }
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("open-file limit"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_open_file_limit_below_the_connection_limit_is_a_warning() {
    let (sc, _up, _daemon, log) = under_open_file_limit("300:300", "open-files-short").await;
    assert_eq!(open_file_limits(&sc), (300, 300));
    assert!(raw_get(sc.listen).await.starts_with("HTTP/1.1 200"));
    let log = std::fs::read_to_string(&log).unwrap();
    let warning = log.lines().find(|l| l.contains(" WARN ") && l.contains("open-file limit is below"));
    let warning = warning.unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(warning.contains("open_files=300") && warning.contains("max_connections=400"), "{warning}");
}

/// Opens `n` connections to `addr` at once: those the kernel completed within a second (a SYN
/// dropped for a full backlog is sent again only after one).
async fn connected_within_a_second(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..n {
        attempts.spawn(tokio::time::timeout(Duration::from_millis(1000), TcpStream::connect(addr)));
    }
    attempts.join_all().await.into_iter().filter_map(|r| r.ok()?.ok()).collect()
}

/// A burst of new connections while the proxy cannot accept them (busy, descheduled: paused here
/// with SIGSTOP) waits in the listen backlog, on both address families: tokio's own `bind` asks for
/// 128, beyond which the kernel drops the SYNs and each client waits a second or more for its
/// retry. Each is served once the proxy runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_new_connections_waits_in_the_listen_backlog() {
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let sc = Sidecar::start(&up.url(), daemon.addr, &[]);
    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, sc.listen.port()));
    let families = if TcpStream::connect(v6).await.is_ok() { vec![sc.listen, v6] } else { vec![sc.listen] };
    let signal = |sig: &str| {
        let pid = sc.child.id().to_string();
        assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
    };
    // The kernel caps every backlog at `net.core.somaxconn` (4096 unless lowered).
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap().trim().parse().unwrap();
    let n = 400.min(somaxconn);
    for addr in families {
        signal("-STOP");
        let burst = connected_within_a_second(addr, n).await;
        signal("-CONT");
        assert_eq!(burst.len(), n, "{addr}: connections the kernel held for the paused proxy");
        let mut requests = tokio::task::JoinSet::new();
        for mut s in burst {
            requests.spawn(async move {
                s.write_all(b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").await.unwrap();
                let mut out = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
                out.starts_with(b"HTTP/1.1 200")
            });
        }
        let answered = requests.join_all().await.into_iter().filter(|ok| *ok).count();
        assert_eq!(answered, n, "{addr}: answered after the proxy ran again");
    }
}

/// A listener given an IPv6 address takes IPv4 connections too, as `[::]` does by default: only
/// the IPv6 twin the proxy adds beside an IPv4 listener is IPv6-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_given_ipv6_s_wildcard_takes_ipv4_too() {
    if std::net::TcpListener::bind("[::]:0").is_err() {
        eprintln!("no IPv6 on this host: skipped");
        return;
    }
    let (up, daemon) = (Upstream::start().await, Daemon::start().await);
    let outbound = format!("[::]:{}", support::free_port());
    let sc = Sidecar::start(&up.url(), daemon.addr, &["--outbound-listen", &outbound]);
    let port = sc.outbound.unwrap().port();
    for addr in [SocketAddr::from(([127, 0, 0, 1], port)), SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))] {
        let mut s = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("{addr}: {e}"));
        let request = format!("GET {}/ HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n", up.url(), up.addr);
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(out.starts_with(b"HTTP/1.1 200"), "{addr}: {}", String::from_utf8_lossy(&out));
    }
}
