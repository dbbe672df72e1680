//! The OpenTelemetry bridge (feature `opentelemetry`): real OpenTelemetry propagators
//! used as Threadline formats agree with Threadline's own formats on the same headers,
//! in both directions, and sit in a composite like any other format.

#![cfg(feature = "opentelemetry")]

use http::HeaderMap;
use opentelemetry_aws::trace::XrayPropagator;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use threadline::codec::{Codec, ErrorKind, SpanId, TraceId};
use threadline::format::{
    BaggageFormat, BaggageParts, Composite, Format, OtelFormat, Parts, Sampling,
    TraceContextFormat, TraceParts, XRayFormat,
};

fn trace_of(f: &dyn Format, h: &HeaderMap) -> (TraceId, Option<SpanId>, bool) {
    let t = f.decode(h).expect("decodes").trace.expect("a trace");
    (t.trace_id, t.span_id, t.sampling.is_sampled())
}

#[test]
fn an_otel_propagator_reads_and_writes_like_the_native_format() {
    let otel_xray = OtelFormat::new("otel-x-ray", XrayPropagator::default());
    let otel_w3c = OtelFormat::new("otel-w3c", TraceContextPropagator::new());
    let pairs: [(&dyn Format, &dyn Format); 2] =
        [(&otel_xray, &XRayFormat), (&otel_w3c, &TraceContextFormat)];
    for _ in 0..50 {
        let t = TraceParts::new(
            TraceId::random(),
            Some(SpanId::random()),
            Sampling::from_bool(fastrand_bool()),
        );
        for (otel, native) in pairs {
            // Written by the native format, read by both.
            let mut h = HeaderMap::new();
            native.encode(&Parts::trace(t.clone()), &mut h);
            assert_eq!(
                trace_of(otel, &h),
                trace_of(native, &h),
                "{:?}: {h:?}",
                otel.codec()
            );
            // Written through the propagator, read by the native format.
            let mut h = HeaderMap::new();
            otel.encode(&Parts::trace(t.clone()), &mut h);
            assert_eq!(
                trace_of(native, &h),
                (t.trace_id, t.span_id, t.sampling.is_sampled()),
                "{:?}: {h:?}",
                otel.codec()
            );
        }
    }
}

fn fastrand_bool() -> bool {
    SpanId::random().to_bytes()[0] & 1 == 1
}

#[test]
fn baggage_crosses_the_bridge_and_refusals_are_reported() {
    let otel = OtelFormat::new("otel-baggage", BaggagePropagator::new());
    let pairs = [("user", "alice smith"), ("tenant", "acme")];
    let parts = Parts::new(None, Some(BaggageParts::pairs(&pairs)));
    let mut h = HeaderMap::new();
    otel.encode(&parts, &mut h);
    let mut got = Vec::new();
    BaggageFormat
        .decode(&h)
        .unwrap()
        .baggage
        .unwrap()
        .for_each(&mut |k, v| got.push(format!("{k}={v}")));
    got.sort();
    assert_eq!(got, ["tenant=acme", "user=alice smith"], "{h:?}");

    // A propagator gives no reason: present but unreadable headers are Refused.
    let otel_xray = OtelFormat::new("otel-x-ray", XrayPropagator::default());
    let mut bad = HeaderMap::new();
    bad.insert("x-amzn-trace-id", "Root=garbage".parse().unwrap());
    let r = otel_xray.decode(&bad).unwrap_err();
    assert_eq!(r.header(), "x-amzn-trace-id");
    assert_eq!(r.error().codec(), Codec::Custom("otel-x-ray"));
    assert_eq!(r.error().kind(), ErrorKind::Refused);

    // In a composite like any format.
    let c = Composite::new().read(otel_xray).read(TraceContextFormat);
    let mut h = HeaderMap::new();
    h.insert(
        "x-amzn-trace-id",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
            .parse()
            .unwrap(),
    );
    let d = c.decode(&h);
    assert_eq!(d.trace_from, Some(Codec::Custom("otel-x-ray")));
    assert_eq!(
        d.parts.trace.unwrap().trace_id.to_string(),
        "5759e988bd862e3fe1be46a994272793"
    );
}
