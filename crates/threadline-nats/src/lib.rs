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
//! Code that never names this crate (a consumer that only calls `Restorer::handle`, a
//! producer that only calls `ctx.inject_into`) links it with `use threadline_nats as _;`: the
//! implementations are seen only when the crate is.
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
//! ctx.inject_into(&mut headers); // or threadline::inject_current(&mut headers) in a scope
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
//! # Malformed header blocks
//!
//! The NATS server forwards a header block as it was published. Clients in other
//! languages, or a raw socket, can publish blocks that async-nats 0.51 cannot parse: a
//! non-UTF-8 byte (a Latin-1 value), a space or tab or non-ASCII letter in a name (also
//! a space before the colon), a line without a colon, a bare line feed inside a value,
//! a first line other than `NATS/1.0[ <3-digit status>]`. [`malformed::check`] says
//! which ([`malformed::Malformation`]), with the client's own validators. async-nats
//! parses a block while reading the connection, and a failure is a connection error
//! (`connection.rs`, the `HMSG` branch of `try_read_op`), not a message error. There is
//! no option to skip header parsing, and no event says why the connection dropped.
//!
//! What a receiving client does (each shown by a test in `tests/malformed_headers.rs`):
//!
//! | | what happens |
//! |---|---|
//! | the bad message | never delivered; the handler never runs |
//! | the connection | dropped (`Disconnected` then `Connected` events, no reason given); async-nats reconnects at once and renews its subscriptions |
//! | a carriage return inside a value (`a\rb`) | worse: the client's connection task **panics** (an assertion in `HeaderValue::from(String)`); its subscriptions end, nothing can be sent, it never reconnects: build a new client |
//! | core messages read with the bad one, or routed while the client reconnects | lost (core NATS is at most once): nothing on the consumer side can get them back |
//! | JetStream messages in flight on that connection | not acknowledged, so redelivered: none lost |
//! | the bad JetStream message | redelivered every `ack_wait`, forever without `max_deliver`, each time dropping the connection again; the messages pulled in the same batch behind it are lost with it each time and come back behind it again (head-of-line blocking) |
//!
//! What this crate offers for JetStream, where no message needs to be lost:
//!
//! - [`dead_letter::recommended_pull_config`]: explicit acks, at most
//!   [`dead_letter::MAX_DELIVER`] deliveries, redelivered after
//!   [`dead_letter::BACKOFF`]. The bad message then drops the connection at most that
//!   many times, and the server gives up on it (and on any message that ran out of
//!   deliveries behind it) with a `MAX_DELIVERIES` advisory.
//! - [`dead_letter::DeadLetters`], on a connection of its own: for each advisory, reads
//!   the message from the stream with `STREAM.MSG.GET`, a JSON reply in which the header
//!   block is base64, so async-nats never parses it; Threadline reads the block
//!   leniently ([`malformed::RawHeaders`]: every line that is a valid header is kept,
//!   the policy judges the values as usual), and the handler runs through
//!   [`threadline::Restorer`] in the context that could be read, or a fresh one. Then
//!   [`dead_letter::DeadLetters::remove`] deletes it from the stream, or it is left
//!   there. (async-nats's own `get_raw_message` parses the block and fails; its
//!   `direct_get` receives it as a message and drops the connection.)
//!
//! Consume with small batches when bad messages are expected: what is pulled behind a
//! bad message in the same batch shares its fate (redelivered with it, given up with
//! it, then handled as a dead letter). Keep the consumer's connection for the consumer:
//! core subscriptions, publishes and requests on it lose what is in flight at each
//! drop.
//!
//! What cannot be done from outside the client: keeping the connection up, delivering
//! the bad message to the normal handler, getting back core messages lost in a drop,
//! surviving the panic. The fix belongs in async-nats: a header block that does not
//! parse should give a message with `headers: None` (as nats.go delivers the body and
//! reports `ErrBadHeaderMsg` asynchronously) and a client event, and the value
//! conversion should not assert. The change, as a diff against 0.51.0, is in
//! `docs/malformed-headers.md` in this crate.
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
//! | `jetstream` | yes | [`JetStreamExt`], `jetstream::Message` restored by [`threadline::Restorer`], [`dead_letter`] |

#![deny(unreachable_pub)]
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
pub use publish::{ClientExt, ContextHeaders};
