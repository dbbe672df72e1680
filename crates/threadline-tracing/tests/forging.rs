//! Log forging: `\r\n{"level":"ERROR"}` in a header value, a bound field, an event
//! field or the message never produces a second output line, in text or JSON; the
//! sanitizer on its own; redaction.

mod common;

use std::collections::HashMap;

use common::{Capture, logfmt, policy};
use serde_json::{Value, json};
use threadline::Trust;
use threadline::json::JsonCarrier;
use threadline_tracing::sanitize::{LineKind, sanitize_line, write_json_string, write_text_value};
use threadline_tracing::{ContextFields, ContextFormat};
use tracing::Dispatch;
use tracing_subscriber::{Layer, fmt, prelude::*};

const FORGED: &str = "x\r\n{\"level\":\"ERROR\",\"message\":\"forged\"}";
const FORGED_MORE: &str = "y\n2026-01-01T00:00:00Z ERROR app: forged\u{85}z\u{2028}w\u{1b}[2J";

fn subscribers() -> Vec<(&'static str, Capture, Dispatch)> {
    let text = Capture::new();
    let compact = Capture::new();
    let json = Capture::new();
    let fields = ContextFields::new().redact("x-api-key");
    let layers = [
        (
            "text",
            text.clone(),
            threadline_tracing::layer()
                .event_format(ContextFormat::text().fields(fields.clone()))
                .with_ansi(false)
                .with_writer(text)
                .boxed(),
        ),
        (
            "compact",
            compact.clone(),
            fmt::layer()
                .event_format(ContextFormat::compact().fields(fields.clone()))
                .with_ansi(true)
                .with_writer(compact)
                .boxed(),
        ),
        (
            "json",
            json.clone(),
            threadline_tracing::json_layer()
                .event_format(ContextFormat::json().fields(fields))
                .with_writer(json)
                .boxed(),
        ),
    ];
    layers
        .into_iter()
        .map(|(name, out, layer)| {
            (
                name,
                out,
                Dispatch::new(tracing_subscriber::registry().with(layer)),
            )
        })
        .collect()
}

/// Every line is one event; in JSON, every line parses and none is an ERROR.
fn assert_one_line_per_event(name: &str, out: &Capture, events: usize) {
    let text = out.text();
    assert_eq!(text.matches('\n').count(), events, "{name}: {text}");
    assert!(!text.contains('\r'), "{name}: {text:?}");
    assert!(
        !text.contains('\u{2028}') && !text.contains('\u{85}'),
        "{name}: {text:?}"
    );
    for line in text.lines() {
        assert!(!line.starts_with('{') || name == "json", "{name}: {line}");
        // The line's own level comes first; any ERROR is inside a value.
        let info = line
            .find("INFO")
            .unwrap_or_else(|| panic!("{name}: {line}"));
        assert!(
            line.find("ERROR").is_none_or(|e| e > info),
            "{name}: {line}"
        );
        if name == "json" {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["level"], "INFO", "{line}");
        }
    }
}

#[test]
fn header_values_with_crlf_are_rejected_at_capture_and_never_reach_a_line() {
    // HTTP header values cannot hold CR/LF at all (`http` refuses them). Message
    // carriers can: a JSON envelope and broker headers.
    let job = json!({
        "_http_headers": {
            "x-correlation-id": FORGED,
            "x-tenant-id": format!("acme{FORGED}"),
        }
    });
    let job = job.as_object().unwrap();
    let mut headers = HashMap::new();
    headers.insert("x-correlation-id".to_owned(), FORGED.to_owned());
    headers.insert("x-tenant-id".to_owned(), FORGED_MORE.to_owned());

    for (name, out, dispatch) in subscribers() {
        tracing::dispatcher::with_default(&dispatch, || {
            let captured = policy().capture(&JsonCarrier::new(job), Trust::Trusted);
            assert_eq!(captured.report.len(), 2, "both values rejected");
            captured
                .context
                .sync_scope(|| tracing::info!("from the envelope"));
            let captured = policy().capture(&headers, Trust::Trusted);
            assert_eq!(captured.report.len(), 2, "both values rejected");
            captured
                .context
                .sync_scope(|| tracing::info!("from broker headers"));
        });
        assert_one_line_per_event(name, &out, 2);
        let text = out.text();
        assert!(
            !text.contains("forged"),
            "{name}: rejected values never logged: {text}"
        );
        assert!(!text.contains("tenant_id"), "{name}: {text}");
        assert!(
            text.contains("correlation_id"),
            "{name}: a fresh id was minted: {text}"
        );
    }
}

