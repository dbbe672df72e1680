//! The warehouse: `POST /api/orders` (JSON). Items whose name starts with `F` (or `f`)
//! are out of stock: 422. Other orders get a number, a shipping job on the queue and an
//! audit task started with [`threadline::spawn`].
//!
//! The server is wrapped in [`ThreadlineLayer`] trusting callers on loopback (the
//! store), and a tiny middleware binds `app=warehouse` for every log line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use threadline::codec::SpanId;
use threadline::{Context, Policy, TraceContext};
use threadline_tower::{ThreadlineLayer, TrustPolicy};

use super::Stats;
use super::broker::{Job, Publisher};

/// What the warehouse needs.
#[derive(Clone, Debug)]
pub struct State {
    /// The capture policy.
    pub policy: Policy,
    /// Shared counters.
    pub stats: Arc<Stats>,
    /// The shipping queue.
    pub publisher: Publisher,
}

#[derive(Clone)]
struct App {
    state: State,
    next_order: Arc<AtomicU64>,
}

/// The largest order body accepted.
const BODY_LIMIT: usize = 16 * 1024;

/// The warehouse's router, with its layers.
pub fn router(state: State) -> Router {
    let layer = ThreadlineLayer::new(state.policy.clone()).trust(loopback());
    let app = App {
        state,
        next_order: Arc::new(AtomicU64::new(1000)),
    };
    Router::new()
        .route(
            "/",
            get(|| async { "threadline demo warehouse: POST /api/orders\n" }),
        )
        .route("/api/orders", post(create_order))
        .with_state(app)
        .layer(middleware::from_fn(bind_service))
        .layer(layer)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// Callers on loopback are trusted (the store runs beside us).
pub fn loopback() -> TrustPolicy {
    TrustPolicy::peer_in(["127.0.0.0/8", "::1/128"]).unwrap_or_else(|_| TrustPolicy::never())
}

async fn bind_service(req: Request, next: Next) -> Response {
    threadline::bind("app", "warehouse");
    next.run(req).await
}

#[derive(Deserialize)]
struct NewOrder {
    item: String,
    quantity: u32,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn create_order(
    axum::extract::State(app): axum::extract::State<App>,
    body: Result<Json<NewOrder>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let order = match body {
        Ok(Json(o)) => o,
        Err(e) => {
            tracing::warn!(error = %e.body_text(), "order refused: not a valid order document");
            return error(
                e.status(),
                "expected {\"item\": string, \"quantity\": number}",
            );
        }
    };
    let item = order.item.trim();
    if item.is_empty() || item.chars().count() > 80 || item.chars().any(char::is_control) {
        tracing::warn!("order refused: item must be 1 to 80 printable characters");
        return error(
            StatusCode::BAD_REQUEST,
            "item must be 1 to 80 printable characters",
        );
    }
    if !(1..=999).contains(&order.quantity) {
        tracing::warn!(
            quantity = order.quantity,
            "order refused: quantity out of range"
        );
        return error(
            StatusCode::BAD_REQUEST,
            "quantity must be between 1 and 999",
        );
    }
    tracing::info!(item = %item, quantity = order.quantity, "order request received");
    if item.starts_with(['F', 'f']) {
        tracing::warn!(item = %item, "order rejected: items starting with F are out of stock");
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "out of stock: items starting with F cannot be ordered",
        );
    }
    let order_id = app.next_order.fetch_add(1, Ordering::SeqCst);
    let job = Job {
        order_id,
        item: item.to_owned(),
        quantity: order.quantity,
    };
    let publisher = &app.state.publisher;
    match publisher.publish(&job).await {
        Ok(call) => {
            Stats::bump(&app.state.stats.enqueued);
            tracing::info!(
                order_id,
                call_id = %call.map(|c| c.to_string()).unwrap_or_default(),
                destination = %publisher.destination(),
                "shipping job enqueued"
            );
        }
        Err(e) => {
            // The job was never taken: the order is refused, nothing is lost.
            tracing::error!(order_id, error = %format!("{e:#}"), "shipping queue unavailable; order refused");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the shipping queue is unavailable; the order was not created",
            );
        }
    }
    spawn_audit(&app.state.stats, order_id, job.item.clone());
    tracing::info!(order_id, "order created");
    (
        StatusCode::CREATED,
        Json(json!({ "order_id": order_id, "status": "accepted" })),
    )
        .into_response()
}

/// Starts the audit task with [`threadline::spawn`]: it inherits the warehouse's
/// context (correlation id, trace, tenant, `user.id`, `app=warehouse`), gets a span
/// of its own (a child of this hop, linked through the logged `call_id`) and binds
/// `task=audit`.
fn spawn_audit(stats: &Arc<Stats>, order_id: u64, item: String) {
    let call = SpanId::random();
    let child = Context::with_current(|ctx| {
        ctx.trace().map(|t| {
            TraceContext::from_parts(
                t.trace_id(),
                Some(call),
                SpanId::random(),
                t.flags(),
                t.tracestate().cloned(),
            )
        })
    })
    .flatten();
    tracing::debug!(call_id = %call, destination = "audit task (threadline::spawn)", "audit task spawned");
    Stats::bump(&stats.audits_started);
    let stats = stats.clone();
    threadline::spawn(async move {
        let ctx = Context::current();
        let ctx = match child {
            Some(t) => ctx.with_trace(t),
            None => ctx,
        };
        ctx.scope(async move {
            threadline::bind("task", "audit");
            tracing::info!(order_id, item = %item, "audit: order written to the audit trail");
            tokio::time::sleep(Duration::from_millis(15)).await;
            tracing::debug!(order_id, "audit: trail flushed");
        })
        .await;
        Stats::bump(&stats.audits_done);
    });
}

/// The address the warehouse is reached at, for the store's client.
pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/api/orders")
}
