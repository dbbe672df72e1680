//! Against the Redis server on 127.0.0.1:6379. Each test prints a loud SKIP and returns
//! when Redis is unreachable, unless THREADLINE_REQUIRE_SERVICES=1.

use std::time::Duration;
use threadline_testkit::inbound;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamReadOptions, StreamReadReply};
use threadline::codec::{SpanId, TraceId};
use threadline::{Context, Policy};
use threadline::{Restorer, Trust};
use threadline_redis::StreamsExt;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);
const GROUP: &str = "workers";

/// A tag (also the payload) and the extra fields of one entry.
type Case<'a> = (&'a str, Vec<(&'a str, &'a [u8])>);

async fn connect(test: &str) -> Option<MultiplexedConnection> {
    threadline_testkit::connect(
        test,
        "Redis",
        "127.0.0.1:6379",
        Duration::from_secs(3),
        async {
            redis::Client::open("redis://127.0.0.1:6379/")?
                .get_multiplexed_async_connection()
                .await
        },
    )
    .await
}

fn unique(prefix: &str) -> String {
    threadline_testkit::unique(prefix, ':')
}

fn policy() -> Policy {
    Policy::builder().header("x-tenant-id").build().unwrap()
}

async fn read_group(con: &mut MultiplexedConnection, key: &str, count: usize) -> Vec<StreamId> {
    let opts = StreamReadOptions::default()
        .group(GROUP, "worker-1")
        .count(count)
        .block(2000);
    let reply: Option<StreamReadReply> = timeout(WAIT, con.xread_options(&[key], &[">"], &opts))
        .await
        .unwrap()
        .unwrap();
    reply
        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn redis_stream_xadd_restores_context_in_handler() {
    let Some(mut con) = connect("redis_stream_xadd_restores_context_in_handler").await else {
        return;
    };
    let key = unique("threadline:test:jobs");
    let _: () = con.xgroup_create_mkstream(&key, GROUP, "$").await.unwrap();
    let policy = policy();
    let inbound = inbound(&policy, "order-42", "acme");

    let producer = inbound
        .ctx
        .clone()
        .scope(async {
            threadline::bind("user.id", "alice");
            let _: String = con
                .clone()
                .xadd_in_context(&key, "*", &[("payload", r#"{"order":42}"#)])
                .await
                .unwrap();
            Context::current()
        })
        .await;

    let mut entries = read_group(&mut con, &key, 10).await;
    assert_eq!(entries.len(), 1);
    let entry = entries.pop().unwrap();
    let field = |k: &str| entry.get::<String>(k);
    assert_eq!(field("payload").as_deref(), Some(r#"{"order":42}"#));
    assert_eq!(field("tl:x-correlation-id").as_deref(), Some("order-42"));
    assert_eq!(field("tl:x-tenant-id").as_deref(), Some("acme"));
    assert_eq!(field("tl:tl-field-user.id").as_deref(), Some("alice"));
    assert!(
        field("tl:traceparent")
            .unwrap()
            .starts_with(&format!("00-{}-", inbound.trace_id))
    );

    let restorer = Restorer::new(policy).trust(Trust::Trusted);
    let consumer = restorer
        .handle(entry, |entry| {
            let mut con = con.clone();
            let key = key.clone();
            async move {
                let acked: usize = con.xack(&key, GROUP, &[&entry.id]).await.unwrap();
                assert_eq!(acked, 1);
                Context::current()
            }
        })
        .await;
    let pending: redis::streams::StreamPendingReply = con.xpending(&key, GROUP).await.unwrap();
    let _: usize = con.del(&key).await.unwrap();
    assert_eq!(pending.count(), 0);

    assert_eq!(
        consumer.correlation_id().map(|c| c.as_str()),
        Some("order-42")
    );
    let (ct, pt) = (consumer.trace().unwrap(), producer.trace().unwrap());
    assert_eq!(ct.trace_id(), inbound.trace_id, "same trace id");
    let parent = ct.parent_id().expect("the consumer continues the trace");
    assert_ne!(parent, inbound.parent_id, "a new parent id");
    assert_ne!(parent, pt.span_id());
    assert_eq!(consumer.get("x-tenant-id"), Some("acme"));
    assert_eq!(consumer.field("user.id"), Some("alice"));
    assert_eq!(restorer.stats().messages(), 1);
    assert_eq!(restorer.stats().with_rejections(), 0);
}

#[tokio::test]
async fn redis_stream_missing_malformed_oversized_context_still_handled_and_acked() {
    let Some(mut con) =
        connect("redis_stream_missing_malformed_oversized_context_still_handled_and_acked").await
    else {
        return;
    };
    let key = unique("threadline:test:bad");
    let _: () = con.xgroup_create_mkstream(&key, GROUP, "$").await.unwrap();

    let kept_trace = TraceId::random();
    let valid_tp = format!("00-{kept_trace}-{}-01", SpanId::random());
    let long_id = "c".repeat(300);
    let huge = "t".repeat(5000);
    let cases: Vec<Case<'_>> = vec![
        ("none", vec![]),
        (
            "user fields named like headers",
            vec![
                ("traceparent", valid_tp.as_bytes()),
                ("x-tenant-id", b"not-context"),
                ("x-correlation-id", b"not-context"),
            ],
        ),
        (
            "malformed",
            vec![
                ("tl:traceparent", b"00-not-a-trace-01"),
                ("tl:x-correlation-id", b"has space, and comma"),
                ("tl:x-tenant-id", b"acme"),
                ("tl:baggage", b"=broken,k=v"),
                ("tl:tl-field-user.id", b"bob"),
            ],
        ),
        (
            "wrong type",
            vec![
                ("tl:traceparent", valid_tp.as_bytes()),
                ("tl:x-tenant-id", b"\xff\xfe binary"),
                ("tl:x-correlation-id", b"\x00\x01"),
                ("tl:tl-field-user.id", b"dave"),
            ],
        ),
        (
            "oversized",
            vec![
                ("tl:traceparent", valid_tp.as_bytes()),
                ("tl:x-correlation-id", long_id.as_bytes()),
                ("tl:x-tenant-id", huge.as_bytes()),
                ("tl:tl-field-user.id", b"carol"),
            ],
        ),
    ];
    for (tag, fields) in &cases {
        let mut items: Vec<(&str, &[u8])> = vec![("payload", tag.as_bytes())];
        items.extend(fields.iter().copied());
        let _: String = con.xadd(&key, "*", &items).await.unwrap();
    }

    let restorer = Restorer::new(policy()).trust(Trust::Trusted);
    let mut seen: Vec<(String, Context)> = Vec::new();
    while seen.len() < cases.len() {
        let entries = read_group(&mut con, &key, 10).await;
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            let mut con = con.clone();
            let key = key.clone();
            let handled = restorer
                .handle(entry, |entry| async move {
                    let _: usize = con.xack(&key, GROUP, &[&entry.id]).await.unwrap();
                    (entry.get::<String>("payload").unwrap(), Context::current())
                })
                .await;
            seen.push(handled);
        }
    }
    let pending: redis::streams::StreamPendingReply = con.xpending(&key, GROUP).await.unwrap();
    let _: usize = con.del(&key).await.unwrap();

    assert_eq!(seen.len(), cases.len(), "count in = count handled");
    assert_eq!(pending.count(), 0, "every entry acknowledged");
    let stats = restorer.stats();
    assert_eq!(stats.messages(), 5);
    // Fresh: no context fields (none, user fields) or none usable (malformed).
    assert_eq!((stats.restored(), stats.fresh()), (2, 3));
    assert_eq!(stats.with_rejections(), 3);

    let ctx = |tag: &str| &seen.iter().find(|(t, _)| t == tag).unwrap().1;
    for tag in ["none", "user fields named like headers"] {
        let c = ctx(tag);
        assert!(
            c.trace().unwrap().parent_id().is_none(),
            "{tag}: a new trace"
        );
        assert_ne!(c.correlation_id().unwrap().as_str(), "not-context");
        assert_eq!(
            c.get("x-tenant-id"),
            None,
            "{tag}: payload fields are not context"
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

    let c = ctx("wrong type");
    assert_eq!(c.trace_id(), Some(kept_trace));
    assert_eq!(c.get("x-tenant-id"), None, "binary value dropped");
    assert_eq!(c.field("user.id"), Some("dave"));

    let c = ctx("oversized");
    assert_eq!(c.trace_id(), Some(kept_trace), "valid traceparent kept");
    assert_ne!(c.correlation_id().unwrap().as_str(), long_id);
    assert_eq!(c.get("x-tenant-id"), None, "oversized value dropped");
    assert_eq!(c.field("user.id"), Some("carol"));
}

// Round trip, trust, malformed context and 1,000 concurrent entries: the shared suites,
// in tests/suites.rs.
