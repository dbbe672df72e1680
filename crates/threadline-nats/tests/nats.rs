//! Against the NATS server on 127.0.0.1:4222 (with JetStream). Each test prints a loud
//! SKIP and returns when NATS is unreachable, unless THREADLINE_REQUIRE_SERVICES=1.

use std::str::FromStr;
use std::time::Duration;
use threadline_testkit::{Inbound, inbound};

use async_nats::jetstream::{self, consumer::pull, stream};
use async_nats::{Client, HeaderMap, HeaderName, HeaderValue};
use futures_util::StreamExt;
use threadline::codec::{SpanId, TraceId};
use threadline::{Context, Policy};
use threadline::{Restorer, Trust};
use threadline_nats::{ClientExt, JetStreamExt};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

async fn connect(test: &str) -> Option<Client> {
    threadline_testkit::connect(
        test,
        "NATS",
        "127.0.0.1:4222",
        Duration::from_secs(3),
        async_nats::connect("127.0.0.1:4222"),
    )
    .await
}

fn unique(prefix: &str) -> String {
    threadline_testkit::unique(prefix, '_')
}

fn policy() -> Policy {
    Policy::builder().header("x-tenant-id").build().unwrap()
}

/// Asserts that the consumer's context continues the producer's.
fn assert_continues(consumer: &Context, producer: &Context, inbound: &Inbound, user: &str) {
    assert_eq!(
        consumer.correlation_id().map(|c| c.as_str()),
        producer.correlation_id().map(|c| c.as_str()),
        "same correlation id"
    );
    let (ct, pt) = (consumer.trace().unwrap(), producer.trace().unwrap());
    assert_eq!(ct.trace_id(), inbound.trace_id, "same trace id");
    assert_eq!(pt.trace_id(), inbound.trace_id);
    let parent = ct.parent_id().expect("the consumer continues a trace");
    assert_ne!(parent, inbound.parent_id, "a new parent id for the hop");
    assert_ne!(parent, pt.span_id(), "the message is a new hop of its own");
    assert_ne!(ct.span_id(), pt.span_id());
    assert_eq!(consumer.get("x-tenant-id"), producer.get("x-tenant-id"));
    assert!(consumer.get("x-tenant-id").is_some());
    assert_eq!(consumer.field("user.id"), Some(user));
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(HeaderName::from_str(name).unwrap())
        .map(HeaderValue::as_str)
}

#[tokio::test]
async fn nats_core_publish_restores_context_in_handler() {
    let Some(client) = connect("nats_core_publish_restores_context_in_handler").await else {
        return;
    };
    let policy = policy();
    let subject = unique("threadline.test.core");
    let mut sub = client.subscribe(subject.clone()).await.unwrap();
    let inbound = inbound(&policy, "order-42", "acme");

    let producer = inbound
        .ctx
        .clone()
        .scope(async {
            threadline::bind("user.id", "alice");
            client
                .publish_in_context(subject.clone(), "42".into())
                .await
                .unwrap();
            Context::current()
        })
        .await;
    client.flush().await.unwrap();

    let msg = timeout(WAIT, sub.next()).await.unwrap().unwrap();
    let wire = msg.headers.clone().expect("headers on the wire");
    assert_eq!(header(&wire, "x-correlation-id"), Some("order-42"));
    assert_eq!(header(&wire, "x-tenant-id"), Some("acme"));
    assert_eq!(header(&wire, "tl-field-user.id"), Some("alice"));
    assert!(
        header(&wire, "traceparent")
            .unwrap()
            .starts_with(&format!("00-{}-", inbound.trace_id))
    );

    let restorer = Restorer::new(policy).trust(Trust::Trusted);
    let (consumer, payload) = restorer
        .handle(msg, |msg| async move { (Context::current(), msg.payload) })
        .await;
    assert_eq!(&payload[..], b"42");
    assert_continues(&consumer, &producer, &inbound, "alice");
    assert_eq!(restorer.stats().messages(), 1);
    assert_eq!(restorer.stats().with_rejections(), 0);
    assert_eq!(restorer.stats().fresh(), 0);
}

