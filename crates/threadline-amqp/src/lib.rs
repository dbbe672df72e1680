//! Threadline context through RabbitMQ and other AMQP 0.9.1 brokers ([`lapin`]): the
//! current context goes into each message's `headers` table (and the correlation id
//! also into the `correlation_id` property), and is restored around the consumer's
//! handler.
//!
//! # Producer: inside a request scope, nothing passed by hand
//!
//! ```no_run
//! use lapin::{BasicProperties, Connection, ConnectionProperties, options::BasicPublishOptions};
//! use threadline::{Policy, Trust};
//! use threadline_amqp::ChannelExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let conn = Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", ConnectionProperties::default()).await?;
//! let channel = conn.create_channel().await?;
//! let policy = Policy::builder().header("x-tenant-id").build()?;
//! # let request_headers = http::HeaderMap::new();
//! let ctx = policy.capture(&request_headers, Trust::Trusted).context;
//! ctx.scope(async {
//!     threadline::bind("user.id", "alice");
//!     channel
//!         .basic_publish_in_context(
//!             "".into(),
//!             "jobs".into(),
//!             BasicPublishOptions::default(),
//!             b"{\"order\":42}",
//!             BasicProperties::default(),
//!         )
//!         .await?
//!         .await?;
//!     Ok::<_, lapin::Error>(())
//! }).await?;
//! # Ok(()) }
//! ```
//!
//! # Consumer: the handler runs in the producer's context
//!
//! [`threadline::Restorer`] restores the context of lapin's `Delivery`,
//! `BasicGetMessage` and bare `BasicProperties` (this crate implements
//! [`threadline::restore::Message`] for them). It is told whether the queue's
//! publishers are trusted: only then are `trusted_only` headers (the tenant) and local
//! fields (`user.id`) taken from the message.
//!
//! Code that never names this crate (a consumer that only calls `Restorer::handle`, a
//! producer that only calls `ctx.inject_into`) links it with `use threadline_amqp as _;`: the
//! implementations are seen only when the crate is.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use lapin::options::{BasicAckOptions, BasicConsumeOptions};
//! use lapin::types::FieldTable;
//! use threadline::{Context, Policy, Restorer, Trust};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let conn = lapin::Connection::connect("amqp://127.0.0.1:5672/%2f", Default::default()).await?;
//! # let channel = conn.create_channel().await?;
//! // Only our own services may publish to `jobs` (RabbitMQ permissions).
//! let restorer = Restorer::new(Policy::builder().header("x-tenant-id").build()?)
//!     .trust(Trust::Trusted);
//! let mut consumer = channel
//!     .basic_consume("jobs".into(), "worker-1".into(), BasicConsumeOptions::default(), FieldTable::default())
//!     .await?;
//! while let Some(delivery) = consumer.next().await {
//!     tokio::spawn(restorer.handle(delivery?, |delivery| async move {
//!         let ctx = Context::current(); // same correlation id and trace id, tenant, user.id
//!         println!("{:?} {:?}", ctx.correlation_id(), ctx.get("x-tenant-id"));
//!         delivery.ack(BasicAckOptions::default()).await
//!     }));
//! }
//! # Ok(()) }
//! ```
//!
//! Without a broker, the same round trip on the properties:
//!
//! ```
//! use lapin::BasicProperties;
//! use threadline::{Context, Policy, Restorer, Trust};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let policy = Policy::builder().header("x-tenant-id").build().unwrap();
//! let mut inbound = http::HeaderMap::new();
//! inbound.insert("x-correlation-id", "order-42".parse().unwrap());
//! inbound.insert("x-tenant-id", "acme".parse().unwrap());
//! let ctx = policy.capture(&inbound, Trust::Trusted).context.with_field("user.id", "alice");
//!
//! let mut props = BasicProperties::default();
//! ctx.inject_into(&mut props); // or threadline::inject_current(&mut props) in a scope
//! assert_eq!(props.correlation_id().as_ref().unwrap().as_str(), "order-42");
//! assert!(props.headers().as_ref().unwrap().contains_key("tl-field-user.id"));
//!
//! Restorer::new(policy).trust(Trust::Trusted).handle(props, |_| async {
//!     let ctx = Context::current();
//!     assert_eq!(ctx.correlation_id().unwrap().as_str(), "order-42");
//!     assert_eq!(ctx.get("x-tenant-id"), Some("acme"));
//!     assert_eq!(ctx.field("user.id"), Some("alice"));
//! }).await;
//! # }
//! ```
//!
//! # Wire keys (AMQP message properties)
//!
//! Plain lower-case names in the `headers` table, each value a long string (`S`), the
//! same text as on HTTP, so any AMQP client in any language reads them:
//!
//! | where | key | value |
//! |---|---|---|
//! | `headers` | `x-correlation-id` (the policy's correlation header) | the correlation id |
//! | `correlation_id` property | | the correlation id too, when unset and at most 255 bytes |
//! | `headers` | `traceparent` | W3C: `00-<trace-id>-<new parent-id>-<flags>` |
//! | `headers` | `tracestate` | W3C, as received |
//! | `headers` | `baggage` | W3C, as received |
//! | `headers` | `b3` or `x-b3-*` | only when the policy emits B3 |
//! | `headers` | each custom header of the policy (`x-tenant-id`, ...) | as captured, under its outbound name |
//! | `headers` | `tl-field-<name>` (the policy's field prefix) | a local field (`tl-field-user.id`), percent-encoded like a baggage value |
//!
//! On the way in, names are matched case-insensitively; long strings, short strings
//! and UTF-8 byte arrays are read as text, a field array as several values. The
//! `correlation_id` property is read only when the correlation header is absent (it is
//! often an RPC reply id). Headers and a `correlation_id` the producer set itself are
//! never overwritten.
//!
//! # Bad input
//!
//! Nothing panics on long values: they go into long strings, never into lapin's
//! `ShortString` (which panics over 255 bytes); a correlation id too long for the
//! `correlation_id` property stays in the header only. Extraction re-applies the
//! policy's allow-list, validation and limits: a malformed `traceparent` starts a new
//! trace, an invalid correlation id is replaced by a new one, an oversized, non-ASCII or
//! non-text (integer, table) value is dropped; the rest of the context is kept. Each
//! drop is listed in [`threadline::Report`] and counted by
//! [`threadline::Restorer::stats`]. The
//! handler always runs: a message is never rejected or redelivered because of its
//! context.

#![deny(unreachable_pub)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod carrier;
mod consume;
mod publish;

pub use carrier::{AmqpHeaders, AmqpHeadersMut};
pub use consume::Amqp;
pub use publish::ChannelExt;
