//! Threadline context through [apalis](https://docs.rs/apalis) 1.0 jobs: the current
//! context is stored in the task's metadata when it is pushed, and [`ContextLayer`]
//! restores it around the job handler, so the worker's logs carry the producer's
//! correlation id, trace id (a new hop of the same trace) and fields.
//!
//! # Producer: inside a request scope, nothing passed by hand
//!
//! ```no_run
//! use threadline::{Policy, Trust};
//! use threadline_apalis::TaskSinkExt;
//!
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Email { to: String }
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let conn = apalis_redis::connect("redis://127.0.0.1:6379").await?;
//! let mut storage = apalis_redis::RedisStorage::<Email>::new(conn);
//! let policy = Policy::builder().header("x-tenant-id").build()?;
//! # let request_headers = http::HeaderMap::new();
//! let ctx = policy.capture(&request_headers, Trust::Trusted).context;
//! ctx.scope(async {
//!     threadline::bind("user.id", "alice");
//!     storage.push_in_context(Email { to: "a@example.com".into() }).await
//! }).await?;
//! # Ok(()) }
//! ```
//!
//! # Worker: the handler runs in the producer's context
//!
//! ```no_run
//! use apalis_core::error::BoxDynError;
//! use apalis_core::worker::builder::WorkerBuilder;
//! use apalis_core::worker::ext::parallelize::ParallelizeExt;
//! use threadline::{Context, Policy};
//! use threadline_apalis::ContextLayer;
//!
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Email { to: String }
//! async fn send(email: Email) -> Result<(), BoxDynError> {
//!     let ctx = Context::current(); // correlation id, trace, x-tenant-id, user.id
//!     println!("{:?} {}", ctx.correlation_id(), email.to);
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let conn = apalis_redis::connect("redis://127.0.0.1:6379").await?;
//! let storage = apalis_redis::RedisStorage::<Email>::new(conn);
//! let policy = Policy::builder().header("x-tenant-id").build()?;
//! WorkerBuilder::new("mailer")
//!     .backend(storage)
//!     .parallelize(tokio::spawn)
//!     .layer(ContextLayer::new(policy)) // after `parallelize`: inside the spawned task
//!     .build(send)
//!     .run()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! **Order of layers.** Add [`ContextLayer`] after `.parallelize(..)` (or any layer
//! that spawns the job onto another task): an executor such as `tokio::spawn` does not
//! carry the task-local context into the task it starts, so a `ContextLayer` added
//! before it would restore the context around the spawn, not around the handler.
//!
//! ```no_run
//! # use apalis_core::error::BoxDynError;
//! # use apalis_core::worker::builder::WorkerBuilder;
//! # use threadline::Policy;
//! # use threadline_apalis::ContextLayer;
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Email { to: String }
//! # async fn send(email: Email) -> Result<(), BoxDynError> { Ok(()) }
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let conn = apalis_redis::connect("redis://127.0.0.1:6379").await?;
//! # let storage = apalis_redis::RedisStorage::<Email>::new(conn);
//! # let policy = Policy::default();
//! // Without parallelize, jobs of one worker run one after another:
//! WorkerBuilder::new("mailer")
//!     .backend(storage)
//!     .layer(ContextLayer::new(policy))
//!     .build(send)
//!     .run()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Without a backend, the same round trip on the task itself:
//!
//! ```
//! use apalis_core::task::builder::TaskBuilder;
//! use threadline::{Context, Policy, Trust};
//!
//! let policy = Policy::builder().header("x-tenant-id").build().unwrap();
//! let mut inbound = http::HeaderMap::new();
//! inbound.insert("x-correlation-id", "order-42".parse().unwrap());
//! inbound.insert("x-tenant-id", "acme".parse().unwrap());
//! let ctx = policy.capture(&inbound, Trust::Trusted).context.with_field("user.id", "alice");
//!
//! let task = ctx.sync_scope(|| threadline_apalis::task_in_context(42u32));
//! assert_eq!(task.metadata().get("x-correlation-id"), Some("order-42"));
//! assert_eq!(task.metadata().get("tl-field-user.id"), Some("alice"));
//!
//! let restored = threadline_apalis::extract(&policy, &task).context;
//! assert_eq!(restored.correlation_id().unwrap().as_str(), "order-42");
//! assert_eq!(restored.get("x-tenant-id"), Some("acme"));
//! assert_eq!(restored.field("user.id"), Some("alice"));
//! ```
//!
//! # Wire keys (task metadata)
//!
//! apalis keeps a task's metadata as a string map (stored by the Redis backend next to
//! the task). The context goes there under plain lower-case header names, values as
//! on HTTP:
//!
//! | key | value |
//! |---|---|
//! | `x-correlation-id` (the policy's correlation header) | the correlation id |
//! | `traceparent` | W3C: `00-<trace-id>-<new parent-id>-<flags>` |
//! | `tracestate` | W3C, as received |
//! | `baggage` | W3C, as received |
//! | `b3` or `x-b3-*` | only when the policy emits B3 |
//! | each custom header of the policy (`x-tenant-id`, ...) | as captured, under its outbound name |
//! | `tl-field-<name>` (the policy's field prefix) | a local field (`tl-field-user.id`), percent-encoded like a baggage value |
//!
//! Keys already in the metadata are never overwritten, and apalis's own keys are never
//! read as context.
//!
//! # Bad input
//!
//! The metadata of a job is untrusted input: [`ContextLayer`] re-applies the policy's
//! allow-list, validation and limits. A malformed `traceparent` starts a new trace, an
//! invalid correlation id is replaced by a new one, an oversized or non-ASCII value is
//! dropped; the rest is kept. A job without any context runs in a fresh one
//! ([`Policy::new_root`]). The job always runs: the layer never fails a job because
//! of its context (unlike a required metadata extractor, which does). Drops are
//! counted by [`ContextLayer::stats`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskCx, Poll};

