//! Logs of the demo: every event goes to stdout (text or JSON, with the context fields
//! of `threadline_tracing`) and to the journey store that feeds the journey pages.
//!
//! JSON lines look like this (one object per line):
//!
//! ```text
//! {"timestamp":"…","level":"INFO","message":"order received","item":"Kettle",
//!  "correlation_id":"order-7","trace_id":"4bf9…","span_id":"a1b2…","parent_id":"00f0…",
//!  "app":"store","tenant_id":"acme","user.id":"alice"}
//! ```

use std::io::IsTerminal;

use clap::ValueEnum;
use threadline::Context;
use threadline_tracing::{ContextFields, ContextFormat, Output};
use tracing_core::field::{Field, Visit};
use tracing_core::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

use super::journey::{JourneyEvent, Journeys, clip, clipped, now_micros};

/// How log lines are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event, the context fields at the end.
    Text,
    /// One JSON object per line.
    Json,
}

/// The context fields on every line: correlation id, trace id, span id, the caller's
/// span as `parent_id`, the tenant (the authenticated `tenant.id` field, or the
/// `x-tenant-id` header), and every bound field (`app`: which of the three services logged it, `user.id`, `task`).
pub fn context_fields() -> ContextFields {
    ContextFields::new()
        .with_parent_id("parent_id")
        .field("tenant.id", "tenant_id")
}

/// Which events reach stdout: the demo's and threadline's own at `level`, other crates'
/// (hyper, lapin, async-nats, redis) from warnings up.
fn stdout_filter(level: LevelFilter) -> Targets {
    Targets::new()
        .with_target("threadline", level)
        .with_default(LevelFilter::WARN.min(level))
}

/// Which events reach the journey store: the demo's and threadline's down to debug.
fn journey_filter() -> Targets {
    Targets::new()
        .with_target("threadline", LevelFilter::DEBUG)
        .with_default(LevelFilter::WARN)
}

/// Stdout, with colours when it is a terminal.
#[derive(Clone, Copy, Debug)]
pub struct Stdout {
    ansi: bool,
}

impl Stdout {
    /// Colours when stdout is a terminal.
    pub fn detect() -> Self {
        Stdout {
            ansi: std::io::stdout().is_terminal(),
        }
    }

    /// Whether colours are on.
    pub fn ansi(&self) -> bool {
        self.ansi
    }
}

impl<'a> MakeWriter<'a> for Stdout {
    type Writer = std::io::Stdout;

    fn make_writer(&'a self) -> Self::Writer {
        std::io::stdout()
    }
}

/// An in-memory log sink (for tests and for embedding the demo): cheap to clone,
/// clones share the buffer.
#[derive(Clone, Debug, Default)]
pub struct Capture {
    buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Capture {
    /// Everything written so far.
    pub fn text(&self) -> String {
        let buf = self
            .buf
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The whole logging set-up of the demo as one dispatcher: stdout in `format` at
/// `level`, plus the [`JourneyLayer`] feeding `journeys`. The binary installs it
/// globally; tests set it per runtime.
pub fn dispatch<W>(
    format: LogFormat,
    level: LevelFilter,
    writer: W,
    ansi: bool,
    journeys: Journeys,
) -> tracing::Dispatch
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry()
        .with(JourneyLayer::new(journeys).with_filter(journey_filter()));
    match format {
        LogFormat::Text => {
            let inner = ServiceFirst {
                inner: tracing_subscriber::fmt::format()
                    .compact()
                    .with_target(false)
                    .with_ansi(ansi),
                ansi,
            };
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(ansi)
                .event_format(
                    ContextFormat::with_output(inner, Output::Text)
                        .fields(context_fields().skip_field("app").skip_field("task")),
                )
                .with_writer(writer)
                .with_filter(stdout_filter(level));
            tracing::Dispatch::new(registry.with(layer))
        }
        LogFormat::Json => {
            let layer = tracing_subscriber::fmt::layer()
                .json()
                .event_format(
                    ContextFormat::new(
                        tracing_subscriber::fmt::format()
                            .json()
                            .flatten_event(true)
                            .with_current_span(false)
                            .with_span_list(false)
                            .with_target(false),
                    )
                    .fields(context_fields()),
                )
                .with_writer(writer)
                .with_filter(stdout_filter(level));
            tracing::Dispatch::new(registry.with(layer))
        }
    }
}

/// Text lines start with the service (and task) that logged them, in its colour:
/// `store`, `warehouse`, `warehouse/audit`, `worker`.
struct ServiceFirst<F> {
    inner: F,
    ansi: bool,
}

impl<S, N, F> FormatEvent<S, N> for ServiceFirst<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let written = Context::with_current(|c| {
            let service = c.field("app").unwrap_or("-");
            let colour = match service {
                "store" => "34",
                "warehouse" => "33",
                "worker" => "32",
                _ => "35",
            };
            let label = match c.field("task") {
                Some(task) => format!("{service}/{task}"),
                None => service.to_owned(),
            };
            if self.ansi {
                write!(writer, "\x1b[1;{colour}m{label:<15}\x1b[0m ")
            } else {
                write!(writer, "{label:<15} ")
            }
        });
        match written {
            Some(r) => r?,
            None => write!(writer, "{:<15} ", "-")?,
        }
        self.inner.format_event(ctx, writer, event)
    }
}

