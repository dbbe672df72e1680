//! With `tracing-opentelemetry`: the trace id in logs, in the OpenTelemetry spans and
//! in the outgoing `traceparent` agree.

mod common;

use common::{Capture, block_on, request, runtime};
use opentelemetry::trace::TracerProvider as _;
use serde_json::Value;
use threadline::Context;
use threadline_tracing::otel;
use tracing::{Dispatch, Instrument};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::prelude::*;

fn setup() -> (
    Capture,
    Dispatch,
    opentelemetry_sdk::trace::SdkTracerProvider,
) {
    let out = Capture::new();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(threadline_tracing::json_layer().with_writer(out.clone())),
    );
    (out, dispatch, provider)
}

fn otel_ids(span: &tracing::Span) -> (String, String) {
    use opentelemetry::trace::TraceContextExt;
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    (sc.trace_id().to_string(), sc.span_id().to_string())
}

#[test]
fn continued_trace_logs_spans_and_traceparent_agree() {
    let (out, dispatch, _provider) = setup();
    let rt = runtime(&dispatch, 0);
    let (request_ids, child_ids, outgoing, ctx_span) = block_on(&rt, &dispatch, async {
        let ctx = request("req-o", "acme");
        let span = tracing::info_span!("request");
        let ctx = otel::link_span(&span, &ctx);
        let request_ids = otel_ids(&span);
        let ctx_span = ctx.span_id().unwrap().to_string();
        let (child_ids, outgoing) = ctx
            .scope(
                async {
                    tracing::info!(step = "handler", "in the request span");
                    let child = tracing::info_span!("db");
                    let child_ids = otel_ids(&child);
                    async { tracing::info!(step = "child", "in a child span") }
                        .instrument(child)
                        .await;
                    let mut outgoing = http::HeaderMap::new();
                    otel::inject_traceparent(&mut outgoing);
                    Context::current().inject(&mut outgoing);
                    (child_ids, outgoing)
                }
                .instrument(span),
            )
            .await;
        (request_ids, child_ids, outgoing, ctx_span)
    });

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    // The OpenTelemetry span continued the caller's trace.
    assert_eq!(request_ids.0, trace);
    assert_eq!(child_ids.0, trace);
    // threadline adopted the span's id as this hop's.
    assert_eq!(ctx_span, request_ids.1);

    let events = out.json();
    let by_step = |s: &str| -> &Value { events.iter().find(|e| e["fields"]["step"] == s).unwrap() };
    let handler = by_step("handler");
    assert_eq!(handler["trace_id"], trace);
    assert_eq!(handler["span_id"], request_ids.1.as_str());
    assert_eq!(handler["correlation_id"], "req-o");
    let child = by_step("child");
    assert_eq!(child["trace_id"], trace);
    assert_eq!(child["span_id"], child_ids.1.as_str(), "the innermost span");

    // Outgoing: the same trace, and the calling span as the parent.
    let tp = outgoing["traceparent"].to_str().unwrap();
    assert_eq!(tp, format!("00-{trace}-{}-01", request_ids.1));
    assert_eq!(outgoing["x-correlation-id"], "req-o");
}

#[test]
fn new_root_adopts_the_span_trace() {
    let (out, dispatch, _provider) = setup();
    tracing::dispatcher::with_default(&dispatch, || {
        let ctx = common::policy().new_root();
        let span = tracing::info_span!("job");
        let ctx = otel::link_span(&span, &ctx);
        let (trace, span_id) = otel_ids(&span);
        assert_eq!(ctx.trace_id().unwrap().to_string(), trace);
        assert_eq!(ctx.span_id().unwrap().to_string(), span_id);
        let _e = span.enter();
        ctx.sync_scope(|| {
            tracing::info!("job step");
            // Without inject_traceparent, threadline's own traceparent has the trace id too.
            let mut outgoing = http::HeaderMap::new();
            Context::current().inject(&mut outgoing);
            assert!(
                outgoing["traceparent"]
                    .to_str()
                    .unwrap()
                    .starts_with(&format!("00-{trace}-"))
            );
        });
        let e: Value = serde_json::from_str(&out.text()).unwrap();
        assert_eq!(e["trace_id"], trace.as_str());
        assert_eq!(e["span_id"], span_id.as_str());
    });
}

#[test]
fn span_already_started_gets_a_link_and_the_context_follows_it() {
    let (_out, dispatch, _provider) = setup();
    tracing::dispatcher::with_default(&dispatch, || {
        let ctx = request("req-late", "acme");
        let span = tracing::info_span!("late");
        let _e = span.enter(); // started: its parent can no longer change
        let linked = otel::link_span(&span, &ctx);
        let (trace, span_id) = otel_ids(&span);
        assert_ne!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(linked.trace_id().unwrap().to_string(), trace);
        assert_eq!(linked.span_id().unwrap().to_string(), span_id);
        assert_eq!(
            linked.trace().unwrap().parent_id(),
            None,
            "another trace's parent is not ours"
        );
        assert_eq!(linked.correlation_id(), ctx.correlation_id());
        assert_eq!(linked.get("x-tenant-id"), Some("acme"));
    });
}

