//! A loop over one hot path, for a profiler (`valgrind --tool=callgrind`, `perf record`)
//! rather than for timing: criterion's harness would dominate such a profile.
//!
//! ```text
//! cargo build --release -p threadline --example profile_capture
//! valgrind --tool=callgrind target/release/examples/profile_capture server 100000
//! ```
//!
//! Modes: `copy` (the hand-written copy of five headers the core bench compares
//! against), `capture-inject` (capture five of fifteen headers and inject them, as in
//! that bench), `server` (capture of the seven-header request of the HTTP benches, W3C
//! on), `traceparent` (decode one value), `traceparent-encode` (encode one),
//! `correlation-id`, `tracestate`, `baggage` (validate that request's value).

use std::hint::black_box;

use http::HeaderMap;
use threadline::codec::{Baggage, CorrelationId, TraceParent, TraceState};
use threadline::{Policy, Trust};

#[path = "../tests/fixtures/mod.rs"]
mod fixtures;
use fixtures::{TRACEPARENT as TP, shared};

fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(16);
    for (k, v) in pairs {
        h.insert(*k, shared(v));
    }
    h
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "server".into());
    let n: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);

    let fifteen = fixtures::request();
    let seven = map(&[
        ("x-correlation-id", "0190b6a8-5c0e-7cc1-9f6e-6b7c2ad1f0a3"),
        ("traceparent", TP),
        ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        (
            "baggage",
            "userId=alice,serverNode=DF%2028,isProduction=false",
        ),
        ("x-tenant-id", "acme"),
        ("host", "127.0.0.1:8080"),
        ("user-agent", "wrk"),
    ]);
    let names = fixtures::context_names();
    let pass_through = fixtures::pass_through_policy();
    let server = Policy::builder()
        .header("x-tenant-id")
        .build()
        .expect("valid policy");

    let tp = TraceParent::decode(TP.as_bytes()).expect("a valid traceparent");
    let value = |name: &str| seven[name].as_bytes().to_vec();
    let (id, state, baggage) = (
        value("x-correlation-id"),
        value("tracestate"),
        value("baggage"),
    );
    let mut out = HeaderMap::with_capacity(16);
    for _ in 0..n {
        match mode.as_str() {
            "copy" => {
                out.clear();
                for name in &names {
                    if let Some(v) = black_box(&fifteen).get(name) {
                        out.insert(name.clone(), v.clone());
                    }
                }
            }
            "capture-inject" => {
                out.clear();
                let ctx = pass_through
                    .capture(black_box(&fifteen), Trust::Trusted)
                    .context;
                ctx.inject(&mut out);
            }
            "server" => {
                black_box(server.capture(black_box(&seven), Trust::Trusted));
            }
            "traceparent" => {
                black_box(TraceParent::decode(black_box(TP.as_bytes())).ok());
            }
            "traceparent-encode" => {
                black_box(black_box(&tp).encode());
            }
            "correlation-id" => {
                black_box(CorrelationId::validate(black_box(&id), 128).is_ok());
            }
            "tracestate" => {
                black_box(TraceState::validate(black_box(&state)).ok());
            }
            "baggage" => {
                black_box(Baggage::validate(black_box(&baggage), 64, 8192).ok());
            }
            other => {
                eprintln!(
                    "unknown mode {other:?}: copy, capture-inject, server, traceparent, \
                     traceparent-encode, correlation-id, tracestate, baggage"
                );
                std::process::exit(2);
            }
        }
        black_box(&out);
    }
}
