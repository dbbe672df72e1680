//! OpenTelemetry interop (feature `opentelemetry`): threadline and
//! [`tracing-opentelemetry`](tracing_opentelemetry) agree on the trace.
//!
//! Two things make the trace id in logs, in the OpenTelemetry span and in the outgoing
//! `traceparent` the same:
//!
//! 1. [`link_span`] at the start of a unit of work: the OpenTelemetry span continues
//!    the inbound trace (its parent is the caller's span from the threadline
//!    [`Context`]), and the returned `Context` adopts the span's trace id and span id,
//!    so everything threadline sends from then on (`traceparent`, message headers)
//!    carries that trace id.
//! 2. [`ContextFormat`](crate::ContextFormat) takes the trace and span ids from the
//!    current OpenTelemetry span when there is one (see
//!    [`ContextFormat::otel_ids`](crate::ContextFormat::otel_ids)), so a log line
//!    written inside a nested span names that span.
//!
//! [`inject_traceparent`] writes the current OpenTelemetry span as the `traceparent` of
//! an outgoing call; `Context::inject` never overwrites a header that is already set,
//! so calling it first makes the downstream's parent the span that made the call.
//!
//! ```
//! use opentelemetry::trace::TracerProvider as _;
//! use threadline::{Context, Policy, Trust};
//! use tracing_subscriber::prelude::*;
//!
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("demo")));
//! let _guard = tracing::subscriber::set_default(subscriber);
//!
//! let mut inbound = http::HeaderMap::new();
//! inbound.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
//! let ctx = Policy::default().capture(&inbound, Trust::Trusted).context;
//!
//! let span = tracing::info_span!("request");
//! let ctx = threadline_tracing::otel::link_span(&span, &ctx);
//! let _entered = span.enter();
//!
//! // The span continues the caller's trace, and the context names the span.
//! let (trace_id, span_id) = threadline_tracing::otel::current_span_ids().unwrap();
//! assert_eq!(trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert_eq!(ctx.span_id(), Some(span_id));
//!
//! // Outgoing: same trace id; the parent is the span that makes the call.
//! let mut outgoing = http::HeaderMap::new();
//! threadline_tracing::otel::inject_traceparent(&mut outgoing);
//! ctx.inject(&mut outgoing);
//! assert_eq!(
//!     outgoing["traceparent"],
//!     format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{span_id}-01").as_str()
//! );
//! ```

use http::HeaderValue;
use opentelemetry::trace::{
    SpanContext, TraceContextExt, TraceFlags as OtelFlags, TraceState as OtelTraceState,
};
use threadline::codec::{SpanId, TraceFlags, TraceId, TraceParent};
use threadline::{Context, Injector, TraceContext, names};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::fields::Ids;

/// The OpenTelemetry span context of the caller (the inbound `traceparent`'s trace id
/// and parent id, flags and `tracestate`), marked remote; `None` when `ctx` did not
/// continue a trace (a new root, or W3C turned off).
pub fn remote_parent(ctx: &Context) -> Option<SpanContext> {
    let trace = ctx.trace()?;
    let parent = trace.parent_id()?;
    let state = trace
        .tracestate()
        .and_then(|ts| ts.as_str().parse::<OtelTraceState>().ok())
        .unwrap_or_default();
    let sc = SpanContext::new(
        opentelemetry::trace::TraceId::from_bytes(trace.trace_id().to_bytes()),
        opentelemetry::trace::SpanId::from_bytes(parent.to_bytes()),
        OtelFlags::new(trace.flags().bits()),
        true,
        state,
    );
    sc.is_valid().then_some(sc)
}

/// An OpenTelemetry [`Context`](opentelemetry::Context) whose span is the caller's
/// ([`remote_parent`]): give it to `Span::set_parent` or to a tracer's
/// `start_with_context`.
pub fn parent_context(ctx: &Context) -> Option<opentelemetry::Context> {
    remote_parent(ctx).map(|sc| opentelemetry::Context::new().with_remote_span_context(sc))
}

