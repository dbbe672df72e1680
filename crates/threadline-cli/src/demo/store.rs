//! The store: the order form, the order flow, and the journey pages.
//!
//! | route | what |
//! |---|---|
//! | `GET /orders/new` | the order form (item, quantity, tenant, and a hidden idempotency key) |
//! | `POST /orders` | form-encoded order: authenticate, call the warehouse, show the outcome (`Accept: application/json` for JSON) |
//! | `GET /journeys` | the queue's state, the journey store's bound, recent journeys (HTML, or JSON with `Accept: application/json`) |
//! | `GET /journeys/{correlation_id}` | one journey: timeline per service and hop tree (HTML or JSON) |
//!
//! The outcome of an order is what the warehouse knows, no more: `accepted` (200),
//! `rejected` (422, out of stock), `refused` (503 with `Retry-After`: not created),
//! `unknown` (504 with `Retry-After`: it may still ship; the page offers a retry with
//! the same key, which never ships twice). The form carries a fresh idempotency key;
//! a JSON client may send its own as `Idempotency-Key`, and every answer names it.
//!
//! Every page is sent with a `Content-Security-Policy` (no script, nothing from
//! elsewhere) and `X-Content-Type-Options: nosniff`; an unknown path answers JSON to a
//! client that asks for JSON.
//!
//! The store is wrapped in [`ThreadlineLayer`] (trusting loopback callers unless
//! `--untrusted`), a middleware binds `app=store` and `instance=baseline`, and the
//! warehouse is called through hyper-util's client wrapped in [`PropagateLayer`], then
//! [`RouteLayer`] (a call whose routing key a rule claims goes to the sandbox
//! warehouse), with a small layer inside them ([`CallLogLayer`]) that logs the parent
//! id each call carries and where it really went.
//!
//! # The sandbox
//!
//! The policy reads the routing key from `x-routing-key`, baggage, and at the edge
//! the preview parameter and cookie ([`super::policy`]). The order form links to the
//! preview (`/orders/new?preview=<key>`): [`ThreadlineLayer`] takes the parameter out,
//! sets the cookie and puts the key into the context, so the browser's following
//! orders carry it; `?preview=` (empty) leaves the sandbox. The page says which one
//! the browser is in.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use threadline::codec::TraceParent;
use threadline::{Context, Policy, RoutingKey};
use threadline_route::Router as RouteTable;
use threadline_tower::{
    Grant, Propagate, PropagateLayer, Route, RouteLayer, Target, Targets, ThreadlineLayer,
    TrustPolicy,
};
use tower::{ServiceBuilder, ServiceExt};
use tower_layer::Layer;
use tower_service::Service;

use super::broker::{Publisher, new_key, valid_key};
use super::html::{self, esc, invisible};
use super::journey::{self, Journeys};
use super::warehouse::IDEMPOTENCY_KEY;
use super::{Stats, TENANT_HEADER};

/// Who the demo's "authentication" says the caller is.
pub const DEMO_USER: &str = "alice";
/// The largest form body accepted.
const BODY_LIMIT: usize = 16 * 1024;
/// How long the warehouse may take.
const WAREHOUSE_TIMEOUT: Duration = Duration::from_secs(10);

type HttpClient = Propagate<Route<CallLog<Client<HttpConnector, Full<Bytes>>>>>;

/// The sandbox the order form offers a preview link to.
#[derive(Clone, Debug)]
pub struct Preview {
    /// The sandbox's routing key.
    pub key: RoutingKey,
    /// The query parameter of preview links (the policy's).
    pub param: String,
}

impl Preview {
    /// The link into the sandbox (`/orders/new?<param>=<key>`).
    pub fn enter(&self) -> String {
        format!("/orders/new?{}={}", self.param, self.key.as_str())
    }

    /// The link out of it (an empty parameter clears the cookie).
    pub fn leave(&self) -> String {
        format!("/orders/new?{}=", self.param)
    }
}

