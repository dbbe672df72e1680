//! Trust decides, for every carrier kind: what an untrusted source can and cannot set,
//! local field names and limits, baggage at the edge, and the values that must be
//! checked after decoding.

use std::collections::{BTreeMap, HashMap};

use http::{HeaderMap, HeaderValue};
use serde_json::json;
use threadline::json::{Envelope, JsonCarrier};
use threadline::{
    Captured, Extractor, HeaderRule, IdOrigin, Limits, MessageHeaders, Policy, Reason, Restorer,
    Trust, UntrustedBaggage,
};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn policy() -> Policy {
    Policy::builder()
        .header_rule(HeaderRule::new("x-tenant-id").trusted_only())
        .build()
        .unwrap()
}

fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn string_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn reasons(c: &Captured) -> Vec<(String, Reason)> {
    c.report
        .iter()
        .map(|r| (r.name.to_string(), r.reason))
        .collect()
}

const HOSTILE: &[(&str, &str)] = &[
    ("x-correlation-id", "order-42"),
    ("traceparent", TP),
    ("x-tenant-id", "mallory-corp"),
    ("tl-field-user.id", "mallory"),
];

/// Neither a `trusted_only` header nor a local field from an untrusted source, whatever
/// the carrier; the same input from a trusted source keeps both.
fn assert_untrusted_sets_nothing<E: Extractor + ?Sized>(what: &str, carrier: &E) {
    let p = policy();
    let c = p.capture(carrier, Trust::Untrusted);
    assert_eq!(c.context.get("x-tenant-id"), None, "{what}: tenant");
    assert_eq!(c.context.field("user.id"), None, "{what}: local field");
    assert_eq!(
        c.context.correlation_id().unwrap().as_str(),
        "order-42",
        "{what}: ids are not trust-gated outside edge mode"
    );
    let r = reasons(&c);
    assert!(
        r.contains(&("x-tenant-id".into(), Reason::Untrusted)),
        "{what}: {r:?}"
    );
    assert!(
        r.contains(&("tl-field-user.id".into(), Reason::Untrusted)),
        "{what}: {r:?}"
    );
}

#[test]
fn untrusted_sources_set_no_trusted_value_on_any_carrier_kind() {
    // HTTP headers, with fields over HTTP on (the only way HTTP carries fields).
    let over_http = Policy::builder()
        .header_rule(HeaderRule::new("x-tenant-id").trusted_only())
        .fields_over_http(true)
        .build()
        .unwrap();
    let c = over_http.capture(&header_map(HOSTILE), Trust::Untrusted);
    assert_eq!(
        (c.context.get("x-tenant-id"), c.context.field("user.id")),
        (None, None),
        "HeaderMap"
    );
    let c = over_http.capture(&header_map(HOSTILE), Trust::Trusted);
    assert_eq!(
        (c.context.get("x-tenant-id"), c.context.field("user.id")),
        (Some("mallory-corp"), Some("mallory")),
        "HeaderMap, trusted"
    );

    // Message carriers.
    assert_untrusted_sets_nothing("HashMap", &string_map(HOSTILE));
    let tree: BTreeMap<String, String> = string_map(HOSTILE).into_iter().collect();
    assert_untrusted_sets_nothing("BTreeMap", &tree);
    assert_untrusted_sets_nothing("MessageHeaders", &MessageHeaders(&header_map(HOSTILE)));
    let job = json!({"order": 1, "_http_headers": string_map(HOSTILE)});
    assert_untrusted_sets_nothing("JSON envelope", &JsonCarrier::new(job.as_object().unwrap()));

    // The same input from a trusted source keeps both.
    let c = policy().capture(&string_map(HOSTILE), Trust::Trusted);
    assert_eq!(
        (c.context.get("x-tenant-id"), c.context.field("user.id")),
        (Some("mallory-corp"), Some("mallory"))
    );
}

