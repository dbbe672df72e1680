//! Capture through a policy, injection into carriers, TOML configuration.

use std::collections::{BTreeMap, HashMap};

use http::{HeaderMap, HeaderValue};
use serde_json::json;
use threadline::json::{JsonCarrier, JsonCarrierMut};
use threadline::{
    B3Emit, Context, HeaderRule, Limits, MessageHeaders, Policy, Reason, Trust, Validator,
};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn reasons(report: &threadline::Report) -> Vec<(String, Reason)> {
    report
        .iter()
        .map(|r| (r.name.to_string(), r.reason))
        .collect()
}

#[test]
fn default_policy_captures_trace_baggage_and_correlation_only() {
    let h = headers(&[
        ("traceparent", TP),
        ("tracestate", "rojo=1"),
        ("baggage", "k=v"),
        ("x-correlation-id", "abc-123"),
        ("x-tenant-id", "acme"),
        ("authorization", "Bearer secret"),
    ]);
    let c = Policy::default().capture(&h, Trust::Trusted);
    assert!(c.report.is_empty());
    let ctx = c.context;
    assert_eq!(ctx.correlation_id().unwrap().as_str(), "abc-123");
    let t = ctx.trace().unwrap();
    assert_eq!(t.trace_id().to_string(), TID);
    assert_eq!(t.parent_id().unwrap().to_string(), "00f067aa0ba902b7");
    assert_ne!(
        t.span_id(),
        t.parent_id().unwrap(),
        "this hop has its own span id"
    );
    assert_eq!(t.tracestate().unwrap().as_str(), "rojo=1");
    assert_eq!(ctx.baggage().unwrap().as_str(), "k=v");
    assert_eq!(ctx.get("x-tenant-id"), None, "not in the allow-list");
    assert_eq!(ctx.headers().count(), 0);

    let mut out = HeaderMap::new();
    let sent = ctx.inject(&mut out).unwrap();
    assert!(
        out.get("authorization").is_none(),
        "credentials never forwarded"
    );
    assert!(out.get("x-tenant-id").is_none());
    let tp = out["traceparent"].to_str().unwrap();
    assert!(tp.starts_with(&format!("00-{TID}-")));
    assert!(
        tp.contains(&sent.to_string()),
        "inject returns the parent id it sent"
    );
    assert_eq!(out["tracestate"], "rojo=1");
    assert_eq!(out["baggage"], "k=v");
    assert_eq!(out["x-correlation-id"], "abc-123");
}

#[test]
fn missing_or_invalid_context_starts_fresh() {
    let ctx = Policy::default()
        .capture(&HeaderMap::new(), Trust::Trusted)
        .context;
    assert!(ctx.correlation_id().is_some(), "an id is minted");
    assert!(ctx.trace().unwrap().parent_id().is_none(), "a new root");
    assert!(ctx.trace().unwrap().is_sampled());

    let h = headers(&[
        ("traceparent", "00-ZZ-bad"),
        ("tracestate", "rojo=1"),
        ("x-correlation-id", "bad id"),
    ]);
    let c = Policy::default().capture(&h, Trust::Trusted);
    assert!(
        c.context.trace().unwrap().parent_id().is_none(),
        "invalid traceparent: new trace"
    );
    assert!(
        c.context.trace().unwrap().tracestate().is_none(),
        "tracestate dropped with it"
    );
    assert_ne!(c.context.correlation_id().unwrap().as_str(), "bad id");
    let r = reasons(&c.report);
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(
        matches!(r[0].1, Reason::Malformed(_)),
        "correlation id rejected: {r:?}"
    );
    assert_eq!(r[1].0, "traceparent");

    let two = headers(&[("traceparent", TP), ("traceparent", TP)]);
    let c = Policy::default().capture(&two, Trust::Trusted);
    assert!(
        c.context.trace().unwrap().parent_id().is_none(),
        "duplicate traceparent is invalid"
    );
}