#[test]
fn bound_fields_event_fields_and_messages_with_crlf_stay_on_one_line() {
    for (name, out, dispatch) in subscribers() {
        tracing::dispatcher::with_default(&dispatch, || {
            common::request("req-1", "acme").sync_scope(|| {
                threadline::bind("user.id", FORGED);
                threadline::bind("note", FORGED_MORE);
                tracing::info!(comment = FORGED, "message {FORGED}");
                tracing::info!(comment = FORGED_MORE, "{FORGED_MORE}");
                tracing::info!(debug = ?FORGED, "debug formatted");
            });
        });
        assert_one_line_per_event(name, &out, 3);
        let text = out.text();
        if name == "json" {
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                // Control characters in bound fields were replaced when bound.
                assert_eq!(
                    v["user.id"],
                    "x\u{fffd}\u{fffd}{\"level\":\"ERROR\",\"message\":\"forged\"}"
                );
                assert_eq!(v["correlation_id"], "req-1");
            }
            let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
            // Event fields and messages survive intact, escaped.
            assert_eq!(first["fields"]["comment"], FORGED);
            assert_eq!(first["fields"]["message"], format!("message {FORGED}"));
        } else {
            for line in text.lines() {
                let f = logfmt(&common::strip_ansi(line));
                assert!(
                    f["user.id"].starts_with('"') || f["user.id"].contains('\u{fffd}'),
                    "{line}"
                );
                assert_eq!(f["correlation_id"], "req-1", "{line}");
            }
        }
    }
}

#[test]
fn redacted_fields_never_show_their_value() {
    let out = Capture::new();
    let fields = ContextFields::new()
        .redact_all(["x-api-key", "user.email", "tenant_id"])
        .redaction_text("***");
    let dispatch = Dispatch::new(
        tracing_subscriber::registry().with(
            threadline_tracing::json_layer()
                .event_format(ContextFormat::json().fields(fields))
                .with_writer(out.clone()),
        ),
    );
    let policy = threadline::Policy::builder()
        .header("x-api-key")
        .header("x-tenant-id")
        .build()
        .unwrap();
    let mut h = http::HeaderMap::new();
    h.insert("x-api-key", "sk-live-123".parse().unwrap());
    h.insert("x-tenant-id", "acme".parse().unwrap());
    tracing::dispatcher::with_default(&dispatch, || {
        policy
            .capture(&h, threadline::Trust::Trusted)
            .context
            .sync_scope(|| {
                threadline::bind("user.email", "alice@example.com");
                threadline::bind("user.id", "alice");
                tracing::info!("redacted");
            });
    });
    let text = out.text();
    assert!(
        !text.contains("sk-live-123") && !text.contains("alice@") && !text.contains("acme"),
        "{text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["api_key"], "***");
    assert_eq!(v["tenant_id"], "***");
    assert_eq!(v["user.email"], "***");
    assert_eq!(v["user.id"], "alice");
}

#[test]
fn the_sanitizer_directly() {
    for value in [FORGED, FORGED_MORE] {
        let mut text = String::new();
        write_text_value(&mut text, value).unwrap();
        assert_eq!(text.lines().count(), 1, "{text:?}");
        assert!(
            !text.contains(['\r', '\n', '\u{85}', '\u{2028}', '\u{1b}']),
            "{text:?}"
        );

        let mut json = String::new();
        write_json_string(&mut json, value).unwrap();
        assert!(
            !json.contains(['\r', '\n', '\u{85}', '\u{2028}', '\u{1b}']),
            "{json:?}"
        );
        let back: String = serde_json::from_str(&json).unwrap();
        assert_eq!(back, value, "JSON escaping is lossless");

        let mut line = format!("INFO app: {value}\n");
        sanitize_line(&mut line, LineKind::Text { keep_ansi: false });
        assert_eq!(line.matches('\n').count(), 1, "{line:?}");
        assert!(line.ends_with('\n'));

        let mut line = format!(
            "{{\"message\":{}}}\n",
            serde_json::to_string(value).unwrap()
        );
        sanitize_line(&mut line, LineKind::Json);
        assert_eq!(line.matches('\n').count(), 1, "{line:?}");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["message"], value);
    }
}

