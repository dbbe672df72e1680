//! Events from a handler, a nested call, a spawned task, a blocking task and a broker
//! consumer carry the context, in text and JSON; bound fields show from the moment
//! they are bound; `EnvFilter` works alongside.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{Capture, block_on, logfmt, request, runtime};
use serde_json::Value;
use threadline::json::{JsonCarrier, JsonCarrierMut};
use threadline::{Context, FieldValue, Trust};
use threadline_tracing::{ContextFields, ContextFormat};
use tracing::Dispatch;
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

fn deeper() {
    tracing::info!(step = "nested", "three calls down");
}

fn nested() {
    deeper();
}

/// The handler: events in its body, a nested call, a spawned task, a blocking task,
/// then a message to a consumer that restores the context.
async fn handler() -> (String, String) {
    tracing::info!(step = "handler", "handling");
    nested();
    threadline::spawn(async {
        tokio::task::yield_now().await;
        tracing::info!(step = "spawned", "in a task");
    })
    .await
    .unwrap();
    threadline::spawn_blocking(|| tracing::info!(step = "blocking", "in a blocking task"))
        .await
        .unwrap();

    // Publish: the context travels in a JSON envelope and in broker headers.
    let ctx = Context::current();
    let mut job = serde_json::Map::new();
    ctx.inject(&mut JsonCarrierMut::new(&mut job));
    let mut headers: HashMap<String, String> = HashMap::new();
    ctx.inject(&mut headers);
    // Consumers run outside the request's scope, in tasks of their own.
    tokio::spawn(async move {
        let restored = common::policy()
            .capture(&JsonCarrier::new(&job), Trust::Trusted)
            .context;
        restored
            .scope(async { tracing::info!(step = "consumer.json", "job consumed") })
            .await;
        let restored = common::policy().capture(&headers, Trust::Trusted).context;
        restored
            .scope(async { tracing::info!(step = "consumer.headers", "message consumed") })
            .await;
    })
    .await
    .unwrap();
    let ctx = Context::current();
    (
        ctx.trace_id().unwrap().to_string(),
        ctx.span_id().unwrap().to_string(),
    )
}

const STEPS: [&str; 6] = [
    "handler",
    "nested",
    "spawned",
    "blocking",
    "consumer.json",
    "consumer.headers",
];

/// Runs the handler in a request scope on a 2-worker runtime; returns the request's
/// span id.
fn run(dispatch: Dispatch) -> String {
    let rt = runtime(&dispatch, 2);
    let (trace_id, span_id) = block_on(&rt, &dispatch, async {
        let ctx = request("req-1", "acme");
        ctx.scope(async {
            threadline::bind("user.id", "alice");
            handler().await
        })
        .await
    });
    assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    span_id
}

fn check(step: &str, fields: &BTreeMap<String, String>, hop_span: &str) {
    assert_eq!(fields["correlation_id"], "req-1", "{step}: {fields:?}");
    assert_eq!(
        fields["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{step}: {fields:?}"
    );
    assert_eq!(fields["tenant_id"], "acme", "{step}: {fields:?}");
    assert_eq!(fields["user.id"], "alice", "{step}: {fields:?}");
    if step.starts_with("consumer") {
        // The consumer is a hop of its own: same trace, its own span id.
        assert_eq!(fields["span_id"].len(), 16, "{step}");
        assert_ne!(fields["span_id"], hop_span, "{step}");
    } else {
        assert_eq!(fields["span_id"], hop_span, "{step}: {fields:?}");
    }
}

fn check_text(out: &Capture, hop_span: &str) {
    let lines = out.lines();
    assert_eq!(lines.len(), STEPS.len(), "{lines:#?}");
    for step in STEPS {
        let line = lines
            .iter()
            .find(|l| {
                l.contains(&format!("step=\"{step}\"")) || l.contains(&format!("step={step}"))
            })
            .unwrap_or_else(|| panic!("no line for {step}: {lines:#?}"));
        check(step, &logfmt(line), hop_span);
    }
}

#[test]
fn text_full_from_handler_nested_spawned_blocking_and_consumers() {
    let out = Capture::new();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry().with(
            threadline_tracing::layer()
                .with_ansi(false)
                .with_writer(out.clone()),
        ),
    );
    let span = run(dispatch);
    check_text(&out, &span);
    // The fields follow the event's own fields, on the same line.
    let line = out
        .lines()
        .into_iter()
        .find(|l| l.contains("handling"))
        .unwrap();
    assert!(line.contains(" INFO "), "{line}");
    assert!(
        line.contains("handling step=\"handler\" correlation_id=req-1 trace_id="),
        "{line}"
    );
}

