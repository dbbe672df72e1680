//! The context reaches layers other than `tracing_subscriber::fmt`: json-subscriber,
//! OpenTelemetry's log bridge and a layer of the user's own, once per key, escaped.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use common::{Capture, request};
use opentelemetry::logs::AnyValue;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::logs::{InMemoryLogExporter, SdkLogRecord, SdkLoggerProvider};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use threadline_tracing::json_subscriber::ContextMembers;
use threadline_tracing::otel_logs::ContextLogProcessor;
use threadline_tracing::{ContextFields, ContextLayer, ContextSnapshot, ContextValue};
use tracing::Dispatch;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A request whose baggage member `note` decodes to a forged line: a newline, a JSON
/// object, U+2028 and an ANSI escape (percent-encoding lets baggage carry them).
fn request_with_forged_baggage() -> threadline::Context {
    let mut h = http::HeaderMap::new();
    h.insert("x-correlation-id", "req-forge".parse().unwrap());
    h.insert(
        "baggage",
        "note=bob%0A%7B%22level%22%3A%22ERROR%22%7D%E2%80%A8%1B[31m!"
            .parse()
            .unwrap(),
    );
    let ctx = common::policy()
        .capture(&h, threadline::Trust::Trusted)
        .context;
    assert_eq!(
        ctx.baggage().unwrap().get("note").unwrap(),
        "bob\n{\"level\":\"ERROR\"}\u{2028}\u{1b}[31m!",
        "the test's premise: the decoded member is dangerous"
    );
    ctx
}

/// What a forged baggage member looks like once cleaned: visible escapes.
const CLEANED_NOTE: &str = r#"bob\n{"level":"ERROR"}\u{2028}\u{1b}[31m!"#;

