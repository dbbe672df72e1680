//! [`ContextLayer`]: the current context in the extensions of every span, for the
//! other layers of the stack.

use std::sync::Arc;

use threadline::Context;
use tracing_core::Subscriber;
use tracing_core::span::{Attributes, Id};
use tracing_subscriber::layer::{self, Layer};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::fields::{ContextFields, ContextValue};

/// A `tracing_subscriber` layer that makes the threadline context visible to the
/// other layers of a stack, whatever writes the logs: it stores a [`ContextSnapshot`]
/// in the extensions of every span created while a context is current, which any
/// layer reads with `span.extensions().get::<ContextSnapshot>()` (or
/// [`ContextSnapshot::find`], which also looks at the span's parents).
///
/// The layer writes nothing and changes no event. It is the span-time half of the
/// integration; event-time consumers read the context where the event happens, with
/// [`ContextFields::visit_current`] (which is what the ready-made adapters do).
///
/// | consumer | what it sees, and how |
/// |---|---|
/// | `tracing_subscriber::fmt` | [`ContextFormat`](crate::ContextFormat) (or [`layer`](crate::layer), [`json_layer`](crate::json_layer)): the fields in every line |
/// | a layer of your own | [`ContextFields::visit_current`] in `on_event`; [`ContextSnapshot`] in the span's extensions in `on_new_span`, `on_exit`, `on_close` |
/// | `json-subscriber` (feature `json-subscriber`) | `json_subscriber::ContextMembers`: the fields as members of each line |
/// | `opentelemetry-appender-tracing` (feature `opentelemetry-logs`) | `otel_logs::ContextLogProcessor`: the fields as log record attributes, and the trace context when no OpenTelemetry span is active |
///
/// Why not span fields? A `tracing` span's field names are fixed when its callsite is
/// registered, so the context's fields — header fields and fields bound with
/// [`threadline::bind`] have names known only at run time — cannot be recorded on a
/// span as real fields, and layers that only print span fields (json-subscriber's
/// `span`/`spans`, the OpenTelemetry bridge's experimental span attributes) cannot
/// be fed that way. Nor can a layer add fields to an event another layer sees: events
/// are immutable. So each consumer gets its own small adapter reading the context.
///
/// Put the layer before (closer to the registry than) the layers that read the
/// snapshot: layers see a span in the order they were added.
///
/// Only spans created while a context is current get a snapshot: the spans of your
/// handlers and of what they call, `#[instrument]`ed functions, message consumers'
/// spans opened inside the restored scope. A span created before the scope is entered
/// has none ([`ContextSnapshot::find`] then looks at its parents); threadline-tower's
/// request span is one such span, and records the correlation, trace and span ids as
/// fields of its own instead.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use threadline::Policy;
/// use threadline_tracing::{ContextLayer, ContextSnapshot};
/// use tracing_subscriber::{layer::Context, prelude::*, registry::LookupSpan, Layer};
///
/// /// A layer of your own: notes which user each span worked for when it closes.
/// #[derive(Clone, Default)]
/// struct Audit(Arc<Mutex<Vec<String>>>);
/// impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Audit {
///     fn on_close(&self, id: tracing::span::Id, ctx: Context<'_, S>) {
///         let span = ctx.span(&id).unwrap();
///         if let Some(snapshot) = span.extensions().get::<ContextSnapshot>() {
///             snapshot.visit(|name, value| {
///                 if name == "user.id" {
///                     self.0.lock().unwrap().push(format!("{} {value}", span.name()));
///                 }
///             });
///         }
///     }
/// }
///
/// let audit = Audit::default();
/// let subscriber = tracing_subscriber::registry()
///     .with(ContextLayer::new())
///     .with(audit.clone());
/// let _guard = tracing::subscriber::set_default(subscriber);
///
/// Policy::default().new_root().sync_scope(|| {
///     let _span = tracing::info_span!("checkout").entered();
///     // Bound after the span was created: the snapshot is updated when the span is
///     // left.
///     threadline::bind("user.id", "alice");
/// });
/// assert_eq!(*audit.0.lock().unwrap(), ["checkout alice"]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ContextLayer {
    fields: Arc<ContextFields>,
}

impl ContextLayer {
    /// A layer whose snapshots use the default [`ContextFields`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Chooses which fields the snapshots hand out and under which names (the same
    /// configuration as [`ContextFormat::fields`](crate::ContextFormat::fields)).
    pub fn fields(mut self, fields: ContextFields) -> Self {
        self.fields = Arc::new(fields);
        self
    }

    /// The field configuration.
    pub fn context_fields(&self) -> &ContextFields {
        &self.fields
    }

    fn snapshot(&self, ctx: &Context) -> ContextSnapshot {
        ContextSnapshot {
            context: ctx.clone(),
            fields: Arc::clone(&self.fields),
        }
    }
}

impl<S> Layer<S> for ContextLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _attrs: &Attributes<'_>, id: &Id, ctx: layer::Context<'_, S>) {
        let Some(snapshot) = Context::with_current(|c| self.snapshot(c)) else {
            return;
        };
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(snapshot);
        }
    }

    /// Keeps the snapshot up to date with fields bound while the span was entered
    /// (`threadline::bind` makes a new context for the rest of the scope): when the span
    /// is left inside the same hop (same correlation id, trace and span id), the
    /// snapshot becomes the current context.
    fn on_exit(&self, id: &Id, ctx: layer::Context<'_, S>) {
        // Outside any scope there is nothing to update (and no lock is taken).
        Context::with_current(|current| {
            let Some(span) = ctx.span(id) else { return };
            let mut extensions = span.extensions_mut();
            if let Some(snapshot) = extensions.get_mut::<ContextSnapshot>() {
                if same_hop(&snapshot.context, current) {
                    snapshot.context = current.clone();
                }
            }
        });
    }
}

/// Whether `a` and `b` are snapshots of the same unit of work (one a `bind` away from
/// the other).
fn same_hop(a: &Context, b: &Context) -> bool {
    a.correlation_id().map(|c| c.as_str()) == b.correlation_id().map(|c| c.as_str())
        && a.trace().map(|t| (t.trace_id(), t.span_id()))
            == b.trace().map(|t| (t.trace_id(), t.span_id()))
}

/// The threadline context of a span, stored in its extensions by [`ContextLayer`]:
/// the context current when the span was created, updated with the fields bound
/// while it was entered.
///
/// Cloning is two reference-count increments.
#[derive(Clone, Debug)]
pub struct ContextSnapshot {
    context: Context,
    fields: Arc<ContextFields>,
}

impl ContextSnapshot {
    /// The context itself (ids, headers, baggage, fields; values as captured, not
    /// cleaned).
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The field configuration of the layer that stored the snapshot.
    pub fn context_fields(&self) -> &ContextFields {
        &self.fields
    }

    /// Calls `each` with every field, as configured on the layer: the names
    /// [`ContextFormat`](crate::ContextFormat) writes, values
    /// [cleaned](crate::sanitize::clean_value). See [`ContextFields::visit`].
    pub fn visit(&self, each: impl FnMut(&str, ContextValue<'_>)) {
        self.fields.visit(&self.context, each);
    }

    /// The snapshot of `span`, or of its nearest parent that has one (a span created
    /// outside any scope, inside a span that was created in one).
    pub fn find<S>(span: &SpanRef<'_, S>) -> Option<ContextSnapshot>
    where
        S: for<'a> LookupSpan<'a>,
    {
        span.scope()
            .find_map(|s| s.extensions().get::<ContextSnapshot>().cloned())
    }
}