/// The names of a JSON line's top-level members, in order, duplicates included (a
/// `serde_json::Value` would have kept only the last one).
fn top_level_names(line: &str) -> Vec<String> {
    use serde::de::{Deserializer, MapAccess, Visitor};
    struct Names;
    impl<'de> Visitor<'de> for Names {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut names = Vec::new();
            while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                names.push(k);
            }
            Ok(names)
        }
    }
    serde_json::Deserializer::from_str(line)
        .deserialize_map(Names)
        .unwrap()
}

#[test]
fn no_line_ever_holds_a_key_twice() {
    // A trusted caller (or producer) that tries to set log keys: every name a log
    // format owns is refused as a local field, and what remains is written once.
    let policy = threadline::Policy::builder()
        .capture_all_except(Vec::<String>::new())
        .fields_over_http(true)
        .build()
        .unwrap();
    let mut h = http::HeaderMap::new();
    for (k, v) in [
        ("x-correlation-id", "req-1"),
        ("tl-field-level", "ERROR"),
        ("tl-field-message", "forged"),
        ("tl-field-timestamp", "1970"),
        ("tl-field-correlation_id", "forged-id"),
        ("tl-field-tenant_id", "from-the-field"),
        ("x-tenant-id", "from-the-header"),
        ("x-level", "header-derived"),
        ("x-target", "header-derived"),
    ] {
        h.insert(
            http::HeaderName::from_static(k),
            http::HeaderValue::from_static(v),
        );
    }
    let captured = policy.capture(&h, Trust::Trusted);
    let ctx = captured.context;
    for f in ["level", "message", "timestamp", "correlation_id"] {
        assert_eq!(ctx.field(f), None, "{f} is refused as a local field");
    }

    let json = Capture::new();
    let flat = Capture::new();
    let text = Capture::new();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(
                threadline_tracing::json_layer()
                    .event_format(ContextFormat::json())
                    .with_writer(json.clone()),
            )
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .event_format(ContextFormat::new(fmt::format().json().flatten_event(true)))
                    .with_writer(flat.clone()),
            )
            .with(
                threadline_tracing::layer()
                    .event_format(ContextFormat::text())
                    .with_ansi(false)
                    .with_writer(text.clone()),
            ),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        ctx.clone()
            .sync_scope(|| tracing::info!(span_id = "an event field", "hello"));
        ctx.sync_scope(|| {
            tracing::info!(
                tenant_id = "from-the-event",
                "an event naming a context field"
            )
        });
    });
    let text_lines = text.lines();
    let named = text_lines
        .iter()
        .find(|l| l.contains("an event naming a context field"))
        .expect("the second event's text line");
    assert_eq!(named.matches("tenant_id=").count(), 1, "{named}");
    assert!(
        named.contains("tenant_id=\"from-the-event\""),
        "the event's field wins: {named}"
    );
    assert!(named.contains("correlation_id=req-1"), "{named}");
    for (name, out) in [("json", &json), ("flattened json", &flat)] {
        for line in out.lines() {
            let names = top_level_names(&line);
            let mut sorted = names.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), names.len(), "{name}: a key twice: {line}");
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["level"], "INFO", "{name}: {line}");
            assert_eq!(v["correlation_id"], "req-1", "{name}: {line}");
            // Among the context's fields a local field wins over the header; an event
            // field flattened to the top level wins over both.
            let want = if name == "flattened json" && line.contains("an event naming") {
                "from-the-event"
            } else {
                "from-the-field"
            };
            assert_eq!(v["tenant_id"], want, "{name}: {line}");
        }
    }
    for line in text.lines() {
        let pairs: Vec<&str> = line
            .split(' ')
            .filter_map(|w| w.split_once('=').map(|(k, _)| k))
            .collect();
        let mut sorted = pairs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), pairs.len(), "text: a key twice: {line}");
    }
}
