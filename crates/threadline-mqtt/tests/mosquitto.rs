//! What is particular to MQTT 5, against the local Mosquitto (127.0.0.1:1883): repeated
//! user properties, the correlation data, strings MQTT cannot carry, and strings the
//! broker refuses. Each prints a loud SKIP and returns when Mosquitto is unreachable,
//! unless THREADLINE_REQUIRE_SERVICES=1.

mod support;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use support::raw::{self, Answer};
use support::{Mosquitto, WAIT, user_properties};
use threadline::{IdOrigin, Limits, MessageHeaders, Policy, Reason, Restorer, Trust};
use threadline_mqtt::{AsyncClientExt, MAX_FIELD_BYTES};
use threadline_testkit::suites::{self, Broker};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn user<'a>(p: &'a Publish, name: &str) -> Vec<&'a str> {
    p.properties
        .iter()
        .flat_map(|p| &p.user_properties)
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn reasons(report: &threadline::Report) -> Vec<(String, Reason)> {
    let mut r: Vec<_> = report
        .iter()
        .map(|r| (r.name.to_string(), r.reason))
        .collect();
    r.sort_by(|a, b| a.0.cmp(&b.0));
    r
}

#[tokio::test]
async fn mosquitto_repeated_user_property_is_a_duplicate() {
    let Some(mut b) = Mosquitto::new("mosquitto_repeated_user_property_is_a_duplicate").await
    else {
        return;
    };
    let pairs = [
        ("x-correlation-id", "first"),
        ("X-Correlation-Id", "second"),
        ("traceparent", TRACEPARENT),
        ("x-tenant-id", "acme"),
        ("x-tenant-id", "evil-corp"),
        ("tl-field-user.id", "alice"),
        ("TL-Field-User.Id", "mallory"),
        ("tl-field-plan", "gold"),
    ];
    b.publish_raw(&pairs, "repeated").await;
    let msg = b.receive().await;
    b.ack(&msg).await;
    assert_eq!(
        msg.properties.as_ref().map(|p| p.user_properties.clone()),
        Some(user_properties(&pairs)),
        "the broker forwards every repeat, in order"
    );

    let restorer = Restorer::new(suites::policy()).trust(Trust::Trusted);
    let captured = restorer.restore(&msg);
    let ctx = &captured.context;
    assert_eq!(
        ctx.correlation_id_origin(),
        Some(IdOrigin::Minted),
        "neither repeat is believed"
    );
    assert_eq!(ctx.get("x-tenant-id"), None);
    assert_eq!(ctx.field("user.id"), None);
    assert_eq!(ctx.field("plan"), Some("gold"), "the rest is kept");
    assert_eq!(
        ctx.trace_id().map(|t| t.to_string()).as_deref(),
        Some(TRACE)
    );
    let got = reasons(&captured.report);
    assert_eq!(
        got,
        [
            ("tl-field-user.id".to_owned(), Reason::Duplicate),
            ("x-correlation-id".to_owned(), Reason::Duplicate),
            ("x-tenant-id".to_owned(), Reason::Duplicate),
        ]
    );

    // The same headers repeated on HTTP-style message headers: the same verdicts.
    let mut headers = http::HeaderMap::new();
    for (k, v) in pairs {
        headers.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let http = suites::policy().capture(&MessageHeaders(&headers), Trust::Trusted);
    assert_eq!(got, reasons(&http.report), "as a duplicated HTTP header");
    assert_eq!(http.context.field("plan"), Some("gold"));
    let stats = restorer.stats();
    assert_eq!(
        (
            stats.restored(),
            stats.with_rejections(),
            stats.rejected_values()
        ),
        (1, 1, 3),
        "the trace continued; three values dropped"
    );
    b.finish().await;
}

#[tokio::test]
async fn mosquitto_correlation_data_fallback() {
    let Some(mut b) = Mosquitto::new("mosquitto_correlation_data_fallback").await else {
        return;
    };
    let restorer = Restorer::new(suites::policy()).trust(Trust::Trusted);
    let with = |user: &[(&str, &str)], data: &'static [u8]| PublishProperties {
        user_properties: user_properties(user),
        correlation_data: Some(Bytes::from_static(data)),
        ..Default::default()
    };

    // Correlation data alone (a producer that only sets MQTT's own property).
    b.publish_props(Some(with(&[], b"from-data")), "data only")
        .await;
    // Both: the user property is authoritative.
    b.publish_props(
        Some(with(&[("x-correlation-id", "from-property")], b"from-data")),
        "both",
    )
    .await;
    // Binary correlation data (a request/response token): not context, not an error.
    b.publish_props(
        Some(with(&[("traceparent", TRACEPARENT)], b"\x00\xff\x07token")),
        "binary",
    )
    .await;
    // Through the adapter: the id in both places.
    let inbound =
        threadline_testkit::inbound_with(&suites::policy(), "order-7", "acme", Trust::Trusted);
    inbound
        .ctx
        .clone()
        .scope(b.publish_in_context("adapter"))
        .await;
    // Through the adapter, with the producer's own request/response properties.
    let own = PublishProperties {
        response_topic: Some(format!("{}/replies", b.topic)),
        correlation_data: Some(Bytes::from_static(b"\x01rpc-token")),
        ..Default::default()
    };
    // The context is taken when `publish_with_properties_in_context` is called: the
    // call is made inside the scope.
    inbound
        .ctx
        .clone()
        .scope(async {
            b.publisher
                .publish_with_properties_in_context(
                    b.topic.clone(),
                    QoS::AtLeastOnce,
                    false,
                    "request",
                    own,
                )
                .await
        })
        .await
        .unwrap();

    let mut seen = Vec::new();
    for _ in 0..5 {
        let msg = b.receive().await;
        let captured = restorer.restore(&msg);
        b.ack(&msg).await;
        seen.push((Mosquitto::payload(&msg), msg, captured));
    }
    let payloads: Vec<&str> = seen.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        payloads,
        ["data only", "both", "binary", "adapter", "request"]
    );
    let id = |i: usize| {
        seen[i]
            .2
            .context
            .correlation_id()
            .map(|c| c.as_str().to_owned())
    };

    assert_eq!(id(0).as_deref(), Some("from-data"));
    assert_eq!(
        seen[0].2.context.correlation_id_origin(),
        Some(IdOrigin::Received)
    );
    assert_eq!(id(1).as_deref(), Some("from-property"));
    assert_eq!(
        seen[2].2.context.correlation_id_origin(),
        Some(IdOrigin::Minted)
    );
    assert!(
        seen[2].2.report.is_empty(),
        "binary data is left alone: {:?}",
        seen[2].2.report
    );

    let (_, adapter, restored) = &seen[3];
    let props = adapter.properties.as_ref().expect("properties");
    assert_eq!(
        props.correlation_data.as_deref(),
        Some(b"order-7".as_slice())
    );
    assert_eq!(user(adapter, "x-correlation-id"), ["order-7"]);
    assert_eq!(id(3).as_deref(), Some("order-7"));
    assert_eq!(restored.context.trace_id(), Some(inbound.trace_id));

    let (_, request, _) = &seen[4];
    let props = request.properties.as_ref().expect("properties");
    assert_eq!(
        props.correlation_data.as_deref(),
        Some(b"\x01rpc-token".as_slice()),
        "the producer's own correlation data is kept"
    );
    assert_eq!(
        props.response_topic.as_deref(),
        Some(format!("{}/replies", b.topic).as_str())
    );
    assert_eq!(id(4).as_deref(), Some("order-7"), "from the user property");

    for (i, (_, _, c)) in seen.iter().enumerate() {
        if i != 2 {
            assert!(c.report.is_empty(), "message {i}: {:?}", c.report);
        }
    }
    let stats = restorer.stats();
    assert_eq!(
        (stats.messages(), stats.restored(), stats.with_rejections()),
        (5, 5, 0)
    );
    b.finish().await;
}

