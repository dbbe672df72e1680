//! apalis workers on the Redis backend (127.0.0.1:6379). Each test prints a loud SKIP
//! and returns when Redis is unreachable, unless THREADLINE_REQUIRE_SERVICES=1.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apalis_core::backend::TaskSink;
use apalis_core::error::BoxDynError;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::data::Data;
use apalis_core::task::metadata::MetadataStore;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_core::worker::context::WorkerContext;
use apalis_core::worker::ext::parallelize::ParallelizeExt;
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use serde::{Deserialize, Serialize};
use threadline::codec::{SpanId, TraceId};
use threadline::{Context, Policy, RestoreStats, Restorer, Trust};
use threadline_apalis::{ContextLayer, TaskSinkExt};
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(60);

async fn connect(test: &str) -> Option<ConnectionManager> {
    threadline_testkit::connect(
        test,
        "Redis",
        "127.0.0.1:6379",
        Duration::from_secs(5),
        apalis_redis::connect("redis://127.0.0.1:6379/"),
    )
    .await
}

fn unique(prefix: &str) -> String {
    threadline_testkit::unique(prefix, ':')
}

fn policy() -> Policy {
    Policy::builder().header("x-tenant-id").build().unwrap()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Job {
    tag: String,
    i: usize,
    trace: String,
}

/// What each handler reports back.
#[derive(Clone)]
struct Probe {
    tx: mpsc::UnboundedSender<(Job, Context)>,
    remaining: Arc<AtomicUsize>,
}

async fn record(job: Job, wrk: WorkerContext, probe: Data<Probe>) -> Result<(), BoxDynError> {
    for _ in 0..2 {
        tokio::task::yield_now().await;
    }
    probe.tx.send((job, Context::current()))?;
    if probe.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
        wrk.stop()?;
    }
    Ok(())
}

fn storage(conn: ConnectionManager, queue: &str) -> RedisStorage<Job> {
    RedisStorage::new(conn).with_config(Config::default().queue(queue).batch_size(100))
}

/// Runs a worker over `queue` until `n` jobs were handled; returns what they saw, the
/// layer's counters and how many jobs the backend marked done.
async fn run_worker(
    conn: ConnectionManager,
    queue: &str,
    n: usize,
) -> (Vec<(Job, Context)>, RestoreStats, usize) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let probe = Probe {
        tx,
        remaining: Arc::new(AtomicUsize::new(n)),
    };
    let layer = ContextLayer::new(Restorer::new(policy()).trust(Trust::Trusted));
    let worker = WorkerBuilder::new(unique("worker"))
        .backend(storage(conn.clone(), queue))
        .data(probe)
        .parallelize(tokio::spawn)
        .layer(layer.clone())
        .build(record);
    timeout(WAIT, worker.run())
        .await
        .expect("worker finished in time")
        .expect("worker ran");
    let mut seen = Vec::new();
    while let Ok(item) = rx.try_recv() {
        seen.push(item);
    }
    // Completions are written by the backend; give it a bounded moment.
    let config = Config::default().queue(queue);
    let mut con = conn;
    let mut done = 0;
    for _ in 0..100 {
        done = redis::cmd("SCARD")
            .arg(config.done_jobs_set())
            .query_async::<usize>(&mut con)
            .await
            .unwrap();
        if done >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cleanup(&mut con, queue).await;
    (seen, layer.stats(), done)
}

async fn cleanup(con: &mut ConnectionManager, queue: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{queue}*"))
        .query_async(con)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: usize = redis::cmd("DEL").arg(&keys).query_async(con).await.unwrap();
    }
}

