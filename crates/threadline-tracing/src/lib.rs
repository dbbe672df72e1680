//! Every `tracing` event emitted while a [`threadline::Context`] is current carries
//! that context: the correlation id, the trace id, the hop's span id, the captured
//! header fields (`tenant_id` from `x-tenant-id`) and every field bound with
//! [`threadline::bind`] (`user.id`, `project.id`) — in the handler, deep in nested
//! calls, in tasks started with [`threadline::spawn`], in
//! [`threadline::spawn_blocking`] closures and in broker consumers once they restored
//! the context. Nobody passes ids to log calls again.
//!
//! It is one addition to a `tracing_subscriber` setup: [`ContextFormat`] wraps the
//! event formatter of `tracing_subscriber::fmt` (text, compact, pretty or JSON) and
//! reads the current context at event time, by reference.
//!
//! # Text
//!
//! ```
//! use tracing_subscriber::{fmt, prelude::*, EnvFilter};
//! use threadline::{Policy, Trust};
//! use threadline_tracing::ContextFormat;
//! # use std::sync::{Arc, Mutex};
//! # #[derive(Clone, Default)] struct Buf(Arc<Mutex<Vec<u8>>>);
//! # impl std::io::Write for Buf {
//! #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
//! #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
//! # }
//! # let buf = Buf::default(); let out = buf.clone();
//!
//! let subscriber = tracing_subscriber::registry()
//!     .with(EnvFilter::new("info"))
//!     .with(fmt::layer()
//!         // Any of tracing-subscriber's formats, with its options, wrapped:
//!         .event_format(ContextFormat::new(fmt::format().compact().without_time()))
//! #       .with_ansi(false).with_writer(move || buf.clone())
//!     );
//! let _guard = tracing::subscriber::set_default(subscriber);
//!
//! let policy = Policy::builder().header("x-tenant-id").build().unwrap();
//! let mut request = http::HeaderMap::new();
//! request.insert("x-correlation-id", "req-7".parse().unwrap());
//! request.insert("x-tenant-id", "acme".parse().unwrap());
//! let ctx = policy.capture(&request, Trust::Trusted).context;
//!
//! ctx.sync_scope(|| {
//!     threadline::bind("user.id", "alice");
//!     tracing::info!(order = 7, "saved");
//! });
//! # let line = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
//! # assert!(line.contains(" correlation_id=req-7 trace_id="), "{line}");
//! # assert!(line.trim_end().ends_with(" tenant_id=acme user.id=alice"), "{line}");
//! //  INFO rust_out: saved order=7 correlation_id=req-7 trace_id=… span_id=… tenant_id=acme user.id=alice
//! ```
//!
//! # JSON
//!
//! ```
//! use tracing_subscriber::{fmt, prelude::*};
//! use threadline::Policy;
//! # use std::sync::{Arc, Mutex};
//! # #[derive(Clone, Default)] struct Buf(Arc<Mutex<Vec<u8>>>);
//! # impl std::io::Write for Buf {
//! #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
//! #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
//! # }
//! # let buf = Buf::default(); let out = buf.clone();
//!
//! let subscriber = tracing_subscriber::registry()
//!     .with(threadline_tracing::json_layer()
//! #       .with_writer(move || buf.clone())
//!     );
//! let _guard = tracing::subscriber::set_default(subscriber);
//!
//! let ctx = Policy::default().new_root();
//! ctx.clone().sync_scope(|| tracing::warn!(attempt = 3, "retrying"));
//!
//! # let line = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
//! let event: serde_json::Value = serde_json::from_str(&line).unwrap();
//! assert_eq!(event["fields"]["message"], "retrying");
//! assert_eq!(event["correlation_id"], ctx.correlation_id().unwrap().as_str());
//! assert_eq!(event["trace_id"], ctx.trace_id().unwrap().to_string());
//! ```
//!
//! Names, header mapping, redaction and nesting under one key are set with
//! [`ContextFields`]. Values are escaped so that nothing — not a header value, not a
//! bound field, not an event message — can start a second output line: see
//! [`sanitize`].
//!
//! # With other layers
//!
//! [`ContextFormat`] serves `tracing_subscriber::fmt`. For everything else in the
//! stack — OpenTelemetry's log bridge, `json-subscriber`, a layer of your own — the
//! context is read where the consumer looks for data, under the names the formatter
//! uses, values made safe by [`sanitize::clean_value`] (control characters as visible
//! escapes, length bounded):
//!
//! | consumer | what it sees | with |
//! |---|---|---|
//! | a layer of your own, `on_event` | the current context's fields, at event time | [`ContextFields::visit_current`] |
//! | a layer of your own, span callbacks | the context of the span (as created, plus fields bound while it was entered) | [`ContextLayer`] → [`ContextSnapshot`] in the span's extensions |
//! | `json-subscriber` | the fields as members of each line, each key once | `json_subscriber::ContextMembers` (feature `json-subscriber`) |
//! | `opentelemetry-appender-tracing` | the fields as log record attributes, and the trace context when no OpenTelemetry span is active | `otel_logs::ContextLogProcessor` (feature `opentelemetry-logs`) |
//!
//! A `tracing` span cannot carry the context as real span fields (their names are
//! fixed at compile time, the context's are not) and no layer can add fields to an
//! event, so consumers that only print span or event fields cannot see the context
//! without the adapter. When an event has a field of a context field's name, the
//! event's field wins in both adapters and the context field is left out of that
//! line or record: no key twice.
//!
//! ```
//! use threadline::Policy;
//! use threadline_tracing::{ContextFields, ContextLayer, ContextSnapshot};
//! use tracing_subscriber::{layer::Context, prelude::*, registry::LookupSpan, Layer};
//! use std::sync::{Arc, Mutex};
//!
//! /// Some other layer: collects `name=value` pairs for each event.
//! #[derive(Clone, Default)]
//! struct Collect(Arc<Mutex<Vec<String>>>);
//! impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Collect {
//!     fn on_event(&self, _event: &tracing::Event<'_>, ctx: Context<'_, S>) {
//!         let mut out = self.0.lock().unwrap();
//!         ContextFields::new().visit_current(|name, value| out.push(format!("{name}={value}")));
//!         // The span's snapshot, for span-level data.
//!         let span = ctx.lookup_current().unwrap();
//!         let snapshot = ContextSnapshot::find(&span).unwrap();
//!         out.push(format!("span correlation_id={}", snapshot.context().correlation_id().unwrap()));
//!     }
//! }
//!
//! let collect = Collect::default();
//! let subscriber = tracing_subscriber::registry()
//!     .with(ContextLayer::new())       // before the layers that read snapshots
//!     .with(threadline_tracing::json_layer().with_writer(std::io::sink))
//!     .with(collect.clone());
//! let _guard = tracing::subscriber::set_default(subscriber);
//!
//! let ctx = Policy::default().new_root();
//! ctx.clone().sync_scope(|| {
//!     let _span = tracing::info_span!("job").entered();
//!     threadline::bind("user.id", "alice");
//!     tracing::info!("done");
//! });
//! let seen = collect.0.lock().unwrap();
//! let id = ctx.correlation_id().unwrap();
//! assert!(seen.contains(&format!("correlation_id={id}")));
//! assert!(seen.contains(&"user.id=alice".to_owned()));
//! assert!(seen.contains(&format!("span correlation_id={id}")));
//! ```
//!
//! Users of the `log` crate get the same fields: install `tracing_log::LogTracer` and
//! their records become `tracing` events formatted by the same layer.
//!
//! # Types at a glance
//!
//! | what | items |
//! |---|---|
//! | ready-made `fmt` layers | [`layer`] (text), [`json_layer`] (JSON) |
//! | the formatter wrapping any of tracing-subscriber's | [`ContextFormat`], [`KnownFormat`], [`Output`] |
//! | which fields, under which names, redaction, nesting | [`ContextFields`] |
//! | spans and events that do not repeat the context's keys | [`DedupFields`], [`DedupJsonFields`], [`DedupVisitor`], [`CONTEXT_FIELD_NAMES`] |
//! | the context for any other layer | [`ContextLayer`], [`ContextSnapshot`], [`ContextFields::visit`], [`ContextValue`] |
//! | escaping against log forging | [`sanitize`] |
//! | OpenTelemetry interop (feature `opentelemetry`) | `otel` |
//! | OpenTelemetry log records (feature `opentelemetry-logs`) | `otel_logs` |
//! | `json-subscriber` lines (feature `json-subscriber`) | `json_subscriber` |
//! | axum path parameters as fields (feature `axum`) | `axum` |
//! | the usual imports for a subscriber setup | [`prelude`] |
//!
//! # Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `ansi` | yes | colours, and [`ContextFormat::pretty`] (tracing-subscriber's `ansi` feature) |
//! | `json` | yes | [`ContextFormat::json`] and [`json_layer`] (tracing-subscriber's JSON formatter) |
//! | `opentelemetry` | no | ids from the current OpenTelemetry span in logs, and [`otel`] helpers that make threadline's `traceparent` and `tracing-opentelemetry`'s spans agree |
//! | `axum` | no | [`axum::PathFieldsLayer`]: path parameters as fields, and the pattern for binding the authenticated user |
//! | `json-subscriber` | no | [`json_subscriber::ContextMembers`]: the context fields in `json-subscriber`'s lines |
//! | `opentelemetry-logs` | no | [`otel_logs::ContextLogProcessor`]: the context fields as OpenTelemetry log record attributes |
//!
//! # The request span
//!
//! The per-request `tracing` span (method, route, status, latency) belongs to the
//! server layer, not to this crate. When there is one, the wrapped formatter shows it
//! like any span (`request{method=GET route=/orders/{id}}:` in text, `"span"`/`"spans"`
//! in JSON), and the context fields follow the event's own fields.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