/// What [`State::new`] is made from.
#[derive(Clone, Debug)]
pub struct Config {
    /// The capture policy.
    pub policy: Policy,
    /// Whether every caller is outside the trust boundary.
    pub untrusted: bool,
    /// Shared counters.
    pub stats: Arc<Stats>,
    /// The journey store the pages read.
    pub journeys: Journeys,
    /// Where the warehouse listens.
    pub warehouse: SocketAddr,
    /// The shipping queue (its state is shown on the journeys page).
    pub publisher: Publisher,
    /// Jobs the worker handles at once.
    pub concurrency: usize,
    /// The route table the warehouse calls are routed by.
    pub routes: RouteTable,
    /// The sandbox, when there is one.
    pub preview: Option<Preview>,
}

/// What the store needs.
#[derive(Clone)]
pub struct State {
    config: Config,
    warehouse_url: String,
    broker: String,
    client: HttpClient,
}

impl State {
    /// The store's state.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let policy = &config.policy;
        let warehouse = config.warehouse;
        // The warehouse gets the context (and the two fields the store bound); any
        // other destination would get nothing.
        let grant = Grant::only([
            policy.correlation_header().as_str(),
            "traceparent",
            "tracestate",
            "baggage",
            super::ROUTING_HEADER,
            TENANT_HEADER,
            &format!("{}user.id", policy.field_prefix()),
            &format!("{}tenant.id", policy.field_prefix()),
        ])?;
        // An IP target; `Target` matches IPv6 hosts with or without brackets.
        let targets = Targets::new().grant(
            Target::host(&warehouse.ip().to_string()).port(warehouse.port()),
            grant,
        );
        let client = ServiceBuilder::new()
            .layer(PropagateLayer::new(targets))
            .layer(RouteLayer::new(config.routes.clone()))
            .layer(CallLogLayer)
            .service(Client::builder(TokioExecutor::new()).build_http());
        Ok(State {
            broker: config.publisher.health().queue().to_owned(),
            warehouse_url: super::warehouse::url(warehouse),
            client,
            config,
        })
    }
}

/// The store's router, with its layers.
pub fn router(state: State) -> Router {
    let trust = if state.config.untrusted {
        TrustPolicy::never()
    } else {
        super::warehouse::loopback()
    };
    let layer = ThreadlineLayer::new(state.config.policy.clone()).trust(trust);
    Router::new()
        .route("/", get(|| async { Redirect::to("/orders/new") }))
        .route("/orders/new", get(order_form))
        .route(
            "/orders",
            get(|| async { Redirect::to("/orders/new") }).post(place_order),
        )
        .route("/journeys", get(journey_list))
        .route("/journeys/{correlation_id}", get(journey_page))
        .fallback(not_found)
        .with_state(Arc::new(state))
        .layer(middleware::from_fn(bind_service))
        .layer(layer)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(security_headers))
}

/// `Content-Security-Policy` and `X-Content-Type-Options: nosniff` on every answer.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(html::CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

async fn bind_service(req: Request, next: Next) -> Response {
    threadline::bind("app", "store");
    threadline::bind("instance", super::broker::BASELINE);
    log_edge_decisions(req.headers());
    next.run(req).await
}

/// Says when the capture policy did not keep what the caller sent (an untrusted caller
/// under `--untrusted`, or an invalid value): by header name, never by value.
fn log_edge_decisions(headers: &HeaderMap) {
    let ctx = Context::current();
    let sent_id = headers
        .get(ctx.policy().correlation_header())
        .and_then(|v| v.to_str().ok());
    if let Some(sent) = sent_id
        && ctx.correlation_id().map(|c| c.as_str()) != Some(sent)
    {
        tracing::warn!(
            header = %ctx.policy().correlation_header(),
            "inbound correlation id not kept (untrusted caller or invalid value); a new one was minted"
        );
    }
    let sent_trace = headers
        .get("traceparent")
        .and_then(|v| TraceParent::decode(v.as_bytes()).ok());
    if let Some(tp) = sent_trace
        && ctx.trace_id() != Some(tp.trace_id())
    {
        tracing::warn!(
            header = "traceparent",
            "inbound trace not continued (untrusted caller); a new trace was started"
        );
    }
    if headers.contains_key(TENANT_HEADER) && ctx.get(TENANT_HEADER).is_none() {
        tracing::warn!(
            header = TENANT_HEADER,
            "inbound tenant header dropped (untrusted caller or invalid value)"
        );
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
}

async fn not_found(uri: Uri, headers: HeaderMap) -> Response {
    if wants_json(&headers) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "not found", "path": uri.path() })),
        )
            .into_response();
    }
    let body = r#"<section class="card"><h2>Not found</h2><p>Try the <a href="/orders/new">order form</a> or the <a href="/journeys">journeys</a>.</p></section>"#;
    (StatusCode::NOT_FOUND, Html(html::page("Not found", body))).into_response()
}