#[tokio::test]
async fn mosquitto_oversized_values_never_panic() {
    let Some(mut b) = Mosquitto::new("mosquitto_oversized_values_never_panic").await else {
        return;
    };
    let policy = Policy::builder()
        .header("x-tenant-id")
        .header("x-big")
        .limits(
            Limits::default()
                .with_correlation_id_max_len(200_000)
                .with_max_value_bytes(200_000)
                .with_max_total_bytes(1_000_000),
        )
        .build()
        .unwrap();
    let long_id = "c".repeat(MAX_FIELD_BYTES + 1);
    let tenant = "t".repeat(MAX_FIELD_BYTES);
    let big = "b".repeat(70_000);
    let mut inbound = http::HeaderMap::new();
    inbound.insert("x-correlation-id", long_id.parse().unwrap());
    inbound.insert("traceparent", TRACEPARENT.parse().unwrap());
    inbound.insert("x-tenant-id", tenant.parse().unwrap());
    inbound.insert("x-big", big.parse().unwrap());
    let captured = policy.capture(&inbound, Trust::Trusted);
    assert!(captured.report.is_empty(), "{:?}", captured.report);
    let ctx = captured.context.with_field("user.id", "alice");

    ctx.scope(b.publish_in_context("oversized")).await;
    b.publish_raw(&[("x-correlation-id", "after-1")], "after")
        .await;

    let msg = b.receive().await;
    b.ack(&msg).await;
    assert_eq!(Mosquitto::payload(&msg), "oversized");
    let props = msg.properties.as_ref().expect("properties");
    assert!(user(&msg, "x-correlation-id").is_empty(), "65,536 bytes");
    assert_eq!(props.correlation_data, None, "too long for either place");
    assert!(user(&msg, "x-big").is_empty());
    assert_eq!(
        user(&msg, "x-tenant-id"),
        [tenant.as_str()],
        "65,535 bytes fit"
    );
    assert_eq!(user(&msg, "tl-field-user.id"), ["alice"]);
    assert_eq!(user(&msg, "traceparent").len(), 1);

    let restored = Restorer::new(policy)
        .trust(Trust::Trusted)
        .restore(&msg)
        .context;
    assert_eq!(restored.get("x-tenant-id"), Some(tenant.as_str()));
    assert_eq!(
        restored.trace_id().map(|t| t.to_string()).as_deref(),
        Some(TRACE)
    );
    assert_eq!(restored.correlation_id_origin(), Some(IdOrigin::Minted));
    assert_eq!(restored.field("user.id"), Some("alice"));

    let after = b.receive().await;
    b.ack(&after).await;
    assert_eq!(
        Mosquitto::payload(&after),
        "after",
        "the connection carries on"
    );
    b.finish().await;
}

