//! Example: Threadline context through a PostgreSQL job table.
//!
//! A queue that only carries a payload (here a `JSONB` column) carries the context in
//! the payload itself, under one key — `_http_headers` by default, the key
//! django-cloud-tasks and Pub/Sub-style pushes use — next to the job's own fields:
//!
//! ```json
//! {"order": 42,
//!  "_http_headers": {"x-correlation-id": "order-42",
//!                    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-5b8aa5a2d2c872e8-01",
//!                    "x-tenant-id": "acme",
//!                    "tl-field-user.id": "alice"}}
//! ```
//!
//! [`enqueue`] adds the current context with [`threadline::json::JsonCarrierMut`];
//! [`claim`] takes jobs off the table (`FOR UPDATE SKIP LOCKED`, so workers never get
//! the same job), and [`handle`] reads the context back with
//! [`threadline::json::JsonCarrier`], removes the key from the payload and runs the
//! handler inside the restored context. A job whose context is missing or malformed
//! (the key holding a string, values of the wrong type, oversized values, an invalid
//! `traceparent`) still runs: what is valid is kept, the rest is dropped and listed in
//! the returned report.
//!
//! The worker restores through a [`Restorer`]: the table is the application's own (only
//! its services insert jobs), so it is declared trusted and the tenant and user ids
//! travel with the job.
//!
//! ```no_run
//! use threadline::{Context, Policy, Restorer, Trust};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sqlx::Error> {
//! let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/test").await?;
//! example_pg_jobs::create_table(&pool, "jobs").await?;
//! let policy = Policy::builder().header("x-tenant-id").build().unwrap();
//! let restorer = Restorer::new(policy.clone()).trust(Trust::Trusted);
//!
//! // Producer, inside a request scope:
//! policy.new_root().scope(async {
//!     threadline::bind("user.id", "alice");
//!     let job = serde_json::json!({"order": 42}).as_object().unwrap().clone();
//!     example_pg_jobs::enqueue(&pool, "jobs", job).await
//! }).await?;
//!
//! // Worker:
//! for job in example_pg_jobs::claim(&pool, "jobs", 10).await? {
//!     example_pg_jobs::handle(&restorer, job, |job| async move {
//!         let ctx = Context::current(); // the producer's correlation id, trace, tenant, user.id
//!         println!("{:?} {}", ctx.correlation_id(), job.payload["order"]);
//!     }).await;
//! }
//! # Ok(()) }
//! ```

//! # Typed jobs
//!
//! With a payload type of your own, [`enqueue_typed`] wraps it in a
//! [`threadline::json::Envelope`] (the same wire form: the payload's fields plus
//! `_http_headers`), and [`handle_typed`] reads it back as an `Envelope<T>` and runs the
//! handler with the payload inside the restored context. A row whose payload is not a
//! `T` is never lost: the job comes back in the [`PayloadError`].
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use threadline::{Context, Policy, Restorer, Trust};
//!
//! #[derive(Serialize, Deserialize)]
//! struct SendInvoice { order: u64 }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sqlx::Error> {
//! # let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/test").await?;
//! let policy = Policy::builder().header("x-tenant-id").build().unwrap();
//! let restorer = Restorer::new(policy.clone()).trust(Trust::Trusted);
//! policy.new_root().scope(example_pg_jobs::enqueue_typed(&pool, "jobs", &SendInvoice { order: 42 })).await?;
//! for job in example_pg_jobs::claim(&pool, "jobs", 10).await? {
//!     match example_pg_jobs::handle_typed(&restorer, job, |invoice: SendInvoice| async move {
//!         println!("{:?} invoice {}", Context::current().correlation_id(), invoice.order);
//!     }).await {
//!         Ok(((), _report)) => {}
//!         Err(bad) => { example_pg_jobs::insert_raw(&pool, "jobs_dead", bad.into_job().payload).await?; }
//!     }
//! }
//! # Ok(()) }
//! ```

#![deny(unreachable_pub)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use serde_json::{Map, Value};
// Table names are checked by `check` (only [a-z0-9_]) before they reach SQL.
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, PgPool};
use threadline::json::{DEFAULT_KEY, Envelope, JsonCarrier, JsonCarrierMut};
use threadline::{Context, Report, Restorer};

/// One job taken off the table.
#[derive(Clone, Debug)]
pub struct Job {
    /// The row id.
    pub id: i64,
    /// The payload; inside [`handle`] the context key has been removed.
    pub payload: Map<String, Value>,
}

fn check(table: &str) -> Result<&str, sqlx::Error> {
    if !table.is_empty()
        && table.len() <= 63
        && table
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Ok(table)
    } else {
        Err(sqlx::Error::Protocol(format!(
            "job table name {table:?} must be 1 to 63 of [a-z0-9_]"
        )))
    }
}

/// Creates the job table (`id bigserial`, `payload jsonb`) when it does not exist.
pub async fn create_table(pool: &PgPool, table: &str) -> Result<(), sqlx::Error> {
    let table = check(table)?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {table} (id bigserial PRIMARY KEY, payload jsonb NOT NULL)"
    )))
    .execute(pool)
    .await?;
    Ok(())
}

