//! The routing key: read from every form a policy names, checked, trusted or not,
//! conflicts refused, written back in every form.

use std::collections::HashMap;

use http::{HeaderMap, HeaderName};
use proptest::prelude::*;
use threadline::codec::{Codec, ErrorKind};
use threadline::{Policy, PolicyErrorKind, Reason, Routing, RoutingForm, RoutingKey, Trust};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

fn all_forms() -> Policy {
    Policy::builder()
        .routing(
            Routing::signadot()
                .read(RoutingForm::header("x-routing-key"))
                .read(RoutingForm::cookie("preview"))
                .write(RoutingForm::header("x-routing-key"))
                .write(RoutingForm::baggage("sd-routing-key"))
                .write(RoutingForm::tracestate("sd-routing-key"))
                .write(RoutingForm::uberctx("sd-routing-key"))
                .write(RoutingForm::ot_baggage("sd-routing-key")),
        )
        .build()
        .unwrap()
}

fn reasons(report: &threadline::Report) -> Vec<(String, Reason)> {
    report
        .iter()
        .map(|r| (r.name.as_str().to_owned(), r.reason))
        .collect()
}

#[test]
fn each_form_alone_gives_the_key() {
    let policy = all_forms();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("x-routing-key", "alice")], "own header"),
        (
            &[("baggage", "user=7,sd-routing-key=alice")],
            "baggage member",
        ),
        (
            &[
                ("traceparent", TP),
                ("tracestate", "congo=t61,sd-routing-key=alice"),
            ],
            "tracestate member",
        ),
        (&[("uberctx-sd-routing-key", "alice")], "jaeger baggage"),
        (
            &[("ot-baggage-sd-routing-key", "alice")],
            "opentracing baggage",
        ),
        (
            &[("cookie", "theme=dark; preview=alice; lang=en")],
            "cookie",
        ),
        (&[("cookie", "preview=\"alice\"")], "quoted cookie"),
        (
            &[("uberctx-sd-routing-key", "al%69ce")],
            "jaeger values are percent-encoded",
        ),
        (
            &[
                ("x-routing-key", "alice"),
                ("baggage", "sd-routing-key=alice"),
            ],
            "two forms agreeing",
        ),
    ];
    for (pairs, reason) in cases {
        let c = policy.capture(&headers(pairs), Trust::Trusted);
        assert_eq!(
            c.context.routing_key().map(RoutingKey::as_str),
            Some("alice"),
            "{reason}"
        );
        assert!(c.report.is_empty(), "{reason}: {:?}", c.report);
    }
}

#[test]
fn written_back_in_every_form() {
    let policy = all_forms();
    let c = policy.capture(
        &headers(&[
            ("traceparent", TP),
            ("tracestate", "congo=t61"),
            ("baggage", "user=7"),
            ("x-routing-key", "alice"),
        ]),
        Trust::Trusted,
    );
    let mut out = HeaderMap::new();
    c.context.inject(&mut out);
    assert_eq!(out["x-routing-key"], "alice");
    assert_eq!(out["uberctx-sd-routing-key"], "alice");
    assert_eq!(out["ot-baggage-sd-routing-key"], "alice");
    // Added first, the other members kept.
    assert_eq!(out["baggage"], "sd-routing-key=alice,user=7");
    assert_eq!(out["tracestate"], "sd-routing-key=alice,congo=t61");
    // What went out is read back as the same key, with nothing to report.
    let again = policy.capture(&out, Trust::Trusted);
    assert_eq!(again.context.routing_key().unwrap().as_str(), "alice");
    assert!(again.report.is_empty(), "{:?}", again.report);
}

#[test]
fn message_carriers_carry_it_too() {
    let policy = all_forms();
    let ctx = policy
        .new_root()
        .with_routing_key(RoutingKey::new("bob.feature-1").unwrap());
    let mut msg: HashMap<String, String> = HashMap::new();
    ctx.inject_into(&mut msg);
    assert_eq!(msg["x-routing-key"], "bob.feature-1");
    let back = policy.capture(&msg, Trust::Trusted);
    assert_eq!(
        back.context.routing_key().unwrap().as_str(),
        "bob.feature-1"
    );
    assert!(back.report.is_empty(), "{:?}", back.report);
    // The routing key is not also a custom header.
    assert_eq!(back.context.headers().count(), 0);
}

