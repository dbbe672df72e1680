//! A loop over one trace format's decode (and encode), for a profiler rather than for
//! timing; `otel-x-ray` runs `opentelemetry-aws`'s propagator over the same header.
//!
//! ```text
//! cargo build --release -p threadline --example profile_formats
//! valgrind --tool=callgrind target/release/examples/profile_formats x-ray 100000
//! ```
//!
//! Modes: `x-ray`, `google-cloud`, `jaeger`, `datadog`, `ot` (decode), the same with
//! `-encode` (decode + encode into a cleared map), `otel-x-ray`, `otel-x-ray-encode`.

use std::hint::black_box;

use http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_aws::trace::XrayPropagator;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use threadline::format::{
    CloudTraceFormat, DatadogFormat, Format, JaegerFormat, OtFormat, XRayFormat,
};

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

fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(16);
    for (k, v) in COMMON.iter().chain(pairs) {
        let b = bytes::Bytes::from(v.as_bytes().to_vec());
        let _ = b.clone();
        h.insert(
            *k,
            HeaderValue::from_maybe_shared(b).expect("a header value"),
        );
    }
    h
}

const XRAY: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "x-ray".into());
    let n: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let (base, encode) = match mode.strip_suffix("-encode") {
        Some(base) => (base.to_owned(), true),
        None => (mode.clone(), false),
    };
    let mut out = HeaderMap::with_capacity(8);
    if let Some(rest) = base.strip_prefix("otel-") {
        assert_eq!(rest, "x-ray", "only X-Ray has an opentelemetry 0.33 peer");
        let h = map(&[("x-amzn-trace-id", XRAY)]);
        let p = XrayPropagator::default();
        for _ in 0..n {
            out.clear();
            let cx = p.extract(&HeaderExtractor(black_box(&h)));
            if encode {
                p.inject_context(&cx, &mut HeaderInjector(&mut out));
            }
            black_box((&cx, &out));
        }
        return;
    }
    let (h, f): (HeaderMap, Box<dyn Format>) = match base.as_str() {
        "x-ray" => (map(&[("x-amzn-trace-id", XRAY)]), Box::new(XRayFormat)),
        "google-cloud" => (
            map(&[(
                "x-cloud-trace-context",
                "105445aa7843bc8bf206b12000100000/6458327837226053495;o=1",
            )]),
            Box::new(CloudTraceFormat),
        ),
        "jaeger" => (
            map(&[(
                "uber-trace-id",
                "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1",
            )]),
            Box::new(JaegerFormat),
        ),
        "datadog" => (
            map(&[
                ("x-datadog-trace-id", "11803532876627986230"),
                ("x-datadog-parent-id", "67667974448284343"),
                ("x-datadog-sampling-priority", "1"),
            ]),
            Box::new(DatadogFormat),
        ),
        "ot" => (
            map(&[
                ("ot-tracer-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
                ("ot-tracer-spanid", "00f067aa0ba902b7"),
                ("ot-tracer-sampled", "true"),
            ]),
            Box::new(OtFormat),
        ),
        other => panic!("unknown mode {other}"),
    };
    for _ in 0..n {
        out.clear();
        let parts = f.decode(black_box(&h)).expect("valid input");
        if encode {
            f.encode(&parts, &mut out);
        }
        black_box((&parts, &out));
    }
}
