//! Threadline context through MQTT 5 ([`rumqttc`]'s `v5` client): the current context
//! goes out as user properties of each publish (and the correlation id also as its
//! correlation data), and is restored around the consumer's handler.
//!
//! # Producer: inside a request scope, nothing passed by hand
//!
//! ```no_run
//! use rumqttc::v5::mqttbytes::QoS;
//! use rumqttc::v5::{AsyncClient, MqttOptions};
//! use threadline::{Policy, Trust};
//! use threadline_mqtt::AsyncClientExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (client, mut eventloop) = AsyncClient::new(MqttOptions::new("store-1", "127.0.0.1", 1883), 64);
//! tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
//! let policy = Policy::builder().header("x-tenant-id").build()?;
//! # let request_headers = http::HeaderMap::new();
//! let ctx = policy.capture(&request_headers, Trust::Trusted).context;
//! ctx.scope(async {
//!     threadline::bind("user.id", "alice");
//!     client
//!         .publish_in_context("orders/created", QoS::AtLeastOnce, false, "42")
//!         .await
//! }).await?;
//! # Ok(()) }
//! ```
//!
//! # Consumer: the handler runs in the producer's context
//!
//! [`threadline::Restorer`] restores the context of a received `Publish` and of bare
//! `PublishProperties` (this crate implements [`threadline::restore::Message`] for
//! them). It is told whether the topic's publishers are trusted: only then are
//! `trusted_only` headers (the tenant) and local fields (`user.id`) taken from the
//! message.
//!
//! Code that never names this crate (a consumer that only calls `Restorer::handle`, a
//! producer that only calls `ctx.inject_into`) links it with `use threadline_mqtt as _;`:
//! the implementations are seen only when the crate is.
//!
//! ```no_run
//! use rumqttc::v5::mqttbytes::QoS;
//! use rumqttc::v5::mqttbytes::v5::Packet;
//! use rumqttc::v5::{AsyncClient, Event, MqttOptions};
//! use threadline::{Context, Policy, Restorer, Trust};
//! use threadline_mqtt as _;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut options = MqttOptions::new("worker-1", "127.0.0.1", 1883);
//! // rumqttc takes 10 KiB per incoming packet unless told otherwise (see "Packet size").
//! options.set_max_packet_size(Some(256 * 1024));
//! let (client, mut eventloop) = AsyncClient::new(options, 64);
//! client.subscribe("orders/#", QoS::AtLeastOnce).await?;
//! // Only our own services may publish to `orders/#` (the broker's ACLs).
//! let restorer = Restorer::new(Policy::builder().header("x-tenant-id").build()?)
//!     .trust(Trust::Trusted);
//! loop {
//!     if let Event::Incoming(Packet::Publish(publish)) = eventloop.poll().await? {
//!         tokio::spawn(restorer.handle(publish, |publish| async move {
//!             let ctx = Context::current(); // same correlation id and trace id, tenant, user.id
//!             println!("{:?} {:?} {:?}", ctx.correlation_id(), ctx.get("x-tenant-id"), publish.payload);
//!         }));
//!     }
//! }
//! # }
//! ```
//!
//! Without a broker, the same round trip on the properties:
//!
//! ```
//! use rumqttc::v5::mqttbytes::v5::PublishProperties;
//! use threadline::{Context, Policy, Restorer, Trust};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let policy = Policy::builder().header("x-tenant-id").build().unwrap();
//! let mut inbound = http::HeaderMap::new();
//! inbound.insert("x-correlation-id", "order-42".parse().unwrap());
//! inbound.insert("x-tenant-id", "acme".parse().unwrap());
//! let ctx = policy.capture(&inbound, Trust::Trusted).context.with_field("user.id", "alice");
//!
//! let mut props = PublishProperties::default();
//! ctx.inject_into(&mut props); // or threadline::inject_current(&mut props) in a scope
//! assert_eq!(props.correlation_data.as_deref(), Some(b"order-42".as_slice()));
//! assert!(props.user_properties.contains(&("tl-field-user.id".into(), "alice".into())));
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
//! # Wire keys (MQTT 5 publish properties)
//!
//! Plain lower-case user property names, values as on HTTP, so that any MQTT 5 client
//! in any language can read and write them:
//!
//! | where | name | value |
//! |---|---|---|
//! | user property | `x-correlation-id` (the policy's correlation header) | the correlation id |
//! | correlation data | | the correlation id too (its UTF-8 bytes), when unset |
//! | user property | `traceparent` | W3C: `00-<trace-id>-<new parent-id>-<flags>` |
//! | user property | `tracestate` | W3C, as received |
//! | user property | `baggage` | W3C, as received |
//! | user property | `b3` or `x-b3-*` | only when the policy emits B3 |
//! | user property | each custom header of the policy (`x-tenant-id`, ...) | as captured, under its outbound name |
//! | user property | `tl-field-<name>` (the policy's field prefix) | a local field (`tl-field-user.id`), percent-encoded like a baggage value |
//!
//! On the way in, names are matched case-insensitively. The correlation user property
//! is authoritative: the correlation data is read only when it is absent (MQTT's
//! request/response pattern uses the correlation data for its own tokens), and only
//! when it is UTF-8 text. User properties and correlation data the producer set itself
//! are never overwritten; the correlation data then mirrors the correlation user
//! property the publish carries.
//!
//! A sync `rumqttc::v5::Client` publishes with the context the same way:
//! `threadline::inject_current(&mut props)`, then `publish_with_properties`. MQTT 3.1.1
//! has no properties: a 3.1.1 subscriber of the same topic receives the payload alone.
//!
//! # Bad input
//!
//! MQTT lets a user property name appear more than once. A repeated name is read as
//! every value it has, so a repeated correlation id, `traceparent`, custom header or
//! local field is a duplicate, refused as a duplicated HTTP header is (the rest of the
//! context is kept). Extraction re-applies the policy's allow-list, validation and
//! limits: a malformed `traceparent` starts a new trace, an invalid correlation id is
//! replaced by a new one, an oversized value is dropped. Each drop is listed in
//! [`threadline::Report`] and counted by [`threadline::Restorer::stats`]. The handler
//! always runs: a message is never dropped or redelivered because of its context.
//!
//! MQTT strings are UTF-8 by the specification, so user properties reach the handler as
//! text; a publish whose strings are not valid UTF-8, or hold a NUL or another control
//! character, is a malformed packet that Mosquitto refuses (it closes the publisher's
//! connection) and never delivers. A broker that forwarded one anyway would end the
//! consumer's rumqttc connection, whose decoder refuses such a packet. Correlation data
//! is binary: bytes that are not UTF-8 are not read as context.
//!
//! Nothing panics on long or odd values on the way out: MQTT strings hold at most
//! 65,535 bytes ([`MAX_FIELD_BYTES`]; rumqttc would write a wrong length prefix for a
//! longer one), and brokers refuse control characters in them, so a name or value that
//! MQTT cannot carry is skipped (a correlation id too long for a user property then
//! travels in neither place), and the rest of the context still goes.
//!
//! # Packet size
//!
//! The context makes each publish larger: a few hundred bytes usually, more with large
//! baggage or custom headers (the policy's limits bound it: `max_total_bytes`, 16 KiB
//! by default, plus the ids). rumqttc refuses an incoming packet over 10 KiB unless
//! `MqttOptions::set_max_packet_size` says otherwise, and a refused packet ends the
//! consumer's connection: with a clean session the publish is lost, with a persistent
//! one the broker sends it again on reconnection, into the same refusal (MQTT 5.0,
//! 4.4). Set the consumer's maximum to the
//! largest payload plus the context. The maximum is also announced to the broker,
//! which then discards larger publishes for that client instead of sending them
//! (MQTT 5.0, 3.1.2.11.4).

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod carrier;
mod consume;
mod publish;

pub use carrier::{MAX_FIELD_BYTES, MqttProperties, MqttPropertiesMut};
pub use consume::Mqtt;
pub use publish::AsyncClientExt;
