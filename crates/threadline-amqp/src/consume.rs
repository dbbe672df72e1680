//! Consumer side: restore the producer's context from a delivery.

use std::future::Future;

use lapin::BasicProperties;
use lapin::message::{BasicGetMessage, Delivery};
use threadline::{Captured, Policy, Report, Scoped};

use crate::carrier::AmqpHeaders;

/// A received AMQP message whose properties can carry context: [`Delivery`],
/// [`BasicGetMessage`], bare [`BasicProperties`], and references to any of them.
pub trait AmqpMessage {
    /// The message's properties.
    fn amqp_properties(&self) -> &BasicProperties;
}

impl AmqpMessage for Delivery {
    fn amqp_properties(&self) -> &BasicProperties {
        &self.properties
    }
}

impl AmqpMessage for BasicGetMessage {
    fn amqp_properties(&self) -> &BasicProperties {
        &self.delivery.properties
    }
}

impl AmqpMessage for BasicProperties {
    fn amqp_properties(&self) -> &BasicProperties {
        self
    }
}

impl<T: AmqpMessage + ?Sized> AmqpMessage for &T {
    fn amqp_properties(&self) -> &BasicProperties {
        (**self).amqp_properties()
    }
}

/// Restores the context carried by `msg`, as [`Policy::extract`] does: the allow-list,
/// validation and limits of `policy` are applied again (a message is untrusted input);
/// whatever breaks them is dropped and listed in the [`Report`], the rest is kept. The
/// `correlation_id` property stands in for a missing correlation header.
///
/// A message without headers or `correlation_id` gets [`Policy::new_root`]: a new
/// correlation id and a new trace. The answer always holds a usable context:
/// extraction cannot fail.
pub fn extract<M: AmqpMessage + ?Sized>(policy: &Policy, msg: &M) -> Captured {
    let carrier = AmqpHeaders::from_properties(msg.amqp_properties(), policy.correlation_header());
    if carrier.is_empty() {
        Captured {
            context: policy.new_root(),
            report: Report::default(),
        }
    } else {
        policy.extract(&carrier)
    }
}

/// Runs `handler(msg)` inside the context the message carries (see [`extract`]).
///
/// The closure itself is called inside the scope too, so code before its first
/// `.await` sees the restored context as well. Whatever the message's context looks
/// like, the handler runs: acknowledging is the handler's business.
pub fn handle<M, F, Fut>(policy: &Policy, msg: M, handler: F) -> Scoped<Fut>
where
    M: AmqpMessage,
    F: FnOnce(M) -> Fut,
    Fut: Future,
{
    extract(policy, &msg).context.scope_with(|| handler(msg))
}

/// [`extract`] and [`handle`] with a policy and counters, for a consumer loop.
///
/// Cheap to clone; clones share the counters. Nothing global: the counters live in the
/// `Restorer` and are read with [`Restorer::stats`].
///
/// ```
/// use lapin::BasicProperties;
/// use lapin::types::{AMQPValue, FieldTable, LongString};
/// use threadline::Policy;
/// use threadline_amqp::Restorer;
///
/// let restorer = Restorer::new(Policy::builder().header("x-tenant-id").build().unwrap());
/// let mut headers = FieldTable::default();
/// headers.insert("traceparent".into(), AMQPValue::LongString(LongString::from("00-zz-not-a-traceparent-01")));
/// headers.insert("x-tenant-id".into(), AMQPValue::LongString(LongString::from("acme")));
/// let props = BasicProperties::default().with_headers(headers);
/// let captured = restorer.extract(&props);
/// assert_eq!(captured.context.get("x-tenant-id"), Some("acme")); // the valid part
/// assert!(captured.context.trace().unwrap().parent_id().is_none()); // a new trace
/// let stats = restorer.stats();
/// assert_eq!((stats.messages(), stats.with_rejections(), stats.rejected_values()), (1, 1, 1));
/// ```
#[derive(Clone, Debug)]
pub struct Restorer {
    inner: threadline::Restorer,
}

/// Counters of a [`Restorer`] (the core's [`threadline::RestoreStats`]).
pub use threadline::RestoreStats as Stats;

impl Restorer {
    /// A restorer applying `policy`.
    pub fn new(policy: Policy) -> Self {
        Restorer {
            inner: threadline::Restorer::new(policy),
        }
    }

    /// The policy applied.
    pub fn policy(&self) -> &Policy {
        self.inner.policy()
    }

    /// Like [`extract`], counting the message and what was dropped from it.
    pub fn extract<M: AmqpMessage + ?Sized>(&self, msg: &M) -> Captured {
        let policy = self.inner.policy();
        let carrier =
            AmqpHeaders::from_properties(msg.amqp_properties(), policy.correlation_header());
        if carrier.is_empty() {
            self.inner.fresh()
        } else {
            self.inner.extract(&carrier)
        }
    }

    /// Like [`handle`], counting as [`Restorer::extract`] does.
    pub fn handle<M, F, Fut>(&self, msg: M, handler: F) -> Scoped<Fut>
    where
        M: AmqpMessage,
        F: FnOnce(M) -> Fut,
        Fut: Future,
    {
        self.extract(&msg).context.scope_with(|| handler(msg))
    }

    /// What was restored so far.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }
}
