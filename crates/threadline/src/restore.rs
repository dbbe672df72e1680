//! Restoring context on the consumer side of a queue, with an explicit trust decision
//! and counts.
//!
//! Every broker and job-queue adapter restores the same way, through one [`Restorer`]:
//! the policy is applied to the message again (allow-list, validation, limits); the
//! source's [`Trust`] decides, as for an HTTP caller, whether `trusted_only` headers
//! (the tenant id), local fields (`tl-field-*`) and, in edge mode, the producer's ids
//! are accepted; the handler always runs, in a fresh context when the message carried
//! none it could use; and what happened is counted.
//!
//! An adapter crate teaches the restorer its client's message types by implementing
//! [`Message`] (`threadline_nats` for `async_nats::Message`, `threadline_amqp` for
//! lapin's `Delivery`, …). The core implements it for its own carriers: string maps,
//! [`MessageHeaders`] and, with the `json` feature, the JSON
//! [`Envelope`](crate::json::Envelope).
//!
//! # Trust
//!
//! A restorer is **untrusted by default**: a message can come from anything that can
//! publish to the queue, so `trusted_only` headers and local fields are dropped (and
//! reported) unless the source is declared trusted with [`Restorer::trust`] — typically
//! because only your own services can publish to it (broker permissions, a private
//! network). The correlation id and trace context are kept either way, unless the
//! policy starts fresh for untrusted callers (edge mode).
//!
//! ```
//! use std::collections::HashMap;
//! use threadline::{HeaderRule, Policy, Restorer, Trust};
//!
//! let policy = Policy::builder()
//!     .header_rule(HeaderRule::new("x-tenant-id").trusted_only())
//!     .build()
//!     .unwrap();
//! let mut headers = HashMap::new();
//! headers.insert("x-correlation-id".to_owned(), "order-42".to_owned());
//! headers.insert("x-tenant-id".to_owned(), "acme".to_owned());
//! headers.insert("tl-field-user.id".to_owned(), "alice".to_owned());
//!
//! // A queue anyone may publish to: the tenant and the user are not believed.
//! let open = Restorer::new(policy.clone());
//! let ctx = open.restore(&headers).context;
//! assert_eq!(ctx.correlation_id().unwrap().as_str(), "order-42");
//! assert_eq!((ctx.get("x-tenant-id"), ctx.field("user.id")), (None, None));
//!
//! // A queue only our own services publish to.
//! let internal = Restorer::new(policy).trust(Trust::Trusted);
//! let ctx = internal.restore(&headers).context;
//! assert_eq!((ctx.get("x-tenant-id"), ctx.field("user.id")), (Some("acme"), Some("alice")));
//! ```
//!
//! # Counts
//!
//! ```
//! use threadline::{Policy, Restorer};
//!
//! let restorer = Restorer::new(Policy::builder().header("x-tenant-id").build().unwrap());
//! let mut headers = std::collections::HashMap::new();
//! headers.insert("traceparent".to_owned(), "00-zz-not-a-traceparent-01".to_owned());
//! headers.insert("x-tenant-id".to_owned(), "acme".to_owned());
//! let captured = restorer.restore(&headers);
//! assert_eq!(captured.context.get("x-tenant-id"), Some("acme")); // the valid part
//! assert!(captured.context.trace().unwrap().parent_id().is_none()); // a new trace
//! let _fresh = restorer.fresh(); // a message with no headers at all
//! let stats = restorer.stats();
//! assert_eq!(stats.messages(), 2);
//! assert_eq!((stats.restored(), stats.fresh()), (0, 2)); // neither had a usable id
//! assert_eq!((stats.with_rejections(), stats.rejected_values()), (1, 1));
//! ```

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::capture::{Captured, Report};
use crate::carrier::{Extractor, MessageHeaders};
use crate::context::{Context, IdOrigin};
use crate::policy::{Policy, Trust};
use crate::scope::Scoped;