/// Inserts a job: `payload` with the current context under `_http_headers` (nothing is
/// added outside any scope). Returns the row id.
pub async fn enqueue(
    pool: &PgPool,
    table: &str,
    mut payload: Map<String, Value>,
) -> Result<i64, sqlx::Error> {
    let table = check(table)?;
    Context::with_current(|ctx| ctx.inject(&mut JsonCarrierMut::new(&mut payload)));
    insert_raw(pool, table, payload).await
}

/// Inserts a payload exactly as given (no context added).
pub async fn insert_raw(
    pool: &PgPool,
    table: &str,
    payload: Map<String, Value>,
) -> Result<i64, sqlx::Error> {
    let table = check(table)?;
    let (id,): (i64,) = sqlx::query_as(AssertSqlSafe(format!(
        "INSERT INTO {table} (payload) VALUES ($1) RETURNING id"
    )))
    .bind(Json(Value::Object(payload)))
    .fetch_one(pool)
    .await?;
    Ok(id)
}

/// Takes up to `limit` jobs off the table, oldest first. Rows locked by another worker
/// are skipped, and a job is deleted as it is claimed: each job is handed out once.
pub async fn claim(pool: &PgPool, table: &str, limit: i64) -> Result<Vec<Job>, sqlx::Error> {
    let table = check(table)?;
    let rows: Vec<(i64, Json<Value>)> = sqlx::query_as(AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE id IN \
         (SELECT id FROM {table} ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $1) \
         RETURNING id, payload"
    )))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut jobs: Vec<Job> = rows
        .into_iter()
        .map(|(id, Json(v))| Job {
            id,
            payload: match v {
                Value::Object(m) => m,
                other => Map::from_iter([("payload".to_owned(), other)]),
            },
        })
        .collect();
    jobs.sort_by_key(|j| j.id);
    Ok(jobs)
}

/// Restores the context of `job` (a fresh one when it carries none) and takes the
/// context key off its payload. Never fails: what breaks the policy is dropped and
/// listed in the report.
pub fn extract(restorer: &Restorer, job: &mut Job) -> (Context, Report) {
    let captured = match job.payload.get(DEFAULT_KEY) {
        None | Some(Value::Null) => restorer.fresh(),
        Some(_) => restorer.restore_from(&JsonCarrier::new(&job.payload)),
    };
    job.payload.remove(DEFAULT_KEY);
    (captured.context, captured.report)
}

/// Runs `handler(job)` inside the context the job carries (see [`extract`]), and
/// returns its output with the extraction report.
pub async fn handle<F, Fut>(restorer: &Restorer, mut job: Job, handler: F) -> (Fut::Output, Report)
where
    F: FnOnce(Job) -> Fut,
    Fut: Future,
{
    let (ctx, report) = extract(restorer, &mut job);
    (ctx.scope_with(|| handler(job)).await, report)
}

/// Inserts a typed job: `payload` wrapped in an [`Envelope`] with the current context
/// (nothing is added outside any scope). A payload that does not serialise as a JSON
/// object is refused with `sqlx::Error::Encode`, before anything is written.
pub async fn enqueue_typed<T: Serialize>(
    pool: &PgPool,
    table: &str,
    payload: &T,
) -> Result<i64, sqlx::Error> {
    let table = check(table)?;
    let value = serde_json::to_value(Envelope::wrap(payload))
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let Value::Object(payload) = value else {
        unreachable!("an envelope serialises as a JSON object")
    };
    insert_raw(pool, table, payload).await
}

/// A claimed job whose payload is not the expected type. The job comes back untouched
/// (payload and context key as they were), so it can be stored again or set aside.
#[derive(Debug)]
pub struct PayloadError {
    job: Job,
    error: serde_json::Error,
}

impl PayloadError {
    /// The job, as it was claimed.
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// The job, as it was claimed.
    pub fn into_job(self) -> Job {
        self.job
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "job {} has an unexpected payload: {}",
            self.job.id, self.error
        )
    }
}

impl std::error::Error for PayloadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Reads `job` as an [`Envelope<T>`] and runs `handler(payload)` inside the context it
/// carries (a fresh one when it carries none or a broken one; what the policy drops is
/// listed in the report). Only a payload that is not a `T` is an error, and then the
/// job is handed back.
pub async fn handle_typed<T, F, Fut>(
    restorer: &Restorer,
    job: Job,
    handler: F,
) -> Result<(Fut::Output, Report), PayloadError>
where
    T: DeserializeOwned,
    F: FnOnce(T) -> Fut,
    Fut: Future,
{
    let envelope: Envelope<T> = match serde_json::from_value(Value::Object(job.payload.clone())) {
        Ok(e) => e,
        Err(error) => return Err(PayloadError { job, error }),
    };
    let (payload, captured) = envelope.into_parts(restorer);
    let ctx = captured.context;
    Ok((ctx.scope_with(|| handler(payload)).await, captured.report))
}
