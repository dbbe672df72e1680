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
//!   otherwise it publishes a shipping job, tells the store what the queue answered
//!   (accepted, refused, or unknown with a safe retry) and spawns an audit task with
//!   [`threadline::spawn`].
//! * The **worker** ([`broker`]) restores the job's context before handling it, up to
//!   `--worker-concurrency` jobs at once. The queue is in-process and bounded by
//!   default; `--broker nats://…`, `amqp://…` or `redis://…` switch to the real
//!   adapters with acknowledged publishes and a durable queue.
//! * Every order is counted by its number ([`ledger`]): accepted, refused, unknown,
//!   shipped, shipped after a refusal, left in the queue.
//! * Logs ([`logs`]) go to stdout as text or JSON, and into the journey store
//!   ([`journey`], bounded by bytes) that feeds `GET /journeys/{correlation_id}`.
//! * The **sandbox** (on unless `--no-sandbox`): a second warehouse that *does* stock
//!   items starting with `F` (the change under test), on its own port, registered in a
//!   [`threadline_route::Router`] under a routing key (`--sandbox-key`, default
//!   [`DEFAULT_SANDBOX_KEY`]). The store's calls go through
//!   [`threadline_tower::RouteLayer`], so an order whose context carries the key goes
//!   to the sandbox warehouse; its job carries the key through the queue, and the
//!   worker hands it to the sandbox worker ([`broker::Dispatch`], by a
//!   [`threadline_route::Selector`]). The order form links to the preview
//!   (`?preview=<key>`, kept in a cookie). Every service binds `instance`
//!   (`baseline` or `sandbox:<key>`), shown on log lines and per hop on the journey.
//!
//! Ctrl-C (or SIGTERM) stops accepting requests, lets in-flight requests finish, ships
//! every job the embedded queue holds (a broker keeps the jobs not taken yet for the
//! next start with the same `--queue`) and prints the per-order summary.
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
pub mod ledger;
pub mod logs;
pub mod store;
pub mod warehouse;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use threadline::{HeaderRule, Policy, Routing, RoutingForm, RoutingKey};
use threadline_route::{Rule, Selector, Upstream};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use broker::BrokerUrl;
pub use journey::Journeys;
pub use logs::LogFormat;

/// The header the store sets for the warehouse, and every service captures.
pub const TENANT_HEADER: &str = "x-tenant-id";
/// Jobs the worker handles at once unless `--worker-concurrency` says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 128;
/// The embedded queue's bound unless `--queue-capacity` says otherwise.
pub const DEFAULT_CAPACITY: usize = 1024;
/// The simulated work of packing one parcel unless `--packing-ms` says otherwise.
pub const DEFAULT_PACKING_MS: u64 = 40;
/// The sandbox's routing key unless `--sandbox-key` says otherwise.
pub const DEFAULT_SANDBOX_KEY: &str = "sandbox-f";
/// The header that carries the routing key between the services (also written as the
/// baggage member [`ROUTING_BAGGAGE`]).
pub const ROUTING_HEADER: &str = "x-routing-key";
/// The baggage member that carries the routing key.
pub const ROUTING_BAGGAGE: &str = "routing-key";
/// The query parameter of preview links, and the cookie they leave.
pub const PREVIEW_PARAM: &str = "preview";
/// The service name the routing rule for the shipping workers is registered under
/// (the worker's [`Selector`] asks about it).
pub const WORKER_SERVICE: &str = "shipping-worker";

fn routing_key_arg(s: &str) -> Result<RoutingKey, String> {
    RoutingKey::new(s.trim()).map_err(|e| {
        format!("invalid routing key {s:?} ({e}): use 1 to 64 letters, digits, '.', '_' or '-'")
    })
}

fn queue_name(s: &str) -> Result<String, String> {
    broker::check_queue_name(s)
}

fn number_in(s: &str, lo: usize, hi: usize) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from {lo} to {hi}")),
    }
}

fn concurrency_arg(s: &str) -> Result<usize, String> {
    number_in(s, 1, 4096)
}

fn capacity_arg(s: &str) -> Result<usize, String> {
    number_in(s, 1, 1_000_000)
}

