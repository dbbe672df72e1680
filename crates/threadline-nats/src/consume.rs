//! Consumer side: restore the producer's context from a received message.

use std::future::Future;

use async_nats::HeaderMap;
use threadline::{Captured, Policy, Report, Scoped};

use crate::carrier::NatsHeaders;

/// A received NATS message whose headers can carry context: `async_nats::Message`,
/// `jetstream::Message` (feature `jetstream`), a bare `HeaderMap`, and references to
/// any of them.
pub trait NatsMessage {
    /// The message's headers, if it has any.
    fn nats_headers(&self) -> Option<&HeaderMap>;
}

impl NatsMessage for async_nats::Message {
    fn nats_headers(&self) -> Option<&HeaderMap> {
        self.headers.as_ref()
    }
}

#[cfg(feature = "jetstream")]
impl NatsMessage for async_nats::jetstream::Message {
    fn nats_headers(&self) -> Option<&HeaderMap> {
        self.message.headers.as_ref()
    }
}

impl NatsMessage for HeaderMap {
    fn nats_headers(&self) -> Option<&HeaderMap> {
        Some(self)
    }
}

impl<T: NatsMessage + ?Sized> NatsMessage for &T {
    fn nats_headers(&self) -> Option<&HeaderMap> {
        (**self).nats_headers()
    }
}

/// Restores the context carried by `msg`, as [`Policy::extract`] does: the allow-list,
/// validation and limits of `policy` are applied again (a message is untrusted input);
/// whatever breaks them is dropped and listed in the [`Report`], the rest is kept.
///
/// A message without headers gets [`Policy::new_root`]: a new correlation id and a new
/// trace. The answer always holds a usable context: extraction cannot fail.
pub fn extract<M: NatsMessage + ?Sized>(policy: &Policy, msg: &M) -> Captured {
    match msg.nats_headers() {
        Some(h) if !h.is_empty() => policy.extract(&NatsHeaders::new(h)),
        _ => Captured {
            context: policy.new_root(),
            report: Report::default(),
        },
    }
}

/// Runs `handler(msg)` inside the context the message carries (see [`extract`]).
///
/// The closure itself is called inside the scope too, so code before its first
/// `.await` sees the restored context as well. Whatever the message's context looks
/// like, the handler runs: acknowledging (JetStream) is the handler's business.
pub fn handle<M, F, Fut>(policy: &Policy, msg: M, handler: F) -> Scoped<Fut>
where
    M: NatsMessage,
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
/// use threadline::Policy;
/// use threadline_nats::Restorer;
///
/// let restorer = Restorer::new(Policy::builder().header("x-tenant-id").build().unwrap());
/// let mut headers = async_nats::HeaderMap::new();
/// headers.insert("traceparent", "00-zz-not-a-traceparent-01");
/// headers.insert("x-tenant-id", "acme");
/// let captured = restorer.extract(&headers);
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
    pub fn extract<M: NatsMessage + ?Sized>(&self, msg: &M) -> Captured {
        match msg.nats_headers() {
            Some(h) if !h.is_empty() => self.inner.extract(&NatsHeaders::new(h)),
            _ => self.inner.fresh(),
        }
    }

    /// Like [`handle`], counting as [`Restorer::extract`] does.
    pub fn handle<M, F, Fut>(&self, msg: M, handler: F) -> Scoped<Fut>
    where
        M: NatsMessage,
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
