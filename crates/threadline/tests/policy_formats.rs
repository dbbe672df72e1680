//! Trace formats in the policy: read (after or before W3C), written beside W3C,
//! conflicts and malformed values reported, edge mode, grants, a format's own baggage.

use http::{HeaderMap, HeaderName, HeaderValue};
use threadline::codec::{Codec, ErrorKind};
use threadline::format::{DatadogFormat, JaegerFormat, XRayFormat};
use threadline::{Captured, Policy, Reason, Trust};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const XRAY: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Self=1-abc;Lineage=a87bd80c:1|68fd508a:5";
const XRAY_TRACE: &str = "5759e988bd862e3fe1be46a994272793";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn reasons(c: &Captured) -> Vec<(String, Reason)> {
    c.report
        .iter()
        .map(|r| (r.name.to_string(), r.reason))
        .collect()
}

fn xray_policy() -> Policy {
    Policy::builder()
        .read_format(XRayFormat)
        .write_format(XRayFormat)
        .build()
        .unwrap()
}

#[test]
fn a_format_read_continues_the_trace_and_writers_forward_its_own_keys() {
    let c = xray_policy().capture(&headers(&[("x-amzn-trace-id", XRAY)]), Trust::Trusted);
    assert!(c.report.is_empty(), "{:?}", c.report);
    let t = c.context.trace().unwrap();
    assert_eq!(t.trace_id().to_string(), XRAY_TRACE);
    assert_eq!(t.parent_id().unwrap().to_string(), "53995c3f42cd8ad8");
    assert!(t.is_sampled());

    let mut out = HeaderMap::new();
    let sent = c
        .context
        .inject(&mut out)
        .expect("a parent id for the call");
    let tp = out["traceparent"].to_str().unwrap();
    assert_eq!(tp, format!("00-{XRAY_TRACE}-{sent}-01"));
    let xray = out["x-amzn-trace-id"].to_str().unwrap();
    assert!(
        xray.starts_with(&format!(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent={sent};Sampled=1"
        )),
        "the call's own parent id: {xray}"
    );
    assert!(
        xray.contains("Self=1-abc"),
        "X-Ray's other keys are forwarded: {xray}"
    );
    assert!(xray.contains("Lineage=a87bd80c:1|68fd508a:5"), "{xray}");
}

#[test]
fn w3c_first_by_default_and_conflicts_are_reported() {
    let both = headers(&[("traceparent", TP), ("x-amzn-trace-id", XRAY)]);
    let c = xray_policy().capture(&both, Trust::Trusted);
    assert_eq!(
        c.context.trace_id().unwrap().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let r = reasons(&c);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].0, "x-amzn-trace-id");
    assert!(
        matches!(r[0].1, Reason::Malformed(e) if e.kind() == ErrorKind::Conflict && e.codec() == Codec::XRay),
        "{r:?}"
    );

    let first = Policy::builder()
        .read_format(XRayFormat)
        .formats_first(true)
        .build()
        .unwrap();
    let c = first.capture(&both, Trust::Trusted);
    assert_eq!(c.context.trace_id().unwrap().to_string(), XRAY_TRACE);
    let r = reasons(&c);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].0, "traceparent");

    // The same trace in both: nothing to report.
    let same = headers(&[
        (
            "traceparent",
            &format!("00-{XRAY_TRACE}-53995c3f42cd8ad8-01"),
        ),
        ("x-amzn-trace-id", XRAY),
    ]);
    assert!(
        xray_policy()
            .capture(&same, Trust::Trusted)
            .report
            .is_empty()
    );
}

#[test]
fn malformed_format_values_are_reported_by_name_and_never_kept() {
    let c = xray_policy().capture(
        &headers(&[("x-amzn-trace-id", "Root=1-zz;Parent=secret-value")]),
        Trust::Trusted,
    );
    assert!(
        c.context.trace().unwrap().parent_id().is_none(),
        "a new trace"
    );
    let r = reasons(&c);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].0, "x-amzn-trace-id");
    assert!(matches!(r[0].1, Reason::Malformed(e) if e.codec() == Codec::XRay));
    assert!(!format!("{:?}", c.report).contains("secret-value"));
}

#[test]
fn edge_mode_replaces_a_trace_in_any_format() {
    let edge = Policy::builder()
        .read_format(XRayFormat)
        .untrusted_start_fresh(true, true)
        .build()
        .unwrap();
    let c = edge.capture(&headers(&[("x-amzn-trace-id", XRAY)]), Trust::Untrusted);
    assert_ne!(c.context.trace_id().unwrap().to_string(), XRAY_TRACE);
    assert_eq!(
        reasons(&c),
        vec![("x-amzn-trace-id".to_owned(), Reason::ReplacedAtEdge)]
    );
    let c = edge.capture(&headers(&[("x-amzn-trace-id", XRAY)]), Trust::Trusted);
    assert_eq!(c.context.trace_id().unwrap().to_string(), XRAY_TRACE);
}

