//! The shared broker suites (threadline_testkit::suites) against the local Redis
//! (127.0.0.1:6379), with entries read as `threadline_redis::Entry` through a consumer
//! group; and what only Redis Streams have: a context field written twice into one
//! entry, and producers that write plain header names. Each prints a loud SKIP and
//! returns when Redis is unreachable, unless THREADLINE_REQUIRE_SERVICES=1.

use std::collections::VecDeque;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadOptions;
use threadline::{Reason, Restorer, Trust};
use threadline_redis::{Entry, ReadReply, StreamsExt};
use threadline_testkit::suites::{self, Broker};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);
const GROUP: &str = "suite";

/// A stream of its own, read by one consumer of one group.
struct Streams {
    con: MultiplexedConnection,
    key: String,
    buffered: VecDeque<Entry>,
}

impl Streams {
    async fn new(test: &str) -> Option<Streams> {
        let mut con = threadline_testkit::connect(
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
        .await?;
        let key = threadline_testkit::unique("threadline:suite", ':');
        let _: () = con.xgroup_create_mkstream(&key, GROUP, "$").await.unwrap();
        Some(Streams {
            con,
            key,
            buffered: VecDeque::new(),
        })
    }

    /// Adds an entry with exactly these fields, as a producer in any language would.
    async fn xadd(&mut self, fields: &[(&str, &[u8])]) {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.key).arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        let _: String = cmd.query_async(&mut self.con).await.unwrap();
    }

    async fn finish(mut self) {
        let _: usize = self.con.del(&self.key).await.unwrap();
    }
}

impl Broker for Streams {
    type Msg = Entry;

    async fn publish_raw(&mut self, pairs: &[(&str, &str)], payload: &str) {
        let named: Vec<(String, &str)> =
            pairs.iter().map(|(k, v)| (format!("tl:{k}"), *v)).collect();
        let mut fields: Vec<(&str, &[u8])> = vec![("payload", payload.as_bytes())];
        fields.extend(named.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
        self.xadd(&fields).await;
    }

    async fn publish_in_context(&mut self, payload: &str) {
        let _: String = self
            .con
            .xadd_in_context(&self.key, "*", &[("payload", payload)])
            .await
            .unwrap();
    }

    async fn receive(&mut self) -> Entry {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(e) = self.buffered.pop_front() {
                return e;
            }
            assert!(tokio::time::Instant::now() < deadline, "an entry in time");
            let opts = StreamReadOptions::default()
                .group(GROUP, "worker-1")
                .count(500)
                .block(1000);
            let reply: ReadReply =
                timeout(WAIT, self.con.xread_options(&[&self.key], &[">"], &opts))
                    .await
                    .unwrap()
                    .unwrap();
            self.buffered
                .extend(reply.into_entries().map(|(_, entry)| entry));
        }
    }

    fn payload(msg: &Entry) -> String {
        match msg.get("payload") {
            Some(redis::Value::BulkString(b)) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("a payload field, not {other:?}"),
        }
    }

    async fn ack(&mut self, msg: &Entry) {
        let _: usize = self.con.xack(&self.key, GROUP, &[&msg.id]).await.unwrap();
    }
}

#[tokio::test]
async fn redis_suite_round_trip_trust_malformed() {
    let Some(mut b) = Streams::new("redis_suite_round_trip_trust_malformed").await else {
        return;
    };
    suites::round_trip(&mut b).await;
    suites::trust(&mut b).await;
    suites::malformed_and_oversized(&mut b).await;
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_suite_thousand_concurrent() {
    let Some(mut b) = Streams::new("redis_suite_thousand_concurrent").await else {
        return;
    };
    suites::concurrent(&mut b, 1000).await;
    b.finish().await;
}

#[tokio::test]
async fn redis_a_context_field_written_twice_is_a_duplicate() {
    let Some(mut b) = Streams::new("redis_a_context_field_written_twice_is_a_duplicate").await
    else {
        return;
    };
    b.xadd(&[
        ("payload", b"dup"),
        ("tl:x-correlation-id", b"dup-1"),
        ("tl:x-tenant-id", b"acme"),
        ("tl:x-tenant-id", b"evil"),
    ])
    .await;
    let entry = b.receive().await;
    assert_eq!(
        entry
            .fields
            .iter()
            .filter(|(k, _)| k == "tl:x-tenant-id")
            .count(),
        2,
        "the entry as the server sent it"
    );
    let restorer = Restorer::new(suites::policy()).trust(Trust::Trusted);
    let captured = restorer.restore(&entry);
    b.ack(&entry).await;
    assert_eq!(
        captured.context.get("x-tenant-id"),
        None,
        "neither value is believed"
    );
    assert_eq!(
        captured.context.correlation_id().map(|c| c.as_str()),
        Some("dup-1")
    );
    assert!(
        captured
            .report
            .iter()
            .any(|r| r.name == "x-tenant-id" && r.reason == Reason::Duplicate),
        "{:?}",
        captured.report
    );
    b.finish().await;
}

#[tokio::test]
async fn redis_producers_writing_plain_header_names_are_read_with_one_setting() {
    let Some(mut b) =
        Streams::new("redis_producers_writing_plain_header_names_are_read_with_one_setting").await
    else {
        return;
    };
    // What a producer in another language writes: the header names as fields.
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    b.xadd(&[
        ("payload", b"{}"),
        ("traceparent", tp.as_bytes()),
        ("x-correlation-id", b"py-7"),
        ("x-tenant-id", b"acme"),
    ])
    .await;
    let entry = b.receive().await;
    let restorer = Restorer::new(suites::policy()).trust(Trust::Trusted);
    let default = restorer.restore(&entry).context;
    assert_ne!(
        default.correlation_id().map(|c| c.as_str()),
        Some("py-7"),
        "by default only tl: fields are context"
    );
    let plain = restorer.restore(&entry.clone().with_prefix("")).context;
    assert_eq!(plain.correlation_id().map(|c| c.as_str()), Some("py-7"));
    assert_eq!(
        plain.trace_id().map(|t| t.to_string()).as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(plain.get("x-tenant-id"), Some("acme"));
    b.ack(&entry).await;
    b.finish().await;
}
