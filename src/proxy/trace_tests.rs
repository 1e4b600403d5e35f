//! The trace middleware at the service level: `Trace` around a `tower::service_fn` upstream, driven
//! with `oneshot`, its segments read from a UDP socket in this process where the emitter sends them:
//! both directions, the header in and out, the decision, the end of the body, a body that breaks
//! off, a client that leaves, and an upstream that fails.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::metrics::Metrics;
use crate::proxy::probes::Probes;
use crate::xray::daemon::HostPort;
use crate::xray::emitter::Emitter;
use crate::xray::sampling::Sampler;
use crate::xray::segment::Environment;
use http_body::Frame;
use http_body_util::BodyExt;
use serde_json::Value;
use std::io;
use std::time::Duration;
use tokio::net::UdpSocket;
use tower::ServiceExt;
use xray_lifecycle::Flush;

const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";

/// A tracer whose emitter sends to a socket the test reads (until the returned flush is dropped).
async fn tracer() -> (Arc<Tracer>, UdpSocket, Flush) {
    let daemon = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = daemon.local_addr().unwrap().port();
    let metrics = Arc::new(Metrics::default());
    let (emitter, flush) =
        Emitter::spawn(HostPort { host: "127.0.0.1".into(), port }, Environment::default(), metrics.delivery.clone());
    let tracer = Tracer {
        service_name: Arc::from("front-end"),
        sampler: Sampler::default(),
        propagation: Default::default(),
        centralized: None,
        probes: Probes::default(),
        emitter: Some(emitter),
        otlp: None,
        metrics,
        draining: Default::default(),
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

/// The caller's segment in the outbound tests: an application that forwards the header it got.
const PARENT: &str = "53995c3f42cd8ad8";

/// An upstream body that sends `data`, then fails with `error`, or (`None`) never ends.
struct Partial {
    data: Option<Bytes>,
    error: Option<&'static str>,
}

impl Body for Partial {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        match self.error.take() {
            Some(e) => Poll::Ready(Some(Err(io::Error::other(e)))),
            None => Poll::Pending,
        }
    }
}

/// An upstream that answers 200 with `body`.
fn answering(
    body: fn() -> Partial,
) -> impl tower::Service<Request<Full<Bytes>>, Response = Response<Partial>, Error = ProxyError> {
    tower::service_fn(move |_: Request<Full<Bytes>>| async move { Ok::<_, ProxyError>(Response::new(body())) })
}

/// An upstream that answers with `answer()` and sends the `X-Amzn-Trace-Id` its (one) request
/// carried to `sent`, empty without one.
fn header_catcher(
    sent: tokio::sync::oneshot::Sender<String>,
    answer: fn() -> Response<Full<Bytes>>,
) -> impl tower::Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = ProxyError> {
    let sent = Arc::new(std::sync::Mutex::new(Some(sent)));
    tower::service_fn(move |req: Request<Full<Bytes>>| {
        let header = req.headers().get("x-amzn-trace-id").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let _ = sent.lock().unwrap().take().unwrap().send(header);
        async move { Ok::<_, ProxyError>(answer()) }
    })
}

/// The header fields of an `X-Amzn-Trace-Id` value.
fn fields(header: &str) -> Vec<(&str, &str)> {
    header.split(';').filter_map(|kv| kv.split_once('=')).collect()
}

#[tokio::test]
async fn an_outbound_call_with_the_callers_header_is_an_independent_subsegment_and_the_callee_its_child() {
    let (tracer, daemon, _flush) = tracer().await;
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel();
    let upstream = header_catcher(sent_tx, || {
        // The callee records its own segment, and says so with the header.
        let mut res = Response::new(Full::new(Bytes::from_static(b"item")));
        res.headers_mut().insert("x-amzn-trace-id", http::HeaderValue::from_static("Root=x"));
        res
    });
    let trace = Trace::new(upstream, tracer, peer(), Direction::Outbound);
    let res = trace.oneshot(request(&format!("Root={ROOT};Parent={PARENT};Sampled=1"))).await.unwrap();
    assert_eq!(res.headers()["x-amzn-trace-id"], "Root=x", "an application's own call gets the callee's answer as is");
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "item");
    let doc = segment(&daemon, Duration::from_secs(5)).await.unwrap();
    assert_eq!((doc["type"].as_str(), doc["namespace"].as_str()), (Some("subsegment"), Some("remote")), "{doc}");
    assert_eq!((doc["name"].as_str(), doc["trace_id"].as_str()), (Some("back-end"), Some(ROOT)));
    assert_eq!(doc["parent_id"], PARENT);
    assert_eq!(doc["traced"], true, "the callee answered with a trace header");
    assert_eq!(doc["annotations"]["direction"], "outbound");
    assert!(doc["http"]["request"].get("client_ip").is_none(), "{doc}");
    let sent = sent_rx.await.unwrap();
    let sent = fields(&sent);
    assert!(sent.contains(&("Root", ROOT)) && sent.contains(&("Sampled", "1")), "{sent:?}");
    assert!(sent.contains(&("Parent", doc["id"].as_str().unwrap())), "the callee's parent is the subsegment: {sent:?}");
}