/// The values of the form, as typed (for showing it again).
#[derive(Clone, Debug, Default)]
struct FormValues {
    item: String,
    quantity: String,
    tenant: String,
    key: String,
}

#[derive(Clone, Debug)]
struct Order {
    item: String,
    quantity: u32,
    tenant: String,
    key: Option<String>,
}

/// The form's fields, as hidden inputs (a retry sends the same order, same key).
fn hidden_fields(v: &FormValues) -> String {
    format!(
        r#"<input type="hidden" name="item" value="{}"><input type="hidden" name="quantity" value="{}"><input type="hidden" name="tenant" value="{}"><input type="hidden" name="key" value="{}">"#,
        esc(&v.item),
        esc(&v.quantity),
        esc(&v.tenant),
        esc(&v.key)
    )
}

/// The sandbox panel of the order form: the preview link, or, for a browser in the
/// sandbox, that it is and the link out.
fn sandbox_panel(preview: Option<&Preview>) -> String {
    let Some(p) = preview else {
        return String::new();
    };
    let current = Context::with_current(|c| c.routing_key().cloned()).flatten();
    if current.as_ref() == Some(&p.key) {
        format!(
            r#"<section class="card sandbox" id="sandbox" data-in-sandbox="true"><h2>You are in the sandbox <code>{key}</code></h2><p>Orders from this browser go store → sandbox warehouse (it stocks items starting with <b>F</b>) → sandbox worker; the journey names <code>instance=sandbox:{key}</code> on their hops.</p><p><a id="leave-sandbox" href="{leave}">Leave the sandbox</a></p></section>"#,
            key = esc(p.key.as_str()),
            leave = esc(&p.leave()),
        )
    } else {
        format!(
            r#"<section class="card sandbox" id="sandbox" data-in-sandbox="false"><h2>A sandbox is running</h2><p>The sandbox warehouse stocks items starting with <b>F</b> (the change under test). <a id="preview-link" href="{enter}">Preview it</a>: this browser's orders then go to the sandbox warehouse and worker (routing key <code>{key}</code>, kept in a cookie); everyone else's to the baseline.</p></section>"#,
            key = esc(p.key.as_str()),
            enter = esc(&p.enter()),
        )
    }
}

