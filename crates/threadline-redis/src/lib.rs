//! Threadline context through Redis Streams: the current context goes into each new
//! stream entry as `tl:`-prefixed fields beside the payload fields, and is restored
//! around the consumer's handler.
//!
//! # Producer: inside a request scope, nothing passed by hand
//!
//! ```no_run
//! use threadline::{Policy, Trust};
//! use threadline_redis::StreamsExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = redis::Client::open("redis://127.0.0.1:6379")?;
//! let mut con = client.get_multiplexed_async_connection().await?;
//! let policy = Policy::builder().header("x-tenant-id").build()?;
//! # let request_headers = http::HeaderMap::new();
//! let ctx = policy.capture(&request_headers, Trust::Trusted).context;
//! ctx.scope(async {
//!     threadline::bind("user.id", "alice");
//!     let id: String = con.xadd_in_context("jobs", "*", &[("payload", r#"{"order":42}"#)]).await?;
//!     # let _ = id;
//!     Ok::<_, redis::RedisError>(())
//! }).await?;
//! # Ok(()) }
//! ```
//!
//! # Consumer: the handler runs in the producer's context
//!
//! [`threadline::Restorer`] restores the context of stream entries: read them as
//! [`Entry`] ([`ReadReply`] for `XREADGROUP`), which keeps the fields as the server sent
//! them (redis-rs's `StreamId` works too). The restorer is told whether the stream's
//! producers are trusted: only then are `trusted_only` headers (the tenant) and local
//! fields (`user.id`) taken from the entry.
//!
//! Code that never names this crate (a consumer that only calls `Restorer::handle`, a
//! producer that only calls `ctx.inject_into`) links it with `use threadline_redis as _;`: the
//! implementations are seen only when the crate is.
//!
//! ```no_run
//! use redis::AsyncCommands;
//! use redis::streams::StreamReadOptions;
//! use threadline::{Context, Policy, Restorer, Trust};
//! use threadline_redis::ReadReply;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let client = redis::Client::open("redis://127.0.0.1:6379")?;
//! # let mut con = client.get_multiplexed_async_connection().await?;
//! // Only our own services may write to `jobs` (Redis ACLs).
//! let restorer = Restorer::new(Policy::builder().header("x-tenant-id").build()?)
//!     .trust(Trust::Trusted);
//! let opts = StreamReadOptions::default().group("workers", "worker-1").count(10);
//! let reply: ReadReply = con.xread_options(&["jobs"], &[">"], &opts).await?;
//! for (_stream, entry) in reply.into_entries() {
//!     let mut con = con.clone();
//!     restorer.handle(entry, |entry| async move {
//!         let ctx = Context::current(); // same correlation id and trace id, tenant, user.id
//!         println!("{:?} {:?}", ctx.correlation_id(), ctx.get("x-tenant-id"));
//!         let _: i64 = con.xack("jobs", "workers", &[&entry.id]).await?;
//!         Ok::<_, redis::RedisError>(())
//!     }).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! Without a server, the same round trip on a command and a field map:
//!
//! ```
//! use std::collections::HashMap;
//! use threadline::{Context, Policy, Restorer, Trust};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let policy = Policy::builder().header("x-tenant-id").build().unwrap();
//! let mut inbound = http::HeaderMap::new();
//! inbound.insert("x-correlation-id", "order-42".parse().unwrap());
//! inbound.insert("x-tenant-id", "acme".parse().unwrap());
//! let ctx = policy.capture(&inbound, Trust::Trusted).context.with_field("user.id", "alice");
//!
//! let mut fields = vec![("payload".to_owned(), "{}".to_owned())];
//! ctx.inject_into(&mut fields); // or threadline::inject_current(&mut fields) in a scope
//! let entry: HashMap<String, redis::Value> = fields
//!     .into_iter()
//!     .map(|(k, v)| (k, redis::Value::BulkString(v.into_bytes())))
//!     .collect();
//! assert!(entry.contains_key("tl:traceparent"));
//! assert!(entry.contains_key("tl:tl-field-user.id"));
//!
//! Restorer::new(policy).trust(Trust::Trusted).handle(&entry, |_| async {
//!     let ctx = Context::current();
//!     assert_eq!(ctx.correlation_id().unwrap().as_str(), "order-42");
//!     assert_eq!(ctx.get("x-tenant-id"), Some("acme"));
//!     assert_eq!(ctx.field("user.id"), Some("alice"));
//! }).await;
//! # }
//! ```
//!
//! # Wire keys (stream entry fields)
//!
//! Each context header travels as one field named `tl:` + the plain lower-case header
//! name, with the same value it has on HTTP:
//!
//! | field | value |
//! |---|---|
//! | `tl:x-correlation-id` (the policy's correlation header) | the correlation id |
//! | `tl:traceparent` | W3C: `00-<trace-id>-<new parent-id>-<flags>` |
//! | `tl:tracestate` | W3C, as received |
//! | `tl:baggage` | W3C, as received |
//! | `tl:b3` or `tl:x-b3-*` | only when the policy emits B3 |
//! | `tl:` + each custom header of the policy (`tl:x-tenant-id`, ...) | as captured, under its outbound name |
//! | `tl:tl-field-<name>` (`tl:` + the policy's field prefix) | a local field (`tl:tl-field-user.id`), percent-encoded like a baggage value |
//!
//! A consumer in any language strips `tl:` and has the same headers NATS or HTTP would
//! carry. The payload fields beside them are yours, whatever their names: only
//! `tl:`-prefixed fields are read as context (a `:` never appears in a header name, so
//! the prefix cannot be confused with one). The prefix can be changed with
//! [`inject_with_prefix`] and, on the way in, [`Entry::with_prefix`] ([`WithPrefix`]);
//! `""` reads a producer in another language that writes plain header names
//! (`traceparent`, `x-correlation-id`). Reading is case-insensitive.
//!
//! # Bad input
//!
//! Extraction re-applies the policy's allow-list, validation and limits: a malformed
//! `traceparent` starts a new trace, an invalid correlation id is replaced by a new
//! one, an oversized, non-ASCII or non-text (integer, binary) value is dropped; the
//! rest of the context is kept. A context field written twice into one entry is a
//! duplicate, refused like a repeated HTTP header (seen when entries are read as
//! [`Entry`]; `StreamId`'s map keeps only one of them). Each drop is listed in
//! [`threadline::Report`] and counted by [`threadline::Restorer::stats`]. The handler
//! always runs: an entry never stays pending because of its context.

#![deny(unreachable_pub)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod carrier;
mod consume;
mod publish;

pub use carrier::{CmdFields, DEFAULT_PREFIX, FieldList, StreamFields};
pub use consume::{Entry, ReadReply, Redis, StreamEntries, StreamEntry, WithPrefix};
pub use publish::{StreamsExt, current_fields, inject_with_prefix, xadd_cmd};