use apalis_core::backend::{TaskSink, TaskSinkError};
use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::metadata::MetadataStore;
use http::{HeaderName, HeaderValue};
use threadline::codec::SpanId;
use threadline::{
    Captured, CarrierKind, CarrierValue, Context, Extractor, Injector, Policy, Scoped,
};

/// Reads context from a task's metadata (names matched case-insensitively).
#[derive(Clone, Copy, Debug)]
pub struct MetadataCarrier<'a>(&'a MetadataStore);

impl<'a> MetadataCarrier<'a> {
    /// Wraps a task's metadata.
    pub fn new(metadata: &'a MetadataStore) -> Self {
        MetadataCarrier(metadata)
    }
}

impl<'m> Extractor for MetadataCarrier<'m> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn get_all<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = CarrierValue<'a>> + use<'a, 'm> {
        Extractor::get_all(self.0.as_map(), name)
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// Writes context into a task's metadata; keys already present are kept.
#[derive(Debug)]
pub struct MetadataCarrierMut<'a>(&'a mut MetadataStore);

impl<'a> MetadataCarrierMut<'a> {
    /// Wraps the metadata of a task being built.
    pub fn new(metadata: &'a mut MetadataStore) -> Self {
        MetadataCarrierMut(metadata)
    }
}

impl Injector for MetadataCarrierMut<'_> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn contains(&self, name: &HeaderName) -> bool {
        self.0.contains_key(name.as_str())
            || self.0.keys().any(|k| k.eq_ignore_ascii_case(name.as_str()))
    }

    fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
        if let Ok(v) = value.to_str() {
            self.0.insert_if_absent(name.as_str(), v);
        }
    }
}

/// Writes `ctx` into `metadata` (see [`Context::inject`]); returns the parent id sent
/// in the `traceparent`.
pub fn inject(ctx: &Context, metadata: &mut MetadataStore) -> Option<SpanId> {
    ctx.inject(&mut MetadataCarrierMut::new(metadata))
}

/// The current context as task metadata (empty outside any scope).
pub fn current_metadata() -> MetadataStore {
    let mut metadata = MetadataStore::new();
    Context::with_current(|ctx| inject(ctx, &mut metadata));
    metadata
}

/// A task for `args` with the current context in its metadata.
pub fn task_in_context<Args>(args: Args) -> Task<Args> {
    TaskBuilder::new(args)
        .with_metadata(current_metadata())
        .build()
}

/// Pushing tasks with the current context in their metadata.
pub trait TaskSinkExt<Args, Kind>: TaskSink<Args, Kind> {
    /// `push`, with the current context stored in the task's metadata. The context
    /// is taken when this is called.
    fn push_in_context(
        &mut self,
        args: Args,
    ) -> impl Future<Output = Result<(), TaskSinkError<Self::Error>>> + Send {
        self.push_task(task_in_context(args))
    }
}

impl<Args, Kind, S: TaskSink<Args, Kind>> TaskSinkExt<Args, Kind> for S {}

/// Restores the context carried by `task`'s metadata, as [`Policy::extract`] does.
/// A task without context gets [`Policy::new_root`]. Never fails.
pub fn extract<Args>(policy: &Policy, task: &Task<Args>) -> Captured {
    // With no context keys at all this is a fresh context, as `Policy::new_root` makes.
    policy.extract(&MetadataCarrier::new(task.metadata()))
}

/// A `tower` layer for apalis workers: each job runs inside the context its task
/// carries (see [`extract`]). Clones share the counters.
#[derive(Clone, Debug)]
pub struct ContextLayer {
    policy: Policy,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    jobs: AtomicU64,
    with_rejections: AtomicU64,
    rejected_values: AtomicU64,
}

impl ContextLayer {
    /// A layer applying `policy`.
    pub fn new(policy: Policy) -> Self {
        ContextLayer {
            policy,
            counts: Arc::default(),
        }
    }

    /// What was restored so far.
    pub fn stats(&self) -> Stats {
        let c = &self.counts;
        Stats {
            jobs: c.jobs.load(Ordering::Relaxed),
            with_rejections: c.with_rejections.load(Ordering::Relaxed),
            rejected_values: c.rejected_values.load(Ordering::Relaxed),
        }
    }
}

impl<S> tower_layer::Layer<S> for ContextLayer {
    type Service = ContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ContextService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`ContextLayer`].
#[derive(Clone, Debug)]
pub struct ContextService<S> {
    inner: S,
    layer: ContextLayer,
}

impl<S, Args> tower_service::Service<Task<Args>> for ContextService<S>
where
    S: tower_service::Service<Task<Args>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Scoped<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskCx<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, task: Task<Args>) -> Self::Future {
        let captured = extract(&self.layer.policy, &task);
        let c = &self.layer.counts;
        c.jobs.fetch_add(1, Ordering::Relaxed);
        if !captured.report.is_empty() {
            c.with_rejections.fetch_add(1, Ordering::Relaxed);
            c.rejected_values
                .fetch_add(captured.report.len() as u64, Ordering::Relaxed);
        }
        let ctx = captured.context;
        ctx.scope_with(|| self.inner.call(task))
    }
}

/// Counters of a [`ContextLayer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    jobs: u64,
    with_rejections: u64,
    rejected_values: u64,
}

impl Stats {
    /// Jobs that went through the layer (each ran with a context).
    pub fn jobs(&self) -> u64 {
        self.jobs
    }

    /// Jobs from which at least one value was dropped.
    pub fn with_rejections(&self) -> u64 {
        self.with_rejections
    }

    /// Values dropped in all.
    pub fn rejected_values(&self) -> u64 {
        self.rejected_values
    }
}
