//! The optional per-request span: its fields, on a real axum server.

#![cfg(feature = "axum")]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use common::{send, serve_axum};
use http::{Request, StatusCode};
use http_body_util::Full;
use threadline::Policy;
use threadline_tower::ThreadlineLayer;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context as LayerCx, SubscriberExt};

type Fields = HashMap<String, String>;

#[derive(Clone, Default)]
struct Spans {
    open: Arc<Mutex<HashMap<u64, Fields>>>,
    closed: Arc<Mutex<Vec<Fields>>>,
}

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S> tracing_subscriber::Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: LayerCx<'_, S>) {
        let mut f = Fields::new();
        f.insert("name".into(), attrs.metadata().name().into());
        attrs.record(&mut Collect(&mut f));
        self.open.lock().unwrap().insert(id.into_u64(), f);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: LayerCx<'_, S>) {
        if let Some(f) = self.open.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Collect(f));
        }
    }
    fn on_close(&self, id: Id, _: LayerCx<'_, S>) {
        if let Some(f) = self.open.lock().unwrap().remove(&id.into_u64()) {
            self.closed.lock().unwrap().push(f);
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn request_span_fields_on_axum() {
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));

    let app = Router::new()
        .route(
            "/items/{id}",
            get(|| async { (StatusCode::CREATED, "made") }),
        )
        .layer(ThreadlineLayer::new(Policy::default()).request_span(true));
    let addr = serve_axum(app).await;
    let req = Request::get(format!("http://{addr}/items/42"))
        .header("x-correlation-id", "span-test-1")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = send(req).await;
    assert_eq!(resp.status(), 201);
    drop(resp);

    let closed = spans.closed.lock().unwrap().clone();
    let span = closed
        .iter()
        .find(|f| f.get("name").map(String::as_str) == Some("request"))
        .unwrap_or_else(|| panic!("a request span: {closed:?}"));
    assert_eq!(span["method"], "GET");
    assert_eq!(
        span["route"], "/items/{id}",
        "the matched route, not the raw path"
    );
    assert_eq!(span["status"], "201");
    assert_eq!(span["correlation_id"], "span-test-1");
    assert_eq!(span["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span["span_id"].len(), 16);
    assert!(span["latency_us"].parse::<u64>().is_ok());
}
