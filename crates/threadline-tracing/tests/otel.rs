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
