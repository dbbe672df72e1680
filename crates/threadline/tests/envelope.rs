//! The typed JSON envelope: round trips, missing / broken / oversized context, custom key,
//! payloads that are not JSON objects.
#![cfg(all(feature = "json", feature = "serde"))]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use threadline::codec::{SpanId, TraceId};
use threadline::json::{DEFAULT_KEY, Envelope};
use threadline::{Context, Policy, Reason, Restorer, Trust};

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Job {
    order: u64,
    note: String,
}

fn job() -> Job {
    Job {
        order: 42,
        note: "ship it".into(),
    }
}

fn policy() -> Policy {
    Policy::builder().header("x-tenant-id").build().unwrap()
}

fn request(policy: &Policy, trace_id: TraceId, parent: SpanId) -> Context {
    let mut h = http::HeaderMap::new();
    h.insert("x-correlation-id", "order-42".parse().unwrap());
    h.insert(
        "traceparent",
        format!("00-{trace_id}-{parent}-01").parse().unwrap(),
    );
    h.insert("x-tenant-id", "acme".parse().unwrap());
    policy
        .capture(&h, Trust::Trusted)
        .context
        .with_field("user.id", "alice")
}

#[test]
fn round_trip_through_to_string_and_from_str() {
    let policy = policy();
    let (trace_id, parent) = (TraceId::random(), SpanId::random());
    let ctx = request(&policy, trace_id, parent);

    let text = serde_json::to_string(&Envelope::with_context(&ctx, job())).unwrap();
    let raw: Value = serde_json::from_str(&text).unwrap();
    let object = raw.as_object().unwrap();
    assert_eq!(object.len(), 3, "the payload's fields plus one key: {raw}");
    assert_eq!(raw["order"], 42);
    assert_eq!(raw["note"], "ship it");
    let headers = &raw[DEFAULT_KEY];
    assert_eq!(headers["x-correlation-id"], "order-42");
    assert_eq!(headers["x-tenant-id"], "acme");
    assert_eq!(headers["tl-field-user.id"], "alice");
    let sent_tp = headers["traceparent"].as_str().unwrap();
    assert!(sent_tp.starts_with(&format!("00-{trace_id}-")), "{sent_tp}");

    let envelope: Envelope<Job> = serde_json::from_str(&text).unwrap();
    assert_eq!(envelope.key(), DEFAULT_KEY);
    assert_eq!(envelope.raw_context(), Some(headers));
    let (payload, captured) =
        envelope.into_parts(&Restorer::new(policy.clone()).trust(Trust::Trusted));
    assert_eq!(payload, job());
    assert!(captured.report.is_empty(), "{:?}", captured.report);
    let restored = captured.context;
    assert_eq!(restored.correlation_id().unwrap().as_str(), "order-42");
    let t = restored.trace().unwrap();
    assert_eq!(t.trace_id(), trace_id, "same trace id");
    assert_ne!(t.parent_id(), Some(parent), "a new parent id");
    assert_ne!(t.parent_id(), ctx.span_id(), "not the request's own span");
    assert_eq!(restored.get("x-tenant-id"), Some("acme"));
    assert_eq!(restored.field("user.id"), Some("alice"));
}

#[tokio::test]
async fn wrap_captures_the_current_context_and_nothing_outside_a_scope() {
    let policy = policy();
    let ctx = request(&policy, TraceId::random(), SpanId::random());
    let inside = ctx
        .clone()
        .scope(async {
            threadline::bind("organisation.id", "org-9");
            serde_json::to_value(Envelope::wrap(job())).unwrap()
        })
        .await;
    assert_eq!(inside[DEFAULT_KEY]["x-correlation-id"], "order-42");
    assert_eq!(inside[DEFAULT_KEY]["tl-field-organisation.id"], "org-9");
    assert_eq!(inside[DEFAULT_KEY]["tl-field-user.id"], "alice");

    // Two envelopes from one scope are two hops: same trace, different parent ids.
    let (a, b) = ctx.sync_scope(|| (Envelope::wrap(job()), Envelope::wrap(job())));
    let tp = |e: &Envelope<Job>| e.raw_context().unwrap()["traceparent"].clone();
    assert_ne!(tp(&a), tp(&b));

    let outside = serde_json::to_value(Envelope::wrap(job())).unwrap();
    assert_eq!(
        outside,
        serde_json::to_value(job()).unwrap(),
        "no key added"
    );
}