#[tokio::test]
async fn a_request_without_a_trace_header_starts_a_trace_and_passes_it_on() {
    let (tracer, daemon, _flush) = tracer().await;
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel();
    let upstream = header_catcher(sent_tx, || Response::new(Full::<Bytes>::default()));
    let trace = Trace::new(upstream, tracer, peer(), Direction::Inbound);
    let req = Request::get("http://back-end/items").body(Full::default()).unwrap();
    let res = trace.oneshot(req).await.unwrap();
    let echoed = res.headers()["x-amzn-trace-id"].to_str().unwrap().to_owned();
    res.into_body().collect().await.unwrap();
    // The first request of a fresh sampler takes the default rule's reservoir: sampled.
    let doc = segment(&daemon, Duration::from_secs(5)).await.unwrap();
    let root = doc["trace_id"].as_str().unwrap();
    assert_ne!(root, ROOT);
    assert!(doc.get("parent_id").is_none(), "{doc}");
    assert_eq!(echoed, format!("Root={root};Sampled=1"));
    let sent = sent_rx.await.unwrap();
    assert_eq!(fields(&sent), [("Root", root), ("Parent", doc["id"].as_str().unwrap()), ("Sampled", "1")]);
}

#[tokio::test]
async fn an_upstream_body_that_breaks_off_is_recorded_as_a_fault_and_counted() {
    let (tracer, daemon, _flush) = tracer().await;
    let upstream = answering(|| Partial { data: Some(Bytes::from_static(b"partial")), error: Some("reset by peer") });
    let trace = Trace::new(upstream, tracer.clone(), peer(), Direction::Inbound);
    let res = trace.oneshot(request(&format!("Root={ROOT};Sampled=1"))).await.unwrap();
    assert_eq!(res.status(), 200, "the head was already on its way");
    assert!(res.into_body().collect().await.is_err(), "the client sees the body break off");
    let doc = segment(&daemon, Duration::from_secs(5)).await.unwrap();
    assert_eq!(doc["fault"], true, "{doc}");
    let exception = &doc["cause"]["exceptions"][0];
    assert_eq!(exception["type"], "UpstreamBodyError");
    assert_eq!(exception["message"], "upstream response body failed after 7 bytes: reset by peer");
    assert_eq!(doc["http"]["response"]["content_length"], 7);
    let metrics = tracer.metrics.render();
    assert!(metrics.contains("xray_sidecar_upstream_errors_total{kind=\"broken\"} 1"), "{metrics}");
}

#[tokio::test]
async fn a_client_that_leaves_in_the_middle_of_the_body_is_recorded_as_aborted_not_as_a_fault() {
    let (tracer, daemon, _flush) = tracer().await;
    let upstream = answering(|| Partial { data: Some(Bytes::from_static(b"first")), error: None });
    let trace = Trace::new(upstream, tracer.clone(), peer(), Direction::Inbound);
    let res = trace.oneshot(request(&format!("Root={ROOT};Sampled=1"))).await.unwrap();
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "first");
    assert!(segment(&daemon, Duration::from_millis(200)).await.is_none(), "emitted while the body was still open");
    drop(body);
    let doc = segment(&daemon, Duration::from_secs(5)).await.unwrap();
    assert_eq!(doc["error"], true, "{doc}");
    assert!(doc.get("fault").is_none(), "{doc}");
    assert_eq!(doc["annotations"]["client_aborted"], true);
    let exception = &doc["cause"]["exceptions"][0];
    assert_eq!(exception["type"], "ClientAborted");
    assert_eq!(exception["message"], "client went away after 5 bytes of the response");
    assert_eq!(doc["http"]["response"]["status"], 200);
    let metrics = tracer.metrics.render();
    assert!(metrics.contains("xray_sidecar_upstream_errors_total{kind=\"broken\"} 0"), "{metrics}");
}