#[test]
fn a_restorer_is_untrusted_unless_told_otherwise() {
    let job: Envelope<serde_json::Value> =
        serde_json::from_value(json!({"order": 1, "_http_headers": string_map(HOSTILE)})).unwrap();
    let open = Restorer::new(policy());
    assert_eq!(open.source_trust(), Trust::Untrusted);
    let ctx = job.context(&open).context;
    assert_eq!((ctx.get("x-tenant-id"), ctx.field("user.id")), (None, None));
    assert_eq!(ctx.correlation_id().unwrap().as_str(), "order-42");

    let internal = Restorer::new(policy()).trust(Trust::Trusted);
    let ctx = job.context(&internal).context;
    assert_eq!(
        (ctx.get("x-tenant-id"), ctx.field("user.id")),
        (Some("mallory-corp"), Some("mallory"))
    );
    let ctx = internal.restore(&string_map(HOSTILE)).context;
    assert_eq!(ctx.get("x-tenant-id"), Some("mallory-corp"));

    // Edge mode applies to message sources as to HTTP callers.
    let edge = Policy::builder()
        .untrusted_start_fresh(true, true)
        .build()
        .unwrap();
    let ctx = Restorer::new(edge).restore(&string_map(HOSTILE)).context;
    assert_ne!(ctx.correlation_id().unwrap().as_str(), "order-42");
    assert_eq!(ctx.correlation_id_origin(), Some(IdOrigin::Minted));
    assert!(ctx.trace().unwrap().parent_id().is_none(), "a new trace");
}

#[test]
fn stats_count_fresh_contexts_apart_from_rejected_values() {
    let r = Restorer::new(policy()).trust(Trust::Trusted);
    // Usable: the correlation id continues, one value rejected.
    r.restore(&string_map(&[
        ("x-correlation-id", "order-1"),
        ("traceparent", "00-bad-01"),
    ]));
    // Nothing usable: both ids malformed.
    r.restore(&string_map(&[
        ("x-correlation-id", "bad\nid"),
        ("traceparent", "00-bad-01"),
    ]));
    // No context at all.
    r.restore(&string_map(&[("payload", "x")]));
    // A trace continues without a correlation id.
    r.restore(&string_map(&[("traceparent", TP)]));
    let s = r.stats();
    assert_eq!(s.messages(), 4);
    assert_eq!((s.restored(), s.fresh()), (2, 2));
    assert_eq!((s.with_rejections(), s.rejected_values()), (2, 3));
}

#[test]
fn reserved_field_names_are_refused_from_every_source() {
    let p = Policy::builder().fields_over_http(true).build().unwrap();
    let names = [
        "level",
        "message",
        "timestamp",
        "target",
        "correlation_id",
        "trace_id",
        "span_id",
        "service",
        "Level",
    ];
    for name in names {
        let key = format!("tl-field-{name}");
        let c = p.capture(&string_map(&[(&key, "forged")]), Trust::Trusted);
        assert_eq!(c.context.fields().count(), 0, "{name} from a message");
        assert_eq!(
            reasons(&c),
            vec![(key.to_ascii_lowercase(), Reason::FieldName)],
            "{name}"
        );
        let c = p.capture(&header_map(&[(&key, "forged")]), Trust::Trusted);
        assert_eq!(c.context.fields().count(), 0, "{name} over HTTP");
        assert!(
            p.new_root().try_with_field(name, "forged").is_err(),
            "{name} bound in process"
        );
    }
    assert!(p.new_root().try_with_field("user.id", "alice").is_ok());
}

#[test]
fn field_names_and_counts_have_the_limits_of_try_with_field_and_the_policy() {
    let p = Policy::builder()
        .limits(
            Limits::default()
                .with_max_fields(3)
                .with_max_total_bytes(200),
        )
        .build()
        .unwrap();
    let long = format!("tl-field-{}", "n".repeat(65));
    let ok64 = format!("tl-field-{}", "n".repeat(64));
    let c = p.capture(&string_map(&[(&long, "v"), (&ok64, "v")]), Trust::Trusted);
    assert_eq!(
        c.context.fields().count(),
        1,
        "64 bytes is the longest name"
    );
    assert_eq!(reasons(&c), vec![(long.clone(), Reason::FieldName)]);

    let many: Vec<(String, String)> = (0..10)
        .map(|i| (format!("tl-field-f{i}"), "v".to_owned()))
        .collect();
    let map: HashMap<String, String> = many.into_iter().collect();
    let c = p.capture(&map, Trust::Trusted);
    assert_eq!(c.context.fields().count(), 3, "max_fields");
    assert_eq!(
        c.report
            .iter()
            .filter(|r| r.reason == Reason::TooManyFields)
            .count(),
        7
    );

    // Names count against the total: 3 fields of 60-byte names and 10-byte values.
    let big: HashMap<String, String> = (0..3)
        .map(|i| (format!("tl-field-{i}{}", "x".repeat(59)), "v".repeat(10)))
        .collect();
    let c = p.capture(&big, Trust::Trusted);
    assert_eq!(
        c.context.fields().count(),
        2,
        "140 bytes fit in 200, 210 do not"
    );
    assert!(c.report.iter().any(|r| r.reason == Reason::TotalBytes));
}