#[test]
fn custom_headers_rename_defaults_and_trust() {
    let policy = Policy::builder()
        .header_rule(HeaderRule::new("X-Tenant-Id").trusted_only())
        .header_rule(HeaderRule::new("x-client").rename("x-upstream-client"))
        .header_rule(HeaderRule::new("x-region").default_value("eu"))
        .header_rule(
            HeaderRule::new("x-priority").default_with(|| Some(HeaderValue::from_static("normal"))),
        )
        .header_rule(HeaderRule::new("x-empty-default").default_with(|| None))
        .build()
        .unwrap();
    let h = headers(&[
        ("x-tenant-id", "acme"),
        ("X-CLIENT", "web"),
        ("x-priority", "high"),
    ]);

    let trusted = policy.capture(&h, Trust::Trusted).context;
    assert_eq!(trusted.get("x-tenant-id"), Some("acme"));
    assert_eq!(
        trusted.get("X-Client"),
        Some("web"),
        "names are case-insensitive"
    );
    assert_eq!(trusted.get("x-region"), Some("eu"), "static default");
    assert_eq!(
        trusted.get("x-priority"),
        Some("high"),
        "inbound value wins over the default"
    );
    assert_eq!(trusted.get("x-empty-default"), None);
    let order: Vec<&str> = trusted.headers().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        order,
        ["x-tenant-id", "x-client", "x-region", "x-priority"],
        "policy order kept"
    );

    let untrusted = policy.capture(&h, Trust::Untrusted);
    assert_eq!(
        untrusted.context.get("x-tenant-id"),
        None,
        "trusted_only dropped for untrusted callers"
    );
    assert_eq!(
        reasons(&untrusted.report),
        vec![("x-tenant-id".to_owned(), Reason::Untrusted)]
    );

    let mut out = HeaderMap::new();
    trusted.inject(&mut out);
    assert_eq!(
        out["x-upstream-client"], "web",
        "forwarded under the new name"
    );
    assert!(out.get("x-client").is_none());
    assert_eq!(out["x-tenant-id"], "acme");

    let computed = policy.capture(&HeaderMap::new(), Trust::Trusted).context;
    assert_eq!(
        computed.get("x-priority"),
        Some("normal"),
        "computed default"
    );
}

#[test]
fn injection_never_overwrites_what_the_caller_set() {
    let policy = Policy::builder()
        .header("x-tenant-id")
        .emit_b3(B3Emit::Single)
        .build()
        .unwrap();
    let ctx = policy
        .capture(
            &headers(&[
                ("traceparent", TP),
                ("tracestate", "a=1"),
                ("x-tenant-id", "acme"),
            ]),
            Trust::Trusted,
        )
        .context;
    let mut out = headers(&[
        ("x-tenant-id", "caller-choice"),
        (
            "traceparent",
            "00-11111111111111111111111111111111-2222222222222222-00",
        ),
    ]);
    ctx.inject(&mut out);
    assert_eq!(out["x-tenant-id"], "caller-choice");
    assert!(
        out["traceparent"].to_str().unwrap().starts_with("00-1111"),
        "caller's trace kept"
    );
    assert!(
        out.get("tracestate").is_none(),
        "tracestate belongs with our traceparent only"
    );
    assert!(out.get("b3").is_none());

    let mut fresh = HeaderMap::new();
    ctx.inject_where(&mut fresh, |n| n != "x-tenant-id");
    assert!(fresh.get("x-tenant-id").is_none(), "filtered out");
    let b3 = fresh["b3"].to_str().unwrap();
    assert!(
        b3.starts_with(TID),
        "b3 emitted with the same trace id: {b3}"
    );
}

#[test]
fn b3_is_accepted_when_configured_and_single_wins() {
    let policy = Policy::builder()
        .accept_b3(true)
        .emit_b3(B3Emit::Multi)
        .build()
        .unwrap();
    let h = headers(&[
        ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        ("x-b3-traceid", "11111111111111111111111111111111"),
        ("x-b3-spanid", "2222222222222222"),
    ]);
    let ctx = policy.capture(&h, Trust::Trusted).context;
    assert_eq!(
        ctx.trace_id().unwrap().to_string(),
        "80f198ee56343ba864fe8b2a57d3eff7"
    );
    let multi = headers(&[
        ("x-b3-traceid", "64fe8b2a57d3eff7"),
        ("x-b3-spanid", "2222222222222222"),
        ("x-b3-sampled", "0"),
    ]);
    let ctx = policy.capture(&multi, Trust::Trusted).context;
    assert_eq!(
        ctx.trace_id().unwrap().to_string(),
        "000000000000000064fe8b2a57d3eff7"
    );
    assert!(!ctx.trace().unwrap().is_sampled());
    let mut out = HeaderMap::new();
    ctx.inject(&mut out);
    assert_eq!(out["x-b3-traceid"], "000000000000000064fe8b2a57d3eff7");
    assert_eq!(out["x-b3-sampled"], "0");
    let ignored = Policy::default().capture(&multi, Trust::Trusted).context;
    assert_ne!(
        ignored.trace_id().unwrap().to_string(),
        "000000000000000064fe8b2a57d3eff7",
        "B3 off by default"
    );
}

