//! A loop for a profiler: `profile_contrib <format> <threadline|otel>[-encode] [n]`,
//! format one of `google-cloud`, `jaeger`, `datadog`.
//!
//! ```text
//! cargo build --release --example profile_contrib
//! valgrind --tool=callgrind target/release/examples/profile_contrib jaeger otel 100000
//! ```

use http::HeaderMap;
use threadline_bench_contrib_otel_032::*;

fn main() {
    let mut args = std::env::args().skip(1);
    let format = args
        .next()
        .unwrap_or_else(|| "jaeger".into())
        .replace('-', " ");
    let who = args.next().unwrap_or_else(|| "threadline".into());
    let n: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let case = cases()
        .into_iter()
        .find(|c| c.name == format)
        .expect("a format: google-cloud, jaeger or datadog");
    let (h, f, p) = (&case.headers, &*case.threadline, &*case.otel);
    let mut out = HeaderMap::with_capacity(8);
    for _ in 0..n {
        match who.as_str() {
            "threadline" => threadline_decode(f, h),
            "threadline-encode" => threadline_decode_encode(f, h, &mut out),
            "otel" => otel_decode(p, h),
            "otel-encode" => otel_decode_encode(p, h, &mut out),
            other => panic!("unknown side {other}"),
        }
    }
}
