//! Selective consumption on Redis Streams (127.0.0.1:6379): 1,000 entries read by one
//! consumer group, some with a key a sandbox claims, and a change in the middle: every
//! entry handled once, never twice, none lost, nothing left pending; the sandbox's
//! registration and consumer gone once it has stopped. Each test prints a loud SKIP
//! and returns when Redis is unreachable, unless THREADLINE_REQUIRE_SERVICES=1.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use support::{END, N, Seen, WAIT, claim_alice, key_of, record, restorer, until};

use redis::aio::MultiplexedConnection;
use threadline::RoutingKey;
use threadline_redis::Entry;
use threadline_route::select::redis::SelectiveRedis;
use threadline_route::{Router, Selector};

const GROUP: &str = "orders";

async fn connect(test: &str) -> Option<MultiplexedConnection> {
    let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    threadline_testkit::connect(
        test,
        "Redis",
        "127.0.0.1:6379",
        Duration::from_secs(3),
        client.get_multiplexed_async_connection(),
    )
    .await
}

fn id_of(entry: &Entry) -> u32 {
    match entry.get("payload") {
        Some(redis::Value::BulkString(b)) => std::str::from_utf8(b).unwrap().parse().unwrap(),
        other => panic!("payload {other:?}"),
    }
}

async fn publish(conn: &mut MultiplexedConnection, stream: &str, i: u32) {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*").arg("payload").arg(i.to_string());
    if let Some(k) = key_of(i) {
        cmd.arg("tl:x-routing-key").arg(k);
    }
    let _: String = cmd.query_async(conn).await.unwrap();
}

async fn pending(conn: &mut MultiplexedConnection, stream: &str) -> i64 {
    let summary: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(stream)
        .arg(GROUP)
        .query_async(conn)
        .await
        .unwrap();
    match summary.first() {
        Some(redis::Value::Int(n)) => *n,
        other => panic!("XPENDING {other:?}"),
    }
}

/// Runs the scenario: `change` is applied once the sandbox has handled a few entries.
async fn scenario(
    test: &str,
    change: impl FnOnce(&Router, &mut Option<tokio::sync::oneshot::Sender<()>>),
) {
    let (Some(mut producer), Some(mut base_conn), Some(mut sbx_conn)) = (
        connect(test).await,
        connect(test).await,
        connect(test).await,
    ) else {
        return;
    };
    let stream = threadline_testkit::unique("orders", ':');
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut producer)
        .await
        .unwrap();

    let router = Router::new();
    claim_alice(&router);
    let seen: Seen = Arc::default();

    let baseline =
        SelectiveRedis::new(stream.clone(), GROUP, restorer()).lease(Duration::from_secs(5));
    let selector = Selector::new(router.clone(), "orders");
    let (b, s2) = (baseline.clone(), seen.clone());
    let base_task = tokio::spawn(async move {
        b.baseline(&mut base_conn, "baseline-1", &selector, |e| {
            record(&s2, "baseline", id_of(&e));
            std::future::ready(())
        })
        .await
    });

    let sandbox =
        SelectiveRedis::new(stream.clone(), GROUP, restorer()).lease(Duration::from_secs(5));
    let alice = RoutingKey::new("alice").unwrap();
    let registration = sandbox.registration(&alice);
    let (s, s3) = (sandbox.clone(), seen.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sbx_task = tokio::spawn(async move {
        let alice = [RoutingKey::new("alice").unwrap()];
        s.sandbox(
            &mut sbx_conn,
            &alice,
            |e| {
                record(&s3, "sandbox", id_of(&e));
                std::future::ready(())
            },
            async {
                let _ = stop_rx.await;
            },
        )
        .await
    });
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let registered: bool = redis::cmd("EXISTS")
            .arg(&registration)
            .query_async(&mut producer)
            .await
            .unwrap();
        if registered {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sandbox never registered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let (mut p, st) = (producer.clone(), stream.clone());
    let publisher = tokio::spawn(async move {
        for i in 0..N {
            publish(&mut p, &st, i).await;
        }
    });
    until("the sandbox took some", || sandbox.stats().handled >= 20).await;
    let mut stop = Some(stop_tx);
    change(&router, &mut stop);
    publisher.await.unwrap();
    // The sandbox stops (in the rule-removed case, now): what it still held is back
    // in the stream before the end marker.
    if let Some(stop) = stop.take() {
        let _ = stop.send(());
    }
    sbx_task.await.unwrap().unwrap();
    publish(&mut producer, &stream, END).await;
    // The baseline decides in stream order: once the end marker is handled and
    // nothing is pending, every entry before it has been handled and acknowledged.
    until("end marker", || seen.lock().unwrap().contains_key(&END)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while pending(&mut producer, &stream).await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "entries left pending"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    {
        let by_sandbox = support::assert_each_once(&seen);
        // Moved to the sandbox: handled there, or handed back when it stopped.
        assert!(baseline.stats().relayed >= by_sandbox);
        eprintln!(
            "{test}: baseline {:?}, by the sandbox {by_sandbox}",
            baseline.stats()
        );
    }

    // The sandbox left nothing behind: no registration, no consumer in the group.
    let registered: bool = redis::cmd("EXISTS")
        .arg(&registration)
        .query_async(&mut producer)
        .await
        .unwrap();
    assert!(!registered, "registration left behind");
    let consumers: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&stream)
        .arg(GROUP)
        .query_async(&mut producer)
        .await
        .unwrap();
    let names: Vec<String> = consumers
        .iter()
        .filter_map(|c| match c.get("name") {
            Some(redis::Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["baseline-1"], "consumers left in the group");
    base_task.abort();
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut producer)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_rule_removed_mid_stream_each_entry_once() {
    scenario(
        "redis_streams_rule_removed_mid_stream_each_entry_once",
        |router, _stop| {
            // The sandbox keeps running for now: no entry is moved to it any more.
            router.set_rules("code", Vec::new()).unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_sandbox_stops_mid_stream_each_entry_once() {
    scenario(
        "redis_streams_sandbox_stops_mid_stream_each_entry_once",
        |_router, stop| {
            // The rule stays in the table; the sandbox goes away and hands back what it held.
            let _ = stop.take().unwrap().send(());
        },
    )
    .await;
}