/// Reads a JSON document and fails on the first object that holds a key twice (serde_json
/// into a map would silently keep the last one).
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut keys = Vec::<String>::new();
        while let Some(key) = map.next_key::<String>()? {
            if keys.contains(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            keys.push(key);
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(NoDuplicateKeys)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(NoDuplicateKeys)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
}

/// Every line as a JSON object, after checking its raw text holds no key twice.
fn parse_lines(out: &Capture) -> Vec<serde_json::Map<String, Value>> {
    out.lines()
        .iter()
        .map(|line| {
            serde_json::from_str::<NoDuplicateKeys>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let value: Value = serde_json::from_str(line).unwrap();
            value.as_object().expect("an object per line").clone()
        })
        .collect()
}

/// How often `"key":` occurs in the raw line.
fn occurrences(line: &str, key: &str) -> usize {
    line.matches(&format!("\"{key}\":")).count()
}

#[test]
fn the_duplicate_key_check_catches_duplicates() {
    assert!(serde_json::from_str::<NoDuplicateKeys>(r#"{"a":1,"b":{"a":2}}"#).is_ok());
    assert!(serde_json::from_str::<NoDuplicateKeys>(r#"{"a":1,"a":2}"#).is_err());
    assert!(serde_json::from_str::<NoDuplicateKeys>(r#"{"x":[{"a":1,"a":1}]}"#).is_err());
}

fn json_subscriber_dispatch(
    members: ContextMembers,
    flatten: bool,
    static_region: bool,
) -> (Dispatch, Capture) {
    let out = Capture::new();
    let mut layer = json_subscriber::fmt::layer()
        .flatten_event(flatten)
        .with_writer(out.clone());
    if static_region {
        layer
            .inner_layer_mut()
            .add_static_field("region", Value::from("eu-static"));
    }
    members.install(layer.inner_layer_mut());
    (
        Dispatch::new(tracing_subscriber::registry().with(layer)),
        out,
    )
}

#[test]
fn json_subscriber_lines_carry_each_context_field_once() {
    let (dispatch, out) = json_subscriber_dispatch(ContextMembers::new(), false, false);
    let ctx = request("req-js", "acme");
    let span_id = ctx.span_id().unwrap().to_string();
    tracing::dispatcher::with_default(&dispatch, || {
        ctx.sync_scope(|| {
            let _span = tracing::info_span!("request", method = "GET").entered();
            tracing::info!("before bind");
            threadline::bind("user.id", "alice");
            // The event's own fields of context names: they stay under "fields", the
            // context's members stay at the top: no object holds a key twice.
            tracing::info!(user.id = "from-event", tenant_id = "evt", "after bind");
        });
        tracing::info!("outside");
    });

    let lines = parse_lines(&out);
    assert_eq!(lines.len(), 3, "{}", out.text());
    let first = &lines[0];
    assert_eq!(first["correlation_id"], "req-js");
    assert_eq!(first["trace_id"], TRACE_ID);
    assert_eq!(first["span_id"], span_id.as_str());
    assert_eq!(first["tenant_id"], "acme");
    assert!(
        first.get("user.id").is_none(),
        "bound only later: {first:?}"
    );
    // json-subscriber's own members are untouched.
    assert_eq!(first["fields"]["message"], "before bind");
    assert_eq!(first["span"]["method"], "GET");
    assert_eq!(first["level"], "INFO");

    // Bound a moment before the event: there, once. The event's fields of the same
    // names win: the context's are left out of that line.
    let second = &lines[1];
    assert_eq!(second["correlation_id"], "req-js");
    assert_eq!(second["fields"]["user.id"], "from-event");
    assert_eq!(second["fields"]["tenant_id"], "evt");
    assert!(second.get("user.id").is_none(), "{second:?}");
    assert!(second.get("tenant_id").is_none(), "{second:?}");
    let raw = out.lines()[1].clone();
    for key in [
        "correlation_id",
        "trace_id",
        "span_id",
        "user.id",
        "tenant_id",
    ] {
        assert!(occurrences(&raw, key) <= 1, "{key} twice: {raw}");
    }

    let outside = &lines[2];
    for key in ["correlation_id", "trace_id", "span_id", "tenant_id"] {
        assert!(outside.get(key).is_none(), "{outside:?}");
    }
}

#[test]
fn json_subscriber_flattened_event_wins_over_the_context() {
    let (dispatch, out) = json_subscriber_dispatch(ContextMembers::new(), true, false);
    tracing::dispatcher::with_default(&dispatch, || {
        request("req-flat", "acme").sync_scope(|| {
            threadline::bind("user.id", "alice");
            threadline::bind("order.id", "o-1");
            tracing::info!(user.id = "from-event", trace_id = "upstream", "flattened");
            tracing::info!("plain");
        });
    });
    let lines = parse_lines(&out);
    let raw = out.lines();
    let e = &lines[0];
    assert_eq!(e["message"], "flattened");
    assert_eq!(e["user.id"], "from-event");
    assert_eq!(e["trace_id"], "upstream");
    assert_eq!(e["order.id"], "o-1");
    assert_eq!(e["tenant_id"], "acme");
    assert_eq!(e["correlation_id"], "req-flat");
    for key in [
        "user.id",
        "trace_id",
        "order.id",
        "tenant_id",
        "correlation_id",
    ] {
        assert_eq!(occurrences(&raw[0], key), 1, "{key}: {}", raw[0]);
    }
    let plain = &lines[1];
    assert_eq!(plain["user.id"], "alice");
    assert_eq!(plain["trace_id"], TRACE_ID);
}

#[test]
fn json_subscriber_taken_names_nesting_and_renames() {
    let policy = threadline::Policy::builder()
        .header("x-tenant-id")
        .header("x-region")
        .build()
        .unwrap();
    let mut h = http::HeaderMap::new();
    h.insert("x-correlation-id", "req-n".parse().unwrap());
    h.insert("x-tenant-id", "acme".parse().unwrap());
    h.insert("x-region", "eu-header".parse().unwrap());
    let ctx = policy.capture(&h, threadline::Trust::Trusted).context;

    // A static member of the layer's: named as taken, the context's `region` stays out.
    let members = ContextMembers::new()
        .taken(["region"])
        .fields(ContextFields::new().header("x-tenant-id", "tenant"));
    let (dispatch, out) = json_subscriber_dispatch(members, true, true);
    tracing::dispatcher::with_default(&dispatch, || {
        ctx.clone().sync_scope(|| tracing::info!("renamed"));
    });
    let lines = parse_lines(&out);
    assert_eq!(lines[0]["region"], "eu-static");
    assert_eq!(lines[0]["tenant"], "acme");
    assert!(lines[0].get("tenant_id").is_none());
    assert_eq!(occurrences(&out.lines()[0], "region"), 1);

    // Nested under one key.
    let members = ContextMembers::new().fields(ContextFields::new().nest_under("ctx"));
    let (dispatch, out) = json_subscriber_dispatch(members, true, false);
    tracing::dispatcher::with_default(&dispatch, || {
        ctx.clone().sync_scope(|| {
            threadline::bind("user.id", "alice");
            tracing::info!(tenant_id = "evt", "nested");
        });
        tracing::info!("outside");
    });
    let lines = parse_lines(&out);
    assert_eq!(lines[0]["ctx"]["correlation_id"], "req-n");
    assert_eq!(lines[0]["ctx"]["tenant_id"], "acme");
    assert_eq!(lines[0]["ctx"]["region"], "eu-header");
    assert_eq!(lines[0]["ctx"]["user.id"], "alice");
    assert_eq!(lines[0]["tenant_id"], "evt");
    assert!(lines[1].get("ctx").is_none(), "{:?}", lines[1]);
}

#[test]
fn json_subscriber_values_cannot_forge_lines() {
    let members = ContextMembers::new().fields(ContextFields::new().baggage("note", "note"));
    let (dispatch, out) = json_subscriber_dispatch(members, true, false);
    tracing::dispatcher::with_default(&dispatch, || {
        request_with_forged_baggage().sync_scope(|| {
            // Bound values lose control characters in the core already (U+FFFD).
            threadline::bind("user.id", "bob\n{\"level\":\"ERROR\"}");
            tracing::info!("forged?");
        });
    });
    assert_eq!(out.lines().len(), 1, "{}", out.text());
    let lines = parse_lines(&out);
    assert_eq!(lines[0]["note"], CLEANED_NOTE);
    assert_eq!(lines[0]["user.id"], "bob\u{fffd}{\"level\":\"ERROR\"}");
    assert!(!out.text().trim_end().contains('\n'));
    for key in ["note", "user.id"] {
        let value = lines[0][key].as_str().unwrap();
        assert!(
            !value
                .chars()
                .any(threadline_tracing::sanitize::is_dangerous)
        );
    }
}

fn otel_stack(
    processor: ContextLogProcessor,
) -> (Dispatch, InMemoryLogExporter, SdkLoggerProvider) {
    let exporter = InMemoryLogExporter::default();
    let provider = SdkLoggerProvider::builder()
        .with_log_processor(processor)
        .with_simple_exporter(exporter.clone())
        .build();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry().with(OpenTelemetryTracingBridge::new(&provider)),
    );
    (dispatch, exporter, provider)
}

/// The record's attributes of `key`, in order.
fn attributes<'a>(record: &'a SdkLogRecord, key: &str) -> Vec<&'a AnyValue> {
    record
        .attributes_iter()
        .filter(|(k, _)| k.as_str() == key)
        .map(|(_, v)| v)
        .collect()
}

fn text(value: &str) -> AnyValue {
    AnyValue::from(value.to_owned())
}

#[test]
fn otel_log_records_carry_the_context_as_attributes() {
    let (dispatch, exporter, _provider) = otel_stack(ContextLogProcessor::new());
    let ctx = request("req-otel", "acme");
    let span_id = ctx.span_id().unwrap();
    let forged = request_with_forged_baggage();
    tracing::dispatcher::with_default(&dispatch, || {
        ctx.sync_scope(|| {
            threadline::bind("user.id", "alice");
            tracing::warn!(order = 7, "saved");
            // An event attribute of a context field's name wins.
            tracing::info!(tenant_id = "from-event", "shadowed");
            tracing::info!("escaped");
        });
        tracing::info!("outside");
    });
    let (dispatch_note, exporter_note, _provider_note) =
        otel_stack(ContextLogProcessor::new().fields(ContextFields::new().baggage("note", "note")));
    tracing::dispatcher::with_default(&dispatch_note, || {
        forged.sync_scope(|| tracing::info!("forged?"));
    });
    let noted = exporter_note.get_emitted_logs().unwrap();
    assert_eq!(attributes(&noted[0].record, "note"), [&text(CLEANED_NOTE)]);

    let logs = exporter.get_emitted_logs().unwrap();
    assert_eq!(logs.len(), 4);
    let r = &logs[0].record;
    assert_eq!(attributes(r, "correlation_id"), [&text("req-otel")]);
    assert_eq!(attributes(r, "tenant_id"), [&text("acme")]);
    assert_eq!(attributes(r, "user.id"), [&text("alice")]);
    assert_eq!(attributes(r, "order"), [&AnyValue::Int(7)]);
    // The ids are the record's trace context, not attributes.
    assert!(attributes(r, "trace_id").is_empty());
    let trace = r.trace_context().expect("a trace context");
    assert_eq!(trace.trace_id.to_string(), TRACE_ID);
    assert_eq!(trace.span_id.to_string(), span_id.to_string());
    assert!(trace.trace_flags.unwrap().is_sampled());

    let shadowed = &logs[1].record;
    assert_eq!(attributes(shadowed, "tenant_id"), [&text("from-event")]);
    assert_eq!(attributes(shadowed, "correlation_id"), [&text("req-otel")]);

    let escaped = &logs[2].record;
    assert_eq!(attributes(escaped, "user.id"), [&text("alice")]);

    let outside = &logs[3].record;
    assert!(attributes(outside, "correlation_id").is_empty());
    assert!(outside.trace_context().is_none());
}

#[test]
fn otel_processor_options() {
    let processor = ContextLogProcessor::new().trace_context(false).fields(
        ContextFields::new()
            .correlation_id_name("request.id")
            .with_sampled("trace.sampled")
            .redact("tenant_id"),
    );
    let (dispatch, exporter, _provider) = otel_stack(processor);
    tracing::dispatcher::with_default(&dispatch, || {
        request("req-opt", "acme").sync_scope(|| tracing::info!("configured"));
    });
    let logs = exporter.get_emitted_logs().unwrap();
    let r = &logs[0].record;
    assert!(r.trace_context().is_none());
    assert_eq!(attributes(r, "request.id"), [&text("req-opt")]);
    assert_eq!(attributes(r, "trace_id"), [&text(TRACE_ID)]);
    assert_eq!(attributes(r, "trace.sampled"), [&AnyValue::Boolean(true)]);
    assert_eq!(attributes(r, "tenant_id"), [&text("[redacted]")]);
}

/// What a layer saw in one callback, and the context fields it read there.
type Seen = (String, BTreeMap<String, String>);

/// A layer of a user's own: what it saw, per callback.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    fn push(&self, what: String, fields: BTreeMap<String, String>) {
        self.0.lock().unwrap().push((what, fields));
    }
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

fn collect(visit: impl FnOnce(&mut dyn FnMut(&str, ContextValue<'_>))) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    visit(&mut |name, value| {
        assert!(
            out.insert(name.to_owned(), value.to_string()).is_none(),
            "{name} twice"
        );
    });
    out
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, ctx: LayerContext<'_, S>) {
        let name = event.metadata().name().to_owned();
        self.push(
            format!("event {name}"),
            collect(|f| ContextFields::new().visit_current(f)),
        );
        if let Some(span) = ctx.event_span(event) {
            let fields = ContextSnapshot::find(&span)
                .map(|s| collect(|f| s.visit(f)))
                .unwrap_or_default();
            self.push(format!("event-span {}", span.name()), fields);
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: LayerContext<'_, S>) {
        let span = ctx.span(&id).unwrap();
        let own = span.extensions().get::<ContextSnapshot>().cloned();
        let fields = own.map(|s| collect(|f| s.visit(f)));
        self.push(
            format!("close {} own={}", span.name(), fields.is_some()),
            fields.unwrap_or_default(),
        );
    }
}

#[test]
fn a_custom_layer_reads_the_context_at_event_time_and_from_span_extensions() {
    let recorder = Recorder::default();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(ContextLayer::new().fields(ContextFields::new().without_span_id()))
            .with(recorder.clone()),
    );
    let ctx = request("req-own", "acme");
    tracing::dispatcher::with_default(&dispatch, || {
        let outer = ctx.sync_scope(|| {
            let span = tracing::info_span!("handler");
            let entered = span.enter();
            threadline::bind("user.id", "alice");
            tracing::info!(name: "bound", "after bind");
            drop(entered);
            span
        });
        // A span created outside any scope has no snapshot of its own; its parent's
        // is found.
        let inner = tracing::info_span!(parent: &outer, "child");
        inner.in_scope(|| tracing::info!(name: "in-child", "x"));
        drop(inner);
        drop(outer);
    });

    let seen = recorder.take();
    let find = |what: &str| {
        seen.iter()
            .find(|(w, _)| w == what)
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| panic!("no {what:?} in {seen:#?}"))
    };
    let event = find("event bound");
    assert_eq!(event["correlation_id"], "req-own");
    assert_eq!(event["trace_id"], TRACE_ID);
    assert_eq!(event["tenant_id"], "acme");
    assert_eq!(event["user.id"], "alice");
    assert!(
        event.contains_key("span_id"),
        "visit_current uses its own config"
    );

    // At event time the span's snapshot predates the bind; the ContextLayer's
    // configuration applies (no span_id).
    let at_event = find("event-span handler");
    assert_eq!(at_event["correlation_id"], "req-own");
    assert!(!at_event.contains_key("user.id"));
    assert!(!at_event.contains_key("span_id"));

    // Left while the bound context was current: the snapshot has the bound field.
    let closed = find("close handler own=true");
    assert_eq!(closed["user.id"], "alice");
    assert_eq!(closed["tenant_id"], "acme");

    // The child, outside any scope: nothing at event time, the parent's snapshot via
    // `find`, no snapshot of its own.
    assert!(find("event in-child").is_empty());
    assert_eq!(find("event-span child")["user.id"], "alice");
    assert!(find("close child own=false").is_empty());
}

#[test]
fn no_snapshot_outside_a_scope_and_a_new_hop_does_not_overwrite() {
    let recorder = Recorder::default();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(ContextLayer::new())
            .with(recorder.clone()),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        drop(tracing::info_span!("bare").entered());
        // A span of request A entered inside request B's scope keeps A's context.
        let a = request("req-a", "acme").sync_scope(|| tracing::info_span!("a"));
        request("req-b", "other").sync_scope(|| drop(a.enter()));
        drop(a);
    });
    let seen = recorder.take();
    assert!(
        seen.iter()
            .any(|(w, f)| w == "close bare own=false" && f.is_empty())
    );
    let a = &seen
        .iter()
        .find(|(w, _)| w == "close a own=true")
        .unwrap()
        .1;
    assert_eq!(a["correlation_id"], "req-a");
    assert_eq!(a["tenant_id"], "acme");
}