fn form_page(values: &FormValues, errors: &[String], state: &State) -> String {
    let untrusted = state.config.untrusted;
    let broker = state.broker.as_str();
    let mut b = String::new();
    b.push_str(r#"<section class="hero"><h1>Place an order</h1><p class="meta"><span>The store calls the warehouse over HTTP, the warehouse queues a shipping job for the worker. One correlation id follows it all.</span></p></section><section class="card">"#);
    if !errors.is_empty() {
        b.push_str(r#"<div class="errors" id="errors"><b>Please fix:</b><ul>"#);
        for e in errors {
            let _ = write!(b, "<li>{}</li>", esc(e));
        }
        b.push_str("</ul></div>");
    }
    // A valid key typed back is kept (the same order); anything else gets a new one.
    let key = if valid_key(&values.key) {
        values.key.clone()
    } else {
        new_key()
    };
    let _ = write!(
        b,
        r#"<form class="order" method="post" action="/orders">
<label>Item<input id="item" name="item" value="{item}" maxlength="80" placeholder="Kettle" required></label>
<label>Quantity<input id="quantity" name="quantity" value="{qty}" inputmode="numeric" maxlength="3" required></label>
<label>Tenant<input id="tenant" name="tenant" value="{tenant}" maxlength="64" placeholder="acme" required></label>
<input type="hidden" id="key" name="key" value="{key}">
<div class="actions"><button id="place" type="submit">Place order</button><span>Items starting with <b>F</b> are out of stock: try one to see a failure.</span></div>
</form></section>
<section class="card"><h2>What happens</h2><div class="flow"><span class="chip lane-store">store</span>→ HTTP + traceparent →<span class="chip lane-warehouse">warehouse</span>→ {broker} →<span class="chip lane-worker">worker</span><span>and an audit task spawned in the warehouse</span></div>
<p class="foot">{trust}</p></section>{sandbox}"#,
        item = esc(&values.item),
        qty = esc(&values.quantity),
        tenant = esc(&values.tenant),
        key = esc(&key),
        broker = esc(broker),
        sandbox = sandbox_panel(state.config.preview.as_ref()),
        trust = if untrusted {
            "This store runs with --untrusted: your correlation id, trace and tenant header are replaced at the edge."
        } else {
            "Callers on 127.0.0.1 are trusted: an X-Correlation-Id or traceparent you send is kept."
        },
    );
    html::page("New order", &b)
}

async fn order_form(axum::extract::State(state): axum::extract::State<Arc<State>>) -> Html<String> {
    let values = FormValues {
        item: "Kettle".into(),
        quantity: "1".into(),
        tenant: "acme".into(),
        key: new_key(),
    };
    Html(form_page(&values, &[], &state))
}

/// Parses and checks the form; every problem named.
fn parse_form(body: &[u8]) -> (FormValues, Result<Order, Vec<String>>) {
    let mut values = FormValues::default();
    let mut seen = (false, false, false, false);
    let mut errors = Vec::new();
    if body.len() > BODY_LIMIT {
        errors.push("the form is too large".to_owned());
        return (values, Err(errors));
    }
    for (k, v) in form_urlencoded::parse(body) {
        let slot = match k.as_ref() {
            "item" => (&mut values.item, &mut seen.0),
            "quantity" => (&mut values.quantity, &mut seen.1),
            "tenant" => (&mut values.tenant, &mut seen.2),
            "key" => (&mut values.key, &mut seen.3),
            _ => continue,
        };
        if *slot.1 {
            errors.push(format!("the field {k} was sent twice"));
        }
        *slot.1 = true;
        // Keep what is shown again bounded.
        *slot.0 = v.chars().take(200).collect();
    }
    let item = values.item.trim().to_owned();
    if !seen.0 || item.is_empty() {
        errors.push("item is missing".into());
    } else if item.chars().count() > 80 {
        errors.push("item is longer than 80 characters".into());
    } else if item.chars().any(char::is_control) {
        errors.push("item contains control characters".into());
    } else if item.chars().any(invisible) {
        errors.push(
            "item contains invisible formatting characters (such as a right-to-left override)"
                .into(),
        );
    }
    let quantity = match values.quantity.trim().parse::<u32>() {
        Ok(q) if (1..=999).contains(&q) => Some(q),
        _ => {
            errors.push("quantity must be a whole number from 1 to 999".into());
            None
        }
    };
    let tenant = values.tenant.trim().to_owned();
    if tenant.is_empty()
        || tenant.len() > 64
        || !tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        errors.push("tenant must be 1 to 64 letters, digits, '-', '_' or '.'".into());
    }
    let key = values.key.trim().to_owned();
    if seen.3 && !valid_key(&key) {
        errors.push("the form's order key is damaged; the form was reset, send it again".into());
        values.key = new_key();
    }
    match (errors.is_empty(), quantity) {
        (true, Some(quantity)) => (
            values,
            Ok(Order {
                item,
                quantity,
                tenant,
                key: seen.3.then_some(key),
            }),
        ),
        _ => (values, Err(errors)),
    }
}

enum Outcome {
    /// The queue confirmed the job.
    Accepted { order_id: u64 },
    /// Out of stock.
    Rejected { reason: String },
    /// The key was used for another order.
    Conflict { reason: String },
    /// Certainly not created.
    Refused {
        order_id: Option<u64>,
        reason: String,
        retry_after: Option<u32>,
    },
    /// It may still ship; a retry with the same key is safe.
    Unknown {
        order_id: Option<u64>,
        reason: String,
        retry_after: Option<u32>,
    },
    /// The warehouse answered something this store does not understand.
    Failed { reason: String },
}

impl Outcome {
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Outcome::Accepted { .. } => (StatusCode::OK, "accepted"),
            Outcome::Rejected { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "rejected"),
            Outcome::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            Outcome::Refused { .. } => (StatusCode::SERVICE_UNAVAILABLE, "refused"),
            Outcome::Unknown { .. } => (StatusCode::GATEWAY_TIMEOUT, "unknown"),
            Outcome::Failed { .. } => (StatusCode::BAD_GATEWAY, "failed"),
        }
    }

    fn order_id(&self) -> Option<u64> {
        match self {
            Outcome::Accepted { order_id } => Some(*order_id),
            Outcome::Refused { order_id, .. } | Outcome::Unknown { order_id, .. } => *order_id,
            _ => None,
        }
    }

    fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Accepted { .. } => None,
            Outcome::Rejected { reason }
            | Outcome::Conflict { reason }
            | Outcome::Failed { reason }
            | Outcome::Refused { reason, .. }
            | Outcome::Unknown { reason, .. } => Some(reason),
        }
    }

    fn retry_after(&self) -> Option<u32> {
        match self {
            Outcome::Refused { retry_after, .. } | Outcome::Unknown { retry_after, .. } => {
                Some(retry_after.unwrap_or(2))
            }
            _ => None,
        }
    }
}

