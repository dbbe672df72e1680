//! Against PostgreSQL on 127.0.0.1:5432 (database `test`, user `postgres`, trust auth).
//! Each test prints a loud SKIP and returns when PostgreSQL is unreachable, unless
//! THREADLINE_REQUIRE_SERVICES=1.

use std::time::Duration;

use serde_json::{Map, Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use threadline::codec::{SpanId, TraceId};
use threadline::{Context, Policy, Restorer, Trust};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(30);

async fn connect(test: &str) -> Option<PgPool> {
    threadline_testkit::connect(
        test,
        "PostgreSQL",
        "127.0.0.1:5432",
        Duration::from_secs(5),
        PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(3))
            .connect("postgres://postgres@127.0.0.1:5432/test"),
    )
    .await
}

fn unique(prefix: &str) -> String {
    threadline_testkit::unique(prefix, '_')
}

async fn table(pool: &PgPool, prefix: &str) -> String {
    let name = unique(prefix);
    example_pg_jobs::create_table(pool, &name).await.unwrap();
    name
}

async fn drop_table(pool: &PgPool, name: &str) -> i64 {
    let (left,): (i64,) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {name}")))
            .fetch_one(pool)
            .await
            .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {name}")))
        .execute(pool)
        .await
        .unwrap();
    left
}

fn policy() -> Policy {
    Policy::builder().header("x-tenant-id").build().unwrap()
}

/// The test's job table is its own: only the test inserts jobs.
fn trusted(policy: &Policy) -> Restorer {
    Restorer::new(policy.clone()).trust(Trust::Trusted)
}

