//! The orders service of the examples pair: `POST /orders` calls billing over HTTP
//! through a hyper-util client under threadline's Tower client layer; a NATS consumer
//! logs each invoice billing publishes, in the context it was published in.
//!
//! ```text
//! cargo run --example billing        # terminal 1: 127.0.0.1:3001
//! cargo run --example orders         # terminal 2: 127.0.0.1:3000
//! curl -i -X POST -H 'x-tenant-id: acme' http://127.0.0.1:3000/orders
//! ```
//!
//! The JSON lines of `order placed` (orders), `invoice created` (billing) and `invoice
//! noted` (the consumer, back in orders) carry the same `correlation_id` and
//! `trace_id`, and `tenant_id` and `user.id`. `ORDERS_ADDR`, `BILLING_URL`, `NATS_URL`
//! and `INVOICES_SUBJECT` change the defaults; `RUST_LOG` the log filter.

use std::error::Error;
use std::net::SocketAddr;

use axum::http::Request;
use axum::{Router, extract::State, routing::post};
use futures_util::StreamExt;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use threadline::prelude::*;
// Never named below, but the Restorer knows NATS messages through it.
use threadline_nats as _;
use threadline_tower::prelude::*;
use threadline_tracing::prelude::*;
use tower::ServiceExt;

/// Where orders finds billing and its invoices.
pub struct Config {
    /// Billing's base URL.
    pub billing_url: String,
    /// The NATS server.
    pub nats_url: String,
    /// The subject billing publishes invoices on.
    pub subject: String,
}

impl Config {
    /// From `BILLING_URL`, `NATS_URL` and `INVOICES_SUBJECT`, or the defaults.
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or(default.into());
        Config {
            billing_url: var("BILLING_URL", "http://127.0.0.1:3001"),
            nats_url: var("NATS_URL", "127.0.0.1:4222"),
            subject: var("INVOICES_SUBJECT", "invoices.created"),
        }
    }
}

/// The same policy in every service: the tenant header only from trusted callers,
/// local fields (`user.id`) also over HTTP to the services the targets allow.
pub fn policy() -> Result<Policy, threadline::PolicyError> {
    Policy::builder()
        .header_rule(HeaderRule::new("x-tenant-id").trusted_only())
        .fields_over_http(true)
        .build()
}

/// The client stack, as kept in axum state: hyper-util's client under the layer.
type HttpClient = Propagate<Client<HttpConnector, String>>;

#[derive(Clone)]
struct Orders {
    http: HttpClient,
    billing_url: String,
}

async fn place_order(State(orders): State<Orders>) -> Result<String, String> {
    threadline::bind("app", "orders");
    threadline::bind("user.id", "alice");
    tracing::info!("order placed");
    let req = Request::post(format!("{}/invoices", orders.billing_url))
        .body(String::new())
        .map_err(|e| e.to_string())?;
    // The layer adds the correlation id, a child traceparent, the tenant and user.id.
    let resp = orders.http.oneshot(req).await.map_err(|e| e.to_string())?;
    tracing::info!(status = resp.status().as_u16(), "billing answered");
    Ok(format!("billing: {}\n", resp.status()))
}

/// Consumes invoices and serves orders on `listener` until the process ends.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: Config,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    let policy = policy()?;

    // The consumer: billing is one of our services, so its messages are trusted.
    let nats = async_nats::connect(&config.nats_url).await?;
    let mut invoices = nats.subscribe(config.subject).await?;
    // The subscription reaches the server before orders serves (billing publishes on
    // its own connection, which could otherwise overtake it).
    nats.flush().await?;
    let restorer = Restorer::new(policy.clone()).trust(Trust::Trusted);
    tokio::spawn(async move {
        while let Some(msg) = invoices.next().await {
            let handled = restorer.handle(msg, |msg| async move {
                threadline::bind("app", "orders");
                tracing::info!(bytes = msg.payload.len(), "invoice noted");
            });
            handled.await;
        }
    });

    // Out: the layer goes directly around the client, where the handler's task calls it.
    let client = Client::builder(TokioExecutor::new()).build_http::<String>();
    let http = Propagate::new(client, PropagateLayer::new(Targets::internal()));
    let state = Orders {
        http,
        billing_url: config.billing_url,
    };
    // In: callers on loopback and private networks may set the tenant and fields.
    let app = Router::new()
        .route("/orders", post(place_order))
        .with_state(state)
        .layer(ThreadlineLayer::new(policy).trust(TrustPolicy::private_networks()));
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::registry()
        .with(filter)
        .with(threadline_tracing::json_layer())
        .init();
    let addr = std::env::var("ORDERS_ADDR").unwrap_or("127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(%addr, "orders listening");
    run(listener, Config::from_env()).await
}