/// A received message (or job, or task) whose headers can carry context.
///
/// `A` is a marker type of the adapter crate that implements this trait for its
/// client's types (`threadline_nats::Nats`, `threadline_amqp::Amqp`, …): it is what lets
/// an adapter implement a trait of this crate for a type of another. Callers never name
/// it; it is inferred from the message type.
#[diagnostic::on_unimplemented(
    message = "threadline cannot read the context of a `{Self}`",
    label = "not a message type any linked threadline adapter knows",
    note = "a broker's messages are known through its adapter crate (threadline-nats, \
            threadline-amqp, threadline-redis, threadline-apalis, threadline-mqtt): add it \
            to Cargo.toml, and if your code never names it, link it with \
            `use threadline_nats as _;` (or the adapter you use)"
)]
pub trait Message<A> {
    /// The carrier the headers are read through.
    type Carrier<'a>: Extractor
    where
        Self: 'a;

    /// The message's headers, or `None` when it has none at all (the restorer then
    /// counts it as carrying no context and gives it a fresh one). `policy` is the
    /// restorer's, for adapters whose wire format depends on it (AMQP's
    /// `correlation_id` property stands in for the policy's correlation header).
    fn carrier<'a>(&'a self, policy: &'a Policy) -> Option<Self::Carrier<'a>>;
}

impl<A, T: Message<A> + ?Sized> Message<A> for &T {
    type Carrier<'a>
        = T::Carrier<'a>
    where
        Self: 'a;

    fn carrier<'a>(&'a self, policy: &'a Policy) -> Option<Self::Carrier<'a>> {
        (**self).carrier(policy)
    }
}

/// The marker of the carriers this crate itself knows ([`Message`]'s `A`).
#[derive(Clone, Copy, Debug)]
pub enum Core {}

impl<S: BuildHasher> Message<Core> for HashMap<String, String, S> {
    type Carrier<'a>
        = &'a HashMap<String, String, S>
    where
        S: 'a;

    fn carrier<'a>(&'a self, _: &'a Policy) -> Option<Self::Carrier<'a>> {
        Some(self)
    }
}

impl Message<Core> for BTreeMap<String, String> {
    type Carrier<'a> = &'a BTreeMap<String, String>;

    fn carrier<'a>(&'a self, _: &'a Policy) -> Option<Self::Carrier<'a>> {
        Some(self)
    }
}

impl<M: std::ops::Deref<Target = http::HeaderMap>> Message<Core> for MessageHeaders<M> {
    type Carrier<'a>
        = MessageHeaders<&'a http::HeaderMap>
    where
        M: 'a;

    fn carrier<'a>(&'a self, _: &'a Policy) -> Option<Self::Carrier<'a>> {
        Some(MessageHeaders(&*self.0))
    }
}

/// Applies a policy and a trust decision to received messages, and counts what it
/// restored and dropped. Cheap to clone; clones share the counts. See the
/// [module docs](self).
#[derive(Clone, Debug)]
pub struct Restorer {
    policy: Policy,
    trust: Trust,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    messages: AtomicU64,
    restored: AtomicU64,
    with_rejections: AtomicU64,
    rejected_values: AtomicU64,
}

impl Restorer {
    /// A restorer applying `policy` to an **untrusted** source (see the
    /// [module docs](self#trust)); declare a trusted one with [`Restorer::trust`].
    pub fn new(policy: Policy) -> Self {
        Restorer {
            policy,
            trust: Trust::Untrusted,
            counts: Arc::default(),
        }
    }

    /// Whether the messages' source is inside the trust boundary: the same rules as
    /// for an HTTP caller apply (`trusted_only` headers, local fields, edge mode).
    pub fn trust(mut self, trust: Trust) -> Self {
        self.trust = trust;
        self
    }

    /// The policy applied.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The trust given to the source.
    pub fn source_trust(&self) -> Trust {
        self.trust
    }