fn object(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[tokio::test]
async fn postgres_json_envelope_restores_context_in_handler() {
    let Some(pool) = connect("postgres_json_envelope_restores_context_in_handler").await else {
        return;
    };
    let name = table(&pool, "tl_jobs").await;
    let policy = policy();
    let trace_id = TraceId::random();
    let parent_id = SpanId::random();
    let mut req = http::HeaderMap::new();
    req.insert("x-correlation-id", "order-42".parse().unwrap());
    req.insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01").parse().unwrap(),
    );
    req.insert("x-tenant-id", "acme".parse().unwrap());
    let inbound = policy.capture(&req, Trust::Untrusted).context;

    let producer = inbound
        .scope(async {
            threadline::bind("user.id", "alice");
            example_pg_jobs::enqueue(&pool, &name, object(json!({"order": 42})))
                .await
                .unwrap();
            Context::current()
        })
        .await;

    // What sits in the JSONB column.
    let (stored,): (sqlx::types::Json<Value>,) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT payload FROM {name}")))
            .fetch_one(&pool)
            .await
            .unwrap();
    let headers = &stored.0["_http_headers"];
    assert_eq!(stored.0["order"], 42);
    assert_eq!(headers["x-correlation-id"], "order-42");
    assert_eq!(headers["x-tenant-id"], "acme");
    assert_eq!(headers["tl-field-user.id"], "alice");

    let jobs = example_pg_jobs::claim(&pool, &name, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let ((consumer, payload), report) = example_pg_jobs::handle(
        &trusted(&policy),
        jobs.into_iter().next().unwrap(),
        |job| async move { (Context::current(), job.payload) },
    )
    .await;
    assert_eq!(drop_table(&pool, &name).await, 0);
    assert!(report.is_empty());
    assert_eq!(
        Value::Object(payload),
        json!({"order": 42}),
        "envelope key removed"
    );

    assert_eq!(consumer.correlation_id().unwrap().as_str(), "order-42");
    let ct = consumer.trace().unwrap();
    assert_eq!(ct.trace_id(), trace_id, "same trace id");
    let parent = ct.parent_id().unwrap();
    assert_ne!(parent, parent_id, "a new parent id");
    assert_ne!(parent, producer.span_id().unwrap());
    assert_eq!(consumer.get("x-tenant-id"), Some("acme"));
    assert_eq!(consumer.field("user.id"), Some("alice"));
}

#[tokio::test]
async fn postgres_json_envelope_missing_malformed_oversized_context_still_handled() {
    let Some(pool) =
        connect("postgres_json_envelope_missing_malformed_oversized_context_still_handled").await
    else {
        return;
    };
    let name = table(&pool, "tl_bad").await;
    let kept_trace = TraceId::random();
    let valid_tp = format!("00-{kept_trace}-{}-01", SpanId::random());
    let cases = [
        json!({"tag": "none"}),
        json!({"tag": "null key", "_http_headers": null}),
        json!({"tag": "bad json under the key", "_http_headers": "{not an object"}),
        json!({"tag": "malformed", "_http_headers": {
            "traceparent": "00-not-a-trace-01",
            "x-correlation-id": "has space, and comma",
            "x-tenant-id": "acme",
            "baggage": "=broken,k=v",
            "tl-field-user.id": "bob"}}),
        json!({"tag": "wrong types", "_http_headers": {
            "traceparent": valid_tp,
            "x-tenant-id": 42,
            "x-correlation-id": {"nested": true},
            "tl-field-user.id": "dave"}}),
        json!({"tag": "oversized", "_http_headers": {
            "traceparent": valid_tp,
            "x-correlation-id": "c".repeat(300),
            "x-tenant-id": "t".repeat(5000),
            "tl-field-user.id": "carol"}}),
    ];
    for case in &cases {
        example_pg_jobs::insert_raw(&pool, &name, object(case.clone()))
            .await
            .unwrap();
    }
    let policy = policy();
    let jobs = example_pg_jobs::claim(&pool, &name, 100).await.unwrap();
    let mut seen = Vec::new();
    for job in jobs {
        let ((tag, ctx), report) =
            example_pg_jobs::handle(&trusted(&policy), job, |job| async move {
                (
                    job.payload["tag"].as_str().unwrap().to_owned(),
                    Context::current(),
                )
            })
            .await;
        seen.push((tag, ctx, report.len()));
    }
    assert_eq!(drop_table(&pool, &name).await, 0, "nothing left behind");
    assert_eq!(seen.len(), cases.len(), "count in = count handled");

    let get = |tag: &str| seen.iter().find(|(t, _, _)| t == tag).unwrap();
    for tag in ["none", "null key"] {
        let (_, c, rejected) = get(tag);
        assert_eq!(*rejected, 0);
        assert!(
            c.trace().unwrap().parent_id().is_none(),
            "{tag}: a new trace"
        );
        assert!(c.correlation_id().is_some());
    }
    let (_, c, rejected) = get("bad json under the key");
    assert_eq!(*rejected, 1, "broken envelope counted");
    assert!(c.trace().unwrap().parent_id().is_none());

    let (_, c, rejected) = get("malformed");
    assert!(*rejected >= 3);
    assert_ne!(c.correlation_id().unwrap().as_str(), "has space, and comma");
    assert!(c.trace().unwrap().parent_id().is_none());
    assert_eq!(c.get("x-tenant-id"), Some("acme"), "the valid part is kept");
    assert_eq!(c.field("user.id"), Some("bob"));
    assert_eq!(c.baggage().map(|b| b.as_str()), Some("k=v"));

    let (_, c, rejected) = get("wrong types");
    assert_eq!(*rejected, 2);
    assert_eq!(c.trace_id(), Some(kept_trace));
    assert_eq!(c.get("x-tenant-id"), None);
    assert_eq!(c.field("user.id"), Some("dave"));

    let (_, c, rejected) = get("oversized");
    assert_eq!(*rejected, 2);
    assert_eq!(c.trace_id(), Some(kept_trace));
    assert_eq!(c.get("x-tenant-id"), None);
    assert_eq!(c.field("user.id"), Some("carol"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_json_envelope_thousand_distinct_contexts_consumed_concurrently() {
    let Some(pool) =
        connect("postgres_json_envelope_thousand_distinct_contexts_consumed_concurrently").await
    else {
        return;
    };
    const N: usize = 1000;
    let name = table(&pool, "tl_many").await;
    let policy = policy();

    let mut producers = tokio::task::JoinSet::new();
    for i in 0..N {
        let trace_id = TraceId::random();
        let mut req = http::HeaderMap::new();
        req.insert("x-correlation-id", format!("corr-{i}").parse().unwrap());
        req.insert(
            "traceparent",
            format!("00-{trace_id}-{}-01", SpanId::random())
                .parse()
                .unwrap(),
        );
        req.insert("x-tenant-id", format!("tenant-{i}").parse().unwrap());
        let ctx = policy.capture(&req, Trust::Untrusted).context;
        let pool = pool.clone();
        let name = name.clone();
        producers.spawn(ctx.scope(async move {
            threadline::bind("user.id", format!("user-{i}"));
            tokio::task::yield_now().await;
            let job = object(json!({"i": i, "trace": trace_id.to_string()}));
            example_pg_jobs::enqueue(&pool, &name, job).await.unwrap();
        }));
    }
    while let Some(r) = timeout(WAIT, producers.join_next()).await.unwrap() {
        r.unwrap();
    }

    let mut consumers = tokio::task::JoinSet::new();
    loop {
        let jobs = example_pg_jobs::claim(&pool, &name, 250).await.unwrap();
        if jobs.is_empty() {
            break;
        }
        for job in jobs {
            let policy = policy.clone();
            consumers.spawn(async move {
                let (result, _) =
                    example_pg_jobs::handle(&trusted(&policy), job, |job| async move {
                        let i = job.payload["i"].as_u64().unwrap() as usize;
                        let trace = job.payload["trace"].as_str().unwrap().to_owned();
                        let ok =
                            threadline_testkit::holds_message_context("corr-", &trace, i).await;
                        (i, ok)
                    })
                    .await;
                result
            });
        }
    }
    let mut seen = vec![false; N];
    while let Some(r) = timeout(WAIT, consumers.join_next()).await.unwrap() {
        let (i, ok) = r.unwrap();
        assert!(ok, "job {i} saw a context other than its own");
        assert!(!seen[i], "job {i} handled twice");
        seen[i] = true;
    }
    assert_eq!(drop_table(&pool, &name).await, 0);
    assert!(seen.iter().all(|s| *s), "every job handled");
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct SendInvoice {
    order: u64,
    amount_cents: u64,
}

#[tokio::test]
async fn postgres_typed_envelope_restores_context_and_hands_back_bad_payloads() {
    let Some(pool) =
        connect("postgres_typed_envelope_restores_context_and_hands_back_bad_payloads").await
    else {
        return;
    };
    let name = table(&pool, "tl_typed").await;
    let policy = policy();
    let trace_id = TraceId::random();
    let parent_id = SpanId::random();
    let mut req = http::HeaderMap::new();
    req.insert("x-correlation-id", "invoice-7".parse().unwrap());
    req.insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01").parse().unwrap(),
    );
    req.insert("x-tenant-id", "acme".parse().unwrap());
    let inbound = policy.capture(&req, Trust::Untrusted).context;

    // A typed job from inside the request, one with a broken context and one that is
    // not an invoice at all.
    let producer = inbound
        .scope(async {
            threadline::bind("user.id", "erin");
            let invoice = SendInvoice {
                order: 7,
                amount_cents: 1250,
            };
            example_pg_jobs::enqueue_typed(&pool, &name, &invoice)
                .await
                .unwrap();
            Context::current()
        })
        .await;
    example_pg_jobs::insert_raw(
        &pool,
        &name,
        object(json!({"order": 8, "amount_cents": 1, "_http_headers": "{broken"})),
    )
    .await
    .unwrap();
    let not_an_invoice = json!({"order": "eight", "_http_headers": {"x-correlation-id": "x-9"}});
    example_pg_jobs::insert_raw(&pool, &name, object(not_an_invoice.clone()))
        .await
        .unwrap();
    // A payload that is not an object is refused before anything is written.
    let refused = example_pg_jobs::enqueue_typed(&pool, &name, &[1, 2, 3]).await;
    assert!(
        matches!(refused, Err(sqlx::Error::Encode(_))),
        "{refused:?}"
    );

    let (stored,): (sqlx::types::Json<Value>,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT payload FROM {name} ORDER BY id LIMIT 1"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored.0["order"], 7);
    assert_eq!(stored.0["amount_cents"], 1250);
    assert_eq!(stored.0["_http_headers"]["x-correlation-id"], "invoice-7");
    assert_eq!(stored.0["_http_headers"]["tl-field-user.id"], "erin");

    let jobs = example_pg_jobs::claim(&pool, &name, 10).await.unwrap();
    assert_eq!(jobs.len(), 3, "the refused payload was never written");
    let mut handled = Vec::new();
    let mut handed_back = Vec::new();
    for job in jobs {
        let id = job.id;
        match example_pg_jobs::handle_typed(
            &trusted(&policy),
            job,
            |invoice: SendInvoice| async move { (invoice, Context::current()) },
        )
        .await
        {
            Ok(((invoice, ctx), report)) => handled.push((invoice, ctx, report)),
            Err(bad) => {
                assert!(bad.to_string().contains(&format!("job {id}")), "{bad}");
                handed_back.push(bad.into_job());
            }
        }
    }
    assert_eq!(drop_table(&pool, &name).await, 0);
    assert_eq!(handled.len() + handed_back.len(), 3, "count in = count out");

    let (invoice, consumer, report) = &handled[0];
    assert_eq!(
        invoice,
        &SendInvoice {
            order: 7,
            amount_cents: 1250
        }
    );
    assert!(report.is_empty(), "{report:?}");
    assert_eq!(consumer.correlation_id().unwrap().as_str(), "invoice-7");
    let ct = consumer.trace().unwrap();
    assert_eq!(ct.trace_id(), trace_id, "same trace id");
    assert_ne!(ct.parent_id(), Some(parent_id), "a new parent id");
    assert_ne!(ct.parent_id(), producer.span_id());
    assert_eq!(consumer.get("x-tenant-id"), Some("acme"));
    assert_eq!(consumer.field("user.id"), Some("erin"));

    let (invoice, fresh, report) = &handled[1];
    assert_eq!(invoice.order, 8, "a broken context never fails the payload");
    assert_eq!(report.len(), 1, "the broken key is counted");
    assert!(fresh.trace().unwrap().parent_id().is_none(), "a new trace");
    assert_ne!(fresh.correlation_id(), consumer.correlation_id());

    assert_eq!(handed_back.len(), 1);
    assert_eq!(
        Value::Object(handed_back[0].payload.clone()),
        not_an_invoice,
        "handed back untouched"
    );
}
