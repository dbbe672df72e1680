//! Heap allocations on the hot paths, counted with an instrumented global allocator.
//! (Its own test binary with one test, so that no other test allocates meanwhile.)

use std::alloc::System;
use std::hint::black_box;

use http::HeaderMap;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use threadline::codec::{Baggage, TraceParent};
use threadline::format::{
    B3Format, BaggageFormat, CloudTraceFormat, Composite, DatadogFormat, Format, JaegerFormat,
    OtFormat, TraceContextFormat, XRayFormat,
};
use threadline::{Context, Policy, Trust};

mod fixtures;
use fixtures::request;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn allocations(mut f: impl FnMut()) -> usize {
    f(); // warm-up: one-time statics, and header bytes turned shared as a server's are
    let region = Region::new(GLOBAL);
    f();
    region.change().allocations
}

#[test]
fn hot_paths_allocate_as_documented() {
    // traceparent decode + encode: zero allocations.
    let tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let n = allocations(|| {
        let parsed = TraceParent::decode(black_box(tp)).unwrap();
        black_box(parsed.child().encode());
    });
    assert_eq!(n, 0, "traceparent decode + encode");

    // baggage pass-through: validate and keep the received value, copy it out.
    let req = request();
    let mut out = HeaderMap::with_capacity(16);
    let n = allocations(|| {
        let b = Baggage::from_header(&req["baggage"], 64, 8192).unwrap();
        out.insert("baggage", b.header_value().clone());
    });
    assert_eq!(n, 0, "baggage pass-through");

    // baggage parse on demand: no allocation unless a value needs percent-decoding.
    let b = Baggage::from_header(&req["baggage"], 64, 8192).unwrap();
    let n = allocations(|| {
        for m in b.iter() {
            black_box((m.key(), m.raw_value(), m.properties().count()));
        }
    });
    assert_eq!(n, 0, "baggage member iteration");

    // capture 5 configured headers of 15 + inject into a pre-sized map: one allocation,
    // the shared context itself.
    let policy = Policy::builder()
        .header("x-tenant-id")
        .header("x-user-id")
        .header("x-client")
        .w3c(false)
        .build()
        .unwrap();
    let mut out = HeaderMap::with_capacity(16);
    let n = allocations(|| {
        out.clear();
        let c = policy.capture(&req, Trust::Trusted);
        c.context.inject(&mut out);
    });
    assert_eq!(
        out.len(),
        5,
        "correlation id, baggage and three custom headers forwarded"
    );
    assert_eq!(n, 1, "capture + inject of 5 pass-through headers");

    // With W3C trace context on, the child traceparent for the call is one more
    // allocation (a new header value must be made for each call).
    let policy = Policy::builder()
        .header("x-tenant-id")
        .header("x-user-id")
        .header("x-client")
        .build()
        .unwrap();
    let n = allocations(|| {
        out.clear();
        let c = policy.capture(&req, Trust::Trusted);
        c.context.inject(&mut out);
    });
    assert_eq!(n, 2, "context + the call's traceparent value");

    // scope + current: no allocation beyond the future itself (none here: it is on the stack).
    let ctx = policy.capture(&req, Trust::Trusted).context;
    let n = allocations(|| {
        let c = ctx.clone();
        c.sync_scope(|| {
            black_box(Context::current());
            Context::with_current(|c| black_box(c.correlation_id().is_some()));
        });
    });
    assert_eq!(n, 0, "sync scope + current");

    // Every trace format decodes without allocating, alone or through a composite that
    // tries all of them (values borrowed from the carrier, baggage read on demand).
    let mut inbound = req.clone();
    for (name, value) in [
        (
            "x-amzn-trace-id",
            "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1",
        ),
        (
            "x-cloud-trace-context",
            "4bf92f3577b34da6a3ce929d0e0e4736/6458327837226053495;o=1",
        ),
        (
            "uber-trace-id",
            "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1",
        ),
        ("uberctx-user", "alice%20smith"),
        ("x-datadog-trace-id", "11803532876627986230"),
        ("x-datadog-parent-id", "67667974448284343"),
        ("x-datadog-sampling-priority", "1"),
        ("x-datadog-tags", "_dd.p.tid=4bf92f3577b34da6"),
        ("ot-tracer-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("ot-tracer-spanid", "00f067aa0ba902b7"),
        ("ot-baggage-tenant", "acme"),
        ("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"),
    ] {
        inbound.insert(http::HeaderName::from_static(name), fixtures::shared(value));
    }
    let formats: [(&str, &dyn Format); 8] = [
        ("w3c", &TraceContextFormat),
        ("b3", &B3Format::single()),
        ("google cloud", &CloudTraceFormat),
        ("x-ray", &XRayFormat),
        ("jaeger", &JaegerFormat),
        ("datadog", &DatadogFormat),
        ("ot", &OtFormat),
        ("baggage", &BaggageFormat),
    ];
    for (name, f) in formats {
        let n = allocations(|| {
            black_box(f.decode(black_box(&inbound)).ok());
        });
        assert_eq!(n, 0, "{name} decode");
    }
    let composite = Composite::new()
        .read(TraceContextFormat)
        .read(B3Format::single())
        .read(CloudTraceFormat)
        .read(XRayFormat)
        .read(JaegerFormat)
        .read(DatadogFormat)
        .read(OtFormat)
        .read(BaggageFormat);
    let n = allocations(|| {
        let d = composite.decode(black_box(&inbound));
        black_box((&d.parts, d.report.len()));
    });
    assert_eq!(
        n, 0,
        "composite decode of every format (all naming one trace)"
    );
    let d = composite.decode(&inbound);
    assert!(d.report.is_empty(), "{:?}", d.report);
    assert_eq!(
        d.trace_from,
        Some(threadline::codec::Codec::B3),
        "no traceparent: B3 is the first reader with a trace"
    );
}
