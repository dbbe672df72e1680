//! The one place the demo restores a job's context on the consumer side, for every
//! queue: one [`threadline::Restorer`] for the embedded queue's JSON envelope and for
//! each broker's messages (the adapters teach it their clients' message types).
//!
//! The restorer trusts its source: the demo's queues are its own, on loopback, and only
//! the warehouse publishes to them, so the tenant and the user travel with the job. A
//! queue other services or users can publish to would be restored untrusted
//! (`Restorer::new(policy)`), dropping those. Untrusted or not, a received job is
//! untrusted input for the policy's allow-list, validation and limits, which apply again.

use threadline::json::JsonCarrier;
use threadline::{Context, Policy, Restorer, Trust};
// The adapters teach `Context::inject_into` and `Restorer` their clients' message types;
// the crates must be linked for those implementations to be seen.
use {threadline_amqp as _, threadline_nats as _, threadline_redis as _};

/// The worker's restorer, made once per run.
pub(super) struct Restore {
    restorer: Restorer,
}

impl Restore {
    pub(super) fn new(policy: Policy) -> Self {
        Restore {
            restorer: Restorer::new(policy).trust(Trust::Trusted),
        }
    }

    /// The context under the job's `_http_headers` key (a fresh one when it has none).
    pub(super) fn embedded(&self, job: &[u8]) -> Context {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(job).unwrap_or_default();
        self.restorer.restore_from(&JsonCarrier::new(&map)).context
    }

    /// The context in a JetStream message's headers.
    pub(super) fn nats(&self, msg: &async_nats::jetstream::Message) -> Context {
        self.restorer.restore(msg).context
    }

    /// The context in an AMQP delivery's headers.
    pub(super) fn amqp(&self, delivery: &lapin::message::Delivery) -> Context {
        self.restorer.restore(delivery).context
    }

    /// The context in a Redis Streams entry's `tl:` fields.
    pub(super) fn redis(&self, entry: &redis::streams::StreamId) -> Context {
        self.restorer.restore(entry).context
    }
}
