//! Formatting one event into a sink: plain `tracing_subscriber::fmt` (no context) vs
//! `ContextFormat` with a context of 5 fields (correlation id, trace id, span id,
//! tenant, user), and the hand-made alternative — a span carrying the same ids —
//! in the same run.
//!
//! `cargo bench -p threadline-tracing --bench format`

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use threadline::{Context, Policy, Trust};
use threadline_tracing::ContextFormat;
use tracing::Dispatch;
use tracing_subscriber::{fmt, prelude::*};

fn context() -> Context {
    let policy = Policy::builder().header("x-tenant-id").build().unwrap();
    let mut h = http::HeaderMap::new();
    h.insert("x-correlation-id", "req-7f3a9c".parse().unwrap());
    h.insert("x-tenant-id", "acme".parse().unwrap());
    h.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    policy
        .capture(&h, Trust::Trusted)
        .context
        .with_field("user.id", "alice")
}

fn event() {
    tracing::info!(order = 42, status = "paid", "order saved");
}

fn run(c: &mut Criterion, group: &str, plain: Dispatch, with_ctx: Dispatch, span: Dispatch) {
    let mut g = c.benchmark_group(group);
    g.bench_function("plain fmt, no context", |b| {
        tracing::dispatcher::with_default(&plain, || b.iter(event))
    });
    g.bench_function("ContextFormat, 5 context fields", |b| {
        tracing::dispatcher::with_default(&with_ctx, || context().sync_scope(|| b.iter(event)))
    });
    g.bench_function("plain fmt, ids in a span (hand-made)", |b| {
        tracing::dispatcher::with_default(&span, || {
            let _e = id_span().entered();
            b.iter(event)
        })
    });
    g.bench_function("ContextFormat, outside any scope", |b| {
        tracing::dispatcher::with_default(&with_ctx, || b.iter(event))
    });
    g.finish();
}

fn text(c: &mut Criterion) {
    let layer = || fmt::layer().with_ansi(false).with_writer(std::io::sink);
    run(
        c,
        "text",
        Dispatch::new(tracing_subscriber::registry().with(layer())),
        Dispatch::new(
            tracing_subscriber::registry().with(layer().event_format(ContextFormat::text())),
        ),
        Dispatch::new(tracing_subscriber::registry().with(layer())),
    );
}

fn json(c: &mut Criterion) {
    let layer = || fmt::layer().json().with_writer(std::io::sink);
    run(
        c,
        "json",
        Dispatch::new(tracing_subscriber::registry().with(layer())),
        Dispatch::new(
            tracing_subscriber::registry().with(layer().event_format(ContextFormat::json())),
        ),
        Dispatch::new(tracing_subscriber::registry().with(layer())),
    );
}

fn sanitize(c: &mut Criterion) {
    let mut g = c.benchmark_group("sanitize");
    let clean = "2026-01-01T00:00:00.000000Z  INFO app: order saved order=42 status=\"paid\" correlation_id=req-7f3a9c\n";
    g.bench_function("clean line", |b| {
        let mut line = String::with_capacity(256);
        b.iter(|| {
            line.clear();
            line.push_str(black_box(clean));
            threadline_tracing::sanitize::sanitize_line(
                &mut line,
                threadline_tracing::sanitize::LineKind::Text { keep_ansi: false },
            );
            black_box(&line);
        })
    });
    g.finish();
}

/// How an interleaved run emits its events.
#[derive(Clone, Copy)]
enum Mode {
    /// Outside any scope and span.
    Bare,
    /// Inside a threadline scope.
    Scoped,
    /// Inside a span that carries the same ids as fields (the hand-made way).
    Span,
}

fn id_span() -> tracing::Span {
    tracing::info_span!(
        "request",
        correlation_id = "req-7f3a9c",
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
        span_id = "00f067aa0ba902b7",
        tenant_id = "acme",
        user_id = "alice",
    )
}

/// Median ns per event of `rounds` interleaved batches of each dispatch, so all sides
/// see the same machine load (criterion's groups run one after the other).
fn interleaved(runs: &[(&Dispatch, Mode)], rounds: usize, batch: usize) -> Vec<f64> {
    let mut samples = vec![Vec::with_capacity(rounds); runs.len()];
    for _ in 0..rounds {
        for (i, (dispatch, mode)) in runs.iter().enumerate() {
            let t = tracing::dispatcher::with_default(dispatch, || {
                let run = || {
                    let start = std::time::Instant::now();
                    for _ in 0..batch {
                        event();
                    }
                    start.elapsed()
                };
                match mode {
                    Mode::Bare => run(),
                    Mode::Scoped => context().sync_scope(run),
                    Mode::Span => id_span().in_scope(run),
                }
            });
            samples[i].push(t.as_nanos() as f64 / batch as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

/// Same-run ratios, printed next to criterion's numbers.
fn ratios(_: &mut Criterion) {
    let text = || fmt::layer().with_ansi(false).with_writer(std::io::sink);
    let json = || fmt::layer().json().with_writer(std::io::sink);
    let sets = [
        (
            "text",
            Dispatch::new(tracing_subscriber::registry().with(text())),
            Dispatch::new(
                tracing_subscriber::registry().with(
                    text()
                        .fmt_fields(threadline_tracing::DedupFields::default())
                        .event_format(ContextFormat::text()),
                ),
            ),
        ),
        (
            "json",
            Dispatch::new(tracing_subscriber::registry().with(json())),
            Dispatch::new(
                tracing_subscriber::registry()
                    .with(threadline_tracing::json_layer().with_writer(std::io::sink)),
            ),
        ),
    ];
    for (name, plain, with_ctx) in &sets {
        let m = interleaved(
            &[
                (plain, Mode::Bare),
                (with_ctx, Mode::Scoped),
                (with_ctx, Mode::Bare),
                (plain, Mode::Span),
            ],
            201,
            2_000,
        );
        println!(
            "ratio {name}: plain fmt {:.0} ns/event | ContextFormat, 5 context fields {:.0} ns ({:.2}x) \
             | ContextFormat, outside any scope {:.0} ns ({:.2}x) \
             | plain fmt, the 5 ids in a span {:.0} ns ({:.2}x) [medians of 201 interleaved rounds]",
            m[0],
            m[1],
            m[1] / m[0],
            m[2],
            m[2] / m[0],
            m[3],
            m[3] / m[0],
        );
    }
}

criterion_group!(benches, text, json, sanitize, ratios);
criterion_main!(benches);