#[test]
fn text_compact_from_handler_nested_spawned_blocking_and_consumers() {
    let out = Capture::new();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry().with(
            fmt::layer()
                .event_format(ContextFormat::compact())
                .with_ansi(false)
                .with_writer(out.clone()),
        ),
    );
    let span = run(dispatch);
    check_text(&out, &span);
}

fn check_json(out: &Capture, hop_span: &str, nested: Option<&str>) {
    let events = out.json();
    assert_eq!(events.len(), STEPS.len());
    for step in STEPS {
        let event = events
            .iter()
            .find(|e| e["fields"]["step"] == step)
            .unwrap_or_else(|| panic!("no event for {step}: {events:#?}"));
        let obj = match nested {
            Some(key) => &event[key],
            None => event,
        };
        let fields: BTreeMap<String, String> = obj
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect();
        check(step, &fields, hop_span);
        // Structured, not pasted into the message.
        assert!(
            !event["fields"]["message"]
                .as_str()
                .unwrap()
                .contains("req-1")
        );
    }
}

#[test]
fn json_top_level_from_handler_nested_spawned_blocking_and_consumers() {
    let out = Capture::new();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(threadline_tracing::json_layer().with_writer(out.clone())),
    );
    let span = run(dispatch);
    check_json(&out, &span, None);
}

#[test]
fn json_nested_under_a_key_and_flattened_events() {
    let out = Capture::new();
    let format = ContextFormat::new(fmt::format().json().flatten_event(true))
        .fields(ContextFields::new().nest_under("ctx"));
    let dispatch = Dispatch::new(
        tracing_subscriber::registry().with(
            fmt::layer()
                .json()
                .event_format(format)
                .with_writer(out.clone()),
        ),
    );
    let rt = runtime(&dispatch, 0);
    block_on(&rt, &dispatch, async {
        request("req-1", "acme")
            .scope(async {
                threadline::bind("user.id", "alice");
                tracing::info!(step = "handler", "flattened");
            })
            .await;
    });
    let events = out.json();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["step"], "handler"); // flatten_event puts event fields on top
    assert_eq!(e["ctx"]["correlation_id"], "req-1");
    assert_eq!(e["ctx"]["tenant_id"], "acme");
    assert_eq!(e["ctx"]["user.id"], "alice");
    assert!(e.get("correlation_id").is_none());
}

#[test]
fn a_field_bound_mid_request_shows_on_later_events_only() {
    for json in [false, true] {
        let out = Capture::new();
        let layer = if json {
            threadline_tracing::json_layer()
                .with_writer(out.clone())
                .boxed()
        } else {
            threadline_tracing::layer()
                .with_ansi(false)
                .with_writer(out.clone())
                .boxed()
        };
        let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
        let rt = runtime(&dispatch, 0);
        block_on(&rt, &dispatch, async {
            request("req-9", "acme")
                .scope(async {
                    tracing::info!(n = 1, "before");
                    // A task spawned before the bind keeps its snapshot.
                    let early = threadline::spawn(async {
                        tokio::task::yield_now().await;
                        tracing::info!(n = 4, "early task");
                    });
                    threadline::bind("organisation.id", "org-3");
                    tracing::info!(n = 2, "after");
                    threadline::bind("organisation.id", FieldValue::from("org-4"));
                    tracing::info!(n = 3, "rebound");
                    early.await.unwrap();
                })
                .await;
        });
        let org: Vec<(i64, Option<String>)> = if json {
            out.json()
                .iter()
                .map(|e| {
                    (
                        e["fields"]["n"].as_i64().unwrap(),
                        e["organisation.id"].as_str().map(str::to_owned),
                    )
                })
                .collect()
        } else {
            out.lines()
                .iter()
                .map(|l| {
                    let f = logfmt(l);
                    (f["n"].parse().unwrap(), f.get("organisation.id").cloned())
                })
                .collect()
        };
        let mut org = org;
        org.sort();
        assert_eq!(
            org,
            vec![
                (1, None),
                (2, Some("org-3".into())),
                (3, Some("org-4".into())),
                (4, None),
            ],
            "json={json}"
        );
    }
}

