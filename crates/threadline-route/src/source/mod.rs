//! Rule sources: a TOML file, a NATS JetStream key-value bucket, a Redis hash.
//! (Rules from code: [`StaticRules`](crate::StaticRules) or
//! [`Router::set_rules`](crate::Router::set_rules).)

pub mod file;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "redis")]
pub mod redis;

#[cfg(any(feature = "nats", feature = "redis"))]
mod entries;
#[cfg(any(feature = "nats", feature = "redis"))]
pub(crate) use entries::{join_errors, rules_from_entries};
