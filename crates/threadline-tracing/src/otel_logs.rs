//! The context on OpenTelemetry log records (feature `opentelemetry-logs`).
//!
//! `opentelemetry-appender-tracing`'s bridge turns each `tracing` event into a log
//! record from the event's own fields; it sees neither threadline's context nor other
//! layers' span data, and a layer cannot add fields to an event. The place to add them
//! is the OpenTelemetry SDK: [`ContextLogProcessor`] is a log processor that adds the
//! current context's fields to every record as attributes. The SDK runs processors on
//! the thread that emitted the event, in its scope, so the fields are the ones current
//! at that moment (bound a moment before included). It works the same for records
//! from any other appender (the `log` bridge, direct `Logger` calls).
//!
//! Register it before the processor that exports: processors run in the order they
//! were added, and each sees what the ones before it added.
//!
//! ```
//! use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
//! use opentelemetry_sdk::logs::{InMemoryLogExporter, SdkLoggerProvider};
//! use threadline::Policy;
//! use threadline_tracing::otel_logs::ContextLogProcessor;
//! use tracing_subscriber::prelude::*;
//!
//! let exporter = InMemoryLogExporter::default();
//! let provider = SdkLoggerProvider::builder()
//!     .with_log_processor(ContextLogProcessor::new())
//!     .with_simple_exporter(exporter.clone())
//!     .build();
//! let subscriber = tracing_subscriber::registry()
//!     .with(OpenTelemetryTracingBridge::new(&provider));
//! let _guard = tracing::subscriber::set_default(subscriber);
//!
//! let ctx = Policy::default().new_root();
//! ctx.clone().sync_scope(|| {
//!     threadline::bind("user.id", "alice");
//!     tracing::info!(order = 7, "saved");
//! });
//!
//! let logs = exporter.get_emitted_logs().unwrap();
//! let record = &logs[0].record;
//! let attribute = |key: &str| record.attributes_iter()
//!     .find(|(k, _)| k.as_str() == key)
//!     .map(|(_, v)| v.clone());
//! assert_eq!(attribute("user.id"), Some("alice".into()));
//! assert_eq!(attribute("correlation_id"), Some(ctx.correlation_id().unwrap().as_str().to_owned().into()));
//! // The ids are the record's trace context rather than attributes.
//! let trace = record.trace_context().unwrap();
//! assert_eq!(trace.trace_id.to_string(), ctx.trace_id().unwrap().to_string());
//! ```
//!
//! # What the record gets
//!
//! - The fields [`ContextFields`] selects, under the names it gives them, values
//!   [cleaned](crate::sanitize::clean_value). By default the processor's
//!   configuration is [`ContextFields::new`] without the trace and span ids, which
//!   OpenTelemetry carries in the record's trace context instead.
//! - **The event's own attribute wins**: a context field whose name the record already
//!   has is not added, so no attribute key appears twice.
//! - The trace context, when the record has none (no OpenTelemetry span is active;
//!   the SDK fills it in from an active one before the processors run): this hop's
//!   trace id and span id and the sampled flag, from the current OpenTelemetry span
//!   when the `opentelemetry` feature finds one, else from the threadline context.
//!   Turned off with [`ContextLogProcessor::trace_context`].

use std::time::Duration;

use opentelemetry::logs::{AnyValue, LogRecord as _};
use opentelemetry::trace::{SpanId as OtelSpanId, TraceFlags as OtelFlags, TraceId as OtelTraceId};
use opentelemetry::{InstrumentationScope, Key};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogProcessor, SdkLogRecord};
use threadline::Context;

use crate::fields::{ContextFields, ContextValue};

/// An OpenTelemetry SDK log processor that adds the current threadline context to
/// every log record; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct ContextLogProcessor {
    fields: ContextFields,
    trace_context: bool,
}

impl Default for ContextLogProcessor {
    fn default() -> Self {
        ContextLogProcessor {
            fields: ContextFields::new().without_trace_id().without_span_id(),
            trace_context: true,
        }
    }
}

impl ContextLogProcessor {
    /// The default fields (without the ids, which go into the trace context).
    pub fn new() -> Self {
        Self::default()
    }

    /// Chooses which fields become attributes and under which names.
    pub fn fields(mut self, fields: ContextFields) -> Self {
        self.fields = fields;
        self
    }

    /// Whether a record without a trace context gets this hop's (default `true`).
    pub fn trace_context(mut self, yes: bool) -> Self {
        self.trace_context = yes;
        self
    }
}

impl LogProcessor for ContextLogProcessor {
    fn emit(&self, record: &mut SdkLogRecord, _scope: &InstrumentationScope) {
        if self.trace_context && record.trace_context().is_none() {
            if let Some(ids) = crate::fields::current_ids() {
                let flags = if ids.sampled {
                    OtelFlags::SAMPLED
                } else {
                    OtelFlags::default()
                };
                record.set_trace_context(
                    OtelTraceId::from_bytes(ids.trace_id.to_bytes()),
                    OtelSpanId::from_bytes(ids.span_id.to_bytes()),
                    Some(flags),
                );
            }
        }
        if Context::with_current(|_| ()).is_none() {
            return;
        }
        // Collected first: the record cannot be read while attributes are added.
        let mut add: smallvec::SmallVec<[(Key, AnyValue); 8]> = smallvec::SmallVec::new();
        self.fields.visit_current(|name, value| {
            if record.attributes_iter().any(|(k, _)| k.as_str() == name) {
                return;
            }
            let value = match value {
                ContextValue::Bool(b) => AnyValue::Boolean(b),
                other => AnyValue::from(other.as_str().to_owned()),
            };
            add.push((Key::from(name.to_owned()), value));
        });
        for (key, value) in add {
            record.add_attribute(key, value);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}