fn inbound(policy: &Policy, correlation_id: &str, tenant: &str) -> (Context, TraceId, SpanId) {
    let trace_id = TraceId::random();
    let parent_id = SpanId::random();
    let mut req = http::HeaderMap::new();
    req.insert("x-correlation-id", correlation_id.parse().unwrap());
    req.insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01").parse().unwrap(),
    );
    req.insert("x-tenant-id", tenant.parse().unwrap());
    (
        policy.capture(&req, Trust::Untrusted).context,
        trace_id,
        parent_id,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apalis_redis_job_restores_context_in_handler() {
    let Some(conn) = connect("apalis_redis_job_restores_context_in_handler").await else {
        return;
    };
    let queue = unique("threadline:apalis:one");
    let policy = policy();
    let (ctx, trace_id, parent_id) = inbound(&policy, "order-42", "acme");
    let mut store = storage(conn.clone(), &queue);
    let producer = ctx
        .scope(async {
            threadline::bind("user.id", "alice");
            let job = Job {
                tag: "one".into(),
                i: 0,
                trace: trace_id.to_string(),
            };
            store.push_in_context(job).await.unwrap();
            Context::current()
        })
        .await;

    let (seen, stats, done) = run_worker(conn, &queue, 1).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(done, 1, "the job is marked done");
    assert_eq!(stats.messages(), 1);
    assert_eq!(stats.with_rejections(), 0);
    let consumer = &seen[0].1;
    assert_eq!(consumer.correlation_id().unwrap().as_str(), "order-42");
    let ct = consumer.trace().unwrap();
    assert_eq!(ct.trace_id(), trace_id, "same trace id");
    let parent = ct.parent_id().unwrap();
    assert_ne!(parent, parent_id, "a new parent id");
    assert_ne!(parent, producer.span_id().unwrap());
    assert_eq!(consumer.get("x-tenant-id"), Some("acme"));
    assert_eq!(consumer.field("user.id"), Some("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apalis_redis_missing_malformed_oversized_context_still_handled() {
    let Some(conn) =
        connect("apalis_redis_missing_malformed_oversized_context_still_handled").await
    else {
        return;
    };
    let queue = unique("threadline:apalis:bad");
    let kept_trace = TraceId::random();
    let valid_tp = format!("00-{kept_trace}-{}-01", SpanId::random());
    let long_id = "c".repeat(300);
    let huge = "t".repeat(5000);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("none", vec![]),
        (
            "malformed",
            vec![
                ("traceparent", "00-not-a-trace-01"),
                ("x-correlation-id", "has space, and comma"),
                ("x-tenant-id", "acme"),
                ("tl-field-user.id", "bob"),
            ],
        ),
        (
            "non-ascii",
            vec![
                ("traceparent", valid_tp.as_str()),
                ("x-tenant-id", "caf\u{e9}"),
                ("tl-field-user.id", "dave"),
            ],
        ),
        (
            "oversized",
            vec![
                ("traceparent", valid_tp.as_str()),
                ("x-correlation-id", long_id.as_str()),
                ("x-tenant-id", huge.as_str()),
                ("tl-field-user.id", "carol"),
            ],
        ),
    ];
    let mut store = storage(conn.clone(), &queue);
    for (tag, meta) in &cases {
        let map: HashMap<String, String> = meta
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let task = TaskBuilder::new(Job {
            tag: (*tag).to_owned(),
            i: 0,
            trace: String::new(),
        })
        .with_metadata(MetadataStore::from_map(map))
        .build();
        store.push_task(task).await.unwrap();
    }

    let (seen, stats, done) = run_worker(conn, &queue, cases.len()).await;
    assert_eq!(seen.len(), cases.len(), "count in = count handled");
    assert_eq!(done, cases.len(), "every job marked done, none failed");
    assert_eq!(stats.messages(), cases.len() as u64);
    assert_eq!(stats.with_rejections(), 3);

    let ctx = |tag: &str| &seen.iter().find(|(j, _)| j.tag == tag).unwrap().1;
    let c = ctx("none");
    assert!(c.correlation_id().is_some());
    assert!(c.trace().unwrap().parent_id().is_none(), "a new trace");

    let c = ctx("malformed");
    assert_ne!(c.correlation_id().unwrap().as_str(), "has space, and comma");
    assert!(c.trace().unwrap().parent_id().is_none());
    assert_eq!(c.get("x-tenant-id"), Some("acme"), "the valid part is kept");
    assert_eq!(c.field("user.id"), Some("bob"));

    let c = ctx("non-ascii");
    assert_eq!(c.trace_id(), Some(kept_trace));
    assert_eq!(c.get("x-tenant-id"), None);
    assert_eq!(c.field("user.id"), Some("dave"));

    let c = ctx("oversized");
    assert_eq!(c.trace_id(), Some(kept_trace));
    assert_ne!(c.correlation_id().unwrap().as_str(), long_id);
    assert_eq!(c.get("x-tenant-id"), None);
    assert_eq!(c.field("user.id"), Some("carol"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apalis_redis_thousand_distinct_contexts_consumed_concurrently() {
    let Some(conn) = connect("apalis_redis_thousand_distinct_contexts_consumed_concurrently").await
    else {
        return;
    };
    const N: usize = 1000;
    let queue = unique("threadline:apalis:many");
    let policy = policy();
    let mut producers = tokio::task::JoinSet::new();
    for i in 0..N {
        let (ctx, trace_id, _) = inbound(&policy, &format!("corr-{i}"), &format!("tenant-{i}"));
        let mut store = storage(conn.clone(), &queue);
        producers.spawn(ctx.scope(async move {
            threadline::bind("user.id", format!("user-{i}"));
            tokio::task::yield_now().await;
            let job = Job {
                tag: "many".into(),
                i,
                trace: trace_id.to_string(),
            };
            store.push_in_context(job).await.unwrap();
        }));
    }
    while let Some(r) = timeout(WAIT, producers.join_next()).await.unwrap() {
        r.unwrap();
    }

    let (seen, stats, done) = run_worker(conn, &queue, N).await;
    assert_eq!(seen.len(), N, "count in = count handled");
    assert_eq!(done, N, "every job marked done");
    assert_eq!(stats.messages(), N as u64);
    let mut handled = vec![false; N];
    for (job, ctx) in &seen {
        let i = job.i;
        assert_eq!(ctx.correlation_id().unwrap().as_str(), format!("corr-{i}"));
        assert_eq!(ctx.trace_id().unwrap().to_string(), job.trace);
        assert_eq!(ctx.get("x-tenant-id"), Some(format!("tenant-{i}").as_str()));
        assert_eq!(ctx.field("user.id"), Some(format!("user-{i}").as_str()));
        assert!(!handled[i], "job {i} handled twice");
        handled[i] = true;
    }
}