#[test]
fn missing_or_null_key_means_a_fresh_context() {
    let policy = policy();
    for body in [
        json!({"order": 1, "note": "n"}),
        json!({"order": 1, "note": "n", "_http_headers": null}),
        json!({"order": 1, "note": "n", "_http_headers": {}}),
    ] {
        let envelope: Envelope<Job> = serde_json::from_value(body.clone()).unwrap();
        let (payload, captured) =
            envelope.into_parts(&Restorer::new(policy.clone()).trust(Trust::Trusted));
        assert_eq!(payload.order, 1, "{body}");
        assert!(captured.report.is_empty(), "{body}: nothing to report");
        let c = captured.context;
        assert!(c.correlation_id().is_some(), "{body}: an id is minted");
        assert!(
            c.trace().unwrap().parent_id().is_none(),
            "{body}: a new trace"
        );
    }
}

#[test]
fn key_holding_a_string_number_or_array_is_counted_and_gives_a_fresh_context() {
    let policy = policy();
    for (broken, reason) in [
        (json!("{\"x-correlation-id\": \"smuggled\"}"), "a string"),
        (json!(17), "a number"),
        (json!(["x-correlation-id", "smuggled"]), "an array"),
        (json!(true), "a boolean"),
    ] {
        let body = json!({"order": 5, "note": "n", "_http_headers": broken});
        let text = serde_json::to_string(&body).unwrap();
        let envelope: Envelope<Job> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{reason}: the payload must still deserialise: {e}"));
        let (payload, captured) =
            envelope.into_parts(&Restorer::new(policy.clone()).trust(Trust::Trusted));
        assert_eq!(payload.order, 5, "{reason}");
        assert_eq!(
            captured.report.len(),
            1,
            "{reason}: the broken key is counted"
        );
        let rejection = captured.report.iter().next().unwrap();
        assert_eq!(rejection.name.as_str(), DEFAULT_KEY, "{reason}");
        assert_eq!(rejection.reason, Reason::WrongType, "{reason}");
        let c = captured.context;
        assert_ne!(c.correlation_id().unwrap().as_str(), "smuggled", "{reason}");
        assert!(c.trace().unwrap().parent_id().is_none(), "{reason}");
    }
}

#[test]
fn wrong_types_inside_are_dropped_and_the_valid_part_kept() {
    let policy = policy();
    let trace_id = TraceId::random();
    let body = json!({"order": 6, "note": "n", "_http_headers": {
        "traceparent": format!("00-{trace_id}-{}-01", SpanId::random()),
        "x-correlation-id": {"nested": true},
        "x-tenant-id": 42,
        "baggage": ["k=v", 3],
        "tl-field-user.id": "dave",
        "tl-field-role": null,
    }});
    let envelope: Envelope<Job> = serde_json::from_value(body).unwrap();
    let (_, captured) = envelope.into_parts(&Restorer::new(policy.clone()).trust(Trust::Trusted));
    let mut names: Vec<_> = captured
        .report
        .iter()
        .map(|r| r.name.as_str().to_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "baggage",
            "tl-field-role",
            "x-correlation-id",
            "x-tenant-id"
        ],
        "{:?}",
        captured.report
    );
    let c = captured.context;
    assert_eq!(c.trace_id(), Some(trace_id), "valid traceparent kept");
    assert_eq!(c.field("user.id"), Some("dave"), "valid field kept");
    assert_eq!(c.get("x-tenant-id"), None);
    assert_eq!(c.field("role"), None);
    assert!(
        c.correlation_id().is_some(),
        "a new id replaces the broken one"
    );
}

#[test]
fn oversized_values_are_dropped_and_counted() {
    let policy = policy();
    let limits = *policy.limits();
    let body = json!({"order": 7, "note": "n", "_http_headers": {
        "x-correlation-id": "c".repeat(limits.correlation_id_max_len + 1),
        "x-tenant-id": "t".repeat(limits.max_value_bytes + 1),
        "tl-field-user.id": "u".repeat(limits.max_value_bytes + 1),
        "tl-field-team": "blue",
        "traceparent": "00-not-a-trace-01",
    }});
    let envelope: Envelope<Job> = serde_json::from_value(body).unwrap();
    let (payload, captured) =
        envelope.into_parts(&Restorer::new(policy.clone()).trust(Trust::Trusted));
    assert_eq!(payload.order, 7);
    let reasons: BTreeMap<_, _> = captured
        .report
        .iter()
        .map(|r| (r.name.as_str().to_owned(), r.reason))
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert_eq!(reasons["x-tenant-id"], Reason::TooLong);
    assert_eq!(reasons["tl-field-user.id"], Reason::TooLong);
    assert!(matches!(reasons["x-correlation-id"], Reason::Malformed(_)));
    assert!(matches!(reasons["traceparent"], Reason::Malformed(_)));
    let c = captured.context;
    assert_eq!(c.field("team"), Some("blue"), "the valid part is kept");
    assert_eq!(c.get("x-tenant-id"), None);
    assert!(c.correlation_id().unwrap().as_str().len() <= limits.correlation_id_max_len);
}

