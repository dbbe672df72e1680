//! The warehouse: `POST /api/orders` (JSON). Items whose name starts with `F` (or `f`)
//! are out of stock: 422, unless the instance stocks them ([`State::stocks_f`]: the
//! demo's sandbox, the change under test). Other orders get a number, a shipping job on the queue and an
//! audit task started with [`threadline::spawn`].
//!
//! An `Idempotency-Key` header (1 to 64 letters, digits, `-`, `_`, `.`) names the
//! order: a retry with the same key within [`KEY_WINDOW`](super::ledger::KEY_WINDOW)
//! is the same order and never ships twice (a key reused for another item or quantity
//! is refused with 409). Without one the warehouse makes one and answers it.
//!
//! | answer | status | meaning |
//! |---|---|---|
//! | 201 | `accepted` | the queue confirmed the job |
//! | 503 + `Retry-After` | `refused` | the queue certainly did not take it: the order was not created |
//! | 504 + `Retry-After` | `unknown` | handed to the broker, not confirmed: it may still ship; retry with the same key |
//! | 422 | `rejected` | out of stock |
//!
//! The server is wrapped in [`ThreadlineLayer`] trusting callers on loopback (the
//! store), and a tiny middleware binds `app=warehouse` and the instance
//! (`instance=baseline`, `instance=sandbox:<key>`) for every log line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
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
use super::broker::{Job, Published, Publisher, new_key, valid_key};
use super::html::invisible;
use super::ledger::{Begin, Ledger, Settled};

/// The header naming an order across retries.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The response header naming the instance that answered (`baseline`,
/// `sandbox:<key>`), so the store can tell the user.
pub const INSTANCE_HEADER: &str = "x-demo-instance";

/// What the warehouse needs.
#[derive(Clone, Debug)]
pub struct State {
    /// The capture policy.
    pub policy: Policy,
    /// Shared counters.
    pub stats: Arc<Stats>,
    /// What happened to each order.
    pub ledger: Arc<Ledger>,
    /// The shipping queue.
    pub publisher: Publisher,
    /// Which instance this is, bound as the `instance` field (`baseline`,
    /// `sandbox:<key>`).
    pub instance: Arc<str>,
    /// Whether items starting with `F` are in stock (the sandbox's change).
    pub stocks_f: bool,
}

/// The largest order body accepted.
const BODY_LIMIT: usize = 16 * 1024;

/// The warehouse's router, with its layers.
pub fn router(state: State) -> Router {
    let layer = ThreadlineLayer::new(state.policy.clone()).trust(loopback());
    let instance = state.instance.clone();
    Router::new()
        .route(
            "/",
            get(|| async { "threadline demo warehouse: POST /api/orders\n" }),
        )
        .route("/api/orders", post(create_order))
        .with_state(state)
        .layer(middleware::from_fn_with_state(instance, bind_service))
        .layer(layer)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// Callers on loopback are trusted (the store runs beside us).
pub fn loopback() -> TrustPolicy {
    TrustPolicy::peer_in(["127.0.0.0/8", "::1/128"]).unwrap_or_else(|_| TrustPolicy::never())
}

async fn bind_service(
    axum::extract::State(instance): axum::extract::State<Arc<str>>,
    req: Request,
    next: Next,
) -> Response {
    threadline::bind("app", "warehouse");
    threadline::bind("instance", instance.to_string());
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&instance) {
        resp.headers_mut().insert(INSTANCE_HEADER, v);
    }
    resp
}

