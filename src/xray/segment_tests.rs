use super::*;
use crate::xray::cause::{ErrorKind, FailureKind};
use crate::xray::document::{Document, MAX_HTTP_STRING, truncate, url};
use serde_json::Value;

fn sample() -> Segment {
    Segment {
        name: Arc::from("front-end"),
        id: SegmentId::parse("70de5b6f19ff9a0a").expect("id"),
        trace_id: TraceId::parse("1-581cf771-a006649127e371903a2de979").expect("trace"),
        parent_id: None,
        start_time: 1_478_293_361.271_123_1,
        end_time: 1_478_293_361.449,
        kind: Kind::Segment,
        direction: Direction::Inbound,
        traced: false,
        random_trace_id: false,
        http: Http {
            method: Method::GET,
            scheme: "http",
            host: Some(HeaderValue::from_static("user:secret@shop.example.com")),
            uri: "/cart?session=123".parse().expect("uri"),
            client_ip: Some([10, 0, 0, 7].into()),
            x_forwarded_for: true,
            user_agent: Some(HeaderValue::from_static("curl/8.0")),
            status: Some(429),
            content_length: Some(12),
        },
        failure: None,
        subsegments: Vec::new(),
        tunnel: None,
        grpc: None,
        trace_state: None,
    }
}

/// The document as the emitter writes it (`Document::write`, whose bytes the schema property test
/// holds to serde's).
fn json(seg: &Segment, env: &Environment) -> Value {
    let mut out = Vec::new();
    Document { segment: seg, env }.write(&mut out).expect("written");
    serde_json::from_slice(&out).expect("JSON")
}

#[test]
fn a_segment_carries_the_documented_fields() {
    let v = json(&sample(), &Environment::default());
    assert_eq!(v["name"], "front-end");
    assert_eq!(v["trace_id"], "1-581cf771-a006649127e371903a2de979");
    assert_eq!(v["start_time"].as_f64(), Some(1_478_293_361.271_123));
    assert_eq!(v["http"]["request"]["url"], "http://shop.example.com/cart");
    assert_eq!(v["http"]["request"]["client_ip"], "10.0.0.7");
    assert_eq!(v["http"]["request"]["x_forwarded_for"], true);
    assert_eq!(v["http"]["response"]["status"], 429);
    assert_eq!((v["error"].clone(), v["throttle"].clone()), (Value::Bool(true), Value::Bool(true)));
    assert!(v.get("fault").is_none() && v.get("parent_id").is_none() && v.get("origin").is_none());
    assert_eq!(v["annotations"]["direction"], "inbound");
}

#[test]
fn a_user_agent_beyond_ascii_is_read_as_utf8_not_dropped() {
    let mut seg = sample();
    for (sent, recorded) in [(&b"caf\xc3\xa9/1.0"[..], "café/1.0"), (b"odd\xff/2", "odd\u{fffd}/2")] {
        seg.http.user_agent = Some(HeaderValue::from_bytes(sent).expect("obs-text is a valid value"));
        assert_eq!(json(&seg, &Environment::default())["http"]["request"]["user_agent"], recorded);
    }
}

#[test]
fn eks_origin_and_namespace_come_from_the_environment() {
    let env = Environment {
        origin: Some("AWS::EKS::Container"),
        cluster_name: Some("demo".into()),
        pod: Some("front-end-7d4b9".into()),
        container_id: None,
        namespace: Some("shop".into()),
        ..Environment::default()
    };
    let v = json(&sample(), &env);
    // The second document copies the block the first rendered: the same bytes serde_json writes.
    let mut other = sample();
    other.name = Arc::from("other");
    let mut out = Vec::new();
    Document { segment: &other, env: &env }.write(&mut out).expect("written");
    assert!(env.aws_json.get().is_some());
    assert_eq!(out, serde_json::to_vec(&Document { segment: &other, env: &env }).expect("serde"));
    assert_eq!(v["origin"], "AWS::EKS::Container");
    assert_eq!(v["aws"]["eks"], serde_json::json!({"cluster_name": "demo", "pod": "front-end-7d4b9"}));
    assert_eq!(v["annotations"]["k8s_namespace"], "shop");
}