#[test]
fn correlation_id_options() {
    let h = headers(&[("x-request-id", "a1b2c3d4e5f60718293a4b5c6d7e8f90")]);
    let p = Policy::builder()
        .also_accept("x-request-id")
        .build()
        .unwrap();
    let ctx = p.capture(&h, Trust::Trusted).context;
    assert_eq!(
        ctx.correlation_id().unwrap().as_str(),
        "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    );
    let mut out = HeaderMap::new();
    ctx.inject(&mut out);
    assert_eq!(
        out["x-correlation-id"], "a1b2c3d4e5f60718293a4b5c6d7e8f90",
        "sent under the main name"
    );

    let p = Policy::builder()
        .accept_upstream_correlation_id(false)
        .build()
        .unwrap();
    let c = p.capture(
        &headers(&[("x-correlation-id", "upstream")]),
        Trust::Trusted,
    );
    assert_ne!(c.context.correlation_id().unwrap().as_str(), "upstream");

    let p = Policy::builder()
        .validator(Validator::custom(|s| s.starts_with("req-")))
        .build()
        .unwrap();
    assert_eq!(
        p.capture(&headers(&[("x-correlation-id", "req-1")]), Trust::Trusted)
            .context
            .correlation_id()
            .unwrap()
            .as_str(),
        "req-1"
    );
    assert_ne!(
        p.capture(&headers(&[("x-correlation-id", "job-1")]), Trust::Trusted)
            .context
            .correlation_id()
            .unwrap()
            .as_str(),
        "job-1"
    );

    let p = Policy::builder()
        .id_generator(threadline::codec::IdGenerator::Ulid)
        .build()
        .unwrap();
    assert_eq!(
        p.capture(&HeaderMap::new(), Trust::Trusted)
            .context
            .correlation_id()
            .unwrap()
            .as_str()
            .len(),
        26
    );

    let dup = headers(&[("x-correlation-id", "a"), ("x-correlation-id", "b")]);
    let c = Policy::default().capture(&dup, Trust::Trusted);
    let id = c.context.correlation_id().unwrap().as_str().to_owned();
    assert!(id != "a" && id != "b", "two ids: neither is trusted");
    assert_eq!(reasons(&c.report)[0].1, Reason::Duplicate);
}

#[test]
fn edge_mode_replaces_untrusted_trace_and_id() {
    let p = Policy::builder()
        .untrusted_start_fresh(true, true)
        .build()
        .unwrap();
    let h = headers(&[("traceparent", TP), ("x-correlation-id", "from-outside")]);
    let c = p.capture(&h, Trust::Untrusted);
    assert_ne!(c.context.trace_id().unwrap().to_string(), TID);
    assert_ne!(c.context.correlation_id().unwrap().as_str(), "from-outside");
    assert_eq!(
        c.report
            .iter()
            .filter(|r| r.reason == Reason::ReplacedAtEdge)
            .count(),
        2
    );
    let c = p.capture(&h, Trust::Trusted);
    assert_eq!(
        c.context.trace_id().unwrap().to_string(),
        TID,
        "trusted callers keep theirs"
    );
}

#[test]
fn limits_drop_and_count() {
    let p = Policy::builder()
        .header("x-a")
        .header("x-b")
        .header("x-c")
        .limits(
            Limits::default()
                .with_max_value_bytes(10)
                .with_max_headers(2)
                .with_max_total_bytes(64),
        )
        .build();
    assert!(
        p.is_err(),
        "more rules than max_headers is a configuration error"
    );
    let p = Policy::builder()
        .header("x-a")
        .header("x-b")
        .header("x-c")
        .limits(
            Limits::default()
                .with_max_value_bytes(10)
                .with_max_headers(3)
                .with_max_total_bytes(15),
        )
        .build()
        .unwrap();
    let h = headers(&[
        ("x-a", "0123456789A"),
        ("x-b", "0123456789"),
        ("x-c", "0123456789"),
    ]);
    let c = p.capture(&h, Trust::Trusted);
    assert_eq!(c.context.get("x-a"), None);
    assert_eq!(c.context.get("x-b"), Some("0123456789"));
    assert_eq!(c.context.get("x-c"), None);
    assert_eq!(
        reasons(&c.report),
        vec![
            ("x-a".into(), Reason::TooLong),
            ("x-c".into(), Reason::TotalBytes)
        ]
    );

    let non_ascii = {
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_bytes(&[0xc3, 0xa9]).unwrap());
        h.insert("x-b", HeaderValue::from_bytes(b"a\tb").unwrap());
        h
    };
    let c = p.capture(&non_ascii, Trust::Trusted);
    assert_eq!(c.context.headers().count(), 0, "non-ASCII and tab rejected");
    assert!(c.report.iter().all(|r| r.reason == Reason::InvalidChars));

    let members: Vec<String> = (0..500).map(|i| format!("k{i}=v")).collect();
    let c = Policy::default().capture(&headers(&[("baggage", &members.join(","))]), Trust::Trusted);
    assert_eq!(c.context.baggage().unwrap().iter().count(), 64);
    assert_eq!(
        reasons(&c.report),
        vec![("baggage".into(), Reason::BaggageMembersDropped(436))]
    );

    let long_ts: Vec<String> = (0..20)
        .map(|i| format!("k{i}={}", "v".repeat(40)))
        .collect();
    let c = Policy::default().capture(
        &headers(&[("traceparent", TP), ("tracestate", &long_ts.join(","))]),
        Trust::Trusted,
    );
    let ts = c.context.trace().unwrap().tracestate().unwrap();
    assert!(
        ts.as_str().len() <= 512 && ts.len() == 11,
        "trimmed to 512 bytes: {}",
        ts.as_str().len()
    );
    assert_eq!(
        reasons(&c.report),
        vec![("tracestate".into(), Reason::TraceStateTrimmed)]
    );
}