#[tokio::test]
async fn mosquitto_refuses_user_properties_that_are_not_clean_utf8() {
    let Some(mut b) =
        Mosquitto::new("mosquitto_refuses_user_properties_that_are_not_clean_utf8").await
    else {
        return;
    };
    let id = threadline_testkit::unique("tl-raw", '-');
    let cases: [(&[u8], &str); 4] = [
        (b"caf\xe9", "Latin-1, not UTF-8"),
        (b"a\tb", "a tab"),
        (b"a\x00b", "a NUL"),
        (b"\xc2\x85", "a C1 control character"),
    ];
    for (value, why) in cases {
        let answer = raw::publish(
            support::ADDR,
            &id,
            &b.topic,
            &[(b"x-correlation-id", value)],
            b"refused",
            WAIT,
        )
        .await;
        assert_eq!(
            answer,
            Answer::Closed,
            "{why}: the broker drops the publisher"
        );
    }
    let answer = raw::publish(
        support::ADDR,
        &id,
        &b.topic,
        &[(b"x-correlation-id", b"raw-1")],
        b"clean",
        WAIT,
    )
    .await;
    assert_eq!(answer, Answer::Acknowledged);
    b.publish_raw(&[("x-correlation-id", "after-1")], "after")
        .await;

    let restorer = Restorer::new(suites::policy());
    let mut got = Vec::new();
    for _ in 0..2 {
        let msg = b.receive().await;
        b.ack(&msg).await;
        let ctx = restorer.restore(&msg).context;
        got.push((
            Mosquitto::payload(&msg),
            ctx.correlation_id().map(|c| c.as_str().to_owned()),
        ));
    }
    assert_eq!(
        got,
        [
            ("clean".to_owned(), Some("raw-1".to_owned())),
            ("after".to_owned(), Some("after-1".to_owned())),
        ],
        "the refused publishes never reach the consumer, whose connection carries on"
    );
    b.finish().await;
}
