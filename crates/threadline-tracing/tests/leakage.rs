//! No context leaks between requests: not on a reused thread one request after
//! another, not between thousands of concurrent tasks on two worker threads — asserted
//! on the log output itself.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Capture, block_on, logfmt, request, runtime};
use serde_json::Value;
use threadline::Context;
use tracing::Dispatch;
use tracing_subscriber::prelude::*;

/// The context-field keys of a JSON event (everything the formatter added).
fn context_keys(e: &Value) -> BTreeSet<String> {
    e.as_object()
        .unwrap()
        .keys()
        .filter(|k| {
            !matches!(
                k.as_str(),
                "timestamp" | "level" | "fields" | "target" | "span" | "spans"
            )
        })
        .cloned()
        .collect()
}

#[test]
fn two_requests_one_after_another_on_the_same_thread() {
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
        // One thread runs everything, as a reused worker thread would.
        let rt = runtime(&dispatch, 0);
        let thread = std::thread::current().id();
        block_on(&rt, &dispatch, async {
            request("req-A", "tenant-a")
                .scope(async {
                    threadline::bind("user.id", "alice");
                    threadline::bind("organisation.id", "org-a");
                    tracing::info!(req = "A", "first request");
                })
                .await;
            assert_eq!(std::thread::current().id(), thread);
            // The second request: different headers, nothing bound.
            let mut h = http::HeaderMap::new();
            h.insert("x-correlation-id", "req-B".parse().unwrap());
            common::policy()
                .capture(&h, threadline::Trust::Trusted)
                .context
                .scope(async {
                    tracing::info!(req = "B", "second request");
                })
                .await;
            tracing::info!(req = "none", "between requests");
        });
        let rows: Vec<BTreeMap<String, String>> = if json {
            out.json()
                .iter()
                .map(|e| {
                    let mut m: BTreeMap<String, String> = context_keys(e)
                        .into_iter()
                        .map(|k| (k.clone(), e[&k].as_str().unwrap().to_owned()))
                        .collect();
                    m.insert("req".into(), e["fields"]["req"].as_str().unwrap().into());
                    m
                })
                .collect()
        } else {
            out.lines()
                .iter()
                .map(|l| {
                    logfmt(l)
                        .into_iter()
                        .map(|(k, v)| (k, v.trim_matches('"').to_owned()))
                        .collect()
                })
                .collect()
        };
        assert_eq!(rows.len(), 3);
        let a = &rows[0];
        assert_eq!(a["req"], "A");
        assert_eq!(a["correlation_id"], "req-A");
        assert_eq!(a["user.id"], "alice");
        let b = &rows[1];
        assert_eq!(b["req"], "B");
        assert_eq!(b["correlation_id"], "req-B");
        let keys: BTreeSet<&str> = b.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["correlation_id", "req", "span_id", "trace_id"]),
            "json={json}: stale fields in {b:?}"
        );
        assert_ne!(b["trace_id"], a["trace_id"], "a new root trace");
        let none = &rows[2];
        assert_eq!(
            none.keys().map(String::as_str).collect::<Vec<_>>(),
            ["req"],
            "json={json}: outside any scope: {none:?}"
        );
    }
}

const TASKS: usize = 2_500;

/// 2,500 concurrent requests on a 2-worker runtime. Each yields, binds a field midway,
/// spawns a child that yields again, sometimes a blocking task, and lets a plain
/// `tokio::spawn` (no context hand-over) log too. Every line must carry its own task's
/// ids and nothing else.
#[test]
fn thousands_of_concurrent_tasks_each_line_carries_its_own_ids_only() {
    let out = Capture::new();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(threadline_tracing::json_layer().with_writer(out.clone())),
    );
    let rt = runtime(&dispatch, 2);
    let expected_traces = block_on(&rt, &dispatch, async {
        let mut handles = Vec::with_capacity(TASKS);
        let mut traces = Vec::with_capacity(TASKS);
        for i in 0..TASKS {
            let mut h = http::HeaderMap::new();
            h.insert("x-correlation-id", format!("req-{i}").parse().unwrap());
            h.insert("x-tenant-id", format!("t-{i}").parse().unwrap());
            let ctx = common::policy()
                .capture(&h, threadline::Trust::Trusted)
                .context;
            traces.push(ctx.trace_id().unwrap().to_string());
            handles.push(tokio::spawn(ctx.scope(async move {
                tracing::info!(task = i, phase = "start");
                tokio::task::yield_now().await;
                threadline::bind("user.id", format!("u-{i}"));
                tracing::info!(task = i, phase = "bound");
                let child = threadline::spawn(async move {
                    tokio::task::yield_now().await;
                    tracing::info!(task = i, phase = "child");
                    tokio::task::yield_now().await;
                    tracing::info!(task = i, phase = "child.late");
                });
                if i % 100 == 0 {
                    threadline::spawn_blocking(move || {
                        tracing::info!(task = i, phase = "blocking");
                    })
                    .await
                    .unwrap();
                }
                if i % 250 == 0 {
                    // No hand-over: this task must log without any context.
                    tokio::spawn(async move {
                        tracing::info!(task = i, phase = "plain");
                    })
                    .await
                    .unwrap();
                }
                tokio::task::yield_now().await;
                tracing::info!(task = i, phase = "end");
                child.await.unwrap();
                assert_eq!(
                    Context::current().correlation_id().unwrap().as_str(),
                    format!("req-{i}")
                );
            })));
        }
        for h in handles {
            h.await.unwrap();
        }
        traces
    });

    let events = out.json();
    let mut per_task: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for e in &events {
        per_task
            .entry(e["fields"]["task"].as_u64().unwrap())
            .or_default()
            .push(e);
    }
    assert_eq!(per_task.len(), TASKS);
    let with_ids: BTreeSet<&str> =
        BTreeSet::from(["correlation_id", "span_id", "tenant_id", "trace_id"]);
    let with_user: BTreeSet<&str> = BTreeSet::from([
        "correlation_id",
        "span_id",
        "tenant_id",
        "trace_id",
        "user.id",
    ]);
    let mut lines = 0;
    for (i, events) in &per_task {
        let trace = &expected_traces[*i as usize];
        for e in events {
            lines += 1;
            let phase = e["fields"]["phase"].as_str().unwrap();
            let keys = context_keys(e);
            let keys: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
            match phase {
                "plain" => {
                    assert!(keys.is_empty(), "task {i}: plain tokio::spawn got {e}");
                    continue;
                }
                "start" => assert_eq!(keys, with_ids, "task {i}: {e}"),
                _ => assert_eq!(keys, with_user, "task {i} {phase}: {e}"),
            }
            assert_eq!(e["correlation_id"], format!("req-{i}"), "{e}");
            assert_eq!(e["tenant_id"], format!("t-{i}"), "{e}");
            if phase != "start" {
                assert_eq!(e["user.id"], format!("u-{i}"), "{e}");
            }
            assert_eq!(e["trace_id"], trace.as_str(), "task {i}: its own trace");
        }
        let phases: BTreeSet<&str> = events
            .iter()
            .map(|e| e["fields"]["phase"].as_str().unwrap())
            .collect();
        for p in ["start", "bound", "child", "child.late", "end"] {
            assert!(phases.contains(p), "task {i} lost its {p} line");
        }
    }
    // All traces are distinct: no two tasks share one.
    let traces: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e["trace_id"].as_str())
        .collect();
    assert_eq!(traces.len(), TASKS);
    assert_eq!(lines, events.len());
    assert!(lines >= TASKS * 5);
}