#[test]
fn field_values_are_checked_after_percent_decoding() {
    let p = Policy::default();
    for (value, why) in [
        ("Kettle%E2%80%AEgpj.exe", "right-to-left override"),
        ("a%0Alevel=ERROR", "newline"),
        ("a%E2%80%8Bb", "zero-width space"),
        ("%FF%FE", "not UTF-8"),
        ("a%zzb", "malformed escape"),
        ("a%2", "truncated escape"),
    ] {
        let c = p.capture(&string_map(&[("tl-field-item", value)]), Trust::Trusted);
        assert_eq!(c.context.field("item"), None, "{why}");
        assert_eq!(
            reasons(&c),
            vec![("tl-field-item".to_owned(), Reason::InvalidChars)],
            "{why}"
        );
    }
    let c = p.capture(
        &string_map(&[("tl-field-user.name", "J%C3%BCrgen%2C%20admin")]),
        Trust::Trusted,
    );
    assert_eq!(c.context.field("user.name"), Some("Jürgen, admin"));
    // In process too: an invisible character never reaches a field unmasked.
    let ctx = p.new_root().with_field("item", "Kettle\u{202e}gpj.exe");
    assert_eq!(ctx.field("item"), Some("Kettle\u{fffd}gpj.exe"));
}

#[test]
fn baggage_follows_the_trust_rules() {
    let inbound = header_map(&[("baggage", "user.id=mallory,region=eu")]);
    // Outside edge mode an untrusted caller's baggage is kept, like its trace context.
    let c = Policy::default().capture(&inbound, Trust::Untrusted);
    assert_eq!(
        c.context.baggage().unwrap().as_str(),
        "user.id=mallory,region=eu"
    );

    let edge = Policy::builder()
        .untrusted_start_fresh(true, true)
        .build()
        .unwrap();
    let c = edge.capture(&inbound, Trust::Untrusted);
    assert!(c.context.baggage().is_none(), "dropped at the edge");
    assert_eq!(reasons(&c), vec![("baggage".to_owned(), Reason::Untrusted)]);
    let mut out = HeaderMap::new();
    c.context.inject(&mut out);
    assert!(!out.contains_key("baggage"), "and so never forwarded");
    let c = edge.capture(&inbound, Trust::Trusted);
    assert!(c.context.baggage().is_some(), "trusted callers keep theirs");

    let keys = Policy::builder()
        .untrusted_start_fresh(true, true)
        .untrusted_baggage(UntrustedBaggage::Keys(vec!["region".into()]))
        .build()
        .unwrap();
    let c = keys.capture(&inbound, Trust::Untrusted);
    assert_eq!(c.context.baggage().unwrap().as_str(), "region=eu");
    assert_eq!(
        reasons(&c),
        vec![("baggage".to_owned(), Reason::BaggageMembersUntrusted(1))]
    );

    let all = Policy::builder()
        .untrusted_start_fresh(true, true)
        .untrusted_baggage(UntrustedBaggage::Keep)
        .build()
        .unwrap();
    assert!(
        all.capture(&inbound, Trust::Untrusted)
            .context
            .baggage()
            .is_some()
    );

    assert!(
        Policy::builder()
            .untrusted_baggage(UntrustedBaggage::Keys(vec!["bad key".into()]))
            .build()
            .is_err(),
        "keys are checked when the policy is built"
    );
}

