//! Users of the `log` crate get the same fields: `tracing_log::LogTracer` turns their
//! records into `tracing` events, which the same formatter writes with the context.

mod common;

use common::{Capture, logfmt, request};
use serde_json::Value;
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

#[test]
fn log_records_carry_the_context_in_text_and_json() {
    // Installed once per test binary (it is the `log` crate's global logger); it
    // forwards to whichever subscriber is current on the thread.
    tracing_log::LogTracer::init().unwrap();

    let json = Capture::new();
    let text = Capture::new();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(threadline_tracing::json_layer().with_writer(json.clone()))
            .with(
                threadline_tracing::layer()
                    .with_ansi(false)
                    .with_writer(text.clone()),
            ),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        request("req-log", "acme").sync_scope(|| {
            threadline::bind("user.id", "alice");
            log::info!(target: "legacy::db", "query took {} ms", 12);
        });
        log::warn!("outside any scope");
    });

    let events = json.json();
    assert_eq!(events.len(), 2, "{events:#?}");
    let e: &Value = &events[0];
    assert_eq!(e["fields"]["message"], "query took 12 ms");
    assert_eq!(e["target"], "legacy::db");
    assert_eq!(e["correlation_id"], "req-log");
    assert_eq!(e["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(e["tenant_id"], "acme");
    assert_eq!(e["user.id"], "alice");
    assert!(events[1].get("correlation_id").is_none());

    let lines = text.lines();
    assert!(
        lines[0].contains("legacy::db: query took 12 ms"),
        "{}",
        lines[0]
    );
    let f = logfmt(&lines[0]);
    assert_eq!(f["correlation_id"], "req-log");
    assert_eq!(f["user.id"], "alice");
    assert_eq!(f["tenant_id"], "acme");
}
