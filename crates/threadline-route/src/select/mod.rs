//! Selective consumption: a baseline consumer leaves the messages whose routing key a
//! live rule claims for its service to that key's sandbox; a sandbox consumer takes
//! only its own keys.
//!
//! [`Selector`] is the decision, for any broker. [`nats`] (feature `nats`) applies it
//! to core NATS and JetStream, [`amqp`] (feature `amqp`) to RabbitMQ, [`redis`]
//! (feature `redis`) to Redis Streams consumer groups.

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "redis")]
pub mod redis;

use std::sync::Arc;

use threadline::RoutingKey;

use crate::router::Router;

/// What one side did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SelectStats {
    /// Messages this side handled.
    pub handled: u64,
    /// Messages the baseline relayed and a sandbox took.
    pub relayed: u64,
    /// Claimed messages the baseline handled itself (no sandbox, a `no`, a timeout).
    pub fell_back: u64,
}

/// Whether a message belongs to the baseline or to a sandbox, by the table in force.
#[derive(Clone, Debug)]
pub struct Selector {
    router: Router,
    service: Arc<str>,
}

impl Selector {
    /// Decides for the consumers of `service` (the name rules give, as for HTTP).
    pub fn new(router: Router, service: &str) -> Self {
        Selector {
            router,
            service: service.to_ascii_lowercase().into(),
        }
    }

    /// Whether a live rule claims `key` for the service: the baseline must leave such
    /// a message to the sandbox. A message without a key is the baseline's.
    pub fn claimed(&self, key: Option<&RoutingKey>) -> bool {
        key.is_some_and(|k| self.router.claims(&self.service, k))
    }

    /// The service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The router consulted.
    pub fn router(&self) -> &Router {
        &self.router
    }
}