/// A message source is untrusted unless its consumer says otherwise: a forged key in a
/// message routes nothing, and is not forwarded.
#[test]
fn untrusted_message_sources_cannot_set_it() {
    let policy = all_forms();
    let mut msg: HashMap<String, String> = HashMap::new();
    msg.insert("x-routing-key".into(), "alice".into());
    let untrusted = threadline::Restorer::new(policy.clone()).restore(&msg);
    assert!(untrusted.context.routing_key().is_none());
    assert_eq!(
        reasons(&untrusted.report),
        [("x-routing-key".into(), Reason::Untrusted)]
    );
    let mut out: HashMap<String, String> = HashMap::new();
    untrusted.context.inject_into(&mut out);
    assert!(!out.contains_key("x-routing-key"), "{out:?}");
    let trusted = threadline::Restorer::new(policy)
        .trust(Trust::Trusted)
        .restore(&msg);
    assert_eq!(trusted.context.routing_key().unwrap().as_str(), "alice");
}

#[test]
fn untrusted_callers_cannot_set_it_unless_opened() {
    let closed = all_forms();
    let req = headers(&[("baggage", "sd-routing-key=alice,user=7")]);
    let c = closed.capture(&req, Trust::Untrusted);
    assert!(c.context.routing_key().is_none());
    assert_eq!(reasons(&c.report), [("baggage".into(), Reason::Untrusted)]);
    // The refused member is not forwarded either.
    let mut out = HeaderMap::new();
    c.context.inject(&mut out);
    assert_eq!(out["baggage"], "user=7");
    assert!(!out.contains_key("x-routing-key"));

    let open = Policy::builder()
        .routing(Routing::signadot().accept_untrusted(true))
        .build()
        .unwrap();
    let c = open.capture(&req, Trust::Untrusted);
    assert_eq!(c.context.routing_key().unwrap().as_str(), "alice");
}

#[test]
fn bad_keys_are_reported_by_name_and_treated_as_absent() {
    let policy = all_forms();
    let long = "a".repeat(65);
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<(&'a str, Reason)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("x-routing-key", "alice bob")],
            vec![(
                "x-routing-key",
                Reason::Malformed(threadline::codec::Error::new(
                    Codec::RoutingKey,
                    ErrorKind::InvalidChar,
                )),
            )],
            "space",
        ),
        (
            vec![("x-routing-key", long.as_str())],
            vec![(
                "x-routing-key",
                Reason::Malformed(threadline::codec::Error::new(
                    Codec::RoutingKey,
                    ErrorKind::Length,
                )),
            )],
            "oversized",
        ),
        (
            vec![
                ("x-routing-key", "alice"),
                ("baggage", "sd-routing-key=bob"),
            ],
            // Read in the policy's order: the baggage member first, so the header is
            // the one that disagrees.
            vec![("x-routing-key", Reason::RoutingKeyConflict)],
            "two forms disagree",
        ),
        (
            vec![("x-routing-key", "alice"), ("x-routing-key", "alice")],
            vec![("x-routing-key", Reason::Duplicate)],
            "the header twice",
        ),
        (
            vec![
                ("baggage", "sd-routing-key=alice"),
                ("cookie", "preview=mallory"),
            ],
            vec![("cookie", Reason::RoutingKeyConflict)],
            "a stale cookie",
        ),
        (
            vec![
                ("x-routing-key", "a*b"),
                ("baggage", "sd-routing-key=alice"),
            ],
            vec![(
                "x-routing-key",
                Reason::Malformed(threadline::codec::Error::new(
                    Codec::RoutingKey,
                    ErrorKind::InvalidChar,
                )),
            )],
            "a malformed form refuses the others",
        ),
        (
            vec![("uberctx-sd-routing-key", "al%2Cice")],
            vec![(
                "uberctx-sd-routing-key",
                Reason::Malformed(threadline::codec::Error::new(
                    Codec::RoutingKey,
                    ErrorKind::InvalidChar,
                )),
            )],
            "decoded value outside the alphabet",
        ),
        (
            vec![("uberctx-sd-routing-key", "al%zzice")],
            vec![(
                "uberctx-sd-routing-key",
                Reason::Malformed(threadline::codec::Error::new(
                    Codec::RoutingKey,
                    ErrorKind::PercentEncoding,
                )),
            )],
            "broken escape",
        ),
    ];
    for (pairs, expected, reason) in cases {
        let c = policy.capture(&headers(&pairs), Trust::Trusted);
        assert!(c.context.routing_key().is_none(), "{reason}");
        let got = reasons(&c.report);
        let expected: Vec<(String, Reason)> = expected
            .into_iter()
            .map(|(n, r)| (n.to_owned(), r))
            .collect();
        assert_eq!(got, expected, "{reason}");
        // Never the value: neither the report nor the forwarded request holds a
        // refused key.
        let text = format!(
            "{:?} {}",
            c.report,
            c.report
                .iter()
                .map(|r| r.reason.to_string())
                .collect::<String>()
        );
        for (_, v) in &pairs {
            if *v != "alice" {
                assert!(!text.contains(v), "{reason}: {text}");
            }
        }
        let mut out = HeaderMap::new();
        c.context.inject(&mut out);
        assert!(!out.contains_key("x-routing-key"), "{reason}");
        let b = out
            .get("baggage")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(!b.contains("sd-routing-key"), "{reason}: {b}");
    }
}