#[cfg(feature = "axum")]
pub mod axum;
mod dedup;
mod fields;
mod format;
#[cfg(feature = "json-subscriber")]
pub mod json_subscriber;
mod layer;
#[cfg(feature = "opentelemetry")]
pub mod otel;
#[cfg(feature = "opentelemetry-logs")]
pub mod otel_logs;
pub mod prelude;
pub mod sanitize;

pub use dedup::{CONTEXT_FIELD_NAMES, DedupFields, DedupJsonFields, DedupVisitor};
pub use fields::{ContextFields, ContextValue};
pub use format::{ContextFormat, KnownFormat, Output};
pub use layer::{ContextLayer, ContextSnapshot};

use tracing_core::Subscriber;
use tracing_subscriber::fmt::format::{DefaultFields, Format, Full};
use tracing_subscriber::registry::LookupSpan;

/// `tracing_subscriber::fmt::layer()` with [`ContextFormat::text`] (the default text
/// format plus the context fields) and [`DedupFields`] (spans do not repeat the ids).
/// Chain the layer's own options (`with_writer`, `with_ansi`, `with_filter`) as usual;
/// options of the format itself (`without_time`, `with_target`, `compact`) go on the
/// wrapped format: `fmt::layer().event_format(ContextFormat::new(fmt::format().without_time()))`.
pub fn layer<S>()
-> tracing_subscriber::fmt::Layer<S, DedupFields<DefaultFields>, ContextFormat<Format<Full>>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .fmt_fields(DedupFields::default())
        .event_format(ContextFormat::text())
}

/// `tracing_subscriber::fmt::layer().json()` with [`ContextFormat::json`] and
/// [`DedupJsonFields`]: one JSON object per event, the context fields as top-level
/// members (or under one key, see [`ContextFields::nest_under`]).
#[cfg(feature = "json")]
pub fn json_layer<S>() -> tracing_subscriber::fmt::Layer<
    S,
    DedupJsonFields,
    ContextFormat<Format<tracing_subscriber::fmt::format::Json>>,
>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .fmt_fields(DedupJsonFields::default())
        .event_format(ContextFormat::json())
}