async fn place_order(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let correlation_id = Context::current()
        .correlation_id()
        .map(|c| c.as_str().to_owned())
        .unwrap_or_default();
    let (mut values, parsed) = parse_form(&body);
    // A key in the header (JSON clients) wins over the form's.
    let header_key = headers
        .get(IDEMPOTENCY_KEY)
        .map(|v| v.to_str().unwrap_or(""));
    let parsed = match (parsed, header_key) {
        (Ok(_), Some(k)) if !valid_key(k) => Err(vec![
            "Idempotency-Key must be 1 to 64 letters, digits, '-', '_' or '.'".to_owned(),
        ]),
        (Ok(mut o), Some(k)) => {
            o.key = Some(k.to_owned());
            Ok(o)
        }
        (p, _) => p,
    };
    let mut order = match parsed {
        Ok(o) => o,
        Err(errors) => {
            Stats::bump(&state.config.stats.invalid);
            tracing::warn!(problems = %errors.join("; "), "order form refused");
            return if json {
                (
                    StatusCode::BAD_REQUEST,
                    Json(json!({ "status": "invalid", "errors": errors, "correlation_id": correlation_id })),
                )
                    .into_response()
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    Html(form_page(&values, &errors, &state)),
                )
                    .into_response()
            };
        }
    };
    let key = order.key.take().unwrap_or_else(new_key);
    values.key = key.clone();
    tracing::info!(item = %order.item, quantity = order.quantity, order_key = %key, "order received");

    // "Authentication": the demo user, in the tenant the form names.
    threadline::bind("user.id", DEMO_USER);
    threadline::bind("tenant.id", order.tenant.clone());
    // The authenticated tenant goes downstream as a propagated header (the form checked
    // it is a short token, so it is always a valid header value).
    threadline::set_header(TENANT_HEADER, &order.tenant);
    tracing::info!("user authenticated");

    let mut instance = None;
    let outcome = call_warehouse(&state, &order, &key, &mut instance).await;
    match &outcome {
        Outcome::Accepted { order_id } => {
            tracing::info!(order_id, "order accepted by the warehouse")
        }
        Outcome::Rejected { reason } | Outcome::Conflict { reason } => {
            tracing::warn!(reason = %reason, "order rejected by the warehouse")
        }
        Outcome::Refused { reason, .. } => {
            tracing::error!(reason = %reason, "order not created")
        }
        Outcome::Unknown { reason, .. } => {
            tracing::error!(reason = %reason, "order outcome unknown")
        }
        Outcome::Failed { reason } => tracing::error!(reason = %reason, "order failed"),
    }
    let (status, label) = outcome.status();
    let journey_url = format!("/journeys/{}", html::path_segment(&correlation_id));
    let mut resp = if json {
        (
            status,
            Json(json!({
                "status": label,
                "order_id": outcome.order_id(),
                "key": key,
                "reason": outcome.reason(),
                "retry_after": outcome.retry_after(),
                "correlation_id": correlation_id,
                "journey": journey_url,
                "warehouse_instance": instance,
            })),
        )
            .into_response()
    } else {
        (
            status,
            Html(outcome_page(
                &outcome,
                &order,
                &values,
                &correlation_id,
                &journey_url,
                instance.as_deref(),
            )),
        )
            .into_response()
    };
    if let Some(secs) = outcome.retry_after() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn outcome_page(
    outcome: &Outcome,
    order: &Order,
    values: &FormValues,
    correlation_id: &str,
    journey_url: &str,
    instance: Option<&str>,
) -> String {
    let (_, label) = outcome.status();
    let handled_by = match instance {
        Some(i) => format!(
            r#"<span>warehouse <span class="instance{sandbox}" id="warehouse-instance">{i}</span></span>"#,
            sandbox = if i.starts_with("sandbox") {
                " sandbox"
            } else {
                ""
            },
            i = esc(i)
        ),
        None => String::new(),
    };
    let number = |id: Option<u64>| id.map(|i| format!(" #{i}")).unwrap_or_default();
    let retry = |button: &str, note: &str| {
        format!(
            r#"<form class="retry" method="post" action="/orders">{}<button id="retry" type="submit">{}</button> <span>{}</span></form>"#,
            hidden_fields(values),
            esc(button),
            esc(note)
        )
    };
    let (class, icon, title, detail, action) = match outcome {
        Outcome::Accepted { order_id } => (
            "ok",
            "✓",
            format!("Order #{order_id} accepted"),
            format!(
                "{} × {} for tenant {}: the shipping queue confirmed the job and the worker picks it up.",
                order.quantity,
                esc(&order.item),
                esc(&order.tenant)
            ),
            String::new(),
        ),
        Outcome::Rejected { reason } | Outcome::Conflict { reason } => (
            "warn",
            "!",
            "The warehouse rejected the order".to_owned(),
            esc(reason),
            String::new(),
        ),
        Outcome::Refused {
            order_id,
            reason,
            retry_after,
        } => (
            "error",
            "×",
            format!("Order{} was not created", number(*order_id)),
            esc(reason),
            retry(
                "Try again",
                &format!(
                    "The shipping queue did not take it. Try again in {} s.",
                    retry_after.unwrap_or(2)
                ),
            ),
        ),
        Outcome::Unknown {
            order_id, reason, ..
        } => (
            "warn",
            "?",
            format!("Order{}: not confirmed yet", number(*order_id)),
            esc(reason),
            retry(
                "Check again",
                "It may still ship. Checking again is safe: the same order never ships twice.",
            ),
        ),
        Outcome::Failed { reason } => (
            "error",
            "×",
            "The order failed".to_owned(),
            esc(reason),
            String::new(),
        ),
    };
    let body = format!(
        r#"<section class="card outcome {class}" id="outcome" data-status="{label}"><div class="big">{icon}</div><div><h2>{title}</h2><p>{detail}</p>{action}
<p class="meta"><span>correlation id <code class="cid" id="correlation-id">{cid}</code></span>{handled_by}</p>
<p><a class="button" id="journey-link" href="{journey}">Follow its journey</a> <a href="/orders/new">Place another order</a></p></div></section>"#,
        title = esc(&title),
        cid = esc(correlation_id),
        journey = esc(journey_url),
    );
    html::page("Order", &body)
}

