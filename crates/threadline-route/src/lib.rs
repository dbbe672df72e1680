//! Routing by context for [Threadline](threadline): send a call whose context carries
//! a routing key to a developer's copy of a service instead of the baseline.
//!
//! The key itself is the core's ([`threadline::RoutingKey`], read and written by the
//! policy's [`threadline::Routing`]). This crate holds the route table: rules of
//! *service + key (+ conditions) → upstream*, from code, a TOML file, a NATS JetStream
//! key-value bucket or a Redis hash, merged and swapped in atomically by a [`Router`].
//! threadline-tower's client layer consults a `Router` to change a call's destination.
//!
//! ```
//! use threadline::{Policy, Routing, RoutingKey, Trust};
//! use threadline_route::{RequestHead, Router, Rule, Upstream};
//!
//! let router = Router::new();
//! router.set_rules("code", vec![
//!     Rule::new("alice-warehouse", "warehouse", ["alice"], Upstream::parse("http://127.0.0.1:9001").unwrap())
//!         .unwrap()
//!         .path_prefix("/stock"),
//! ]).unwrap();
//!
//! let policy = Policy::builder().routing(Routing::header("x-routing-key")).build().unwrap();
//! let mut req = http::HeaderMap::new();
//! req.insert("x-routing-key", "alice".parse().unwrap());
//! let ctx = policy.capture(&req, Trust::Trusted).context;
//!
//! let (method, uri) = (http::Method::GET, http::Uri::from_static("http://warehouse/stock/7"));
//! let head = RequestHead::http(&method, &uri, &req);
//! let rule = router.route("warehouse", None, ctx.routing_key().unwrap(), &head).unwrap();
//! assert_eq!(rule.upstream().rewrite(&uri), "http://127.0.0.1:9001/stock/7");
//! ```
//!
//! # At a glance
//!
//! | what | items |
//! |---|---|
//! | a rule and its parts | [`Rule`], [`Upstream`], [`PathMatch`], [`RequestHead`]; as written in files and stores: [`RuleSpec`] |
//! | the table and its lookup (service, then key: two hash reads whatever the number of rules) | [`RouteTable`] |
//! | the table in force, its sources, what they last did | [`Router`], [`Status`], [`SourceStatus`] |
//! | sources | [`RuleSource`] (implement it for a store of your own), [`SourceSink`], [`StaticRules`], [`FileRules`], `NatsKvRules` (feature `nats`), `RedisRules` (feature `redis`): [`source`] |
//! | selective consumption: the baseline leaves claimed keys to their sandbox | [`Selector`], [`select::SelectStats`]; core NATS and JetStream: `SelectiveNats` (feature `nats`); RabbitMQ: `SelectiveAmqp` (feature `amqp`); Redis Streams: `SelectiveRedis` (feature `redis`): [`select`] |
//! | errors | [`RuleError`], [`RuleErrorKind`] |
//!
//! # Expiry and heartbeats
//!
//! A rule may carry an expiry ([`Rule::expires_at`]; `expires_at` or `ttl_secs` in a
//! [`RuleSpec`]). Lookups ignore an expired rule, so a developer's tool that rewrites
//! its rule every few seconds with a fresh expiry stops receiving traffic at most that
//! long after it disappears: with NATS KV and `ttl_secs = T`, within `T` of its last
//! put (server time); with `expires_at`, at that time by the router's clock.
//!
//! # Bad input
//!
//! A file or entry that does not parse, or rules that cannot make a table (an id
//! used twice), never empty the table: the source's last good rules stay in force,
//! the error is logged at warn level and shown by [`Router::status`].
//!
//! # Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `nats` | no | `NatsKvRules`: a JetStream key-value bucket, watched; `SelectiveNats`: selective consumption on core NATS and JetStream (async-nats, no TLS); needs Rust 1.89 |
//! | `amqp` | no | `SelectiveAmqp`: selective consumption on RabbitMQ (lapin, no TLS); needs Rust 1.88 |
//! | `redis` | no | `RedisRules`: a Redis hash with pub/sub invalidation; `SelectiveRedis`: selective consumption on Redis Streams consumer groups (redis-rs, no TLS); needs Rust 1.88 |

#![deny(unreachable_pub)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod router;
mod rule;
pub mod select;
pub mod source;
mod table;

pub use error::{RuleError, RuleErrorKind};
pub use router::{Router, RuleSource, SourceSink, SourceStatus, StaticRules, Status};
pub use rule::{PathMatch, RequestHead, Rule, RuleSpec, Upstream};
pub use select::Selector;
pub use source::file::FileRules;
pub use table::RouteTable;
