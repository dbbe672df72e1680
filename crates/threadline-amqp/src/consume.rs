//! Consumer side: restore the producer's context from a delivery.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lapin::BasicProperties;
use lapin::message::{BasicGetMessage, Delivery};
use threadline::{Captured, Context, Extractor, Policy, Report, Scoped, names};

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
    run(extract(policy, &msg).context, msg, handler)
}

fn run<M, F, Fut>(ctx: Context, msg: M, handler: F) -> Scoped<Fut>
where
    F: FnOnce(M) -> Fut,
    Fut: Future,
{
    let fut = ctx.clone().sync_scope(|| handler(msg));
    ctx.scope(fut)
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
    policy: Policy,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    messages: AtomicU64,
    without_context: AtomicU64,
    with_rejections: AtomicU64,
    rejected_values: AtomicU64,
}

impl Restorer {
    /// A restorer applying `policy`.
    pub fn new(policy: Policy) -> Self {
        Restorer {
            policy,
            counts: Arc::default(),
        }
    }

    /// The policy applied.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Like [`extract`], counting the message and what was dropped from it.
    pub fn extract<M: AmqpMessage + ?Sized>(&self, msg: &M) -> Captured {
        let c = &self.counts;
        c.messages.fetch_add(1, Ordering::Relaxed);
        let h =
            AmqpHeaders::from_properties(msg.amqp_properties(), self.policy.correlation_header());
        let carried = h.get_all(&names::TRACEPARENT).next().is_some()
            || h.get_all(self.policy.correlation_header()).next().is_some();
        if !carried {
            c.without_context.fetch_add(1, Ordering::Relaxed);
        }
        let captured = extract(&self.policy, msg);
        if !captured.report.is_empty() {
            c.with_rejections.fetch_add(1, Ordering::Relaxed);
            c.rejected_values
                .fetch_add(captured.report.len() as u64, Ordering::Relaxed);
        }
        captured
    }

    /// Like [`handle`], counting as [`Restorer::extract`] does.
    pub fn handle<M, F, Fut>(&self, msg: M, handler: F) -> Scoped<Fut>
    where
        M: AmqpMessage,
        F: FnOnce(M) -> Fut,
        Fut: Future,
    {
        run(self.extract(&msg).context, msg, handler)
    }

    /// What was restored so far.
    pub fn stats(&self) -> Stats {
        let c = &self.counts;
        Stats {
            messages: c.messages.load(Ordering::Relaxed),
            without_context: c.without_context.load(Ordering::Relaxed),
            with_rejections: c.with_rejections.load(Ordering::Relaxed),
            rejected_values: c.rejected_values.load(Ordering::Relaxed),
        }
    }
}

/// Counters of a [`Restorer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    messages: u64,
    without_context: u64,
    with_rejections: u64,
    rejected_values: u64,
}

impl Stats {
    /// Messages seen (each one ran, or was handed back, with a context).
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Messages that carried neither a `traceparent` nor a correlation id: they ran in
    /// a fresh context.
    pub fn without_context(&self) -> u64 {
        self.without_context
    }

    /// Messages from which at least one value was dropped (malformed, oversized, wrong
    /// type, duplicate).
    pub fn with_rejections(&self) -> u64 {
        self.with_rejections
    }

    /// Values dropped in all (one message can drop several).
    pub fn rejected_values(&self) -> u64 {
        self.rejected_values
    }
}