#[test]
fn capture_all_mode_skips_hop_by_hop_and_credentials() {
    let p = Policy::builder()
        .header("authorization")
        .capture_all_except(["x-internal"])
        .build()
        .unwrap();
    let h = headers(&[
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "h2c"),
        ("proxy-connection", "x"),
        ("host", "example.com"),
        ("content-length", "0"),
        ("accept-encoding", "gzip"),
        ("cookie", "sid=1"),
        ("set-cookie", "a=b"),
        ("proxy-authorization", "Basic x"),
        ("authorization", "Bearer named-explicitly"),
        ("x-internal", "no"),
        ("x-feature", "blue"),
        ("accept", "text/html"),
        ("traceparent", TP),
    ]);
    let ctx = p.capture(&h, Trust::Trusted).context;
    let mut names: Vec<&str> = ctx.headers().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["accept", "authorization", "x-feature"]);
    assert!(
        Policy::builder().header("connection").build().is_err(),
        "hop-by-hop cannot be allow-listed"
    );
    assert!(
        Policy::builder().header("traceparent").build().is_err(),
        "reserved names"
    );
    assert!(Policy::builder().header("bad name").build().is_err());
    assert!(
        Policy::builder()
            .header("x-a")
            .header("X-A")
            .build()
            .is_err(),
        "listed twice"
    );
}

