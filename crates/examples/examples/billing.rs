//! The billing service of the examples pair: `POST /invoices` logs, then publishes one
//! NATS message on `invoices.created`, in the context of the request that asked for it.
//!
//! ```text
//! cargo run --example billing        # 127.0.0.1:3001, NATS on 127.0.0.1:4222
//! ```
//!
//! `BILLING_ADDR`, `NATS_URL` and `INVOICES_SUBJECT` change the defaults; `RUST_LOG`
//! the log filter. See `orders.rs` for the other half.

use std::error::Error;
use std::net::SocketAddr;

use axum::{Router, extract::State, routing::post};
use threadline::prelude::*;
use threadline_nats::ClientExt;
use threadline_tower::prelude::*;
use threadline_tracing::prelude::*;

/// Where billing publishes.
pub struct Config {
    /// The NATS server.
    pub nats_url: String,
    /// The subject invoices are published on.
    pub subject: String,
}

impl Config {
    /// From `NATS_URL` and `INVOICES_SUBJECT`, or the defaults.
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or(default.into());
        Config {
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

#[derive(Clone)]
struct Billing {
    nats: async_nats::Client,
    subject: String,
}

async fn create_invoice(State(billing): State<Billing>) -> Result<&'static str, String> {
    threadline::bind("app", "billing");
    tracing::info!("invoice created");
    billing
        .nats
        .publish_in_context(billing.subject.clone(), "invoice 7".into())
        .await
        .map_err(|e| e.to_string())?;
    // Published once the server has it (a test, or a process about to exit, reads on).
    billing.nats.flush().await.map_err(|e| e.to_string())?;
    Ok("invoiced\n")
}

/// Serves billing on `listener` until the process ends.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: Config,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    let nats = async_nats::connect(&config.nats_url).await?;
    let state = Billing {
        nats,
        subject: config.subject,
    };
    let app = Router::new()
        .route("/invoices", post(create_invoice))
        .with_state(state)
        .layer(ThreadlineLayer::new(policy()?).trust(TrustPolicy::private_networks()));
    // The peer address: what `TrustPolicy::private_networks()` reads.
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
    let addr = std::env::var("BILLING_ADDR").unwrap_or("127.0.0.1:3001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(%addr, "billing listening");
    run(listener, Config::from_env()).await
}