    /// Restores the context a message carries, counting the message, whether the
    /// context could be used and every value dropped from it. A message without
    /// headers gets a fresh context ([`Policy::new_root`]).
    pub fn restore<A, M: Message<A> + ?Sized>(&self, msg: &M) -> Captured {
        match msg.carrier(&self.policy) {
            Some(carrier) => self.restore_from(&carrier),
            None => self.fresh(),
        }
    }

    /// Runs `handler(msg)` inside the context the message carries (see
    /// [`Restorer::restore`]). The closure itself is called inside the scope too, so
    /// code before its first `.await` sees the restored context. Whatever the message's
    /// context looks like, the handler runs: acknowledging is the handler's business.
    pub fn handle<A, M, F, Fut>(&self, msg: M, handler: F) -> Scoped<Fut>
    where
        M: Message<A>,
        F: FnOnce(M) -> Fut,
        Fut: Future,
    {
        self.restore(&msg).context.scope_with(|| handler(msg))
    }

    /// Restores from any carrier (what [`Restorer::restore`] does once it has the
    /// message's headers).
    pub fn restore_from<E: Extractor + ?Sized>(&self, carrier: &E) -> Captured {
        let captured = self.policy.capture(carrier, self.trust);
        self.count(&captured);
        captured
    }

    /// A fresh context for a message without any headers (new correlation id, new
    /// trace), counted as such.
    pub fn fresh(&self) -> Captured {
        let captured = Captured {
            context: self.policy.new_root(),
            report: Report::default(),
        };
        self.count(&captured);
        captured
    }

    fn count(&self, captured: &Captured) {
        let c = &self.counts;
        c.messages.fetch_add(1, Ordering::Relaxed);
        if carries_usable_context(&captured.context) {
            c.restored.fetch_add(1, Ordering::Relaxed);
        }
        let report = &captured.report;
        if !report.is_empty() {
            c.with_rejections.fetch_add(1, Ordering::Relaxed);
            c.rejected_values
                .fetch_add(report.len() as u64, Ordering::Relaxed);
        }
    }

    /// What was restored so far.
    pub fn stats(&self) -> Stats {
        let c = &self.counts;
        let messages = c.messages.load(Ordering::Relaxed);
        let restored = c.restored.load(Ordering::Relaxed);
        Stats {
            messages,
            restored,
            fresh: messages.saturating_sub(restored),
            with_rejections: c.with_rejections.load(Ordering::Relaxed),
            rejected_values: c.rejected_values.load(Ordering::Relaxed),
        }
    }
}

/// Whether the producer's context continues: its correlation id was accepted or its
/// trace continued.
fn carries_usable_context(ctx: &Context) -> bool {
    ctx.correlation_id_origin() == Some(IdOrigin::Received)
        || ctx.trace().is_some_and(|t| t.parent_id().is_some())
}

/// Counters of a [`Restorer`]. `restored() + fresh() == messages()`; `with_rejections`
/// counts across both (a message can lose a value and still continue its producer's
/// context, or lose everything and run fresh).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    messages: u64,
    restored: u64,
    fresh: u64,
    with_rejections: u64,
    rejected_values: u64,
}

impl Stats {
    /// Messages seen (each one ran, or was handed back, with a context).
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Messages that continued their producer's context: a correlation id was accepted
    /// or a trace continued.
    pub fn restored(&self) -> u64 {
        self.restored
    }

    /// Messages handled in a fresh context (new correlation id, new trace): they
    /// carried none, or none that could be used (malformed, refused at the edge).
    pub fn fresh(&self) -> u64 {
        self.fresh
    }

    /// Messages from which at least one value was dropped (malformed, oversized, wrong
    /// type, duplicate, untrusted).
    pub fn with_rejections(&self) -> u64 {
        self.with_rejections
    }

    /// Values dropped in all (one message can drop several).
    pub fn rejected_values(&self) -> u64 {
        self.rejected_values
    }
}
