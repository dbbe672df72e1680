//! Threadline's Google Cloud, Jaeger and Datadog formats against the OpenTelemetry 0.32
//! contrib propagators, same run. Prints the allocations of one call of each first.

use std::alloc::System;

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use threadline_bench_contrib_otel_032::*;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn allocations(mut f: impl FnMut()) -> usize {
    f();
    let region = Region::new(GLOBAL);
    f();
    region.change().allocations
}

fn contrib(c: &mut Criterion) {
    let mut out = HeaderMap::with_capacity(8);
    eprintln!("allocations per call (after a warm-up call):");
    for case in cases() {
        let (h, f, p) = (&case.headers, &*case.threadline, &*case.otel);
        eprintln!(
            "  {}: threadline decode {}, decode + encode {}; {} extract {}, extract + inject {}",
            case.name,
            allocations(|| threadline_decode(f, h)),
            allocations(|| threadline_decode_encode(f, h, &mut out)),
            case.otel_name,
            allocations(|| otel_decode(p, h)),
            allocations(|| otel_decode_encode(p, h, &mut out)),
        );
    }
    for case in cases() {
        let (h, f, p) = (&case.headers, &*case.threadline, &*case.otel);
        let mut g = c.benchmark_group(format!("{} decode+encode", case.name));
        g.bench_function("threadline decode", |b| b.iter(|| threadline_decode(f, h)));
        g.bench_function("threadline decode + encode", |b| {
            b.iter(|| threadline_decode_encode(f, h, &mut out))
        });
        g.bench_function(format!("{} extract", case.otel_name), |b| {
            b.iter(|| otel_decode(p, h))
        });
        g.bench_function(format!("{} extract + inject", case.otel_name), |b| {
            b.iter(|| otel_decode_encode(p, h, &mut out))
        });
        g.finish();
    }
}

criterion_group!(benches, contrib);
criterion_main!(benches);