fn mib_arg(s: &str) -> Result<usize, String> {
    number_in(s, 1, 4096)
}

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
    /// Run no sandbox: every order goes to the baseline warehouse and worker.
    #[arg(long)]
    pub no_sandbox: bool,
    /// The sandbox's routing key (what the preview link carries).
    #[arg(long, default_value = DEFAULT_SANDBOX_KEY, value_parser = routing_key_arg)]
    pub sandbox_key: RoutingKey,
    /// Where the sandbox warehouse listens. Default: the warehouse's port + 1 (a free
    /// port when the warehouse's is 0).
    #[arg(long)]
    pub sandbox_addr: Option<SocketAddr>,
    /// The shipping queue: `embedded` (in-process, nothing to install),
    /// `nats://127.0.0.1:4222` (JetStream), `amqp://guest:guest@127.0.0.1:5672` or
    /// `redis://127.0.0.1:6379`.
    #[arg(long, default_value = "embedded")]
    pub broker: BrokerUrl,
    /// The name of the queue, stream or subject on the broker. Jobs left in it at exit
    /// are shipped by the next start with the same name.
    #[arg(long, default_value = broker::DEFAULT_QUEUE, value_parser = queue_name)]
    pub queue: String,
    /// How many shipping jobs the worker handles at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY, value_parser = concurrency_arg)]
    pub worker_concurrency: usize,
    /// How many jobs the embedded queue holds; when full, orders are refused with 503
    /// and `Retry-After`.
    #[arg(long, default_value_t = DEFAULT_CAPACITY, value_parser = capacity_arg)]
    pub queue_capacity: usize,
    /// The simulated work of packing one parcel, in milliseconds.
    #[arg(long, default_value_t = DEFAULT_PACKING_MS, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub packing_ms: u64,
    /// How much memory the journey pages may keep, in MiB (oldest journeys go first).
    #[arg(long, default_value_t = journey::DEFAULT_MIB, value_parser = mib_arg)]
    pub journey_mib: usize,
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
    /// How long shutdown waits for in-flight requests, and then for the jobs in hand,
    /// in seconds.
    #[arg(long, default_value_t = 15)]
    pub drain_secs: u64,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            store_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 8000)),
            warehouse_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 9000)),
            no_sandbox: false,
            sandbox_key: RoutingKey::new(DEFAULT_SANDBOX_KEY)
                .unwrap_or_else(|_| unreachable!("the default key is valid")),
            sandbox_addr: None,
            broker: BrokerUrl::Embedded,
            queue: broker::DEFAULT_QUEUE.to_owned(),
            worker_concurrency: DEFAULT_CONCURRENCY,
            queue_capacity: DEFAULT_CAPACITY,
            packing_ms: DEFAULT_PACKING_MS,
            journey_mib: journey::DEFAULT_MIB,
            untrusted: false,
            log_format: LogFormat::Text,
            log_level: tracing_subscriber::filter::LevelFilter::INFO,
            drain_secs: 15,
        }
    }
}

/// Counters of one run that are not per order (those are in [`ledger::Ledger`]).
#[derive(Debug, Default)]
pub struct Stats {
    /// Orders the warehouse refused (the `F` rule, 422).
    pub rejected: AtomicU64,
    /// Orders for which the store got no answer from the warehouse.
    pub failed: AtomicU64,
    /// Order forms refused before reaching the warehouse (bad input).
    pub invalid: AtomicU64,
    /// Messages on the queue that were not shipping jobs (counted, acknowledged).
    pub malformed: AtomicU64,
    /// Audit tasks started.
    pub audits_started: AtomicU64,
    /// Audit tasks finished.
    pub audits_done: AtomicU64,
    /// Shipping jobs being handled now.
    pub in_flight: AtomicU64,
    /// The most shipping jobs handled at once.
    pub peak_in_flight: AtomicU64,
}

impl Stats {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::SeqCst)
    }

    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::SeqCst);
    }
}