/// A `tracing` layer that records every event emitted inside a threadline scope, with
/// the context it ran in, into [`Journeys`] (keyed by correlation id).
#[derive(Clone, Debug)]
pub struct JourneyLayer {
    journeys: Journeys,
}

impl JourneyLayer {
    /// A layer recording into `journeys`.
    pub fn new(journeys: Journeys) -> Self {
        JourneyLayer { journeys }
    }
}

impl<S> Layer<S> for JourneyLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        let recorded = Context::with_current(|ctx| {
            let correlation_id = ctx.correlation_id()?.as_str();
            let trace = ctx.trace();
            Some(JourneyEvent {
                seq: 0,
                at_us: now_micros(),
                level: level_name(*event.metadata().level()).to_owned(),
                service: clipped(ctx.field("app").unwrap_or("-")),
                task: ctx.field("task").map(clipped),
                instance: ctx.field("instance").map(clipped),
                message: String::new(),
                correlation_id: clipped(correlation_id),
                trace_id: trace.map(|t| t.trace_id().to_string()),
                span_id: trace.map(|t| t.span_id().to_string()),
                parent_id: trace.and_then(|t| t.parent_id()).map(|p| p.to_string()),
                tenant_id: ctx
                    .field("tenant.id")
                    .or_else(|| ctx.get(super::TENANT_HEADER))
                    .map(clipped),
                user_id: ctx.field("user.id").map(clipped),
                call_id: None,
                destination: None,
                fields: Vec::new(),
            })
        })
        .flatten();
        let Some(mut rec) = recorded else { return };
        let mut visitor = Fields { rec: &mut rec };
        event.record(&mut visitor);
        self.journeys.record(rec);
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

struct Fields<'a> {
    rec: &'a mut JourneyEvent,
}

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: String) {
        let value = clip(value);
        match field.name() {
            "message" => self.rec.message = value,
            "call_id" => self.rec.call_id = Some(value),
            "destination" => self.rec.destination = Some(value),
            name if name.starts_with("log.") => {}
            name => {
                if self.rec.fields.len() < 16 {
                    self.rec.fields.push((name.to_owned(), value));
                }
            }
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, clipped(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_event(format: LogFormat) -> (String, Journeys) {
        let journeys = Journeys::default();
        let capture = Capture::default();
        let dispatch = dispatch(
            format,
            LevelFilter::INFO,
            capture.clone(),
            false,
            journeys.clone(),
        );
        let mut inbound = http::HeaderMap::new();
        inbound.insert("x-correlation-id", "log-test-1".parse().unwrap());
        inbound.insert("x-tenant-id", "acme".parse().unwrap());
        let ctx = super::super::policy()
            .unwrap()
            .capture(&inbound, threadline::Trust::Trusted)
            .context;
        tracing::dispatcher::with_default(&dispatch, || {
            ctx.sync_scope(|| {
                threadline::bind("app", "warehouse");
                threadline::bind("task", "audit");
                threadline::bind("user.id", "alice");
                tracing::info!(order_id = 7, "written\nforged line");
                tracing::debug!(call_id = "00f067aa0ba902b7", "only in the journey");
            });
            tracing::info!("outside any scope: not in a journey");
        });
        (capture.text(), journeys)
    }

    #[test]
    fn text_lines_start_with_the_service_and_carry_the_context() {
        let (text, journeys) = one_event(LogFormat::Text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "one line per info event, newlines escaped: {text}"
        );
        assert!(lines[0].starts_with("warehouse/audit "), "{text}");
        for part in [
            "correlation_id=log-test-1",
            "tenant_id=acme",
            "user.id=alice",
        ] {
            assert!(lines[0].contains(part), "{part} in {text}");
        }
        assert!(
            !lines[0].contains(" app="),
            "the service is not repeated: {text}"
        );
        let j = journeys.get("log-test-1").expect("a journey");
        assert_eq!(j.events.len(), 2, "the debug event is in the journey too");
        assert_eq!(j.events[1].call_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(
            journeys.list().len(),
            1,
            "events outside a scope are not journeys"
        );
    }

    #[test]
    fn json_lines_have_the_context_at_the_top_level() {
        let (text, _) = one_event(LogFormat::Json);
        let line: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("a line")).expect("JSON");
        assert_eq!(line["message"], "written\nforged line");
        assert_eq!(line["app"], "warehouse");
        assert_eq!(line["task"], "audit");
        assert_eq!(line["correlation_id"], "log-test-1");
        assert_eq!(line["tenant_id"], "acme");
        assert_eq!(line["user.id"], "alice");
        assert_eq!(line["level"], "INFO");
        assert!(line["timestamp"].is_string() && line["trace_id"].is_string());
    }
}