#[test]
fn outside_any_scope_no_context_fields() {
    let out = Capture::new();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(threadline_tracing::json_layer().with_writer(out.clone())),
    );
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("no scope"));
    let events = out.json();
    assert_eq!(events.len(), 1);
    let keys: Vec<&String> = events[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["fields", "level", "target", "timestamp"]);
}

#[test]
fn works_alongside_env_filter_global_and_per_layer() {
    let out = Capture::new();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(EnvFilter::new("info,noisy=off"))
            .with(
                threadline_tracing::json_layer()
                    .with_writer(out.clone())
                    .with_filter(EnvFilter::new("warn,important=debug")),
            ),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        request("req-f", "acme").sync_scope(|| {
            tracing::info!("dropped: below warn");
            tracing::warn!(target: "noisy", "dropped: target off");
            tracing::warn!("kept");
            tracing::info!(target: "important", "kept too");
            tracing::debug!(target: "important", "dropped: below the global info");
        });
    });
    let events = out.json();
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["fields"]["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["kept", "kept too"]);
    assert!(events.iter().all(|e| e["correlation_id"] == "req-f"));
}

#[test]
fn spans_are_shown_by_the_wrapped_formatter() {
    let out = Capture::new();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry().with(
            fmt::layer()
                .event_format(ContextFormat::new(fmt::format().without_time()))
                .with_ansi(false)
                .with_writer(out.clone()),
        ),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        request("req-s", "acme").sync_scope(|| {
            let span = tracing::info_span!("request", method = "GET", route = "/orders/{id}");
            let _e = span.enter();
            tracing::info!(status = 200, "done");
        });
    });
    let line = out.text();
    assert!(
        line.starts_with(" INFO request{method=\"GET\" route=\"/orders/{id}\"}: capture: done status=200 correlation_id=req-s trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id="),
        "{line}"
    );
    assert!(line.ends_with(" tenant_id=acme\n"), "{line}");

    // JSON: the span object stays, the context is beside it.
    let out = Capture::new();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(threadline_tracing::json_layer().with_writer(out.clone())),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        request("req-s", "acme").sync_scope(|| {
            let span = tracing::info_span!("request", method = "GET");
            let _e = span.enter();
            tracing::info!("done");
        });
    });
    let e: Value = serde_json::from_str(&out.text()).unwrap();
    assert_eq!(e["span"]["name"], "request");
    assert_eq!(e["span"]["method"], "GET");
    assert_eq!(e["spans"][0]["name"], "request");
    assert_eq!(e["correlation_id"], "req-s");
}

