//! `threadline demo`: a store, a warehouse and a shipping worker in one process, and
//! one request context you can watch crossing all three.
//!
//! ```text
//!  browser ──HTTP──▶ store :8000 ──HTTP (client layer)──▶ warehouse :9000 ──queue──▶ worker
//!                     │ /journeys                            │ threadline::spawn
//!                     ▼                                      ▼
//!                   logs ◀────────── every line carries the context ──────── audit task
//! ```
//!
//! * The **store** ([`store`]) serves an order form, "authenticates" the caller (binds
//!   `user.id` and `tenant.id`), and calls the warehouse through
//!   [`threadline_tower::PropagateLayer`]. It also serves the journey pages.
//! * The **warehouse** ([`warehouse`]) rejects items whose name starts with `F` (422);
//!   otherwise it enqueues a shipping job and spawns an audit task with
//!   [`threadline::spawn`].
//! * The **worker** ([`broker`]) restores the job's context before handling it. The
//!   queue is in-process by default; `--broker nats://…`, `amqp://…` or `redis://…`
//!   switch to the real adapters.
//! * Logs ([`logs`]) go to stdout as text or JSON, and into the journey store
//!   ([`journey`]) that feeds `GET /journeys/{correlation_id}`.
//!
//! Ctrl-C (or SIGTERM) stops accepting requests, lets in-flight jobs finish and prints
//! one summary line.
//!
//! # The same in a service of your own
//!
//! What the store does, in the lines an axum service adds: capture on the way in,
//! context on every log line, forward on the way out, bind who the caller is.
//!
//! ```no_run
//! use axum::{Router, routing::post};
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use threadline::{HeaderRule, Policy};
//! use threadline_tower::{PropagateLayer, Target, Targets, ThreadlineLayer, TrustPolicy};
//! use tower::ServiceBuilder;
//! use tracing_subscriber::prelude::*;
//!
//! # async fn place_order() {}
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Which headers travel: the correlation id and W3C trace context are built in.
//! let policy = Policy::builder()
//!     .header_rule(HeaderRule::new("x-tenant-id").trusted_only())
//!     .build()?;
//!
//! // Every log line carries correlation_id, trace_id, span_id, tenant_id, user.id.
//! tracing::subscriber::set_global_default(
//!     tracing_subscriber::registry().with(threadline_tracing::json_layer()),
//! )?;
//!
//! // In: capture and scope every request (callers inside 10.0.0.0/8 are trusted).
//! let app: Router = Router::new()
//!     .route("/orders", post(place_order))
//!     .layer(ThreadlineLayer::new(policy).trust(TrustPolicy::peer_in(["10.0.0.0/8"])?));
//!
//! // Out: the context goes to your own services only.
//! let client = ServiceBuilder::new()
//!     .layer(PropagateLayer::new(Targets::new().allow(Target::host("*.svc.internal"))))
//!     .service(Client::builder(TokioExecutor::new()).build_http::<String>());
//!
//! // In a handler, once you know who is calling:
//! //     threadline::bind("user.id", user.id);
//! //     threadline::spawn(audit(order));   // the task keeps the context
//! # let _ = (app, client);
//! # Ok(()) }
//! ```

pub mod broker;
mod html;
pub mod journey;
pub mod logs;
pub mod store;
pub mod warehouse;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use threadline::{HeaderRule, Policy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use broker::BrokerUrl;
pub use journey::Journeys;
pub use logs::LogFormat;

/// The header the store sets for the warehouse, and every service captures.
pub const TENANT_HEADER: &str = "x-tenant-id";

/// Options of `threadline demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Where the store listens (the order form and the journey pages). Port 0 picks a
    /// free port.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub store_addr: SocketAddr,
    /// Where the warehouse API listens. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub warehouse_addr: SocketAddr,
    /// The shipping queue: `embedded` (in-process, nothing to install),
    /// `nats://127.0.0.1:4222`, `amqp://guest:guest@127.0.0.1:5672` or
    /// `redis://127.0.0.1:6379`.
    #[arg(long, default_value = "embedded")]
    pub broker: BrokerUrl,
    /// Treat every caller of the store as outside the trust boundary: their correlation
    /// id, trace and tenant header are replaced (the edge policy at work). By default
    /// the store trusts callers on 127.0.0.1.
    #[arg(long)]
    pub untrusted: bool,
    /// `text` (one line per event) or `json` (one JSON object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The most detailed level printed: error, warn, info, debug or trace. The journey
    /// pages record debug events whatever this says.
    #[arg(long, default_value = "info")]
    pub log_level: tracing_subscriber::filter::LevelFilter,
    /// How long shutdown waits for in-flight requests and jobs, in seconds.
    #[arg(long, default_value_t = 15)]
    pub drain_secs: u64,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            store_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 8000)),
            warehouse_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 9000)),
            broker: BrokerUrl::Embedded,
            untrusted: false,
            log_format: LogFormat::Text,
            log_level: tracing_subscriber::filter::LevelFilter::INFO,
            drain_secs: 15,
        }
    }
}