#[test]
fn nothing_happens_without_routing() {
    let policy = Policy::default();
    assert!(policy.routing().is_none());
    let c = policy.capture(
        &headers(&[
            ("x-routing-key", "alice"),
            ("baggage", "sd-routing-key=alice"),
        ]),
        Trust::Trusted,
    );
    assert!(c.context.routing_key().is_none());
    let mut out = HeaderMap::new();
    c.context.inject(&mut out);
    assert!(!out.contains_key("x-routing-key"));
    // Baggage is the caller's, untouched.
    assert_eq!(out["baggage"], "sd-routing-key=alice");
}

#[test]
fn capture_all_leaves_the_routing_forms_to_routing() {
    let policy = Policy::builder()
        .capture_all_except(Vec::<String>::new())
        .routing(Routing::header("x-routing-key").read(RoutingForm::uberctx("k")))
        .build()
        .unwrap();
    let c = policy.capture(
        &headers(&[("x-routing-key", "alice"), ("x-other", "1")]),
        Trust::Trusted,
    );
    assert_eq!(c.context.routing_key().unwrap().as_str(), "alice");
    let names: Vec<&str> = c.context.headers().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["x-other"]);
}

#[test]
fn set_and_cleared_in_code() {
    let policy = all_forms();
    let c = policy.capture(
        &headers(&[
            ("traceparent", TP),
            ("baggage", "sd-routing-key=alice,user=7"),
        ]),
        Trust::Trusted,
    );
    let bob = c.context.with_routing_key(RoutingKey::new("bob").unwrap());
    let mut out = HeaderMap::new();
    bob.inject(&mut out);
    assert_eq!(out["x-routing-key"], "bob");
    assert_eq!(out["baggage"], "sd-routing-key=bob,user=7");
    assert_eq!(out["tracestate"], "sd-routing-key=bob");
    let none = bob.without_routing_key();
    let mut out = HeaderMap::new();
    none.inject(&mut out);
    assert!(!out.contains_key("x-routing-key"));
    assert_eq!(out["baggage"], "user=7");
    assert!(!out.contains_key("tracestate"));
    // The original is untouched (copy-on-write).
    assert_eq!(c.context.routing_key().unwrap().as_str(), "alice");
}

#[test]
fn configuration_mistakes_are_refused() {
    let bad = [
        (
            Routing::empty().read(RoutingForm::header("bad header")),
            PolicyErrorKind::InvalidRouting,
        ),
        (
            Routing::empty().read(RoutingForm::header("traceparent")),
            PolicyErrorKind::InvalidRouting,
        ),
        (
            Routing::empty().read(RoutingForm::header("connection")),
            PolicyErrorKind::InvalidRouting,
        ),
        (
            Routing::empty().read(RoutingForm::baggage("a b")),
            PolicyErrorKind::InvalidRouting,
        ),
        (
            Routing::empty().read(RoutingForm::tracestate("Upper")),
            PolicyErrorKind::InvalidRouting,
        ),
        (
            Routing::empty().read(RoutingForm::query("a&b")),
            PolicyErrorKind::InvalidRouting,
        ),
        (
            Routing::empty().read(RoutingForm::cookie("a;b")),
            PolicyErrorKind::InvalidRouting,
        ),
        (
            Routing::header("x-k").write(RoutingForm::query("p")),
            PolicyErrorKind::InvalidRouting,
        ),
        (
            Routing::header("x-k").write(RoutingForm::cookie("p")),
            PolicyErrorKind::InvalidRouting,
        ),
        (
            Routing::header("x-k").read(RoutingForm::header("x-k")),
            PolicyErrorKind::InvalidRouting,
        ),
        (
            Routing::header("x-k").max_len(0),
            PolicyErrorKind::InvalidRouting,
        ),
        (
            Routing::header("x-k").max_len(129),
            PolicyErrorKind::InvalidRouting,
        ),
        (Routing::header("x-tenant-id"), PolicyErrorKind::Reserved),
        (
            Routing::header("x-correlation-id"),
            PolicyErrorKind::Reserved,
        ),
    ];
    for (routing, kind) in bad {
        let err = Policy::builder()
            .header("x-tenant-id")
            .routing(routing.clone())
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{routing:?}: {err}");
    }
}