/// The server layer's request span records the ids too; with the dedup field
/// formatters they are not printed twice.
#[test]
fn a_request_span_with_the_ids_is_not_repeated() {
    fn request_span() -> tracing::Span {
        let ctx = Context::current();
        let span = tracing::info_span!(
            "request",
            method = "GET",
            route = "/orders/{id}",
            status = tracing::field::Empty,
            correlation_id = ctx.correlation_id().unwrap().as_str(),
            trace_id = %ctx.trace_id().unwrap(),
            span_id = %ctx.span_id().unwrap(),
        );
        span.record("status", 200);
        span
    }

    let out = Capture::new();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry().with(
            fmt::layer()
                .fmt_fields(threadline_tracing::DedupFields::default())
                .event_format(ContextFormat::new(fmt::format().without_time()))
                .with_ansi(false)
                .with_writer(out.clone()),
        ),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        request("req-d", "acme").sync_scope(|| {
            let _e = request_span().entered();
            tracing::info!("done");
        });
    });
    let line = out.text();
    assert!(
        line.starts_with(
            " INFO request{method=\"GET\" route=\"/orders/{id}\" status=200}: capture: done correlation_id=req-d trace_id="
        ),
        "{line}"
    );
    assert_eq!(line.matches("correlation_id").count(), 1, "{line}");
    assert_eq!(line.matches("trace_id").count(), 1, "{line}");

    let out = Capture::new();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(threadline_tracing::json_layer().with_writer(out.clone())),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        request("req-d", "acme").sync_scope(|| {
            let span = request_span();
            span.record("route", "/orders/{id}/items");
            let _e = span.entered();
            tracing::info!(n = 1, "done");
        });
    });
    let e: Value = serde_json::from_str(&out.text()).unwrap();
    assert_eq!(
        e["span"],
        serde_json::json!({"name": "request", "method": "GET", "route": "/orders/{id}/items", "status": 200}),
        "{e}"
    );
    assert_eq!(e["correlation_id"], "req-d");
    assert_eq!(e["fields"]["n"], 1);
}

#[test]
fn pretty_gets_a_line_of_context() {
    let out = Capture::new();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry().with(
            fmt::layer()
                .event_format(ContextFormat::pretty())
                .with_ansi(false)
                .with_writer(out.clone()),
        ),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        request("req-p", "acme").sync_scope(|| tracing::info!(a = 1, "pretty"));
    });
    let text = out.text();
    let with = text
        .lines()
        .find(|l| l.starts_with("    with "))
        .unwrap_or_else(|| panic!("{text}"));
    let f = logfmt(with);
    assert_eq!(f["correlation_id"], "req-p");
    assert_eq!(f["tenant_id"], "acme");
    assert!(text.ends_with("\n\n"), "{text:?}");
}

#[test]
fn colours_follow_the_layer() {
    let out = Capture::new();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry().with(
            threadline_tracing::layer()
                .with_ansi(true)
                .with_writer(out.clone()),
        ),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        request("req-c", "acme").sync_scope(|| tracing::info!("coloured"));
    });
    let line = out.text();
    assert!(line.contains("\u{1b}[32m INFO\u{1b}[0m"), "{line:?}");
    assert!(
        line.contains("\u{1b}[3mcorrelation_id\u{1b}[0m\u{1b}[2m=\u{1b}[0mreq-c"),
        "{line:?}"
    );
    assert_eq!(line.lines().count(), 1);
}

#[test]
fn json_span_fields_of_every_kind() {
    #[derive(Debug)]
    struct Dbg {
        #[allow(dead_code)]
        a: &'static str,
    }
    let err = std::io::Error::other("disk \"full\"\n");
    let out = Capture::new();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(threadline_tracing::json_layer().with_writer(out.clone())),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        let span = tracing::info_span!(
            "s",
            text = "a\r\nb",
            dbg = ?Dbg { a: "x\"y" },
            r#type = "kind",
            i = -3i64,
            u = 7u64,
            big = 1u128 << 100,
            f = 1.5f64,
            nan = f64::NAN,
            yes = true,
            err = &err as &(dyn std::error::Error + 'static),
            later = tracing::field::Empty,
        );
        span.record("later", "set");
        let _e = span.entered();
        tracing::info!("x");
    });
    let text = out.text();
    assert_eq!(text.lines().count(), 1);
    let e: Value = serde_json::from_str(&text).unwrap();
    let s = &e["span"];
    assert_eq!(s["text"], "a\r\nb");
    assert_eq!(s["dbg"], "Dbg { a: \"x\\\"y\" }");
    assert_eq!(s["type"], "kind");
    assert_eq!(s["i"], -3);
    assert_eq!(s["u"], 7);
    assert!(s["big"].is_number()); // re-parsed by the JSON formatter as f64
    assert_eq!(s["f"], 1.5);
    assert!(s["nan"].is_null());
    assert_eq!(s["yes"], true);
    assert_eq!(s["err"], "disk \"full\"\n");
    assert_eq!(s["later"], "set");
}