/// Counters of one run, shared by the services.
#[derive(Debug, Default)]
pub struct Stats {
    /// Orders placed through the form (valid ones).
    pub orders: AtomicU64,
    /// Orders the warehouse accepted.
    pub accepted: AtomicU64,
    /// Orders the warehouse refused (the `F` rule, 422).
    pub rejected: AtomicU64,
    /// Orders that failed on the way (warehouse unreachable, queue down).
    pub failed: AtomicU64,
    /// Order forms refused before reaching the warehouse (bad input).
    pub invalid: AtomicU64,
    /// Shipping jobs the queue took.
    pub enqueued: AtomicU64,
    /// Shipping jobs the worker finished.
    pub handled: AtomicU64,
    /// Messages on the queue that were not shipping jobs (counted, acknowledged).
    pub malformed: AtomicU64,
    /// Audit tasks started.
    pub audits_started: AtomicU64,
    /// Audit tasks finished.
    pub audits_done: AtomicU64,
}

impl Stats {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::SeqCst)
    }

    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::SeqCst);
    }

    fn summary(&self) -> Summary {
        let enqueued = Self::get(&self.enqueued);
        let handled = Self::get(&self.handled);
        Summary {
            orders: Self::get(&self.orders),
            accepted: Self::get(&self.accepted),
            rejected: Self::get(&self.rejected),
            failed: Self::get(&self.failed),
            invalid: Self::get(&self.invalid),
            enqueued,
            handled,
            lost: enqueued.saturating_sub(handled),
        }
    }
}

/// What one run did, printed as one line at shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Valid orders placed.
    pub orders: u64,
    /// Orders the warehouse accepted.
    pub accepted: u64,
    /// Orders the warehouse refused.
    pub rejected: u64,
    /// Orders that failed on the way.
    pub failed: u64,
    /// Order forms refused for bad input.
    pub invalid: u64,
    /// Shipping jobs enqueued.
    pub enqueued: u64,
    /// Shipping jobs handled by the worker.
    pub handled: u64,
    /// Jobs enqueued but not handled when the run ended.
    pub lost: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "threadline demo: orders={} accepted={} rejected={} failed={} invalid={} \
             jobs_enqueued={} jobs_handled={} lost={}",
            self.orders,
            self.accepted,
            self.rejected,
            self.failed,
            self.invalid,
            self.enqueued,
            self.handled,
            self.lost
        )
    }
}

/// The policy every service of the demo captures with: the correlation id and W3C
/// trace context (built in), `x-tenant-id` from trusted callers only, local fields
/// (`user.id`, `tenant.id`) accepted from trusted callers over HTTP, and the edge mode
/// (an untrusted caller gets a fresh trace and correlation id).
pub fn policy() -> anyhow::Result<Policy> {
    Policy::builder()
        .header_rule(HeaderRule::new(TENANT_HEADER).trusted_only())
        .fields_over_http(true)
        .untrusted_start_fresh(true, true)
        .build()
        .context("building the demo policy")
}

/// A running demo: the addresses it listens on and the handle to stop it.
pub struct Running {
    /// The store's address (form, journeys).
    pub store: SocketAddr,
    /// The warehouse's address.
    pub warehouse: SocketAddr,
    /// Which queue carries the shipping jobs.
    pub broker: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<Summary>>,
}

impl Running {
    /// The URLs a person opens, one per line.
    pub fn urls(&self) -> String {
        let s = display_addr(self.store);
        let w = display_addr(self.warehouse);
        format!(
            "  order form   http://{s}/orders/new\n  journeys     http://{s}/journeys\n  warehouse    http://{w}/api/orders\n  queue        {}\n",
            self.broker
        )
    }

    /// Stops accepting requests, waits (bounded) for in-flight requests, shipping jobs
    /// and audit tasks, closes the queue and answers what the run did.
    pub async fn shutdown(self) -> anyhow::Result<Summary> {
        let _ = self.stop.send(true);
        self.task.await.context("the demo's supervisor task")?
    }
}