#[tokio::test]
async fn nats_request_reply_restores_context_in_responder() {
    let Some(client) = connect("nats_request_reply_restores_context_in_responder").await else {
        return;
    };
    let policy = policy();
    let subject = unique("threadline.test.rpc");
    let mut sub = client.subscribe(subject.clone()).await.unwrap();
    client.flush().await.unwrap();
    let restorer = Restorer::new(policy.clone()).trust(Trust::Trusted);
    let responder = {
        let client = client.clone();
        tokio::spawn(async move {
            let msg = timeout(WAIT, sub.next()).await.unwrap().unwrap();
            restorer
                .handle(msg, |msg| async move {
                    let ctx = Context::current();
                    let reply = msg.reply.clone().expect("a request has a reply subject");
                    client.publish(reply, "done".into()).await.unwrap();
                    client.flush().await.unwrap();
                    ctx
                })
                .await
        })
    };

    let inbound = inbound(&policy, "rpc-7", "globex");
    let (producer, reply) = inbound
        .ctx
        .clone()
        .scope(async {
            threadline::bind("user.id", "bob");
            let reply = timeout(
                WAIT,
                client.request_in_context(subject.clone(), "ping".into()),
            )
            .await
            .unwrap()
            .unwrap();
            (Context::current(), reply)
        })
        .await;
    assert_eq!(&reply.payload[..], b"done");
    let consumer = responder.await.unwrap();
    assert_continues(&consumer, &producer, &inbound, "bob");
}

