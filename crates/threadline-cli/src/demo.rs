//! `threadline demo`: one process, three services, one context.
//!
//! A store takes orders, calls a warehouse, which enqueues a shipping job for a worker
//! on an embedded in-process queue (a JSON envelope, as a payload-only queue carries it)
//! and starts a background audit task. Every log line shows the context it runs in.

use std::time::Duration;

use anyhow::Context as _;
use http::HeaderMap;
use serde_json::json;
use threadline::json::{JsonCarrier, JsonCarrierMut};
use threadline::{Context, HeaderRule, Policy, Trust};
use tokio::sync::mpsc;

/// Options of `threadline demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Treat the incoming requests as coming from outside the trust boundary: their
    /// correlation id, trace and tenant are replaced (edge policy).
    #[arg(long)]
    untrusted: bool,
    /// Print one JSON object per log line.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
}

fn log(service: &str, json_format: bool, message: &str) {
    let ctx = Context::current();
    let id = ctx
        .correlation_id()
        .map(|c| c.as_str().to_owned())
        .unwrap_or_default();
    let trace = ctx.trace_id().map(|t| t.to_string()).unwrap_or_default();
    let span = ctx.span_id().map(|s| s.to_string()).unwrap_or_default();
    let tenant = ctx.get("x-tenant-id").unwrap_or("-").to_owned();
    let user = ctx.field("user.id").unwrap_or("-").to_owned();
    if json_format {
        let line = json!({
            "service": service,
            "message": message,
            "correlation_id": id,
            "trace_id": trace,
            "span_id": span,
            "tenant_id": tenant,
            "user.id": user,
        });
        println!("{line}");
    } else {
        println!(
            "{service:<9} {message:<44} correlation_id={id} trace_id={trace} span_id={span} tenant_id={tenant} user.id={user}"
        );
    }
}

fn policy(untrusted_edge: bool) -> anyhow::Result<Policy> {
    Policy::builder()
        .header_rule(HeaderRule::new("x-tenant-id").trusted_only())
        .untrusted_start_fresh(untrusted_edge, untrusted_edge)
        .build()
        .context("building the demo policy")
}

/// Runs the demo.
pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .context("starting the runtime")?;
    rt.block_on(demo(args))
}

async fn demo(args: Args) -> anyhow::Result<()> {
    let json_format = args.log_format == "json";
    let policy = policy(args.untrusted)?;
    let trust = if args.untrusted {
        Trust::Untrusted
    } else {
        Trust::Trusted
    };
    let (jobs_tx, mut jobs_rx) = mpsc::channel::<String>(64);

    // The worker: restores the context of each job before handling it.
    let worker_policy = policy.clone();
    let worker = tokio::spawn(async move {
        let mut handled = 0usize;
        while let Some(raw) = jobs_rx.recv().await {
            let job: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(&raw) {
                Ok(j) => j,
                Err(_) => serde_json::Map::new(),
            };
            let restored = worker_policy.extract(&JsonCarrier::new(&job)).context;
            restored
                .scope(async {
                    log(
                        "worker",
                        json_format,
                        &format!(
                            "shipping order {}",
                            job.get("order").unwrap_or(&json!(null))
                        ),
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    log("worker", json_format, "shipped");
                })
                .await;
            handled += 1;
        }
        handled
    });

    let orders = [
        (
            "Kettle",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "order-demo-1",
        ),
        ("Fondue set", "", ""),
    ];
    let mut placed = 0usize;
    for (n, (item, traceparent, correlation_id)) in orders.iter().enumerate() {
        // A request arrives at the store.
        let mut inbound = HeaderMap::new();
        if !traceparent.is_empty() {
            inbound.insert("traceparent", traceparent.parse()?);
        }
        if !correlation_id.is_empty() {
            inbound.insert("x-correlation-id", correlation_id.parse()?);
        }
        inbound.insert("x-tenant-id", "acme".parse()?);
        let store_ctx = policy.capture(&inbound, trust).context;
        let outgoing = store_ctx
            .scope(async {
                log("store", json_format, &format!("POST /orders item={item:?}"));
                threadline::bind("user.id", "alice");
                log("store", json_format, "user authenticated");
                let mut out = HeaderMap::new();
                Context::current().inject(&mut out);
                out
            })
            .await;

        // The warehouse receives the call with the headers the store injected.
        let warehouse_ctx = policy.capture(&outgoing, Trust::Trusted).context;
        let jobs_tx = jobs_tx.clone();
        let accepted = warehouse_ctx
            .scope(async move {
                log(
                    "warehouse",
                    json_format,
                    &format!("POST /api/orders item={item:?}"),
                );
                if item.starts_with('F') {
                    log(
                        "warehouse",
                        json_format,
                        "rejected: items starting with F are out of stock (422)",
                    );
                    return false;
                }
                let audit = threadline::spawn(async move {
                    log("audit", json_format, "order recorded in the audit trail");
                });
                let mut job = json!({"order": n + 1, "item": item})
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                Context::current().inject(&mut JsonCarrierMut::new(&mut job));
                let sent = jobs_tx
                    .send(serde_json::Value::Object(job).to_string())
                    .await
                    .is_ok();
                log("warehouse", json_format, "shipping job enqueued");
                let _ = audit.await;
                sent
            })
            .await;
        placed += usize::from(accepted);
    }
    drop(jobs_tx);
    let handled = worker.await.context("worker task")?;
    println!(
        "demo: {} order(s) placed, {placed} accepted, {handled} shipping job(s) handled, none lost",
        orders.len()
    );
    anyhow::ensure!(
        handled == placed,
        "jobs lost: {placed} enqueued, {handled} handled"
    );
    Ok(())
}
