//! Reading and writing both trace context headers.

use super::*;
use http::HeaderValue;

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const SAME_ROOT: &str = "1-4bf92f35-77b34da6a3ce929d0e0e4736";
const OTHER_ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).expect("test header"));
    }
    h
}

fn read(p: &str, pairs: &[(&'static str, &str)]) -> (TraceHeader, Problems) {
    p.parse::<Propagation>().expect("propagation").read(&headers(pairs))
}

#[test]
fn flag_values_name_the_formats() {
    assert_eq!("xray,w3c".parse(), Ok(Propagation::default()));
    assert_eq!("w3c".parse(), Ok(Propagation { xray: false, w3c: true }));
    assert_eq!(" XRay , tracecontext ".parse(), Ok(Propagation::default()));
    assert!("b3".parse::<Propagation>().err().unwrap_or_default().contains("unknown format `b3`"));
    assert!(",".parse::<Propagation>().is_err());
}

#[test]
fn a_traceparent_alone_continues_its_trace() {
    let (h, problems) = read("xray,w3c", &[("traceparent", TP)]);
    assert_eq!(problems, Problems::default());
    assert_eq!(h.root.map(|r| r.to_string()).as_deref(), Some(SAME_ROOT));
    assert_eq!(h.parent.map(|p| p.to_string()).as_deref(), Some("00f067aa0ba902b7"));
    assert_eq!(h.sampled, Sampled::Yes);
    let (h, _) = read("w3c", &[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")]);
    assert_eq!(h.sampled, Sampled::No);
}

#[test]
fn x_amzn_trace_id_wins_when_the_two_disagree() {
    let xray = format!("Root={OTHER_ROOT};Parent=53995c3f42cd8ad8;Sampled=0");
    let (h, problems) = read("xray,w3c", &[("x-amzn-trace-id", &xray), ("traceparent", TP)]);
    assert!(problems.disagree);
    assert_eq!(h.root.map(|r| r.to_string()).as_deref(), Some(OTHER_ROOT));
    assert_eq!(h.parent.map(|p| p.to_string()).as_deref(), Some("53995c3f42cd8ad8"));
    assert_eq!(h.sampled, Sampled::No);
}

#[test]
fn a_traceparent_in_the_same_trace_fills_in_what_x_ray_lacks() {
    let (h, problems) = read("xray,w3c", &[("x-amzn-trace-id", &format!("Root={SAME_ROOT}")), ("traceparent", TP)]);
    assert!(!problems.disagree);
    assert_eq!(h.parent.map(|p| p.to_string()).as_deref(), Some("00f067aa0ba902b7"));
    assert_eq!(h.sampled, Sampled::Yes);
}

#[test]
fn formats_left_out_are_neither_read_nor_written() {
    let (h, _) = read("xray", &[("traceparent", TP)]);
    assert_eq!(h, TraceHeader::EMPTY);
    let (h, _) = read("w3c", &[("x-amzn-trace-id", &format!("Root={OTHER_ROOT};Sampled=1"))]);
    assert_eq!(h, TraceHeader::EMPTY);

    let root = TraceId::parse(OTHER_ROOT).expect("root");
    let id = SegmentId::parse("0123456789abcdef").expect("id");
    let mut out = HeaderMap::new();
    Propagation { xray: false, w3c: true }.write(&mut out, &TraceHeader::EMPTY, &root, &id, true, false);
    assert!(!out.contains_key(&TRACE_HEADER));
    // No caller's context: the trace is this one's, random in its right-most bytes.
    assert_eq!(
        out.get(&TRACEPARENT).and_then(|v| v.to_str().ok()),
        Some("00-5759e988bd862e3fe1be46a994272793-0123456789abcdef-03")
    );
}

#[test]
fn the_random_trace_id_flag_goes_on_as_the_caller_gave_it() {
    let id = SegmentId::parse("0123456789abcdef").expect("id");
    let flags = |incoming: &[(&'static str, &str)]| {
        let (h, _) = read("xray,w3c", incoming);
        let mut out = HeaderMap::new();
        let root = h.root.expect("a root");
        Propagation { xray: true, w3c: true }.write(&mut out, &h, &root, &id, true, false);
        out.get(&TRACEPARENT).and_then(|v| v.to_str().ok()).map(|v| v[53..].to_owned())
    };
    let w3c = |f: &str| format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{f}");
    assert_eq!(flags(&[("traceparent", &w3c("03"))]).as_deref(), Some("03"));
    assert_eq!(flags(&[("traceparent", &w3c("01"))]).as_deref(), Some("01"), "not said: not claimed");
    // X-Ray's header says nothing of it; the same trace's traceparent beside it does.
    let xray = ("x-amzn-trace-id", "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=53995c3f42cd8ad8;Sampled=1");
    assert_eq!(flags(&[xray]).as_deref(), Some("01"));
    assert_eq!(flags(&[xray, ("traceparent", &w3c("03"))]).as_deref(), Some("03"));
}

#[test]
fn both_headers_are_written_consistently_and_tracestate_is_untouched() {
    let mut out = headers(&[("traceparent", TP), ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")]);
    let (h, problems) = Propagation::default().read(&out);
    assert!(!problems.stale_tracestate);
    let root = h.root.expect("root");
    let ours = SegmentId::parse("0123456789abcdef").expect("id");
    Propagation::default().write(&mut out, &h, &root, &ours, false, problems.stale_tracestate);
    assert_eq!(out.get_all(&TRACEPARENT).iter().count(), 1);
    assert_eq!(
        out.get(&TRACEPARENT).and_then(|v| v.to_str().ok()),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-0123456789abcdef-00")
    );
    assert_eq!(
        out.get(&TRACE_HEADER).and_then(|v| v.to_str().ok()),
        Some(format!("Root={SAME_ROOT};Parent=0123456789abcdef;Sampled=0")).as_deref()
    );
    assert_eq!(out.get("tracestate").and_then(|v| v.to_str().ok()), Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
}

#[test]
fn malformed_or_repeated_traceparents_are_ignored_and_reported() {
    let (h, problems) = read("xray,w3c", &[("traceparent", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]);
    assert_eq!((h, problems.w3c), (TraceHeader::EMPTY, Some(Invalid::Version)));
    let (h, problems) = read("xray,w3c", &[("traceparent", TP), ("traceparent", TP)]);
    assert_eq!((h, problems.w3c), (TraceHeader::EMPTY, Some(Invalid::Repeated)));
}

#[test]
fn a_tracestate_goes_on_only_with_the_traceparent_it_came_with() {
    let state = ("tracestate", "congo=t61rcWkgMzE");
    let xray = format!("Root={OTHER_ROOT};Parent=53995c3f42cd8ad8;Sampled=1");
    let same = format!("Root={SAME_ROOT}");
    for (what, pairs, stale) in [
        ("a traceparent followed", vec![("traceparent", TP), state], false),
        ("the same trace in both", vec![("x-amzn-trace-id", same.as_str()), ("traceparent", TP), state], false),
        ("no traceparent", vec![state], true),
        ("X-Ray alone", vec![("x-amzn-trace-id", xray.as_str()), state], true),
        (
            "an invalid traceparent",
            vec![("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"), state],
            true,
        ),
        ("a traceparent X-Ray overrode", vec![("x-amzn-trace-id", xray.as_str()), ("traceparent", TP), state], true),
        ("no tracestate to speak of", vec![("x-amzn-trace-id", xray.as_str())], false),
    ] {
        let mut out = headers(&pairs);
        let (h, problems) = Propagation::default().read(&out);
        assert_eq!(problems.stale_tracestate, stale, "{what}");
        let root = h.root.unwrap_or_else(|| TraceId::parse(OTHER_ROOT).expect("root"));
        let ours = SegmentId::parse("0123456789abcdef").expect("id");
        Propagation::default().write(&mut out, &h, &root, &ours, true, problems.stale_tracestate);
        let kept = pairs.iter().any(|(k, _)| *k == "tracestate") && !stale;
        assert_eq!(out.contains_key("tracestate"), kept, "{what}");
    }
    // Without W3C propagation the proxy leaves both W3C headers as they came.
    let (_, problems) = read("xray", &[state]);
    assert!(!problems.stale_tracestate);
}