#[test]
fn local_fields_travel_with_messages_not_http() {
    let p = Policy::builder().header("x-tenant-id").build().unwrap();
    let ctx = p
        .capture(
            &headers(&[("x-tenant-id", "acme"), ("traceparent", TP)]),
            Trust::Trusted,
        )
        .context
        .with_field("user.id", "jürgen, the admin")
        .with_field("organisation.id", 42u64);

    let mut http_out = HeaderMap::new();
    ctx.inject(&mut http_out);
    assert!(
        http_out
            .keys()
            .all(|k| !k.as_str().starts_with("tl-field-")),
        "no local fields over HTTP by default"
    );

    let mut msg: HashMap<String, String> = HashMap::new();
    ctx.inject(&mut msg);
    assert_eq!(msg["tl-field-user.id"], "j%C3%BCrgen%2C%20the%20admin");
    assert_eq!(msg["tl-field-organisation.id"], "42");
    assert_eq!(msg["x-tenant-id"], "acme");

    let restored = p.capture(&msg, Trust::Trusted).context;
    assert_eq!(restored.field("user.id"), Some("jürgen, the admin"));
    assert_eq!(restored.field("organisation.id"), Some("42"));
    assert_eq!(restored.correlation_id(), ctx.correlation_id());
    assert_eq!(restored.trace_id(), ctx.trace_id());
    assert_ne!(
        restored.trace().unwrap().parent_id(),
        ctx.trace().unwrap().parent_id(),
        "a new hop"
    );

    let mut tree: BTreeMap<String, String> = BTreeMap::new();
    ctx.inject(&mut tree);
    assert_eq!(
        p.capture(&tree, Trust::Trusted).context.field("user.id"),
        Some("jürgen, the admin")
    );

    let mut pushed = HeaderMap::new();
    ctx.inject(&mut MessageHeaders(&mut pushed));
    assert!(
        pushed.contains_key("tl-field-user.id"),
        "a HeaderMap marked as a message carries fields"
    );
    assert_eq!(
        p.capture(&MessageHeaders(&pushed), Trust::Trusted)
            .context
            .field("organisation.id"),
        Some("42")
    );
    let as_http = p.capture(&pushed, Trust::Trusted).context;
    assert_eq!(
        as_http.field("user.id"),
        None,
        "fields are not accepted from HTTP by default"
    );

    let over_http = Policy::builder().fields_over_http(true).build().unwrap();
    let ctx2 = over_http.new_root().with_field("user.id", "u1");
    let mut out = HeaderMap::new();
    ctx2.inject(&mut out);
    assert_eq!(out["tl-field-user.id"], "u1");
    assert_eq!(
        over_http
            .capture(&out, Trust::Trusted)
            .context
            .field("user.id"),
        Some("u1")
    );
    assert_eq!(
        over_http
            .capture(&out, Trust::Untrusted)
            .context
            .field("user.id"),
        None,
        "never from untrusted callers"
    );
}

#[test]
fn map_carriers_are_case_insensitive_and_untrusted_input() {
    let p = Policy::builder().header("x-tenant-id").build().unwrap();
    let mut m: HashMap<String, String> = HashMap::new();
    m.insert("X-Tenant-Id".into(), "acme".into());
    m.insert("TraceParent".into(), TP.into());
    m.insert("x-correlation-id".into(), "evil\r\nid".into());
    m.insert("tl-field-user.id".into(), "x".repeat(5000));
    let c = p.capture(&m, Trust::Trusted);
    assert_eq!(c.context.get("x-tenant-id"), Some("acme"));
    assert_eq!(c.context.trace_id().unwrap().to_string(), TID);
    assert_ne!(c.context.correlation_id().unwrap().as_str(), "evil\r\nid");
    assert_eq!(c.context.field("user.id"), None, "oversized field dropped");
    assert_eq!(c.report.len(), 2, "{:?}", c.report);

    let mut out: HashMap<String, String> = HashMap::new();
    out.insert("X-TENANT-ID".into(), "mine".into());
    c.context.inject(&mut out);
    assert_eq!(out["X-TENANT-ID"], "mine");
    assert!(
        !out.contains_key("x-tenant-id"),
        "case-insensitive no-overwrite"
    );
}

