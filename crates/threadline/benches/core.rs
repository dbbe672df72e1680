//! Core hot paths against their peers, measured in the same run.
//!
//! `cargo bench -p threadline --bench core` (see BENCHMARKS.md for the table).

use std::collections::HashMap;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use threadline::codec::{Baggage, TraceParent};
use threadline::{Context, Policy, Trust, names};

#[path = "../tests/fixtures/mod.rs"]
mod fixtures;
use fixtures::{BAGGAGE, TRACEPARENT as TP, request, shared};

fn traceparent(c: &mut Criterion) {
    let mut g = c.benchmark_group("traceparent extract+inject");
    let mut inbound = HeaderMap::new();
    inbound.insert("traceparent", shared(TP));
    g.bench_function("threadline codec (decode + child + encode)", |b| {
        b.iter(|| {
            // Threadline looks headers up by a prebuilt `HeaderName`, as its capture does.
            let v = black_box(&inbound).get(&names::TRACEPARENT).unwrap();
            let tp = TraceParent::decode(v.as_bytes()).unwrap();
            black_box(tp.child().encode());
        })
    });
    let ts = shared("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
    g.bench_function("threadline tracestate validate (2 members)", |b| {
        b.iter(|| black_box(threadline::codec::TraceState::from_header(black_box(&ts))))
    });
    let policy = Policy::builder().baggage(false).build().unwrap();
    g.bench_function("threadline capture + inject (HeaderMap)", |b| {
        let mut out = HeaderMap::with_capacity(8);
        b.iter(|| {
            out.clear();
            let ctx = policy.capture(black_box(&inbound), Trust::Trusted).context;
            ctx.inject(&mut out);
            black_box(&out);
        })
    });
    let otel = TraceContextPropagator::new();
    g.bench_function("opentelemetry TraceContextPropagator", |b| {
        let mut out = HeaderMap::with_capacity(8);
        b.iter(|| {
            out.clear();
            let cx = otel.extract(&HeaderExtractor(black_box(&inbound)));
            otel.inject_context(&cx, &mut HeaderInjector(&mut out));
            black_box(&out);
        })
    });
    g.finish();
}

fn baggage(c: &mut Criterion) {
    let mut g = c.benchmark_group("baggage (5 entries)");
    let mut inbound = HeaderMap::new();
    inbound.insert("baggage", shared(BAGGAGE));
    g.bench_function("threadline pass-through (validate + forward)", |b| {
        let mut out = HeaderMap::with_capacity(8);
        b.iter(|| {
            let v = black_box(&inbound).get(&names::BAGGAGE).unwrap();
            let bag = Baggage::from_header(v, 64, 8192).unwrap();
            out.insert(names::BAGGAGE, bag.header_value().clone());
            black_box(&out);
        })
    });
    g.bench_function("threadline validate + parse (all members, decoded)", |b| {
        b.iter(|| {
            let v = black_box(&inbound).get(&names::BAGGAGE).unwrap();
            let bag = Baggage::from_header(v, 64, 8192).unwrap();
            for m in bag.iter() {
                black_box((m.key(), m.value()));
            }
        })
    });
    let captured = Baggage::from_header(&inbound["baggage"], 64, 8192).unwrap();
    g.bench_function("threadline parse on demand of captured baggage", |b| {
        b.iter(|| {
            for m in black_box(&captured).iter() {
                black_box((m.key(), m.value()));
            }
        })
    });
    let otel = BaggagePropagator::new();
    g.bench_function("opentelemetry BaggagePropagator extract + inject", |b| {
        let mut out = HeaderMap::with_capacity(8);
        b.iter(|| {
            out.clear();
            let cx = otel.extract(&HeaderExtractor(black_box(&inbound)));
            otel.inject_context(&cx, &mut HeaderInjector(&mut out));
            black_box(&out);
        })
    });
    g.bench_function("opentelemetry BaggagePropagator extract (parse)", |b| {
        b.iter(|| black_box(otel.extract(&HeaderExtractor(black_box(&inbound)))))
    });
    g.finish();
}

fn capture_inject(c: &mut Criterion) {
    let mut g = c.benchmark_group("capture 5 of 15 headers + inject");
    let req = request();
    let names = fixtures::context_names();
    g.bench_function("hand-written direct copy into a pre-sized map", |b| {
        let mut out = HeaderMap::with_capacity(16);
        b.iter(|| {
            out.clear();
            for n in &names {
                if let Some(v) = black_box(&req).get(n) {
                    out.insert(n.clone(), v.clone());
                }
            }
            black_box(&out);
        })
    });
    g.bench_function("via an intermediate HeaderMap", |b| {
        let mut out = HeaderMap::with_capacity(16);
        b.iter(|| {
            out.clear();
            let mut mid = HeaderMap::new();
            for n in &names {
                if let Some(v) = black_box(&req).get(n) {
                    mid.insert(n.clone(), v.clone());
                }
            }
            for (k, v) in &mid {
                out.insert(k.clone(), v.clone());
            }
            black_box(&out);
        })
    });
    let pass_through = fixtures::pass_through_policy();
    g.bench_function("threadline capture + inject (pass-through headers)", |b| {
        let mut out = HeaderMap::with_capacity(16);
        b.iter(|| {
            out.clear();
            let ctx = pass_through
                .capture(black_box(&req), Trust::Trusted)
                .context;
            ctx.inject(&mut out);
            black_box(&out);
        })
    });
    let with_w3c = Policy::builder()
        .header("x-tenant-id")
        .header("x-user-id")
        .header("x-client")
        .build()
        .unwrap();
    g.bench_function(
        "threadline capture + inject (+ new trace, child traceparent)",
        |b| {
            let mut out = HeaderMap::with_capacity(16);
            b.iter(|| {
                out.clear();
                let ctx = with_w3c.capture(black_box(&req), Trust::Trusted).context;
                ctx.inject(&mut out);
                black_box(&out);
            })
        },
    );
    g.finish();
}

fn poll_once<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = TaskCx::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("bench futures complete in one poll"),
    }
}

tokio::task_local! {
    static BASELINE: Arc<HashMap<String, String>>;
}

fn scope_current(c: &mut Criterion) {
    let mut g = c.benchmark_group("scope + read current");
    let ctx = Policy::default().new_root();
    let arc = Arc::new(HashMap::from([(
        "x-correlation-id".to_owned(),
        "id".to_owned(),
    )]));
    g.bench_function("tokio task_local! with an Arc (baseline)", |b| {
        b.iter(|| {
            poll_once(BASELINE.scope(arc.clone(), async {
                black_box(BASELINE.with(|a| a.clone()));
            }))
        })
    });
    g.bench_function("threadline scope + Context::current()", |b| {
        b.iter(|| {
            poll_once(ctx.clone().scope(async {
                black_box(Context::current());
            }))
        })
    });
    g.bench_function("threadline scope + Context::with_current (no clone)", |b| {
        b.iter(|| {
            poll_once(ctx.clone().scope(async {
                black_box(Context::with_current(|c| c.correlation_id().is_some()));
            }))
        })
    });
    let otel_cx = opentelemetry::Context::new().with_value(arc.clone());
    g.bench_function("opentelemetry Context::attach + current", |b| {
        b.iter(|| {
            let _guard = otel_cx.clone().attach();
            black_box(opentelemetry::Context::current());
        })
    });
    g.finish();
}

#[allow(missing_docs)]
mod groups {
    use super::*;
    criterion_group!(benches, traceparent, baggage, capture_inject, scope_current);
}
criterion_main!(groups::benches);