#[derive(Deserialize)]
struct NewOrder {
    item: String,
    quantity: u32,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Whether an item name is acceptable: 1 to 80 characters, none of them a control
/// character or an invisible formatting one (a right-to-left override would make
/// `Kettle\u{202e}gpj.exe` show as `Kettleexe.jpg`).
pub fn valid_item(item: &str) -> bool {
    !item.is_empty()
        && item.chars().count() <= 80
        && !item.chars().any(|c| c.is_control() || invisible(c))
}

/// The answer for an order in `state` after the latest attempt.
fn answer(
    state: Settled,
    order_id: u64,
    key: &str,
    reason: &str,
    retry_after: Option<u32>,
) -> Response {
    let (status, label, message) = match state {
        Settled::Accepted => (StatusCode::CREATED, "accepted", String::new()),
        Settled::Refused => (
            StatusCode::SERVICE_UNAVAILABLE,
            "refused",
            format!("{reason}; the order was not created"),
        ),
        Settled::Unknown | Settled::Open => (
            StatusCode::GATEWAY_TIMEOUT,
            "unknown",
            format!(
                "{reason}; the order may still ship. Retrying with the same Idempotency-Key is safe: it never ships twice"
            ),
        ),
    };
    let mut body = json!({ "order_id": order_id, "status": label, "key": key });
    if !message.is_empty() {
        body["error"] = json!(message);
    }
    let mut resp = (status, Json(body)).into_response();
    if state != Settled::Accepted {
        let secs = retry_after.unwrap_or(2);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

async fn create_order(
    axum::extract::State(app): axum::extract::State<State>,
    headers: HeaderMap,
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
    if !valid_item(item) {
        tracing::warn!("order refused: item must be 1 to 80 visible characters");
        return error(
            StatusCode::BAD_REQUEST,
            "item must be 1 to 80 characters, without control or invisible formatting characters",
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
    let key = match headers.get(IDEMPOTENCY_KEY).map(|v| v.to_str()) {
        None => new_key(),
        Some(Ok(k)) if valid_key(k) => k.to_owned(),
        Some(_) => {
            tracing::warn!("order refused: invalid Idempotency-Key");
            return error(
                StatusCode::BAD_REQUEST,
                "Idempotency-Key must be 1 to 64 letters, digits, '-', '_' or '.'",
            );
        }
    };
    tracing::info!(item = %item, quantity = order.quantity, order_key = %key, "order request received");
    if item.starts_with(['F', 'f']) && app.stocks_f {
        tracing::info!(item = %item, "items starting with F are in stock in this instance");
    } else if item.starts_with(['F', 'f']) {
        Stats::bump(&app.stats.rejected);
        tracing::warn!(item = %item, "order rejected: items starting with F are out of stock");
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "out of stock: items starting with F cannot be ordered",
        );
    }
    let order_id = match app.ledger.begin(&key, item, order.quantity) {
        Begin::New(id) => id,
        Begin::Mismatch => {
            tracing::warn!(order_key = %key, "order refused: idempotency key reused for another order");
            return error(
                StatusCode::CONFLICT,
                "this Idempotency-Key was used for a different order",
            );
        }
        Begin::Existing(id, Settled::Accepted) => {
            tracing::info!(order_id = id, "order retried; it was accepted already");
            return answer(Settled::Accepted, id, &key, "", None);
        }
        Begin::Existing(id, Settled::Open) => {
            tracing::warn!(
                order_id = id,
                "order retried while its first attempt is still under way"
            );
            return answer(
                Settled::Open,
                id,
                &key,
                "this order is being placed right now",
                Some(1),
            );
        }
        Begin::Existing(id, state) => {
            tracing::info!(order_id = id, previous = ?state, "order retried; publishing its job again");
            id
        }
    };
    let job = Job {
        order_id,
        item: item.to_owned(),
        quantity: order.quantity,
        run: app.ledger.run().to_owned(),
        key: key.clone(),
    };
    let publisher = &app.publisher;
    let (outcome, reason, retry_after) = match publisher.publish(&job).await {
        Published::Accepted { call, duplicate } => {
            tracing::info!(
                order_id,
                call_id = %call.map(|c| c.to_string()).unwrap_or_default(),
                destination = %publisher.destination(),
                duplicate,
                "shipping job enqueued"
            );
            (Settled::Accepted, String::new(), None)
        }
        Published::Refused {
            reason,
            retry_after,
        } => {
            tracing::error!(order_id, error = %reason, "shipping queue did not take the job");
            (Settled::Refused, reason, retry_after)
        }
        Published::Unknown { reason } => {
            tracing::error!(order_id, error = %reason, "shipping queue did not confirm the job; outcome unknown");
            (Settled::Unknown, reason, Some(2))
        }
    };
    let told = app.ledger.settle(order_id, outcome);
    if outcome == Settled::Accepted {
        spawn_audit(&app.stats, order_id, job.item.clone());
        tracing::info!(order_id, "order created");
    }
    if told != outcome {
        tracing::warn!(order_id, told = ?told, "an earlier attempt of this order decides what is told");
    }
    let reason = if reason.is_empty() {
        "an earlier attempt was not confirmed".to_owned()
    } else {
        reason
    };
    answer(told, order_id, &key, &reason, retry_after)
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