/// What one run did, per order, printed as one line at shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Order numbers given out by the warehouse (a retry with the same idempotency
    /// key is the same order).
    pub orders: u64,
    /// Orders whose job the queue confirmed.
    pub accepted: u64,
    /// Orders the user was told were not created (the queue certainly did not take
    /// the job: full, down, or it said no).
    pub refused: u64,
    /// Orders whose outcome the user was told is unknown (handed to the broker, never
    /// confirmed nor refused).
    pub unknown: u64,
    /// Orders the warehouse rejected (out of stock).
    pub rejected: u64,
    /// Order forms refused for bad input.
    pub invalid: u64,
    /// Orders for which the store got no answer from the warehouse.
    pub failed: u64,
    /// Orders of this run shipped by this run.
    pub shipped: u64,
    /// Shipped orders the user had been told were not created (must be 0).
    pub shipped_after_refusal: u64,
    /// Deliveries of an already shipped job, acknowledged without shipping it again.
    pub duplicates: u64,
    /// Jobs of earlier runs (left in a durable queue) shipped by this run.
    pub earlier_runs: u64,
    /// Accepted orders not shipped at exit that wait in the durable queue for the next
    /// start.
    pub left_in_queue: u64,
    /// Accepted orders not shipped at exit that no queue keeps (must be 0).
    pub lost: u64,
}

impl Summary {
    fn of(ledger: &ledger::Ledger, stats: &Stats, durable: bool) -> Self {
        let c = ledger.counts();
        Summary {
            orders: c.orders,
            accepted: c.accepted,
            refused: c.refused,
            // An order whose publish never answered (cut off at shutdown) was never
            // told an outcome either.
            unknown: c.unknown + c.open,
            rejected: Stats::get(&stats.rejected),
            invalid: Stats::get(&stats.invalid),
            failed: Stats::get(&stats.failed),
            shipped: c.shipped,
            shipped_after_refusal: c.shipped_after_refusal,
            duplicates: c.duplicates,
            earlier_runs: c.earlier_runs,
            left_in_queue: if durable { c.accepted_unshipped } else { 0 },
            lost: if durable { 0 } else { c.accepted_unshipped },
        }
    }

    /// A sentence saying where the accepted orders not shipped are, when there are any.
    pub fn explain(&self, queue: &str) -> Option<String> {
        let mut parts = Vec::new();
        if self.left_in_queue > 0 {
            parts.push(format!(
                "{} accepted order(s) wait in {queue} and ship at the next start with the same --queue",
                self.left_in_queue
            ));
        }
        if self.lost > 0 {
            parts.push(format!(
                "{} accepted order(s) were not shipped and the embedded queue keeps nothing",
                self.lost
            ));
        }
        if self.shipped_after_refusal > 0 {
            parts.push(format!(
                "{} order(s) shipped although the user was told they were not created",
                self.shipped_after_refusal
            ));
        }
        (!parts.is_empty()).then(|| format!("threadline demo: {}", parts.join("; ")))
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "threadline demo: orders={} accepted={} refused={} unknown={} rejected={} \
             invalid={} failed={} shipped={} shipped_after_refusal={} duplicates={} \
             earlier_runs={} left_in_queue={} lost={}",
            self.orders,
            self.accepted,
            self.refused,
            self.unknown,
            self.rejected,
            self.invalid,
            self.failed,
            self.shipped,
            self.shipped_after_refusal,
            self.duplicates,
            self.earlier_runs,
            self.left_in_queue,
            self.lost
        )
    }
}

/// The policy every service of the demo captures with: the correlation id and W3C
/// trace context (built in), `x-tenant-id` from trusted callers only, local fields
/// (`user.id`, `tenant.id`) accepted from trusted callers over HTTP, the edge mode
/// (an untrusted caller gets a fresh trace and correlation id), and the routing key:
/// read from `x-routing-key`, the baggage member `routing-key`, and at the edge the
/// preview parameter and cookie (`preview`); written as the header and the baggage
/// member on every call and job. Like every route, the key is taken from trusted
/// callers only: with `--untrusted` the store's callers stay on the baseline (a
/// shared environment that wants preview links for anyone holding them opens it with
/// `Routing::accept_untrusted`).
pub fn policy() -> anyhow::Result<Policy> {
    Policy::builder()
        .header_rule(HeaderRule::new(TENANT_HEADER).trusted_only())
        .fields_over_http(true)
        .untrusted_start_fresh(true, true)
        .routing(
            Routing::header(ROUTING_HEADER)
                .read(RoutingForm::baggage(ROUTING_BAGGAGE))
                .read(RoutingForm::query(PREVIEW_PARAM))
                .read(RoutingForm::cookie(PREVIEW_PARAM)),
        )
        .build()
        .context("building the demo policy")
}