#[test]
fn from_toml() {
    let policy = Policy::from_toml(
        r#"
        [routing]
        read = [{ header = "x-routing-key" }, { ot-baggage = "rk" }, { query = "preview" }, { cookie = "preview" }]
        accept_untrusted = true
        max_len = 16
        "#,
    )
    .unwrap();
    let r = policy.routing().unwrap();
    assert_eq!(r.query_param(), Some("preview"));
    assert_eq!(r.cookie_name(), Some("preview"));
    assert!(r.accept_untrusted);
    let c = policy.capture(&headers(&[("ot-baggage-rk", "alice")]), Trust::Untrusted);
    let mut out = HeaderMap::new();
    c.context.inject(&mut out);
    // No `write` list: every form read but query and cookie.
    assert_eq!(out["x-routing-key"], "alice");
    assert_eq!(out["ot-baggage-rk"], "alice");
    let long = policy.capture(
        &headers(&[("x-routing-key", &"a".repeat(17))]),
        Trust::Trusted,
    );
    assert!(long.context.routing_key().is_none());

    let err = Policy::from_toml("[routing]\nread = [{ smoke-signal = \"x\" }]").unwrap_err();
    assert_eq!(err.kind(), threadline::ConfigErrorKind::Syntax);
    let err = Policy::from_toml("[routing]\nwrite = [{ query = \"x\" }]").unwrap_err();
    assert_eq!(
        err.policy_error().unwrap().kind(),
        PolicyErrorKind::InvalidRouting
    );
}

fn key_strategy() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,64}"
}

proptest! {
    /// Any bytes in any form: never a panic; a key only when every form present is a
    /// valid key and they agree.
    #[test]
    fn any_input_is_judged_never_panics(
        a in proptest::collection::vec(any::<u8>(), 0..80),
        b in proptest::option::of(key_strategy()),
        c in proptest::option::of("[A-Za-z0-9 ._*=-]{0,20}"),
    ) {
        let policy = all_forms();
        let mut h = HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_bytes(&a) {
            h.insert("x-routing-key", v);
        }
        if let Some(b) = &b {
            h.insert("baggage", format!("sd-routing-key={b}").parse().unwrap());
        }
        if let Some(c) = &c {
            if let Ok(v) = format!("preview={c}").parse() {
                h.insert("cookie", v);
            }
        }
        let got = policy.capture(&h, Trust::Trusted);
        let forms: Vec<Vec<u8>> = [
            h.get("x-routing-key").map(|v| v.as_bytes().trim_ascii().to_vec()),
            b.map(String::into_bytes),
            h.get("cookie").map(|_| c.clone().unwrap().trim_ascii().as_bytes().to_vec()),
        ].into_iter().flatten().collect();
        let valid = |f: &[u8]| RoutingKey::decode(f, 64).is_ok();
        let expected = match forms.first() {
            Some(first) if forms.iter().all(|f| valid(f) && f == first) => Some(first.clone()),
            _ => None,
        };
        prop_assert_eq!(got.context.routing_key().map(|k| k.as_str().as_bytes().to_vec()), expected.clone());
        prop_assert_eq!(got.report.is_empty(), expected.is_some() || forms.is_empty());
    }

    /// Written, then read again: the same key, nothing to report, in every form.
    #[test]
    fn inject_then_capture_round_trips(key in key_strategy(), user in "[a-z]{1,8}") {
        let policy = all_forms();
        let mut h = HeaderMap::new();
        h.insert("traceparent", TP.parse().unwrap());
        h.insert("baggage", format!("user={user}").parse().unwrap());
        let ctx = policy.capture(&h, Trust::Trusted).context
            .with_routing_key(RoutingKey::new(&key).unwrap());
        let mut out = HeaderMap::new();
        ctx.inject(&mut out);
        for form in ["x-routing-key", "uberctx-sd-routing-key", "ot-baggage-sd-routing-key"] {
            let mut one = HeaderMap::new();
            one.insert(HeaderName::from_static(form), out[form].clone());
            let back = policy.capture(&one, Trust::Trusted);
            prop_assert_eq!(back.context.routing_key().unwrap().as_str(), key.as_str());
        }
        let back = policy.capture(&out, Trust::Trusted);
        prop_assert_eq!(back.context.routing_key().unwrap().as_str(), key.as_str());
        prop_assert!(back.report.is_empty());
        prop_assert_eq!(back.context.baggage().unwrap().get("user").unwrap(), user.as_str());
    }
}
