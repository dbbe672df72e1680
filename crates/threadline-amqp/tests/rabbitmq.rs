//! Against the RabbitMQ server on 127.0.0.1:5672 (guest/guest). Each test prints a loud
//! SKIP and returns when RabbitMQ is unreachable, unless THREADLINE_REQUIRE_SERVICES=1.

use std::time::Duration;
use threadline_testkit::inbound;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use threadline::Restorer;
use threadline::codec::{SpanId, TraceId};
use threadline::{Context, Policy, Trust};
use threadline_amqp::ChannelExt;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);
const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

async fn connect(test: &str) -> Option<Connection> {
    threadline_testkit::connect(
        test,
        "RabbitMQ",
        "127.0.0.1:5672",
        Duration::from_secs(5),
        Connection::connect(URI, ConnectionProperties::default()),
    )
    .await
}

fn unique(prefix: &str) -> String {
    threadline_testkit::unique(prefix, '.')
}

fn policy() -> Policy {
    Policy::builder().header("x-tenant-id").build().unwrap()
}

async fn queue(channel: &Channel, name: &str) {
    channel
        .queue_declare(
            ShortString::try_new(name).unwrap(),
            QueueDeclareOptions {
                auto_delete: false,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
}

async fn consume(channel: &Channel, queue: &str) -> Consumer {
    channel
        .basic_consume(
            ShortString::try_new(queue).unwrap(),
            "threadline-test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap()
}

/// Ready messages left in `name` (unacknowledged ones come back once their channel
/// closes, so close the consumer's channel first).
async fn ready(conn: &Connection, name: &str) -> u32 {
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            ShortString::try_new(name).unwrap(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.queue_delete(
        ShortString::try_new(name).unwrap(),
        QueueDeleteOptions::default(),
    )
    .await
    .unwrap();
    q.message_count()
}

fn long(s: &[u8]) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

#[tokio::test]
async fn rabbitmq_publish_restores_context_in_handler() {
    let Some(conn) = connect("rabbitmq_publish_restores_context_in_handler").await else {
        return;
    };
    let channel = conn.create_channel().await.unwrap();
    let name = unique("threadline.test.jobs");
    queue(&channel, &name).await;
    let policy = policy();
    let inbound = inbound(&policy, "order-42", "acme");

    let producer = inbound
        .ctx
        .clone()
        .scope(async {
            threadline::bind("user.id", "alice");
            channel
                .basic_publish_in_context(
                    "".into(),
                    ShortString::try_new(name.as_str()).unwrap(),
                    BasicPublishOptions::default(),
                    b"{\"order\":42}",
                    BasicProperties::default(),
                )
                .await
                .unwrap()
                .await
                .unwrap();
            Context::current()
        })
        .await;

    let mut consumer = consume(&channel, &name).await;
    let delivery = timeout(WAIT, consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let props = &delivery.properties;
    assert_eq!(
        props.correlation_id().as_ref().map(ShortString::as_str),
        Some("order-42")
    );
    let headers = props.headers().as_ref().unwrap().inner();
    for key in [
        "x-correlation-id",
        "traceparent",
        "x-tenant-id",
        "tl-field-user.id",
    ] {
        assert!(
            matches!(headers.get(key), Some(AMQPValue::LongString(_))),
            "{key} as a long string"
        );
    }

    let restorer = Restorer::new(policy).trust(Trust::Trusted);
    let consumer_ctx = restorer
        .handle(delivery, |d| async move {
            assert_eq!(d.data, b"{\"order\":42}");
            d.ack(BasicAckOptions::default()).await.unwrap();
            Context::current()
        })
        .await;
    channel.close(200, "done".into()).await.unwrap();
    assert_eq!(ready(&conn, &name).await, 0, "acknowledged");

    assert_eq!(
        consumer_ctx.correlation_id().map(|c| c.as_str()),
        Some("order-42")
    );
    let (ct, pt) = (consumer_ctx.trace().unwrap(), producer.trace().unwrap());
    assert_eq!(ct.trace_id(), inbound.trace_id, "same trace id");
    let parent = ct.parent_id().expect("the consumer continues the trace");
    assert_ne!(parent, inbound.parent_id, "a new parent id");
    assert_ne!(parent, pt.span_id());
    assert_eq!(consumer_ctx.get("x-tenant-id"), Some("acme"));
    assert_eq!(consumer_ctx.field("user.id"), Some("alice"));
    assert_eq!(restorer.stats().with_rejections(), 0);
}

#[tokio::test]
async fn rabbitmq_long_values_never_panic_and_travel_whole() {
    let Some(conn) = connect("rabbitmq_long_values_never_panic_and_travel_whole").await else {
        return;
    };
    let channel = conn.create_channel().await.unwrap();
    let name = unique("threadline.test.long");
    queue(&channel, &name).await;
    // A 300-byte correlation id: over lapin's ShortString limit, within a policy that
    // allows it.
    let long_id = "i".repeat(300);
    let policy = Policy::builder()
        .header("x-tenant-id")
        .limits(threadline::Limits::default().with_correlation_id_max_len(512))
        .build()
        .unwrap();
    let mut req = http::HeaderMap::new();
    req.insert("x-correlation-id", long_id.parse().unwrap());
    req.insert("x-tenant-id", "t".repeat(3000).parse().unwrap());
    let ctx = policy.capture(&req, Trust::Trusted).context;
    ctx.scope(async {
        threadline::bind("user.id", "ü".repeat(200));
        channel
            .basic_publish_in_context(
                "".into(),
                ShortString::try_new(name.as_str()).unwrap(),
                BasicPublishOptions::default(),
                b"long",
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    })
    .await;
    let mut consumer = consume(&channel, &name).await;
    let delivery = timeout(WAIT, consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        delivery.properties.correlation_id().is_none(),
        "too long for the property: header only"
    );
    let seen = Restorer::new(policy.clone())
        .trust(Trust::Trusted)
        .handle(delivery, |d| async move {
            d.ack(BasicAckOptions::default()).await.unwrap();
            Context::current()
        })
        .await;
    channel.close(200, "done".into()).await.unwrap();
    assert_eq!(ready(&conn, &name).await, 0);
    assert_eq!(seen.correlation_id().unwrap().as_str(), long_id);
    assert_eq!(seen.get("x-tenant-id").map(str::len), Some(3000));
    assert_eq!(seen.field("user.id"), Some("ü".repeat(200).as_str()));
}

#[tokio::test]
async fn rabbitmq_missing_malformed_oversized_context_still_handled_and_acked() {
    let Some(conn) =
        connect("rabbitmq_missing_malformed_oversized_context_still_handled_and_acked").await
    else {
        return;
    };
    let channel = conn.create_channel().await.unwrap();
    let name = unique("threadline.test.bad");
    queue(&channel, &name).await;

    let kept_trace = TraceId::random();
    let valid_tp = format!("00-{kept_trace}-{}-01", SpanId::random());
    let long_id = "c".repeat(300);
    let huge = "t".repeat(5000);
    let table = |pairs: Vec<(&str, AMQPValue)>| {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(ShortString::try_new(k).unwrap(), v);
        }
        t
    };
    let cases: Vec<(&str, BasicProperties)> = vec![
        ("none", BasicProperties::default()),
        (
            "property only",
            BasicProperties::default().with_correlation_id("rpc-1".into()),
        ),
        (
            "malformed",
            BasicProperties::default().with_headers(table(vec![
                ("traceparent", long(b"00-not-a-trace-01")),
                ("x-correlation-id", long(b"has space, and comma")),
                ("x-tenant-id", long(b"acme")),
                ("baggage", long(b"=broken,k=v")),
                ("tl-field-user.id", long(b"bob")),
            ])),
        ),
        (
            "wrong type",
            BasicProperties::default().with_headers(table(vec![
                ("traceparent", long(valid_tp.as_bytes())),
                ("x-tenant-id", AMQPValue::LongInt(42)),
                (
                    "x-correlation-id",
                    AMQPValue::FieldTable(FieldTable::default()),
                ),
                ("tl-field-user.id", long(b"dave")),
            ])),
        ),
        (
            "oversized",
            BasicProperties::default().with_headers(table(vec![
                ("traceparent", long(valid_tp.as_bytes())),
                ("x-correlation-id", long(long_id.as_bytes())),
                ("x-tenant-id", long(huge.as_bytes())),
                ("tl-field-user.id", long(b"carol")),
            ])),
        ),
    ];
    for (tag, props) in &cases {
        channel
            .basic_publish(
                "".into(),
                ShortString::try_new(name.as_str()).unwrap(),
                BasicPublishOptions::default(),
                tag.as_bytes(),
                props.clone(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let restorer = Restorer::new(policy()).trust(Trust::Trusted);
    let mut consumer = consume(&channel, &name).await;
    let mut seen: Vec<(String, Context)> = Vec::new();
    while seen.len() < cases.len() {
        let delivery = timeout(WAIT, consumer.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let handled = restorer
            .handle(delivery, |d| async move {
                d.ack(BasicAckOptions::default()).await.unwrap();
                (
                    String::from_utf8(d.data.clone()).unwrap(),
                    Context::current(),
                )
            })
            .await;
        seen.push(handled);
    }
    channel.close(200, "done".into()).await.unwrap();
    assert_eq!(ready(&conn, &name).await, 0, "every message acknowledged");
    assert_eq!(seen.len(), cases.len(), "count in = count handled");
    let stats = restorer.stats();
    assert_eq!(stats.messages(), 5);
    // Fresh: no context (none) or none usable (malformed); the others continue.
    assert_eq!((stats.restored(), stats.fresh()), (3, 2));
    assert_eq!(stats.with_rejections(), 3);

    let ctx = |tag: &str| &seen.iter().find(|(t, _)| t == tag).unwrap().1;
    let c = ctx("none");
    assert!(c.correlation_id().is_some());
    assert!(c.trace().unwrap().parent_id().is_none(), "a new trace");
    let c = ctx("property only");
    assert_eq!(c.correlation_id().unwrap().as_str(), "rpc-1");
    assert!(c.trace().unwrap().parent_id().is_none());

    let c = ctx("malformed");
    assert_ne!(c.correlation_id().unwrap().as_str(), "has space, and comma");
    assert!(
        c.trace().unwrap().parent_id().is_none(),
        "invalid traceparent: new trace"
    );
    assert_eq!(c.get("x-tenant-id"), Some("acme"), "the valid part is kept");
    assert_eq!(c.field("user.id"), Some("bob"));
    assert_eq!(c.baggage().map(|b| b.as_str()), Some("k=v"));

    let c = ctx("wrong type");
    assert_eq!(c.trace_id(), Some(kept_trace));
    assert_eq!(c.get("x-tenant-id"), None, "integer dropped");
    assert!(c.correlation_id().is_some(), "table dropped, id minted");
    assert_eq!(c.field("user.id"), Some("dave"));

    let c = ctx("oversized");
    assert_eq!(c.trace_id(), Some(kept_trace), "valid traceparent kept");
    assert_ne!(c.correlation_id().unwrap().as_str(), long_id);
    assert_eq!(c.get("x-tenant-id"), None, "oversized value dropped");
    assert_eq!(c.field("user.id"), Some("carol"));
}

// Round trip, trust, malformed context and 1,000 concurrent messages: the shared suites,
// in tests/suites.rs.