#[test]
fn failures_become_fault_and_cause() {
    let mut s = sample();
    s.http.status = Some(502);
    s.failure =
        Some(Failure { kind: FailureKind::Upstream(ErrorKind::ConnectRefused), message: "connection refused".into() });
    let v = json(&s, &Environment::default());
    assert_eq!(v["fault"], true);
    let ex = &v["cause"]["exceptions"][0];
    assert_eq!(ex["type"], "ConnectionRefused");
    assert_eq!(ex["id"].as_str().map(str::len), Some(16));
}

#[test]
fn subsegments_are_written_nested_or_on_their_own() {
    let mut parent = sample();
    let mut sub = sample();
    sub.name = Arc::from("back-end");
    sub.kind = Kind::EmbeddedSubsegment;
    sub.direction = Direction::Outbound;
    sub.traced = true;
    parent.subsegments.push(sub.clone());
    let v = json(&parent, &Environment::default());
    let nested = &v["subsegments"][0];
    assert_eq!(nested["namespace"], "remote");
    assert_eq!(nested["traced"], true);
    assert!(nested.get("trace_id").is_none() && nested.get("type").is_none());
    assert!(nested["http"]["request"].get("client_ip").is_none());

    sub.kind = Kind::IndependentSubsegment;
    sub.parent_id = Some(parent.id);
    let v = json(&sub, &Environment::default());
    assert_eq!(v["type"], "subsegment");
    assert_eq!(v["parent_id"], "70de5b6f19ff9a0a");
    assert_eq!(v["trace_id"], "1-581cf771-a006649127e371903a2de979");
}

#[test]
fn names_and_long_strings_are_made_acceptable() {
    assert_eq!(sanitize_name("  shop/cart v2 (beta)! "), "shop/cart v2 _beta__");
    assert_eq!(sanitize_name(""), "unnamed");
    assert_eq!(sanitize_name(&"x".repeat(300)).len(), 200);
    let mut s = sample();
    s.http.uri = format!("/{}", "p".repeat(400)).parse().expect("uri");
    assert_eq!(url(&s.http).len(), MAX_HTTP_STRING);
    assert_eq!(truncate("héllo", 2), "hé");
    // 227 characters are left for the path after `http://shop.example.com`: a cut inside an escape
    // drops what of it fits.
    for fill in [223, 224, 225] {
        s.http.uri = format!("/{}%C3%A9", "a".repeat(fill)).parse().expect("uri");
        let cut = url(&s.http);
        assert!(cut.ends_with('a') || cut.ends_with("%C3"), "{fill}: {cut}");
        assert!(cut.len() <= MAX_HTTP_STRING, "{fill}");
    }
}

#[test]
fn a_tunnel_to_an_aws_endpoint_is_an_aws_subsegment_with_per_connection_metadata() {
    let mut sub = sample();
    sub.kind = Kind::IndependentSubsegment;
    sub.parent_id = SegmentId::parse("53995c3f42cd8ad8");
    sub.http.status = None;
    sub.http.content_length = None;
    sub.http.host = Some(HeaderValue::from_static("sqs.eu-west-1.amazonaws.com:443"));
    sub.http.scheme = "https";
    sub.http.uri = Uri::from_static("/");
    sub.tunnel = Some(Box::new(crate::xray::tunnel::Tunnel {
        explicit: false,
        bytes_sent: 517,
        bytes_received: 4096,
        ended: crate::xray::tunnel::Ended::Closed,
    }));
    let v = json(&sub, &Environment::default());
    assert_eq!((&v["namespace"], &v["aws"]["region"]), (&Value::from("aws"), &Value::from("eu-west-1")));
    assert_eq!(v["http"]["request"]["url"], "https://sqs.eu-west-1.amazonaws.com:443/");
    assert!(v["http"]["request"].get("method").is_none() && v["http"].get("response").is_none(), "{v}");
    let t = &v["metadata"]["tunnel"];
    assert_eq!(
        (&t["per_connection"], &t["opened_by"], &t["ended"]),
        (&true.into(), &"interception".into(), &"closed".into())
    );
    assert_eq!((t["bytes_sent"].as_u64(), t["bytes_received"].as_u64()), (Some(517), Some(4096)));
    assert!(v.get("error").is_none() && v.get("fault").is_none());
}