/// A running demo: the addresses it listens on and the handle to stop it.
pub struct Running {
    /// The store's address (form, journeys).
    pub store: SocketAddr,
    /// The warehouse's address.
    pub warehouse: SocketAddr,
    /// The sandbox warehouse's address and key, when the sandbox runs.
    pub sandbox: Option<(SocketAddr, RoutingKey)>,
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
        let mut out = format!(
            "  order form   http://{s}/orders/new\n  journeys     http://{s}/journeys\n  warehouse    http://{w}/api/orders\n"
        );
        if let Some((addr, key)) = &self.sandbox {
            let key = key.as_str();
            out.push_str(&format!(
                "  sandbox      http://{}/api/orders (key {key}; stocks items starting with F)\n  preview      http://{s}/orders/new?{PREVIEW_PARAM}={key}\n",
                display_addr(*addr)
            ));
        }
        out.push_str(&format!("  queue        {}\n", self.broker));
        out
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
/// the store the journey pages read (the one given to [`logs::JourneyLayer`]); its
/// byte bound is set from `--journey-mib`.
pub async fn start(args: Args, journeys: Journeys) -> anyhow::Result<Running> {
    let policy = policy()?;
    let stats = Arc::new(Stats::default());
    journeys.set_max_bytes(args.journey_mib.saturating_mul(1 << 20));
    let store_listener = bind("store", args.store_addr, "--store-addr").await?;
    let warehouse_listener = bind("warehouse", args.warehouse_addr, "--warehouse-addr").await?;
    let sandbox_listener = if args.no_sandbox {
        None
    } else {
        let addr = args.sandbox_addr.unwrap_or_else(|| {
            let w = args.warehouse_addr;
            SocketAddr::new(
                w.ip(),
                w.port()
                    .checked_add(1)
                    .filter(|_| w.port() != 0)
                    .unwrap_or(0),
            )
        });
        Some(bind("sandbox warehouse", addr, "--sandbox-addr").await?)
    };
    let store_addr = display_addr(store_listener.local_addr()?);
    let warehouse_addr = display_addr(warehouse_listener.local_addr()?);
    let sandbox_addr = match &sandbox_listener {
        Some(l) => Some(display_addr(l.local_addr()?)),
        None => None,
    };

    // The sandbox is registered under its key: the store's calls to the warehouse and
    // the shipping workers' jobs that carry the key go to the sandbox.
    let routes = threadline_route::Router::new();
    let mut dispatch = broker::Dispatch::baseline_only();
    let mut preview = None;
    if let Some(addr) = sandbox_addr {
        let key = &args.sandbox_key;
        let upstream = Upstream::parse(&format!("http://{addr}"))
            .with_context(|| format!("the sandbox's address {addr}"))?;
        let rules = vec![
            Rule::new(
                format!("{key}-warehouse", key = key.as_str()),
                &warehouse_addr.to_string(),
                [key.as_str()],
                upstream.clone(),
            )?,
            // The shipping workers run in this process: only the claim counts.
            Rule::new(
                format!("{key}-worker", key = key.as_str()),
                WORKER_SERVICE,
                [key.as_str()],
                upstream,
            )?,
        ];
        routes.set_rules("demo", rules)?;
        dispatch = broker::Dispatch::with_sandbox(
            Selector::new(routes.clone(), WORKER_SERVICE),
            &broker::sandbox_instance(key),
        );
        preview = Some(store::Preview {
            key: key.clone(),
            param: PREVIEW_PARAM.to_owned(),
        });
        tracing::info!(
            routing_key = key.as_str(),
            warehouse = %warehouse_addr,
            sandbox = %addr,
            "sandbox registered: orders carrying its key go to the sandbox warehouse and worker"
        );
    }
    let (stop_tx, stop_rx) = watch::channel(false);

    // Every job names the run that published it.
    let run = format!("{:08x}", fastrand::u32(..));
    // A broker queue outlives the run: the orders shipped from it are kept on disk, so
    // a job the broker delivers again after a restart is not shipped twice.
    let ledger = match args.broker {
        BrokerUrl::Embedded => ledger::Ledger::new(run),
        _ => {
            let (log, shipped) = ledger::ShippedLog::open(&args.queue)
                .with_context(|| format!("opening the shipped-orders log of {}", args.queue))?;
            ledger::Ledger::with_log(run, log, &shipped)
        }
    };
    let ledger = Arc::new(ledger);
    let settings = broker::Settings {
        url: args.broker.clone(),
        queue: args.queue.clone(),
        concurrency: args.worker_concurrency.max(1),
        capacity: args.queue_capacity.max(1),
        packing: Duration::from_millis(args.packing_ms),
    };
    let queue = broker::connect(
        &settings,
        policy.clone(),
        stats.clone(),
        ledger.clone(),
        dispatch,
    )
    .await
    .with_context(|| format!("connecting the shipping queue ({})", args.broker))?;
    let broker_name = queue.describe();
    let (publisher, worker) = queue.into_parts();

    let warehouse_app = warehouse::router(warehouse::State {
        policy: policy.clone(),
        stats: stats.clone(),
        ledger: ledger.clone(),
        publisher: publisher.clone(),
        instance: broker::BASELINE.into(),
        stocks_f: false,
    });
    let sandbox_app = sandbox_listener.map(|l| {
        let app = warehouse::router(warehouse::State {
            policy: policy.clone(),
            stats: stats.clone(),
            ledger: ledger.clone(),
            publisher: publisher.clone(),
            instance: broker::sandbox_instance(&args.sandbox_key).into(),
            stocks_f: true,
        });
        (l, app)
    });
    let store_app = store::router(store::State::new(store::Config {
        policy: policy.clone(),
        untrusted: args.untrusted,
        stats: stats.clone(),
        journeys,
        warehouse: warehouse_addr,
        publisher: publisher.clone(),
        concurrency: settings.concurrency,
        routes,
        preview,
    })?);

    // The warehouse stops after the store: an order the store is still placing
    // reaches it.
    let (warehouse_stop, warehouse_stop_rx) = watch::channel(false);
    let store_server = serve(store_listener, store_app, stop_rx.clone());
    let sandbox_server = sandbox_app.map(|(l, app)| serve(l, app, warehouse_stop_rx.clone()));
    let warehouse_server = serve(warehouse_listener, warehouse_app, warehouse_stop_rx);
    let drain = Duration::from_secs(args.drain_secs.max(1));
    let durable = args.broker.durable();
    let mut stop_wait = stop_rx;
    let task = tokio::spawn(async move {
        let _ = stop_wait.wait_for(|stop| *stop).await;
        // 1. No new requests; in-flight ones finish (bounded).
        let servers = async {
            let _ = store_server.await;
            let _ = warehouse_stop.send(true);
            let _ = warehouse_server.await;
            if let Some(s) = sandbox_server {
                let _ = s.await;
            }
        };
        if tokio::time::timeout(drain, servers).await.is_err() {
            tracing::warn!(
                "requests still open after {}s; closing them",
                drain.as_secs()
            );
        }
        let _ = warehouse_stop.send(true);
        // 2. The worker stops: the embedded queue is drained (it keeps nothing), a
        //    broker keeps the jobs not taken yet; jobs in hand finish (bounded).
        worker.stop(drain).await;
        // 3. Audit tasks finish (bounded).
        let deadline = tokio::time::Instant::now() + drain;
        while Stats::get(&stats.audits_started) > Stats::get(&stats.audits_done)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(publisher);
        Ok(Summary::of(&ledger, &stats, durable))
    });
    Ok(Running {
        store: store_addr,
        warehouse: warehouse_addr,
        sandbox: sandbox_addr.map(|a| (a, args.sandbox_key.clone())),
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
        let queue = running.broker.clone();
        let summary = running.shutdown().await?;
        println!("{summary}");
        if let Some(explained) = summary.explain(&queue) {
            println!("{explained}");
        }
        let _ = std::io::stdout().flush();
        anyhow::ensure!(
            summary.lost == 0 && summary.shipped_after_refusal == 0,
            "accepted orders were lost or refused orders shipped"
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