#[test]
fn fmt_output_is_unchanged_next_to_the_new_layers() {
    // The existing formatter and the context layer in one stack: the fmt line is what
    // it always was, each context key once.
    let out = Capture::new();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(ContextLayer::new())
            .with(threadline_tracing::json_layer().with_writer(out.clone())),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        request("req-fmt", "acme").sync_scope(|| {
            let _s = tracing::info_span!("request").entered();
            threadline::bind("user.id", "alice");
            tracing::info!("line");
        });
    });
    let lines = parse_lines(&out);
    assert_eq!(lines[0]["correlation_id"], "req-fmt");
    assert_eq!(lines[0]["tenant_id"], "acme");
    assert_eq!(lines[0]["user.id"], "alice");
    assert_eq!(lines[0]["fields"]["message"], "line");
}

#[cfg(feature = "opentelemetry")]
#[test]
fn otel_records_inside_an_opentelemetry_span_keep_the_span_ids() {
    use opentelemetry::trace::TracerProvider as _;

    let tracer_provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let exporter = InMemoryLogExporter::default();
    let provider = SdkLoggerProvider::builder()
        .with_log_processor(ContextLogProcessor::new())
        .with_simple_exporter(exporter.clone())
        .build();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("test")))
            .with(OpenTelemetryTracingBridge::new(&provider)),
    );
    let span_ids = tracing::dispatcher::with_default(&dispatch, || {
        // Not linked: the OpenTelemetry span starts a trace of its own, so the record
        // shows whose ids it got.
        let span = tracing::info_span!("work");
        let _entered = span.enter();
        request("req-span", "acme").sync_scope(|| {
            tracing::info!("inside");
            threadline_tracing::otel::current_span_ids().expect("an active span")
        })
    });
    let logs = exporter.get_emitted_logs().unwrap();
    let r = &logs[0].record;
    let trace = r.trace_context().unwrap();
    assert_eq!(trace.trace_id.to_string(), span_ids.0.to_string());
    assert_eq!(trace.span_id.to_string(), span_ids.1.to_string());
    assert_ne!(trace.trace_id.to_string(), TRACE_ID);
    assert_eq!(attributes(r, "correlation_id"), [&text("req-span")]);
}
