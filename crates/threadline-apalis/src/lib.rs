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
//! use threadline::{Context, Policy, Restorer, Trust};
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
//! // Only our own services push to this backend.
//! let restorer = Restorer::new(policy).trust(Trust::Trusted);
//! WorkerBuilder::new("mailer")
//!     .backend(storage)
//!     .parallelize(tokio::spawn)
//!     .layer(ContextLayer::new(restorer)) // after `parallelize`: inside the spawned task
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
//! # use threadline::{Policy, Restorer};
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
//!     .layer(ContextLayer::new(Restorer::new(policy)))
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
//! use threadline::{Context, Policy, Restorer, Trust};
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
//! let restored = Restorer::new(policy).trust(Trust::Trusted).restore(&task).context;
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
//! allow-list, validation and limits, and the trust its [`Restorer`] gives the backend
//! decides whether `trusted_only` headers and local fields are accepted. A malformed `traceparent` starts a new trace, an
//! invalid correlation id is replaced by a new one, an oversized or non-ASCII value is
//! dropped; the rest is kept. A job without any context runs in a fresh one
//! ([`Policy::new_root`]). The job always runs: the layer never fails a job because
//! of its context (unlike a required metadata extractor, which does). Jobs and drops
//! are counted by [`ContextLayer::stats`].

#![deny(unreachable_pub)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::Future;
use std::task::{Context as TaskCx, Poll};

use apalis_core::backend::{TaskSink, TaskSinkError};
use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::metadata::MetadataStore;
use http::{HeaderName, HeaderValue};
use threadline::codec::SpanId;
use threadline::inject::Outgoing;
use threadline::restore::Message;
use threadline::{
    CarrierKind, CarrierValue, Context, Extractor, Injector, Policy, RestoreStats, Restorer, Scoped,
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

/// apalis's `MetadataStore` as an outgoing message: `ctx.inject_into(&mut metadata)`
/// and `threadline::inject_current(&mut metadata)` write the context into it (see
/// [`Context::inject`]) and return the parent id sent in the `traceparent`.
impl Outgoing<Apalis> for MetadataStore {
    fn inject_context(&mut self, ctx: &Context) -> Option<SpanId> {
        ctx.inject(&mut MetadataCarrierMut::new(self))
    }
}

/// The current context as task metadata (empty outside any scope).
pub fn current_metadata() -> MetadataStore {
    let mut metadata = MetadataStore::new();
    threadline::inject_current(&mut metadata);
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

/// The marker of this crate's [`Message`] implementation for apalis's `Task`: one
/// [`threadline::Restorer`] restores a task's context like any message's. It is
/// inferred; callers never name it.
#[derive(Clone, Copy, Debug)]
pub enum Apalis {}

impl<Args> Message<Apalis> for Task<Args> {
    type Carrier<'a>
        = MetadataCarrier<'a>
    where
        Args: 'a;

    fn carrier<'a>(&'a self, _: &'a Policy) -> Option<MetadataCarrier<'a>> {
        Some(MetadataCarrier::new(self.metadata()))
    }
}

/// A `tower` layer for apalis workers: each job runs inside the context its task
/// carries, restored by a [`Restorer`] (its policy, and the trust it gives the
/// backend). Clones share the restorer's counters.
#[derive(Clone, Debug)]
pub struct ContextLayer {
    restorer: Restorer,
}

impl ContextLayer {
    /// A layer restoring through `restorer`. Declare the backend trusted
    /// (`Restorer::new(policy).trust(Trust::Trusted)`) when only your own services push
    /// jobs to it; an untrusted backend's `trusted_only` headers and local fields are
    /// dropped.
    pub fn new(restorer: Restorer) -> Self {
        ContextLayer { restorer }
    }

    /// What was restored so far.
    pub fn stats(&self) -> RestoreStats {
        self.restorer.stats()
    }
}

impl<S> tower_layer::Layer<S> for ContextLayer {
    type Service = ContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ContextService {
            inner,
            restorer: self.restorer.clone(),
        }
    }
}

/// The service made by [`ContextLayer`].
#[derive(Clone, Debug)]
pub struct ContextService<S> {
    inner: S,
    restorer: Restorer,
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
        let ctx = self.restorer.restore(&task).context;
        ctx.scope_with(|| self.inner.call(task))
    }
}
