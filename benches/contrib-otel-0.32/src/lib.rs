//! The cases shared by the bench and the profiling example: for each format, the
//! inbound headers (the same values as `crates/threadline/benches/formats.rs`),
//! Threadline's format and the OpenTelemetry 0.32 contrib propagator.
//!
//! All three contrib propagators are deprecated upstream (Jaeger propagation in favour
//! of W3C, the Datadog and Stackdriver crates in favour of dd-trace-rs and OTLP); they
//! are still what a Rust service on OpenTelemetry uses for these formats today.
#![allow(deprecated)]

use std::hint::black_box;

use http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use threadline::format::{CloudTraceFormat, DatadogFormat, Format, JaegerFormat};

/// One format with its peer.
pub struct Case {
    /// The format's name.
    pub name: &'static str,
    /// The inbound headers.
    pub headers: HeaderMap,
    /// Threadline's format.
    pub threadline: Box<dyn Format>,
    /// The contrib propagator and its crate.
    pub otel: Box<dyn TextMapPropagator + Send + Sync>,
    /// Which propagator that is.
    pub otel_name: &'static str,
}

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

/// Every case.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "google cloud",
            headers: headers(&[(
                "x-cloud-trace-context",
                "105445aa7843bc8bf206b12000100000/6458327837226053495;o=1",
            )]),
            threadline: Box::new(CloudTraceFormat),
            otel: Box::new(
                opentelemetry_stackdriver::google_trace_context_propagator::GoogleTraceContextPropagator::default(),
            ),
            otel_name: "opentelemetry-stackdriver GoogleTraceContextPropagator",
        },
        Case {
            name: "jaeger",
            headers: headers(&[(
                "uber-trace-id",
                "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1",
            )]),
            threadline: Box::new(JaegerFormat),
            otel: Box::new(opentelemetry_jaeger_propagator::Propagator::new()),
            otel_name: "opentelemetry-jaeger-propagator Propagator",
        },
        Case {
            name: "datadog",
            headers: headers(&[
                ("x-datadog-trace-id", "11803532876627986230"),
                ("x-datadog-parent-id", "67667974448284343"),
                ("x-datadog-sampling-priority", "1"),
            ]),
            threadline: Box::new(DatadogFormat),
            otel: Box::new(opentelemetry_datadog::DatadogPropagator::new()),
            otel_name: "opentelemetry-datadog DatadogPropagator",
        },
    ]
}

/// Threadline: decode.
pub fn threadline_decode(f: &dyn Format, h: &HeaderMap) {
    let parts = f.decode(black_box(h)).expect("valid input");
    black_box(&parts);
}

/// Threadline: decode, then encode into a cleared map.
pub fn threadline_decode_encode(f: &dyn Format, h: &HeaderMap, out: &mut HeaderMap) {
    out.clear();
    let parts = f.decode(black_box(h)).expect("valid input");
    f.encode(&parts, out);
    black_box(&out);
}

/// The peer: extract.
pub fn otel_decode(p: &dyn TextMapPropagator, h: &HeaderMap) {
    black_box(p.extract(&HeaderExtractor(black_box(h))));
}

/// The peer: extract, then inject into a cleared map.
pub fn otel_decode_encode(p: &dyn TextMapPropagator, h: &HeaderMap, out: &mut HeaderMap) {
    out.clear();
    let cx = p.extract(&HeaderExtractor(black_box(h)));
    p.inject_context(&cx, &mut HeaderInjector(out));
    black_box(&out);
}