#[tokio::test]
async fn nats_jetstream_publish_restores_context_in_handler() {
    let Some(client) = connect("nats_jetstream_publish_restores_context_in_handler").await else {
        return;
    };
    let js = jetstream::new(client);
    let name = unique("THREADLINE_JS");
    let subject = format!("{name}.jobs");
    let stream = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let policy = policy();
    let inbound = inbound(&policy, "job-9", "initech");
    let producer = inbound
        .ctx
        .clone()
        .scope(async {
            threadline::bind("user.id", "carol");
            js.publish_in_context(subject.clone(), "invoice".into())
                .await
                .unwrap()
                .await
                .unwrap();
            Context::current()
        })
        .await;

    let consumer = stream
        .create_consumer(pull::Config::default())
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    let msg = timeout(WAIT, batch.next()).await.unwrap().unwrap().unwrap();
    let restorer = Restorer::new(policy).trust(Trust::Trusted);
    let seen = restorer
        .handle(msg, |msg| async move {
            msg.double_ack().await.unwrap();
            Context::current()
        })
        .await;
    js.delete_stream(&name).await.unwrap();
    assert_continues(&seen, &producer, &inbound, "carol");
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_str(k).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[tokio::test]
async fn nats_jetstream_missing_malformed_oversized_context_still_handled_and_acked() {
    let Some(client) =
        connect("nats_jetstream_missing_malformed_oversized_context_still_handled_and_acked").await
    else {
        return;
    };
    let js = jetstream::new(client);
    let name = unique("THREADLINE_JS_BAD");
    let subject = format!("{name}.jobs");
    let stream = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await
        .unwrap();

    let kept_trace = TraceId::random();
    let long_id = "c".repeat(300);
    let huge_tenant = "t".repeat(5000);
    let valid_tp = format!("00-{kept_trace}-{}-01", SpanId::random());
    let cases: Vec<(&str, Option<HeaderMap>)> = vec![
        ("none", None),
        ("unrelated", Some(headers(&[("Nats-Msg-Id", "m-1")]))),
        (
            "malformed",
            Some(headers(&[
                ("traceparent", "00-not-a-trace-01"),
                ("x-correlation-id", "has space, and comma"),
                ("x-tenant-id", "acme"),
                ("baggage", "=broken,k=v"),
                ("tl-field-user.id", "bob"),
            ])),
        ),
        (
            "duplicate",
            Some(headers(&[
                ("traceparent", valid_tp.as_str()),
                ("traceparent", valid_tp.as_str()),
                ("x-tenant-id", "caf\u{e9}"),
                ("tl-field-user.id", "dave"),
            ])),
        ),
        (
            "oversized",
            Some(headers(&[
                ("traceparent", valid_tp.as_str()),
                ("x-correlation-id", long_id.as_str()),
                ("x-tenant-id", huge_tenant.as_str()),
                ("tl-field-user.id", "carol"),
            ])),
        ),
    ];
    for (tag, h) in &cases {
        let ack = match h {
            Some(h) => js
                .publish_with_headers(subject.clone(), h.clone(), (*tag).into())
                .await
                .unwrap(),
            None => js.publish(subject.clone(), (*tag).into()).await.unwrap(),
        };
        ack.await.unwrap();
    }

    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("bad-context".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let restorer = Restorer::new(policy()).trust(Trust::Trusted);
    let mut seen = Vec::new();
    let mut batch = consumer
        .fetch()
        .max_messages(cases.len())
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    while seen.len() < cases.len() {
        let Some(msg) = timeout(WAIT, batch.next()).await.unwrap() else {
            break;
        };
        let msg = msg.unwrap();
        let handled = restorer
            .handle(msg, |msg| async move {
                msg.double_ack().await.unwrap();
                (
                    String::from_utf8(msg.payload.to_vec()).unwrap(),
                    Context::current(),
                )
            })
            .await;
        seen.push(handled);
    }
    let mut consumer = consumer;
    let info = consumer.info().await.unwrap().clone();
    js.delete_stream(&name).await.unwrap();

    assert_eq!(seen.len(), cases.len(), "count in = count handled");
    assert_eq!(info.num_ack_pending, 0, "every message acknowledged");
    assert_eq!(info.num_pending, 0, "nothing left to redeliver");
    let stats = restorer.stats();
    assert_eq!(stats.messages(), 5);
    // Fresh: no context (none, unrelated) or none usable (malformed ids, a duplicated
    // traceparent); only `oversized` continues its producer's trace.
    assert_eq!((stats.restored(), stats.fresh()), (1, 4));
    assert_eq!(stats.with_rejections(), 3);

    let ctx = |tag: &str| &seen.iter().find(|(t, _)| t == tag).unwrap().1;
    for tag in ["none", "unrelated"] {
        let c = ctx(tag);
        assert!(
            c.correlation_id().is_some(),
            "{tag}: a fresh correlation id"
        );
        assert!(
            c.trace().unwrap().parent_id().is_none(),
            "{tag}: a new trace"
        );
    }
    let c = ctx("malformed");
    assert_ne!(c.correlation_id().unwrap().as_str(), "has space, and comma");
    assert!(
        c.trace().unwrap().parent_id().is_none(),
        "invalid traceparent: new trace"
    );
    assert_eq!(c.get("x-tenant-id"), Some("acme"), "the valid part is kept");
    assert_eq!(c.field("user.id"), Some("bob"));
    assert_eq!(c.baggage().map(|b| b.as_str()), Some("k=v"));

    let c = ctx("duplicate");
    assert_ne!(
        c.trace_id(),
        Some(kept_trace),
        "duplicate traceparent is invalid"
    );
    assert_eq!(c.get("x-tenant-id"), None, "non-ASCII value dropped");
    assert_eq!(c.field("user.id"), Some("dave"));

    let c = ctx("oversized");
    assert_eq!(c.trace_id(), Some(kept_trace), "valid traceparent kept");
    assert_ne!(c.correlation_id().unwrap().as_str(), long_id);
    assert_eq!(c.get("x-tenant-id"), None, "oversized value dropped");
    assert_eq!(c.field("user.id"), Some("carol"));
}

// Round trip, trust, malformed context and 1,000 concurrent messages on core NATS and
// JetStream: the shared suites, in tests/suites.rs.