/// Makes the `tracing` span `span` and the threadline context `ctx` agree, and answers
/// the context to run the work in.
///
/// - When `ctx` continues an inbound trace, the span's OpenTelemetry parent becomes the
///   caller's span ([`parent_context`]), so the span has the caller's trace id. If the
///   span has already started (it was entered, or its context read), its parent cannot
///   change any more: the caller's span is added as a *link* instead.
/// - The answer is `ctx` with the span's trace id and span id as this hop's
///   ([`Context::with_trace`]); the caller's span id and `tracestate` are kept when the
///   trace is the same. Logs then show the span's ids, and `traceparent` headers that
///   threadline writes carry the span's trace id.
/// - Without `tracing-opentelemetry`'s layer, or for a disabled span, `ctx` is answered
///   unchanged.
///
/// Call it before entering the span.
pub fn link_span(span: &tracing::Span, ctx: &Context) -> Context {
    if let Some(parent) = remote_parent(ctx) {
        let cx = opentelemetry::Context::new().with_remote_span_context(parent.clone());
        if span.set_parent(cx).is_err() {
            span.add_link(parent);
        }
    }
    let otel = span.context();
    let sc = otel.span().span_context().clone();
    let Some(ids) = ids_of(&sc) else {
        return ctx.clone();
    };
    let own = ctx.trace().filter(|t| t.trace_id() == ids.trace_id);
    ctx.with_trace(TraceContext::from_parts(
        ids.trace_id,
        own.and_then(TraceContext::parent_id),
        ids.span_id,
        TraceFlags::new(sc.trace_flags().to_u8()),
        own.and_then(|t| t.tracestate().cloned()),
    ))
}

fn ids_of(sc: &SpanContext) -> Option<Ids> {
    if !sc.is_valid() {
        return None;
    }
    Some(Ids {
        trace_id: TraceId::from_bytes(sc.trace_id().to_bytes())?,
        span_id: SpanId::from_bytes(sc.span_id().to_bytes())?,
        parent_id: None,
        sampled: sc.is_sampled(),
    })
}

/// The ids of the current OpenTelemetry span, when one is active: with
/// `tracing-opentelemetry`'s layer, the innermost entered `tracing` span.
pub(crate) fn current_ids() -> Option<Ids> {
    opentelemetry::Context::map_current(|cx| ids_of(cx.span().span_context()))
}

/// The trace id and span id of the current OpenTelemetry span, when one is active.
pub fn current_span_ids() -> Option<(TraceId, SpanId)> {
    current_ids().map(|ids| (ids.trace_id, ids.span_id))
}

/// Writes the current OpenTelemetry span as `traceparent` into `carrier` (unless it
/// already has one); `true` when written. Call it before `Context::inject`, which
/// keeps headers that are already set and adds the rest (correlation id, baggage,
/// custom headers).
pub fn inject_traceparent<I: Injector + ?Sized>(carrier: &mut I) -> bool {
    if carrier.contains(&names::TRACEPARENT) {
        return false;
    }
    let Some(sc) = opentelemetry::Context::map_current(|cx| {
        let sc = cx.span().span_context().clone();
        sc.is_valid().then_some(sc)
    }) else {
        return false;
    };
    let (Some(trace_id), Some(span_id)) = (
        TraceId::from_bytes(sc.trace_id().to_bytes()),
        SpanId::from_bytes(sc.span_id().to_bytes()),
    ) else {
        return false;
    };
    let flags = TraceFlags::new(sc.trace_flags().to_u8() & TraceFlags::KNOWN);
    let tp = TraceParent::new(trace_id, span_id, flags);
    match HeaderValue::from_bytes(tp.encode().as_bytes()) {
        Ok(v) => {
            carrier.set(&names::TRACEPARENT, &v);
            true
        }
        Err(_) => false,
    }
}