fn display_addr(addr: SocketAddr) -> SocketAddr {
    // A wildcard listen address is reached through loopback.
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

async fn bind(what: &str, addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("{what}: cannot listen on {addr} (pass {flag} 127.0.0.1:0 for a free port)")
    })
}

/// Starts the store, the warehouse and the worker on the current Tokio runtime. Logs go
/// to whatever `tracing` dispatcher is current (see [`logs::dispatch`]); `journeys` is
/// the store the journey pages read (the one given to [`logs::JourneyLayer`]).
pub async fn start(args: Args, journeys: Journeys) -> anyhow::Result<Running> {
    let policy = policy()?;
    let stats = Arc::new(Stats::default());
    let store_listener = bind("store", args.store_addr, "--store-addr").await?;
    let warehouse_listener = bind("warehouse", args.warehouse_addr, "--warehouse-addr").await?;
    let store_addr = display_addr(store_listener.local_addr()?);
    let warehouse_addr = display_addr(warehouse_listener.local_addr()?);
    let (stop_tx, stop_rx) = watch::channel(false);

    let queue = broker::connect(&args.broker, policy.clone(), stats.clone())
        .await
        .with_context(|| format!("connecting the shipping queue ({})", args.broker))?;
    let broker_name = queue.describe();
    let (publisher, worker) = queue.into_parts();

    let warehouse_app = warehouse::router(warehouse::State {
        policy: policy.clone(),
        stats: stats.clone(),
        publisher: publisher.clone(),
    });
    let store_app = store::router(store::State::new(
        policy.clone(),
        args.untrusted,
        stats.clone(),
        journeys,
        warehouse_addr,
        broker_name.clone(),
    )?);

    // The warehouse stops after the store: an order the store is still placing
    // reaches it.
    let (warehouse_stop, warehouse_stop_rx) = watch::channel(false);
    let store_server = serve(store_listener, store_app, stop_rx.clone());
    let warehouse_server = serve(warehouse_listener, warehouse_app, warehouse_stop_rx);
    let drain = Duration::from_secs(args.drain_secs.max(1));
    let mut stop_wait = stop_rx;
    let task = tokio::spawn(async move {
        let _ = stop_wait.wait_for(|stop| *stop).await;
        // 1. No new requests; in-flight ones finish (bounded).
        let servers = async {
            let _ = store_server.await;
            let _ = warehouse_stop.send(true);
            let _ = warehouse_server.await;
        };
        if tokio::time::timeout(drain, servers).await.is_err() {
            tracing::warn!(
                "requests still open after {}s; closing them",
                drain.as_secs()
            );
        }
        let _ = warehouse_stop.send(true);
        // 2. Every enqueued job handled, every audit task done (bounded).
        let deadline = tokio::time::Instant::now() + drain;
        loop {
            let jobs_left = Stats::get(&stats.enqueued) > Stats::get(&stats.handled);
            let audits_left = Stats::get(&stats.audits_started) > Stats::get(&stats.audits_done);
            if (!jobs_left && !audits_left) || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // 3. The worker stops consuming; the queue is closed (and removed on brokers).
        worker.stop(drain).await;
        drop(publisher);
        Ok(stats.summary())
    });
    Ok(Running {
        store: store_addr,
        warehouse: warehouse_addr,
        broker: broker_name,
        stop: stop_tx,
        task,
    })
}

fn serve(
    listener: TcpListener,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
    })
}

/// Runs `threadline demo` until Ctrl-C or SIGTERM, then prints the summary line.
pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let journeys = Journeys::default();
        let stdout = logs::Stdout::detect();
        let dispatch = logs::dispatch(
            args.log_format,
            args.log_level,
            stdout,
            stdout.ansi(),
            journeys.clone(),
        );
        tracing::dispatcher::set_global_default(dispatch)
            .context("installing the log subscriber")?;
        // Handlers first: a signal that arrives once the URLs are out must be ours.
        let signals = Signals::new()?;
        let running = start(args, journeys).await?;
        println!("threadline demo is running (Ctrl-C stops it)");
        print!("{}", running.urls());
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        signals.wait().await;
        eprintln!("threadline demo: shutting down; waiting for in-flight requests and jobs");
        let summary = running.shutdown().await?;
        println!("{summary}");
        let _ = std::io::stdout().flush();
        anyhow::ensure!(
            summary.lost == 0,
            "{} shipping job(s) were enqueued but not handled",
            summary.lost
        );
        Ok(())
    })
}

struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
                term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