#[test]
fn without_the_otel_layer_everything_is_threadline_s() {
    let out = Capture::new();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(threadline_tracing::json_layer().with_writer(out.clone())),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        let ctx = request("req-n", "acme");
        let span = tracing::info_span!("request");
        let same = otel::link_span(&span, &ctx);
        assert_eq!(same.span_id(), ctx.span_id());
        let _e = span.enter();
        same.sync_scope(|| tracing::info!("plain"));
        assert!(otel::current_span_ids().is_none());
        let mut h = http::HeaderMap::new();
        assert!(!otel::inject_traceparent(&mut h));
    });
    let e: Value = serde_json::from_str(&out.text()).unwrap();
    assert_eq!(e["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

#[test]
fn remote_parent_is_the_caller() {
    let ctx = request("req-r", "acme");
    let sc = otel::remote_parent(&ctx).unwrap();
    assert!(sc.is_remote());
    assert_eq!(
        sc.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
    assert!(sc.is_sampled());
    assert!(otel::remote_parent(&common::policy().new_root()).is_none());
}

/// An OpenTelemetry-instrumented service that adopts a Threadline policy as its
/// propagator: the span tracing-opentelemetry starts, the log lines and the outgoing
/// headers agree on the ids, and the policy's headers travel too.
#[test]
fn a_policy_as_the_opentelemetry_propagator_agrees_with_the_span() {
    use opentelemetry::propagation::TextMapPropagator;
    use std::collections::HashMap;
    use threadline::format::PolicyPropagator;

    let (out, dispatch, _provider) = setup();
    let propagator = PolicyPropagator::new(common::policy(), threadline::Trust::Trusted);
    let inbound: HashMap<String, String> = [
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("x-correlation-id", "req-otel"),
        ("x-tenant-id", "acme"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let (outbound, ids) = tracing::dispatcher::with_default(&dispatch, || {
        let cx = propagator.extract(&inbound);
        let span = tracing::info_span!("request");
        span.set_parent(cx.clone()).unwrap();
        let ctx = PolicyPropagator::threadline_context(&cx).unwrap();
        let ctx = otel::link_span(&span, &ctx);
        let _entered = span.enter();
        ctx.sync_scope(|| {
            tracing::info!("handled");
            let mut outbound: HashMap<String, String> = HashMap::new();
            propagator.inject_context(&span.context(), &mut outbound);
            (outbound, otel_ids(&span))
        })
    });
    let (trace_id, span_id) = ids;
    assert_eq!(
        trace_id, "4bf92f3577b34da6a3ce929d0e0e4736",
        "the caller's trace"
    );
    assert_eq!(
        outbound["traceparent"],
        format!("00-{trace_id}-{span_id}-01"),
        "the downstream's parent is the span that made the call"
    );
    assert_eq!(outbound["x-correlation-id"], "req-otel");
    assert_eq!(outbound["x-tenant-id"], "acme");
    let lines = out.json();
    let line: &Value = lines
        .iter()
        .find(|l| l["fields"]["message"] == "handled")
        .unwrap();
    assert_eq!(line["trace_id"], trace_id.as_str());
    assert_eq!(line["span_id"], span_id.as_str());
    assert_eq!(line["correlation_id"], "req-otel");
}

/// The policy's rules hold for OpenTelemetry's extract: a malformed traceparent starts
/// a new trace, and at the edge a caller's trace is not continued.
#[test]
fn a_policy_propagator_applies_validation_and_trust() {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use std::collections::HashMap;
    use threadline::format::PolicyPropagator;

    let map = |tp: &str| -> HashMap<String, String> {
        [("traceparent".to_owned(), tp.to_owned())]
            .into_iter()
            .collect()
    };
    let trusted = PolicyPropagator::new(common::policy(), threadline::Trust::Trusted);
    let bad = trusted.extract(&map(
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    ));
    assert!(
        !bad.span().span_context().is_valid(),
        "upper-case hex is refused"
    );
    let edge = PolicyPropagator::new(
        threadline::Policy::builder()
            .untrusted_start_fresh(true, true)
            .build()
            .unwrap(),
        threadline::Trust::Untrusted,
    );
    let cx = edge.extract(&map(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ));
    assert!(
        !cx.span().span_context().is_valid(),
        "not continued at the edge"
    );
    let ctx = PolicyPropagator::threadline_context(&cx).unwrap();
    assert_ne!(
        ctx.trace_id().unwrap().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
}
