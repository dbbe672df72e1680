//! Threadline context through NATS: the current context goes out as message headers on
//! core publish, request/reply and JetStream publish, and is restored around the
//! consumer's handler.
//!
//! # Producer: inside a request scope, nothing passed by hand
//!
//! ```no_run
//! use threadline::{Policy, Trust};
//! use threadline_nats::{ClientExt, JetStreamExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = async_nats::connect("127.0.0.1:4222").await?;
//! let policy = Policy::builder().header("x-tenant-id").build()?;
//! # let request_headers = http::HeaderMap::new();
//! let ctx = policy.capture(&request_headers, Trust::Trusted).context;
//! ctx.scope(async {
//!     threadline::bind("user.id", "alice");
//!     client.publish_in_context("orders.created", "42".into()).await?;
//!     let reply = client.request_in_context("stock.reserve", "42".into()).await?;
//!     let js = async_nats::jetstream::new(client.clone());
//!     js.publish_in_context("jobs.invoice", "42".into()).await?.await?;
//!     # let _ = reply;
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! }).await?;
//! # Ok(()) }
//! ```
//!
//! # Consumer: the handler runs in the producer's context
//!
//! [`threadline::Restorer`] restores the context of `async_nats::Message`,
//! `jetstream::Message` and bare header maps (this crate implements
//! [`threadline::restore::Message`] for them). It is told whether the subject's
//! publishers are trusted: only then are `trusted_only` headers (the tenant) and local
//! fields (`user.id`) taken from the message.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use threadline::{Context, Policy, Restorer, Trust};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = async_nats::connect("127.0.0.1:4222").await?;
//! // Only our own services may publish to `orders.>` (NATS permissions).
//! let restorer = Restorer::new(Policy::builder().header("x-tenant-id").build()?)
//!     .trust(Trust::Trusted);
//! let mut orders = client.subscribe("orders.created").await?;
//! while let Some(msg) = orders.next().await {
//!     let task = restorer.handle(msg, |msg| async move {
//!         let ctx = Context::current(); // same correlation id and trace id, tenant, user.id
//!         println!("{:?} {:?} {:?}", ctx.correlation_id(), ctx.get("x-tenant-id"), msg.payload);
//!     });
//!     tokio::spawn(task);
//! }
//! # Ok(()) }
//! ```
//!
//! Without a network, the same round trip on a bare `HeaderMap`:
//!
//! ```
//! use threadline::{Context, Policy, Restorer, Trust};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let policy = Policy::builder().header("x-tenant-id").build().unwrap();
//! let mut inbound = http::HeaderMap::new();
//! inbound.insert("x-correlation-id", "order-42".parse().unwrap());
//! inbound.insert("x-tenant-id", "acme".parse().unwrap());
//! let ctx = policy.capture(&inbound, Trust::Trusted).context.with_field("user.id", "alice");
//!
//! let mut headers = async_nats::HeaderMap::new();
//! threadline_nats::inject(&ctx, &mut headers);
//! assert_eq!(headers.get("x-correlation-id").unwrap().as_str(), "order-42");
//! assert_eq!(headers.get("tl-field-user.id").unwrap().as_str(), "alice");
//!
//! Restorer::new(policy).trust(Trust::Trusted).handle(headers, |_| async {
//!     let ctx = Context::current();
//!     assert_eq!(ctx.correlation_id().unwrap().as_str(), "order-42");
//!     assert_eq!(ctx.get("x-tenant-id"), Some("acme"));
//!     assert_eq!(ctx.field("user.id"), Some("alice"));
//! }).await;
//! # }
//! ```
//!
//! # Wire keys (NATS message headers)
//!
//! Plain lower-case header names, values as on HTTP, so that any NATS client in any
//! language can read and write them:
//!
//! | header | value |
//! |---|---|
//! | `x-correlation-id` (the policy's correlation header) | the correlation id |
//! | `traceparent` | W3C: `00-<trace-id>-<new parent-id>-<flags>` |
//! | `tracestate` | W3C, as received |
//! | `baggage` | W3C, as received |
//! | `b3` or `x-b3-*` | only when the policy emits B3 |
//! | each custom header of the policy (`x-tenant-id`, ...) | as captured, under its outbound name |
//! | `tl-field-<name>` (the policy's field prefix) | a local field (`tl-field-user.id`), percent-encoded like a baggage value |
//!
//! Reading is case-insensitive. Headers the producer set itself (`Nats-Msg-Id`, ...)
//! are never overwritten.
//!
//! # Bad input
//!
//! Extraction re-applies the policy's allow-list, validation and limits: a malformed
//! `traceparent` starts a new trace, an invalid correlation id is replaced by a new
//! one, an oversized or non-ASCII value is dropped; the rest of the context is kept.
//! Each drop is listed in [`threadline::Report`] and counted by
//! [`threadline::Restorer::stats`].
//! The handler always runs: a message is never dropped or redelivered because of its
//! context. Nothing panics on header names or values NATS cannot carry: they are
//! skipped on the way out.
//!
//! # Cost
//!
//! Headers are not free in async-nats: a message with a prebuilt header map, only
//! cloned, already costs several times a plain `publish` (the map is a `HashMap` of
//! `Vec<String>` values, cloned, serialised and dropped per message). On top of that,
//! [`ClientExt::publish_in_context`] converts each header of the context into that map
//! (names Threadline writes are static or memoised per thread, so what remains is one
//! `String` and one `Vec` per value, as async-nats stores them). For many messages
//! published from one context (a fan-out), build the headers once with
//! [`ContextHeaders`] and publish with `publish_with_headers(subject,
//! headers.headers(), payload)`: one map clone and a fresh `traceparent` per message,
//! close to the prebuilt map (0.95× its throughput in one interleaved run). Numbers:
//! `cargo bench -p threadline-nats --bench nats_publish`.
//!
//! # Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `jetstream` | yes | [`JetStreamExt`], and `jetstream::Message` restored by [`threadline::Restorer`] |

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod carrier;
mod consume;
#[cfg(feature = "jetstream")]
pub mod dead_letter;
pub mod malformed;
mod publish;

pub use carrier::{NatsHeaders, NatsHeadersMut};
pub use consume::Nats;
#[cfg(feature = "jetstream")]
pub use publish::JetStreamExt;
pub use publish::{ClientExt, ContextHeaders, current_headers, inject, inject_current};