/// Places the order with the warehouse (the baseline, or the sandbox the route layer
/// sends it to); `instance` is set to the instance that answered, when one did.
async fn call_warehouse(
    state: &State,
    order: &Order,
    key: &str,
    instance: &mut Option<String>,
) -> Outcome {
    let payload = json!({ "item": order.item, "quantity": order.quantity }).to_string();
    let req = match http::Request::post(&state.warehouse_url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(IDEMPOTENCY_KEY, key)
        .body(Full::new(Bytes::from(payload)))
    {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Failed {
                reason: format!("could not build the warehouse request: {e}"),
            };
        }
    };
    tracing::info!(warehouse = %state.warehouse_url, "asking the warehouse to create the order");
    let stats = &state.config.stats;
    let resp = match tokio::time::timeout(WAREHOUSE_TIMEOUT, state.client.clone().oneshot(req))
        .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) if e.get_ref().is_connect() => {
            Stats::bump(&stats.failed);
            return Outcome::Refused {
                order_id: None,
                reason: format!("the warehouse is unreachable ({e}); the order was not created"),
                retry_after: Some(2),
            };
        }
        Ok(Err(e)) => {
            Stats::bump(&stats.failed);
            return Outcome::Unknown {
                order_id: None,
                reason: format!("the connection to the warehouse broke ({e})"),
                retry_after: Some(2),
            };
        }
        Err(_) => {
            Stats::bump(&stats.failed);
            return Outcome::Unknown {
                order_id: None,
                reason: "the warehouse did not answer in time".into(),
                retry_after: Some(2),
            };
        }
    };
    let status = resp.status();
    *instance = resp
        .headers()
        .get(super::warehouse::INSTANCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    let body = match tokio::time::timeout(WAREHOUSE_TIMEOUT, resp.into_body().collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        _ => {
            Stats::bump(&stats.failed);
            return Outcome::Unknown {
                order_id: None,
                reason: "the warehouse's answer was cut off".into(),
                retry_after: Some(2),
            };
        }
    };
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let reason = answer["error"]
        .as_str()
        .unwrap_or("no reason given")
        .to_owned();
    let order_id = answer["order_id"].as_u64();
    match status {
        StatusCode::CREATED | StatusCode::OK => match order_id {
            Some(order_id) => Outcome::Accepted { order_id },
            None => Outcome::Failed {
                reason: "the warehouse answered without an order number".into(),
            },
        },
        StatusCode::UNPROCESSABLE_ENTITY => Outcome::Rejected { reason },
        StatusCode::CONFLICT => Outcome::Conflict { reason },
        StatusCode::SERVICE_UNAVAILABLE => Outcome::Refused {
            order_id,
            reason,
            retry_after,
        },
        StatusCode::GATEWAY_TIMEOUT => Outcome::Unknown {
            order_id,
            reason,
            retry_after,
        },
        s => Outcome::Failed {
            reason: format!("the warehouse answered {s}: {reason}"),
        },
    }
}

