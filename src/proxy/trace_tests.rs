//! The trace middleware at the service level: `Trace` around a `tower::service_fn` upstream, driven
//! with `oneshot`, its segments read from a UDP socket in this process where the emitter sends them.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::metrics::Metrics;
use crate::proxy::probes::Probes;
use crate::xray::daemon::HostPort;
use crate::xray::emitter::{Emitter, Flush};
use crate::xray::sampling::Sampler;
use crate::xray::segment::Environment;
use http_body_util::BodyExt;
use serde_json::Value;
use std::time::Duration;
use tokio::net::UdpSocket;
use tower::ServiceExt;

const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";

/// A tracer whose emitter sends to a socket the test reads (until the returned flush is dropped).
async fn tracer() -> (Arc<Tracer>, UdpSocket, Flush) {
    let daemon = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = daemon.local_addr().unwrap().port();
    let metrics = Arc::new(Metrics::default());
    let (emitter, flush) =
        Emitter::spawn(HostPort { host: "127.0.0.1".into(), port }, Environment::default(), metrics.clone());
    let tracer = Tracer {
        service_name: Arc::from("front-end"),
        sampler: Sampler::default(),
        propagation: Default::default(),
        centralized: None,
        probes: Probes::default(),
        emitter: Some(emitter),
        otlp: None,
        metrics,
    };
    (Arc::new(tracer), daemon, flush)
}

/// The next segment document the emitter sends, or `None` within `wait`.
async fn segment(daemon: &UdpSocket, wait: Duration) -> Option<Value> {
    let mut buf = vec![0u8; 65536];
    let n = tokio::time::timeout(wait, daemon.recv(&mut buf)).await.ok()?.unwrap();
    let text = std::str::from_utf8(&buf[..n]).unwrap();
    let (_, doc) = text.split_once('\n').unwrap();
    Some(serde_json::from_str(doc).unwrap())
}

fn request(header: &str) -> Request<Full<Bytes>> {
    Request::get("http://back-end/items").header("x-amzn-trace-id", header).body(Full::default()).unwrap()
}

fn peer() -> IpAddr {
    IpAddr::from([10, 0, 3, 17])
}

#[tokio::test]
async fn a_sampled_request_passes_the_header_on_answers_it_and_emits_at_the_end_of_the_body() {
    let (tracer, daemon, _flush) = tracer().await;
    let upstream = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        let sent = req.headers().get("x-amzn-trace-id").unwrap().to_str().unwrap().to_owned();
        assert!(sent.starts_with(&format!("Root={ROOT};Parent=")) && sent.ends_with(";Sampled=1"), "{sent}");
        Ok::<_, ProxyError>(Response::new(Full::new(Bytes::from_static(b"hello"))))
    });
    let trace = Trace::new(upstream, tracer, peer(), Direction::Inbound);
    let res = trace.oneshot(request(&format!("Root={ROOT};Sampled=1"))).await.unwrap();
    assert_eq!(res.headers()["x-amzn-trace-id"], format!("Root={ROOT};Sampled=1").as_str());
    assert!(segment(&daemon, Duration::from_millis(200)).await.is_none(), "emitted before the body ended");
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "hello");
    let doc = segment(&daemon, Duration::from_secs(5)).await.unwrap();
    assert_eq!((doc["name"].as_str(), doc["trace_id"].as_str()), (Some("front-end"), Some(ROOT)));
    assert_eq!(doc["http"]["request"]["client_ip"], "10.0.3.17");
    assert_eq!(
        (doc["http"]["response"]["status"].as_u64(), doc["http"]["response"]["content_length"].as_u64()),
        (Some(200), Some(5))
    );
    assert!(doc.get("fault").is_none() && doc.get("error").is_none(), "{doc}");
}

#[tokio::test]
async fn a_caller_that_says_not_sampled_gets_no_segment() {
    let (tracer, daemon, _flush) = tracer().await;
    let upstream = tower::service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, ProxyError>(Response::new(Full::<Bytes>::default()))
    });
    let trace = Trace::new(upstream, tracer, peer(), Direction::Inbound);
    let res = trace.oneshot(request(&format!("Root={ROOT};Sampled=0"))).await.unwrap();
    assert_eq!(res.headers()["x-amzn-trace-id"], format!("Root={ROOT};Sampled=0").as_str());
    res.into_body().collect().await.unwrap();
    assert!(segment(&daemon, Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn an_upstream_failure_is_answered_502_and_recorded_as_a_fault_with_its_cause() {
    let (tracer, daemon, _flush) = tracer().await;
    let upstream = tower::service_fn(|_: Request<Full<Bytes>>| async {
        Err::<Response<Full<Bytes>>, _>(ProxyError { kind: ErrorKind::ConnectRefused, source: None })
    });
    let trace = Trace::new(upstream, tracer, peer(), Direction::Inbound);
    let res = trace.oneshot(request(&format!("Root={ROOT};Sampled=1"))).await.unwrap();
    assert_eq!(res.status(), 502);
    res.into_body().collect().await.unwrap();
    let doc = segment(&daemon, Duration::from_secs(5)).await.unwrap();
    assert_eq!(doc["fault"], true);
    assert_eq!(doc["cause"]["exceptions"][0]["type"], "ConnectionRefused");
    assert_eq!(doc["http"]["response"]["status"], 502);
}

#[tokio::test]
async fn a_client_that_leaves_before_the_response_is_recorded_as_aborted() {
    let (tracer, daemon, _flush) = tracer().await;
    let upstream = tower::service_fn(|_: Request<Full<Bytes>>| {
        std::future::pending::<Result<Response<Full<Bytes>>, ProxyError>>()
    });
    let trace = Trace::new(upstream, tracer, peer(), Direction::Inbound);
    let waiting = trace.oneshot(request(&format!("Root={ROOT};Sampled=1")));
    assert!(tokio::time::timeout(Duration::from_millis(50), waiting).await.is_err(), "the upstream never answers");
    let doc = segment(&daemon, Duration::from_secs(5)).await.unwrap();
    assert_eq!(doc["error"], true, "{doc}");
    assert_eq!(doc["annotations"]["client_aborted"], true);
    assert_eq!(doc["cause"]["exceptions"][0]["type"], "ClientAborted");
}
