//! Consumer side: restore the producer's context from a received stream entry.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use redis::Value;
use redis::streams::StreamId;
use threadline::{Captured, Policy, Report, Scoped};

use crate::carrier::{DEFAULT_PREFIX, StreamFields};

/// A received stream entry whose fields can carry context: `StreamId` (from `XREAD`,
/// `XREADGROUP`, `XRANGE`, `XCLAIM`), its field map, and references to either.
pub trait StreamEntry {
    /// The entry's fields.
    fn stream_fields(&self) -> &HashMap<String, Value>;
}

impl StreamEntry for StreamId {
    fn stream_fields(&self) -> &HashMap<String, Value> {
        &self.map
    }
}

impl StreamEntry for HashMap<String, Value> {
    fn stream_fields(&self) -> &HashMap<String, Value> {
        self
    }
}

impl<T: StreamEntry + ?Sized> StreamEntry for &T {
    fn stream_fields(&self) -> &HashMap<String, Value> {
        (**self).stream_fields()
    }
}

/// Restores the context carried by `entry` under [`DEFAULT_PREFIX`], as
/// [`Policy::extract`] does: the allow-list, validation and limits of `policy` are
/// applied again (an entry is untrusted input); whatever breaks them is dropped and
/// listed in the [`Report`], the rest is kept.
///
/// An entry without context fields gets [`Policy::new_root`]: a new correlation id and
/// a new trace. The answer always holds a usable context: extraction cannot fail.
pub fn extract<E: StreamEntry + ?Sized>(policy: &Policy, entry: &E) -> Captured {
    extract_with_prefix(policy, entry, DEFAULT_PREFIX)
}

fn extract_with_prefix<E: StreamEntry + ?Sized>(
    policy: &Policy,
    entry: &E,
    prefix: &str,
) -> Captured {
    let fields = StreamFields::with_prefix(entry.stream_fields(), prefix);
    if fields.is_empty() {
        Captured {
            context: policy.new_root(),
            report: Report::default(),
        }
    } else {
        policy.extract(&fields)
    }
}

/// Runs `handler(entry)` inside the context the entry carries (see [`extract`]).
///
/// The closure itself is called inside the scope too, so code before its first
/// `.await` sees the restored context as well. Whatever the entry's context looks
/// like, the handler runs: `XACK` is the handler's business.
pub fn handle<E, F, Fut>(policy: &Policy, entry: E, handler: F) -> Scoped<Fut>
where
    E: StreamEntry,
    F: FnOnce(E) -> Fut,
    Fut: Future,
{
    extract(policy, &entry)
        .context
        .scope_with(|| handler(entry))
}

/// [`extract`] and [`handle`] with a policy and counters, for a consumer loop.
///
/// Cheap to clone; clones share the counters. Nothing global: the counters live in the
/// `Restorer` and are read with [`Restorer::stats`].
///
/// ```
/// use std::collections::HashMap;
/// use redis::Value;
/// use threadline::Policy;
/// use threadline_redis::Restorer;
///
/// let restorer = Restorer::new(Policy::builder().header("x-tenant-id").build().unwrap());
/// let entry: HashMap<String, Value> = [
///     ("payload", "{}"),
///     ("tl:traceparent", "00-zz-not-a-traceparent-01"),
///     ("tl:x-tenant-id", "acme"),
/// ]
/// .into_iter()
/// .map(|(k, v)| (k.to_owned(), Value::BulkString(v.into())))
/// .collect();
/// let captured = restorer.extract(&entry);
/// assert_eq!(captured.context.get("x-tenant-id"), Some("acme")); // the valid part
/// assert!(captured.context.trace().unwrap().parent_id().is_none()); // a new trace
/// let stats = restorer.stats();
/// assert_eq!((stats.messages(), stats.with_rejections(), stats.rejected_values()), (1, 1, 1));
/// ```
#[derive(Clone, Debug)]
pub struct Restorer {
    inner: threadline::Restorer,
    prefix: Arc<str>,
}

/// Counters of a [`Restorer`] (the core's [`threadline::RestoreStats`]).
pub use threadline::RestoreStats as Stats;

impl Restorer {
    /// A restorer applying `policy`.
    pub fn new(policy: Policy) -> Self {
        Self::with_prefix(policy, DEFAULT_PREFIX)
    }

    /// A restorer reading context fields under `prefix` instead of [`DEFAULT_PREFIX`].
    pub fn with_prefix(policy: Policy, prefix: &str) -> Self {
        Restorer {
            inner: threadline::Restorer::new(policy),
            prefix: prefix.into(),
        }
    }

    /// The policy applied.
    pub fn policy(&self) -> &Policy {
        self.inner.policy()
    }

    /// Like [`extract`], counting the message and what was dropped from it.
    pub fn extract<E: StreamEntry + ?Sized>(&self, entry: &E) -> Captured {
        let fields = StreamFields::with_prefix(entry.stream_fields(), &self.prefix);
        if fields.is_empty() {
            self.inner.fresh()
        } else {
            self.inner.extract(&fields)
        }
    }

    /// Like [`handle`], counting as [`Restorer::extract`] does.
    pub fn handle<E, F, Fut>(&self, entry: E, handler: F) -> Scoped<Fut>
    where
        E: StreamEntry,
        F: FnOnce(E) -> Fut,
        Fut: Future,
    {
        self.extract(&entry).context.scope_with(|| handler(entry))
    }

    /// What was restored so far.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }
}
