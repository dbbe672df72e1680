//! Restoring context on the consumer side of a queue, with counts.
//!
//! Every broker adapter restores the same way: the message is untrusted input, so the
//! policy is applied again ([`Policy::extract`]); the handler always runs, in a fresh
//! context when the message carried none; and what was dropped is counted. [`Restorer`]
//! is that, over any [`Extractor`]; the adapters wrap it for their message types.
//!
//! ```
//! use threadline::{Policy, Restorer};
//!
//! let restorer = Restorer::new(Policy::builder().header("x-tenant-id").build().unwrap());
//! let mut headers = std::collections::HashMap::new();
//! headers.insert("traceparent".to_owned(), "00-zz-not-a-traceparent-01".to_owned());
//! headers.insert("x-tenant-id".to_owned(), "acme".to_owned());
//! let captured = restorer.extract(&headers);
//! assert_eq!(captured.context.get("x-tenant-id"), Some("acme")); // the valid part
//! assert!(captured.context.trace().unwrap().parent_id().is_none()); // a new trace
//! let _fresh = restorer.fresh(); // a message with no headers at all
//! let stats = restorer.stats();
//! assert_eq!(stats.messages(), 2);
//! assert_eq!(stats.without_context(), 1);
//! assert_eq!((stats.with_rejections(), stats.rejected_values()), (1, 1));
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::capture::{Captured, Report};
use crate::carrier::Extractor;
use crate::names;
use crate::policy::Policy;

/// Applies a policy to received messages and counts what it restored and dropped.
/// Cheap to clone; clones share the counts.
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

    /// Restores the context a message carries ([`Policy::extract`]), counting the
    /// message, whether it carried context at all (a `traceparent` or a correlation id)
    /// and every value dropped from it.
    pub fn extract<E: Extractor + ?Sized>(&self, carrier: &E) -> Captured {
        let carried = carrier.get_all(&names::TRACEPARENT).next().is_some()
            || carrier
                .get_all(self.policy.correlation_header())
                .next()
                .is_some();
        let captured = self.policy.extract(carrier);
        self.count(carried, &captured.report);
        captured
    }

    /// A fresh context for a message without any headers (new correlation id, new
    /// trace), counted as such.
    pub fn fresh(&self) -> Captured {
        self.count(false, &Report::default());
        Captured {
            context: self.policy.new_root(),
            report: Report::default(),
        }
    }

    fn count(&self, carried: bool, report: &Report) {
        let c = &self.counts;
        c.messages.fetch_add(1, Ordering::Relaxed);
        if !carried {
            c.without_context.fetch_add(1, Ordering::Relaxed);
        }
        if !report.is_empty() {
            c.with_rejections.fetch_add(1, Ordering::Relaxed);
            c.rejected_values
                .fetch_add(report.len() as u64, Ordering::Relaxed);
        }
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