#[test]
fn a_formats_own_baggage_is_taken_when_no_w3c_baggage_came() {
    let policy = Policy::builder().read_format(JaegerFormat).build().unwrap();
    let jaeger = headers(&[
        (
            "uber-trace-id",
            "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1",
        ),
        ("uberctx-user", "alice"),
        ("uberctx-region", "eu%20west"),
    ]);
    let c = policy.capture(&jaeger, Trust::Trusted);
    let b = c.context.baggage().expect("baggage from uberctx-*");
    assert_eq!(b.get("user").as_deref(), Some("alice"));
    assert_eq!(b.get("region").as_deref(), Some("eu west"));

    let mut with_w3c = jaeger.clone();
    with_w3c.insert("baggage", "w3c=yes".parse().unwrap());
    let c = policy.capture(&with_w3c, Trust::Trusted);
    assert_eq!(c.context.baggage().unwrap().as_str(), "w3c=yes", "W3C wins");

    let edge = Policy::builder()
        .read_format(JaegerFormat)
        .untrusted_start_fresh(true, true)
        .build()
        .unwrap();
    let c = edge.capture(&jaeger, Trust::Untrusted);
    assert!(
        c.context.baggage().is_none(),
        "no baggage from an untrusted caller at the edge"
    );
}

#[test]
fn writers_follow_the_destinations_grant() {
    let policy = Policy::builder()
        .write_format(JaegerFormat)
        .build()
        .unwrap();
    let ctx = policy
        .capture(&headers(&[("traceparent", TP)]), Trust::Trusted)
        .context;
    let mut all = HeaderMap::new();
    let sent = ctx.inject(&mut all).unwrap();
    assert_eq!(
        all["uber-trace-id"],
        format!("4bf92f3577b34da6a3ce929d0e0e4736:{sent}:0:1").as_str()
    );
    let mut only_tp = HeaderMap::new();
    ctx.inject_where(&mut only_tp, |n| n == "traceparent");
    assert!(!only_tp.contains_key("uber-trace-id"));
    assert!(only_tp.contains_key("traceparent"));
}

#[test]
fn without_w3c_a_format_alone_carries_the_trace() {
    let policy = Policy::builder()
        .w3c(false)
        .read_format(DatadogFormat)
        .write_format(DatadogFormat)
        .build()
        .unwrap();
    let dd = headers(&[
        ("x-datadog-trace-id", "1234567890"),
        ("x-datadog-parent-id", "987654321"),
        ("x-datadog-sampling-priority", "1"),
        ("x-datadog-tags", "_dd.p.tid=640cfd8d00000000"),
    ]);
    let c = policy.capture(&dd, Trust::Trusted);
    assert!(c.report.is_empty(), "{:?}", c.report);
    let mut out = HeaderMap::new();
    c.context.inject(&mut out);
    assert!(!out.contains_key("traceparent"), "W3C is off");
    assert_eq!(out["x-datadog-trace-id"], "1234567890");
    assert_eq!(out["x-datadog-sampling-priority"], "1");
    assert!(
        out["x-datadog-tags"]
            .to_str()
            .unwrap()
            .contains("_dd.p.tid=640cfd8d00000000")
    );
}

#[test]
fn a_formats_headers_cannot_be_custom_header_rules() {
    let err = Policy::builder()
        .read_format(XRayFormat)
        .header("x-amzn-trace-id")
        .build();
    assert!(err.is_err());
    let err = Policy::builder()
        .read_format(JaegerFormat)
        .header("uberctx-user")
        .build();
    assert!(err.is_err());
}

#[test]
fn formats_from_a_policy_file() {
    let policy = Policy::from_toml(
        r#"
        [trace]
        read = ["xray", "datadog"]
        write = ["jaeger"]
        "#,
    )
    .unwrap();
    let c = policy.capture(&headers(&[("x-amzn-trace-id", XRAY)]), Trust::Trusted);
    assert_eq!(c.context.trace_id().unwrap().to_string(), XRAY_TRACE);
    let mut out = HeaderMap::new();
    c.context.inject(&mut out);
    assert!(out.contains_key("uber-trace-id"));
    assert!(
        Policy::from_toml("[trace]\nread = [\"nope\"]").is_err(),
        "an unknown format is a configuration error"
    );
}