async fn journey_list(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    headers: HeaderMap,
) -> Response {
    let list = state.config.journeys.list();
    let usage = state.config.journeys.usage();
    let queue = super::broker::status(
        &state.config.publisher,
        &state.config.stats,
        state.config.concurrency,
    );
    if wants_json(&headers) {
        return Json(json!({ "journeys": list, "queue": queue, "journey_store": usage }))
            .into_response();
    }
    let status = journey::render_status(&queue, &usage);
    Html(journey::render_list(&list, &status)).into_response()
}

async fn journey_page(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let json = wants_json(&headers);
    match state.config.journeys.get(&id) {
        Some(view) if json => Json(view).into_response(),
        Some(view) => Html(journey::render_journey(&view)).into_response(),
        None if json => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no journey with this correlation id is kept", "correlation_id": id })),
        )
            .into_response(),
        None => {
            let usage = state.config.journeys.usage();
            let body = format!(
                r#"<section class="card"><h2>No journey for <code>{}</code></h2><p>It may be older than the journeys kept (the newest that fit in {:.0} MiB), or nothing was logged under it yet. See <a href="/journeys">recent journeys</a>.</p></section>"#,
                esc(&id),
                usage.max_bytes as f64 / f64::from(1 << 20)
            );
            (StatusCode::NOT_FOUND, Html(html::page("No journey", &body))).into_response()
        }
    }
}