#[test]
fn empty_baggage_members_are_never_forwarded() {
    let p = Policy::default();
    for (sent, kept, dropped) in [
        ("a=1,,b=2,", "a=1,b=2", 2),
        (",a=1", "a=1", 1),
        ("a=1, ,b=2", "a=1,b=2", 1),
    ] {
        let c = p.capture(&header_map(&[("baggage", sent)]), Trust::Trusted);
        assert_eq!(c.context.baggage().unwrap().as_str(), kept, "{sent:?}");
        assert_eq!(
            reasons(&c),
            vec![("baggage".to_owned(), Reason::BaggageMembersDropped(dropped))],
            "{sent:?}"
        );
    }
}

#[test]
fn the_stored_correlation_id_is_the_validated_one() {
    let p = Policy::default();
    let c = p.capture(
        &string_map(&[("x-correlation-id", "  order-7 \t")]),
        Trust::Trusted,
    );
    assert_eq!(c.context.correlation_id().unwrap().as_str(), "order-7");
    assert_eq!(c.context.correlation_id_origin(), Some(IdOrigin::Received));
    let job = json!({"_http_headers": {"x-correlation-id": " job-9 "}});
    let c = p.capture(&JsonCarrier::new(job.as_object().unwrap()), Trust::Trusted);
    assert_eq!(c.context.correlation_id().unwrap().as_str(), "job-9");
    let mut out = HeaderMap::new();
    c.context.inject(&mut out);
    assert_eq!(out["x-correlation-id"], "job-9");
}

#[test]
fn an_invalid_default_value_is_a_build_error_not_a_panic() {
    for bad in ["line\nbreak", "caf\u{e9}", "tab\there"] {
        let r = Policy::builder()
            .header_rule(HeaderRule::new("x-client").default_value(bad))
            .build();
        assert!(r.is_err(), "{bad:?}");
    }
    let too_long = "x".repeat(5000);
    assert!(
        Policy::builder()
            .header_rule(HeaderRule::new("x-client").default_value(too_long))
            .build()
            .is_err()
    );
    let p = Policy::builder()
        .header_rule(HeaderRule::new("x-client").default_value(String::from("web")))
        .build()
        .unwrap();
    assert_eq!(
        p.capture(&HeaderMap::new(), Trust::Trusted)
            .context
            .get("x-client"),
        Some("web")
    );
}

#[test]
fn keys_differing_only_in_case_are_duplicates() {
    let p = policy();
    let other = "00-11111111111111111111111111111111-2222222222222222-01";
    let map = string_map(&[
        ("traceparent", TP),
        ("Traceparent", other),
        ("x-tenant-id", "a"),
        ("X-Tenant-Id", "b"),
    ]);
    let c = p.capture(&map, Trust::Trusted);
    assert!(
        c.context.trace().unwrap().parent_id().is_none(),
        "neither trace is picked"
    );
    assert_eq!(
        c.context.get("x-tenant-id"),
        None,
        "neither tenant is picked"
    );
    let r = reasons(&c);
    assert!(
        r.contains(&("x-tenant-id".into(), Reason::Duplicate)),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|(n, reason)| n == "traceparent" && matches!(reason, Reason::Malformed(_))),
        "{r:?}"
    );

    let job = json!({"_http_headers": {"traceparent": TP, "Traceparent": other}});
    let c = p.capture(&JsonCarrier::new(job.as_object().unwrap()), Trust::Trusted);
    assert!(
        c.context.trace().unwrap().parent_id().is_none(),
        "JSON envelope"
    );
}

#[test]
fn tracestate_duplicates_are_kept_and_reported_and_empty_lists_never_forwarded() {
    let p = Policy::default();
    let c = p.capture(
        &header_map(&[("traceparent", TP), ("tracestate", "a=1,b=2,a=3")]),
        Trust::Trusted,
    );
    assert_eq!(
        c.context.trace().unwrap().tracestate().unwrap().as_str(),
        "a=1,b=2"
    );
    assert_eq!(
        reasons(&c),
        vec![("tracestate".into(), Reason::DuplicateKey)]
    );
    assert_eq!(Reason::DuplicateKey.to_string(), "duplicate key");

    for empty in ["", " ", " , "] {
        let c = p.capture(
            &header_map(&[("traceparent", TP), ("tracestate", empty)]),
            Trust::Trusted,
        );
        let mut out = HeaderMap::new();
        c.context.inject(&mut out);
        assert!(!out.contains_key("tracestate"), "{empty:?}");
    }
}