#[test]
fn json_envelope_round_trip_and_broken_envelopes() {
    let p = Policy::builder().header("x-tenant-id").build().unwrap();
    let ctx = p
        .capture(
            &headers(&[("x-tenant-id", "acme"), ("traceparent", TP)]),
            Trust::Trusted,
        )
        .context
        .with_field("user.id", "alice");
    let mut job = json!({"order": 42, "items": ["a"]})
        .as_object()
        .unwrap()
        .clone();
    ctx.inject(&mut JsonCarrierMut::new(&mut job));
    assert_eq!(job["order"], 42, "payload untouched");
    assert_eq!(job["_http_headers"]["x-tenant-id"], "acme");
    assert_eq!(job["_http_headers"]["tl-field-user.id"], "alice");
    let text = serde_json::to_string(&job).unwrap();
    let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let back = p
        .capture(&JsonCarrier::new(&parsed), Trust::Trusted)
        .context;
    assert_eq!(back.get("x-tenant-id"), Some("acme"));
    assert_eq!(back.field("user.id"), Some("alice"));
    assert_eq!(back.trace_id().unwrap().to_string(), TID);

    let mut custom = serde_json::Map::new();
    ctx.inject(&mut JsonCarrierMut::with_key(&mut custom, "meta"));
    assert!(custom["meta"].is_object());
    assert_eq!(
        p.capture(&JsonCarrier::with_key(&custom, "meta"), Trust::Trusted)
            .context
            .get("x-tenant-id"),
        Some("acme")
    );

    let broken = json!({"_http_headers": "not an object", "order": 1})
        .as_object()
        .unwrap()
        .clone();
    let c = p.capture(&JsonCarrier::new(&broken), Trust::Trusted);
    assert!(c.context.correlation_id().is_some(), "fresh context");
    assert_eq!(c.report.iter().next().unwrap().reason, Reason::WrongType);

    let wrong_types = json!({"_http_headers": {"x-tenant-id": 5, "traceparent": [TP], "x-correlation-id": {"a": 1}}})
        .as_object()
        .unwrap()
        .clone();
    let c = p.capture(&JsonCarrier::new(&wrong_types), Trust::Trusted);
    assert_eq!(c.context.get("x-tenant-id"), None);
    assert_eq!(
        c.context.trace_id().unwrap().to_string(),
        TID,
        "an array of one string is fine"
    );
    assert_eq!(c.report.len(), 2, "{:?}", c.report);

    let missing = json!({"order": 1}).as_object().unwrap().clone();
    let c = p.capture(&JsonCarrier::new(&missing), Trust::Trusted);
    assert!(c.report.is_empty());
    assert!(
        c.context.trace().unwrap().parent_id().is_none(),
        "no context: a fresh root"
    );
}

#[test]
fn new_root_for_work_outside_requests() {
    let p = Policy::default();
    let a = p.new_root();
    let b = p.new_root();
    assert_ne!(a.correlation_id(), b.correlation_id());
    assert_ne!(a.trace_id(), b.trace_id());
    assert!(a.trace().unwrap().parent_id().is_none());
    assert!(!a.is_empty());
    assert!(Context::empty().is_empty());
}

#[test]
fn policy_from_toml() {
    let p = Policy::from_toml(
        r#"
        [correlation]
        header = "x-request-id"
        also_accept = ["x-correlation-id"]
        generator = "uuid-v7"

        [[headers]]
        name = "x-tenant-id"
        trusted_only = true

        [[headers]]
        name = "x-client"
        rename = "x-upstream-client"
        default = "unknown"

        [trace]
        accept_b3 = true
        emit_b3 = "single"

        [untrusted]
        fresh_trace = true

        [fields]
        prefix = "ctx-"
        "#,
    )
    .unwrap();
    assert_eq!(p.correlation_header(), "x-request-id");
    assert_eq!(p.field_prefix(), "ctx-");
    let rules: Vec<_> = p
        .rules()
        .map(|(a, b, t)| (a.as_str().to_owned(), b.as_str().to_owned(), t))
        .collect();
    assert_eq!(rules[0], ("x-tenant-id".into(), "x-tenant-id".into(), true));
    assert_eq!(
        rules[1],
        ("x-client".into(), "x-upstream-client".into(), false)
    );
    let ctx = p
        .capture(
            &headers(&[("x-correlation-id", "legacy")]),
            Trust::Untrusted,
        )
        .context;
    assert_eq!(ctx.correlation_id().unwrap().as_str(), "legacy");
    assert_eq!(ctx.get("x-client"), Some("unknown"));
    let minted = p.capture(&HeaderMap::new(), Trust::Trusted).context;
    assert_eq!(
        minted.correlation_id().unwrap().as_str().as_bytes()[14],
        b'7',
        "uuid v7"
    );

    for (bad, why) in [
        ("[correlation]\nheadr = \"x\"", "unknown key"),
        ("[[headers]]\nname = \"bad name\"", "bad header name"),
        ("[[headers]]\nname = \"connection\"", "hop-by-hop"),
        (
            "[[headers]]\nname = \"x-a\"\ndefault = \"a\\nb\"",
            "bad default",
        ),
        ("[trace]\nemit_b3 = \"double\"", "unknown enum value"),
        ("not toml at all [", "syntax"),
    ] {
        let e = Policy::from_toml(bad).unwrap_err();
        assert!(!e.to_string().is_empty(), "{why}");
    }
}