/// Logs each outgoing HTTP call with the parent id its `traceparent` carries
/// (`call_id`) and its destination, so the journey can link the callee's hop to this
/// one. Goes *inside* [`PropagateLayer`]: it sees the request after injection.
#[derive(Clone, Copy, Debug, Default)]
pub struct CallLogLayer;

impl<S> Layer<S> for CallLogLayer {
    type Service = CallLog<S>;

    fn layer(&self, inner: S) -> CallLog<S> {
        CallLog { inner }
    }
}

/// The service made by [`CallLogLayer`].
#[derive(Clone, Debug)]
pub struct CallLog<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for CallLog<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskCx<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let call_id = req
            .headers()
            .get("traceparent")
            .and_then(|v| TraceParent::decode(v.as_bytes()).ok())
            .map(|tp| tp.parent_id().to_string());
        tracing::debug!(
            call_id = %call_id.as_deref().unwrap_or("-"),
            destination = %format!("{} {}", req.method(), req.uri()),
            "outgoing HTTP call"
        );
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_parsing_names_every_problem() {
        let (_, ok) = parse_form(b"item=Kettle&quantity=2&tenant=acme");
        let ok = ok.unwrap();
        assert_eq!(
            (ok.item.as_str(), ok.quantity, ok.tenant.as_str()),
            ("Kettle", 2, "acme")
        );

        let (_, bad) = parse_form(b"item=ev%07il%0Aline&quantity=abc&tenant=a%20b");
        let errors = bad.unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");

        let (_, dup) = parse_form(b"item=a&item=b&quantity=1&tenant=t");
        assert!(dup.unwrap_err()[0].contains("twice"));

        let huge = format!("item={}&quantity=1&tenant=t", "x".repeat(100));
        assert!(parse_form(huge.as_bytes()).1.is_err());
        let (values, missing) = parse_form(b"\xff\xfe=\xff");
        assert!(missing.is_err());
        assert!(values.item.is_empty());
    }

    #[test]
    fn invisible_characters_in_the_item_are_refused_and_keys_are_checked() {
        for item in [
            "Kettle%E2%80%AEgpj.exe",
            "Kettle%E2%80%8B",
            "%E2%81%A7Kettle",
            "Kettle%F3%A0%80%81",
        ] {
            let body = format!("item={item}&quantity=1&tenant=acme");
            let errors = parse_form(body.as_bytes()).1.unwrap_err();
            assert_eq!(errors.len(), 1, "{item}: {errors:?}");
            assert!(errors[0].contains("invisible"), "{item}: {errors:?}");
        }
        // Letters of any script are fine.
        let (_, ok) = parse_form("item=Чайник%20%E8%8C%B6&quantity=1&tenant=acme".as_bytes());
        assert_eq!(ok.unwrap().item, "Чайник 茶");
        assert!(!super::super::warehouse::valid_item(
            "Kettle\u{202e}gpj.exe"
        ));
        assert!(super::super::warehouse::valid_item("Kettle"));

        let (_, ok) = parse_form(b"item=Kettle&quantity=1&tenant=acme&key=abc-1.2_3");
        assert_eq!(ok.unwrap().key.as_deref(), Some("abc-1.2_3"));
        let (values, bad) = parse_form(b"item=Kettle&quantity=1&tenant=acme&key=a%20b");
        assert!(bad.unwrap_err()[0].contains("key"));
        assert!(valid_key(&values.key), "a damaged key is replaced");
        let (_, none) = parse_form(b"item=Kettle&quantity=1&tenant=acme");
        assert_eq!(none.unwrap().key, None);
    }
}
