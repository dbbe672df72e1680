//! Trace formats: Threadline's decode + encode of each format, against the Rust
//! OpenTelemetry contrib propagator measured in the same run where one exists for
//! opentelemetry 0.33 (`opentelemetry-aws`'s `XrayPropagator`). The contrib
//! propagators still on opentelemetry 0.32 (Datadog, Jaeger, Google Cloud) are measured
//! by the separate bench crate `benches/contrib-otel-0.32` at the repository root.
//!
//! `cargo bench -p threadline --bench formats` (see BENCHMARKS.md). Before the timed
//! runs it prints the allocations of one call of each variant, counted with an
//! instrumented global allocator.

use std::alloc::System;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_aws::trace::XrayPropagator;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use threadline::format::{
    CloudTraceFormat, DatadogFormat, Format, JaegerFormat, OtFormat, XRayFormat,
};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A header value in shared `Bytes`, as hyper hands them over.
fn shared(v: &str) -> HeaderValue {
    let b = bytes::Bytes::from(v.as_bytes().to_vec());
    let _ = b.clone();
    HeaderValue::from_maybe_shared(b).expect("a valid header value")
}

/// What a request carries besides trace context (the same ten headers in every case),
/// so that finding the format's headers costs what it costs in a real request.
const COMMON: [(&str, &str); 10] = [
    ("host", "api.example.com"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
    ),
    ("accept", "application/json"),
    ("accept-encoding", "gzip, deflate, br"),
    ("accept-language", "en-GB,en;q=0.9"),
    ("content-type", "application/json"),
    ("content-length", "348"),
    ("connection", "keep-alive"),
    ("x-forwarded-for", "203.0.113.7"),
    ("x-request-id", "0190b6a8-5c0e-7cc1-9f6e-6b7c2ad1f0a3"),
];

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in COMMON.iter().chain(pairs) {
        h.insert(*k, shared(v));
    }
    h
}

/// The inbound headers of each format (the same values the contrib bench uses).
fn inputs() -> Vec<(&'static str, HeaderMap, Box<dyn Format>)> {
    vec![
        (
            "x-ray",
            headers(&[(
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            )]),
            Box::new(XRayFormat),
        ),
        (
            "google cloud",
            headers(&[(
                "x-cloud-trace-context",
                "105445aa7843bc8bf206b12000100000/6458327837226053495;o=1",
            )]),
            Box::new(CloudTraceFormat),
        ),
        (
            "jaeger",
            headers(&[(
                "uber-trace-id",
                "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1",
            )]),
            Box::new(JaegerFormat),
        ),
        (
            "datadog",
            headers(&[
                ("x-datadog-trace-id", "11803532876627986230"),
                ("x-datadog-parent-id", "67667974448284343"),
                ("x-datadog-sampling-priority", "1"),
            ]),
            Box::new(DatadogFormat),
        ),
        (
            "ot",
            headers(&[
                ("ot-tracer-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
                ("ot-tracer-spanid", "00f067aa0ba902b7"),
                ("ot-tracer-sampled", "true"),
            ]),
            Box::new(OtFormat),
        ),
    ]
}

fn threadline_decode(f: &dyn Format, h: &HeaderMap) {
    let parts = f.decode(black_box(h)).expect("valid input");
    black_box(&parts);
}

fn threadline_decode_encode(f: &dyn Format, h: &HeaderMap, out: &mut HeaderMap) {
    out.clear();
    let parts = f.decode(black_box(h)).expect("valid input");
    f.encode(&parts, out);
    black_box(&out);
}

fn otel_decode<P: TextMapPropagator>(p: &P, h: &HeaderMap) {
    black_box(p.extract(&HeaderExtractor(black_box(h))));
}

fn otel_decode_encode<P: TextMapPropagator>(p: &P, h: &HeaderMap, out: &mut HeaderMap) {
    out.clear();
    let cx = p.extract(&HeaderExtractor(black_box(h)));
    p.inject_context(&cx, &mut HeaderInjector(out));
    black_box(&out);
}

fn allocations(mut f: impl FnMut()) -> usize {
    f();
    let region = Region::new(GLOBAL);
    f();
    region.change().allocations
}

fn print_allocations() {
    let mut out = HeaderMap::with_capacity(8);
    eprintln!("allocations per call (after a warm-up call):");
    for (name, h, f) in inputs() {
        let d = allocations(|| threadline_decode(&*f, &h));
        let de = allocations(|| threadline_decode_encode(&*f, &h, &mut out));
        eprintln!("  threadline {name}: decode {d}, decode + encode {de}");
        assert_eq!(d, 0, "{name}: decoding allocates");
    }
    let h = &inputs()[0].1;
    let p = XrayPropagator::default();
    let d = allocations(|| otel_decode(&p, h));
    let de = allocations(|| otel_decode_encode(&p, h, &mut out));
    eprintln!("  opentelemetry-aws XrayPropagator: extract {d}, extract + inject {de}");
}

fn formats(c: &mut Criterion) {
    print_allocations();
    for (name, h, f) in inputs() {
        let mut g = c.benchmark_group(format!("{name} decode+encode"));
        let mut out = HeaderMap::with_capacity(8);
        g.bench_function("threadline decode", |b| {
            b.iter(|| threadline_decode(&*f, &h))
        });
        g.bench_function("threadline decode + encode", |b| {
            b.iter(|| threadline_decode_encode(&*f, &h, &mut out))
        });
        if name == "x-ray" {
            let p = XrayPropagator::default();
            g.bench_function("opentelemetry-aws XrayPropagator extract", |b| {
                b.iter(|| otel_decode(&p, &h))
            });
            g.bench_function("opentelemetry-aws XrayPropagator extract + inject", |b| {
                b.iter(|| otel_decode_encode(&p, &h, &mut out))
            });
        }
        g.finish();
    }
}

#[allow(missing_docs)]
mod groups {
    use super::*;
    criterion_group!(benches, formats);
}
criterion_main!(groups::benches);