#[test]
fn custom_key_round_trip_and_the_default_key_ignored() {
    let policy = policy();
    let ctx = request(&policy, TraceId::random(), SpanId::random());
    let value = serde_json::to_value(Envelope::with_context(&ctx, job()).with_key("meta")).unwrap();
    assert!(value.get(DEFAULT_KEY).is_none());
    assert_eq!(value["meta"]["x-tenant-id"], "acme");

    let envelope = Envelope::<Job>::from_value_with_key(value.clone(), "meta").unwrap();
    assert_eq!(envelope.key(), "meta");
    let (payload, captured) =
        envelope.into_parts(&Restorer::new(policy.clone()).trust(Trust::Trusted));
    assert_eq!(payload, job());
    assert_eq!(captured.context.get("x-tenant-id"), Some("acme"));
    assert_eq!(captured.context.trace_id(), ctx.trace_id());

    // Read with the default key, the custom one is just another payload field.
    let as_map: Envelope<BTreeMap<String, Value>> = serde_json::from_value(value).unwrap();
    assert!(as_map.payload().contains_key("meta"));
    assert!(as_map.raw_context().is_none());
}

#[test]
fn payloads_that_are_not_objects_are_a_serde_error() {
    #[derive(Serialize)]
    struct Tuple(u32, u32);
    #[derive(Serialize)]
    struct Unit;
    let ctx = policy().new_root();
    let errors = [
        serde_json::to_string(&Envelope::with_context(&ctx, 5)).unwrap_err(),
        serde_json::to_string(&Envelope::with_context(&ctx, "text")).unwrap_err(),
        serde_json::to_string(&Envelope::with_context(&ctx, vec![1, 2])).unwrap_err(),
        serde_json::to_string(&Envelope::with_context(&ctx, Tuple(1, 2))).unwrap_err(),
        serde_json::to_string(&Envelope::with_context(&ctx, Unit)).unwrap_err(),
        serde_json::to_string(&Envelope::with_context(&ctx, Option::<Job>::None)).unwrap_err(),
    ];
    for e in &errors {
        assert!(
            e.to_string().contains("must serialise as a JSON object"),
            "{e}"
        );
    }
    // Maps with non-string keys are made objects by serde_json itself.
    let numbered: BTreeMap<u32, &str> = [(1, "a")].into();
    let v = serde_json::to_value(Envelope::with_context(&ctx, numbered)).unwrap();
    assert_eq!(v["1"], "a");

    // A payload field named like the key would be lost on the way back: refused.
    let clash = json!({"order": 1, "_http_headers": "mine"});
    let e = serde_json::to_string(&Envelope::with_context(&ctx, clash)).unwrap_err();
    assert!(e.to_string().contains("already has a field"), "{e}");

    // A body that is not an object, or a payload of the wrong shape, fails cleanly.
    assert!(serde_json::from_str::<Envelope<Job>>("[1, 2]").is_err());
    assert!(serde_json::from_str::<Envelope<Job>>("\"text\"").is_err());
    let e = serde_json::from_str::<Envelope<Job>>(r#"{"order": "x", "_http_headers": {}}"#)
        .unwrap_err();
    assert!(e.to_string().contains("invalid type"), "{e}");
}

#[test]
fn unknown_fields_denied_by_the_payload_do_not_include_the_key() {
    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        order: u64,
    }
    let body = r#"{"order": 3, "_http_headers": {"x-correlation-id": "strict-3"}}"#;
    let envelope: Envelope<Strict> = serde_json::from_str(body).unwrap();
    let (payload, captured) = envelope.into_parts(&Restorer::new(Policy::default()));
    assert_eq!(payload.order, 3);
    assert_eq!(
        captured.context.correlation_id().unwrap().as_str(),
        "strict-3"
    );
}

#[test]
fn relaying_an_envelope_keeps_the_context_as_it_came() {
    let body = json!({"order": 8, "note": "n", "_http_headers": "broken"});
    let envelope: Envelope<Job> = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(serde_json::to_value(&envelope).unwrap(), body);
}
