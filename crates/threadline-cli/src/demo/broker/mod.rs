//! The shipping queue between the warehouse and the worker.
//!
//! | `--broker` | carrier of the context | publish answered by | kept across a restart of the demo |
//! |---|---|---|---|
//! | `embedded` (default) | the JSON envelope: an `_http_headers` object inside the job ([`threadline::json`]) | the bounded in-process queue (full: refused) | no: drained before exit |
//! | `nats://…` | NATS message headers ([`Context::inject_into`]) | the JetStream stream's acknowledgement (`Nats-Msg-Id` de-duplicates) | yes: a file-backed work-queue stream and a durable pull consumer |
//! | `amqp://…` | AMQP headers and `correlation_id` ([`Context::inject_into`]) | a publisher confirm of a persistent message (`mandatory`) | yes: a durable queue |
//! | `redis://…` | `tl:` fields of a Redis Streams entry ([`Context::inject_into`]) | the reply of an atomic XADD script (a key per order de-duplicates) | yes: a stream read by a consumer group |
//!
//! Every publish answers one of three outcomes ([`Published`]): **accepted** (the broker
//! confirmed it), **refused** (the job was certainly not handed over: the queue is
//! full, the connection is down, the broker said no) or **unknown** (handed over, no
//! confirmation in time). An unknown outcome is never reported as "not created": the
//! job carries the order's idempotency key, so a retry cannot ship it twice.
//!
//! The queue is named by `--queue` (default [`DEFAULT_QUEUE`]); jobs left in a
//! durable queue at exit are shipped by the next start with the same name. Every job
//! names the run that published it, so a run tells its own orders from earlier ones.
//!
//! One consumer takes the jobs and hands each to a worker instance ([`Dispatch`]): the
//! baseline's, or the sandbox's when the job's routing key (restored with the rest of
//! its context) is one a live rule claims for the shipping workers. This is the
//! dispatch form of selective consumption ([`threadline_route::Selector`]): one
//! decision per job, at one place, so acknowledgement and the per-order ledger are the
//! same whichever instance ships it.
//!
//! The worker handles up to `--worker-concurrency` jobs at once. Losing and regaining
//! the broker connection is logged with the queue named, and the store's journeys page
//! shows the queue's state ([`Health`]).

mod amqp;
mod embedded;
mod nats;
mod redis;
mod restore;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use threadline::codec::SpanId;
use threadline::{Context, Policy, RoutingKey};
use threadline_route::Selector;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::Stats;
use super::journey::{now_micros, rfc3339};
use super::ledger::{Claim, Ledger};

/// How long connecting and one network step may take.
pub(crate) const NETWORK: Duration = Duration::from_secs(5);
/// How long a publish waits for the broker's confirmation before its outcome is
/// reported as unknown.
pub(crate) const CONFIRM: Duration = Duration::from_secs(3);
/// The most jobs a broker queue holds; beyond it publishing is refused.
pub const MAX_QUEUED: u64 = 100_000;
/// The queue name used when `--queue` is not given.
pub const DEFAULT_QUEUE: &str = "threadline-demo-shipping";
/// The longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Which queue carries the shipping jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerUrl {
    /// In-process, nothing to install.
    Embedded,
    /// NATS with JetStream (`nats://host:port`).
    Nats(String),
    /// RabbitMQ or another AMQP 0.9.1 broker (`amqp://user:pass@host:port[/vhost]`).
    Amqp(String),
    /// Redis Streams (`redis://host:port`).
    Redis(String),
}

impl FromStr for BrokerUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s == "embedded" {
            return Ok(BrokerUrl::Embedded);
        }
        let scheme = s.split("://").next().unwrap_or_default();
        match scheme {
            "nats" => Ok(BrokerUrl::Nats(s.to_owned())),
            "amqp" => Ok(BrokerUrl::Amqp(s.to_owned())),
            "redis" => Ok(BrokerUrl::Redis(s.to_owned())),
            _ => Err(format!(
                "unknown broker {s:?}: use embedded, nats://HOST:PORT, amqp://USER:PASS@HOST:PORT or redis://HOST:PORT"
            )),
        }
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerUrl::Embedded => f.write_str("embedded"),
            BrokerUrl::Nats(u) | BrokerUrl::Redis(u) => f.write_str(u),
            // Never print the password.
            BrokerUrl::Amqp(u) => f.write_str(&without_password(u)),
        }
    }
}

impl BrokerUrl {
    /// Whether jobs left in this queue at exit are kept for the next start.
    pub fn durable(&self) -> bool {
        !matches!(self, BrokerUrl::Embedded)
    }
}

fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user_pass = &url[s + 3..at];
            let user = user_pass.split(':').next().unwrap_or_default();
            format!("{}://{}:***@{}", &url[..s], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// A queue name every broker accepts as it is: 1 to 64 ASCII letters, digits, `-` or
/// `_` (a NATS stream name and subject token, an AMQP queue name, a Redis key).
pub fn check_queue_name(name: &str) -> Result<String, String> {
    if !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "invalid queue name {name:?}: use 1 to 64 letters, digits, '-' or '_'"
        ))
    }
}

/// An idempotency key as the warehouse accepts it: 1 to 64 ASCII letters, digits,
/// `-`, `_` or `.` (it becomes a NATS message id, an AMQP message id, a Redis key part).
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A fresh idempotency key (128 random bits, hex).
pub fn new_key() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// One shipping job: what the warehouse asks the worker to ship.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    /// The warehouse's order number (unique within its run).
    pub order_id: u64,
    /// What to ship.
    pub item: String,
    /// How many.
    pub quantity: u32,
    /// The run that published it (a job of an earlier run is recognised as such).
    #[serde(default)]
    pub run: String,
    /// The order's idempotency key (the broker's de-duplication id).
    #[serde(default)]
    pub key: String,
}

/// The answer of one publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Published {
    /// The broker confirmed the job (`duplicate`: it already held it, from an earlier
    /// attempt with the same key). `call` is the parent id sent with the message.
    Accepted {
        /// The parent id sent with the message (`None` outside any scope).
        call: Option<SpanId>,
        /// The broker recognised the key: the job was taken by an earlier attempt.
        duplicate: bool,
    },
    /// The job was certainly not handed over.
    Refused {
        /// Why, for logs and the user.
        reason: String,
        /// When to try again, in seconds, when the queue knows.
        retry_after: Option<u32>,
    },
    /// The job was handed over but the broker did not confirm it in time.
    Unknown {
        /// Why, for logs and the user.
        reason: String,
    },
}

impl Published {
    fn refused(reason: impl Into<String>) -> Self {
        Published::Refused {
            reason: reason.into(),
            retry_after: Some(2),
        }
    }

    fn unknown(reason: impl Into<String>) -> Self {
        Published::Unknown {
            reason: reason.into(),
        }
    }
}

/// The connection state of the queue, shared by the publisher, the worker and the
/// journeys page. Changes are logged once per transition, with the queue named.
#[derive(Clone)]
pub struct Health {
    queue: Arc<str>,
    inner: Arc<Mutex<HealthInner>>,
}

#[derive(Clone)]
struct HealthInner {
    connected: bool,
    since_us: u64,
    disconnections: u64,
    last_error: Option<String>,
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health")
            .field("queue", &self.queue)
            .field("connected", &self.connected())
            .finish()
    }
}

impl Health {
    /// A connected queue called `queue` (as shown in logs and on the page).
    pub fn new(queue: impl Into<Arc<str>>) -> Self {
        Health {
            queue: queue.into(),
            inner: Arc::new(Mutex::new(HealthInner {
                connected: true,
                since_us: now_micros(),
                disconnections: 0,
                last_error: None,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The queue's name, as logged.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Whether the broker connection is up.
    pub fn connected(&self) -> bool {
        self.lock().connected
    }

    /// The connection works (again).
    pub fn up(&self) {
        let mut g = self.lock();
        if g.connected {
            return;
        }
        let down_ms = now_micros().saturating_sub(g.since_us) / 1000;
        g.connected = true;
        g.since_us = now_micros();
        drop(g);
        tracing::info!(queue = %self.queue, down_ms, "shipping queue connection restored");
    }

    /// The connection is lost; `why` is logged (never a message's content).
    pub fn down(&self, why: &str) {
        let mut g = self.lock();
        let why = clip(why, 200);
        g.last_error = Some(why.clone());
        if !g.connected {
            return;
        }
        g.connected = false;
        g.since_us = now_micros();
        g.disconnections += 1;
        drop(g);
        tracing::warn!(queue = %self.queue, error = %why, "shipping queue connection lost; reconnecting");
    }
}

fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// What the journeys page shows about the queue.
#[derive(Clone, Debug, Serialize)]
pub struct QueueStatus {
    /// Which queue (broker, address, name).
    pub queue: String,
    /// Whether jobs left at exit are kept for the next start.
    pub durable: bool,
    /// Whether the broker connection is up.
    pub connected: bool,
    /// Since when (RFC 3339).
    pub since: String,
    /// How often the connection was lost.
    pub disconnections: u64,
    /// The last connection error, if any.
    pub last_error: Option<String>,
    /// Jobs the worker may handle at once.
    pub worker_concurrency: usize,
    /// Jobs being handled now.
    pub in_flight: u64,
    /// The most jobs handled at once so far.
    pub peak_in_flight: u64,
    /// Jobs waiting in the embedded queue (not known for brokers).
    pub waiting: Option<usize>,
    /// The embedded queue's bound.
    pub capacity: Option<usize>,
}

/// The `instance` field of the baseline's services.
pub const BASELINE: &str = "baseline";

/// The `instance` field of the sandbox of `key`: `sandbox:<key>`.
pub fn sandbox_instance(key: &RoutingKey) -> String {
    format!("sandbox:{}", key.as_str())
}

/// Which worker instance ships a job: the sandbox's when a live rule claims the job's
/// routing key for the shipping workers, the baseline's otherwise (no key, another
/// key, the rule gone).
#[derive(Clone, Debug, Default)]
pub struct Dispatch {
    sandbox: Option<(Selector, Arc<str>)>,
}

impl Dispatch {
    /// Every job to the baseline.
    pub fn baseline_only() -> Self {
        Dispatch::default()
    }

    /// Jobs whose key `selector` says is claimed go to the sandbox instance `instance`.
    pub fn with_sandbox(selector: Selector, instance: &str) -> Self {
        Dispatch {
            sandbox: Some((selector, instance.into())),
        }
    }

    /// The instance for a job carrying `key`.
    pub fn instance(&self, key: Option<&RoutingKey>) -> &str {
        match &self.sandbox {
            Some((selector, instance)) if selector.claimed(key) => instance,
            _ => BASELINE,
        }
    }
}

/// What the worker needs.
pub(crate) struct Env {
    pub(crate) dispatch: Dispatch,
    pub(crate) stats: Arc<Stats>,
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) health: Health,
    pub(crate) packing: Duration,
    pub(crate) concurrency: usize,
}

/// Settings of the queue, from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where the queue is.
    pub url: BrokerUrl,
    /// The queue's name.
    pub queue: String,
    /// Jobs handled at once.
    pub concurrency: usize,
    /// The embedded queue's bound.
    pub capacity: usize,
    /// The simulated work of packing one parcel.
    pub packing: Duration,
}

enum Pub {
    Embedded(embedded::Publisher),
    Nats(Box<nats::Publisher>),
    Amqp(amqp::Publisher),
    Redis(redis::Publisher),
}

/// The warehouse's side of the queue. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Pub>,
    destination: Arc<str>,
    health: Health,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("destination", &self.destination)
            .finish()
    }
}

impl Publisher {
    /// Where jobs go, for logs and the journey (`embedded queue shipping`, `NATS stream …`).
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// The queue's connection state.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Jobs waiting and the bound, for the embedded queue.
    pub fn waiting(&self) -> Option<(usize, usize)> {
        match &*self.inner {
            Pub::Embedded(p) => Some(p.waiting()),
            _ => None,
        }
    }

    /// Publishes `job` with the current context and answers what became of it.
    pub async fn publish(&self, job: &Job) -> Published {
        let ctx = Context::current();
        match &*self.inner {
            Pub::Embedded(p) => p.publish(&ctx, job),
            Pub::Nats(p) => p.publish(&ctx, job).await,
            Pub::Amqp(p) => p.publish(&ctx, job).await,
            Pub::Redis(p) => p.publish(&ctx, job).await,
        }
    }
}

/// The worker: consumes jobs until stopped.
pub struct Worker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl Worker {
    /// Stops consuming and waits for the jobs in hand (at most `bound`). The embedded
    /// queue is drained first; a broker keeps what was not taken for the next start.
    pub async fn stop(mut self, bound: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(bound + NETWORK, &mut self.task)
            .await
            .is_err()
        {
            tracing::warn!("the worker did not stop in time; aborting it");
            self.task.abort();
        }
    }
}

/// A connected queue: the publisher for the warehouse and the running worker.
pub struct Queue {
    publisher: Publisher,
    worker: Worker,
}

impl Queue {
    /// What the queue is, for the start-up banner.
    pub fn describe(&self) -> String {
        self.publisher.health.queue().to_owned()
    }

    /// The two halves.
    pub fn into_parts(self) -> (Publisher, Worker) {
        (self.publisher, self.worker)
    }
}

/// Runs up to `concurrency` handlers at once and tracks them.
struct Pool {
    sem: Arc<Semaphore>,
    tasks: JoinSet<()>,
    stats: Arc<Stats>,
}

impl Pool {
    fn new(env: &Env) -> Self {
        Pool {
            sem: Arc::new(Semaphore::new(env.concurrency.max(1))),
            tasks: JoinSet::new(),
            stats: env.stats.clone(),
        }
    }

    /// Waits for a free slot.
    async fn permit(&mut self) -> OwnedSemaphorePermit {
        while self.tasks.try_join_next().is_some() {}
        // The semaphore is never closed.
        self.sem
            .clone()
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("the pool's semaphore is never closed"))
    }

    /// Free slots besides those already taken.
    fn free(&self) -> usize {
        self.sem.available_permits()
    }

    fn spawn<F>(&mut self, permit: OwnedSemaphorePermit, job: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stats = self.stats.clone();
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        self.tasks.spawn(async move {
            struct Done(Arc<Stats>, #[allow(dead_code)] OwnedSemaphorePermit);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _done = Done(stats, permit);
            job.await;
        });
    }

    /// Waits for every handler. (The worker's stop bound aborts the whole worker task,
    /// and with it these handlers, when they take too long.)
    async fn finish(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Waits `backoff` unless stopped first; answers whether to go on. Doubles `backoff`.
async fn pause(stop: &mut watch::Receiver<bool>, backoff: &mut Duration) -> bool {
    let stopped = tokio::time::timeout(*backoff, stop.wait_for(|s| *s))
        .await
        .is_ok();
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    !stopped
}

/// Gives a claimed job back when its handler is stopped before the parcel is packed.
struct ClaimGuard<'a> {
    ledger: &'a Ledger,
    run: &'a str,
    order_id: u64,
    done: bool,
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.ledger.unclaim(self.run, self.order_id);
        }
    }
}

/// The worker's handler, run inside the context the job carried: the one decision
/// point of the dispatch (the job's key, read once, names the instance that ships it).
async fn ship(env: &Env, payload: &[u8]) {
    let key = Context::with_current(|c| c.routing_key().cloned()).flatten();
    threadline::bind("app", "worker");
    threadline::bind("instance", env.dispatch.instance(key.as_ref()).to_owned());
    let job = match serde_json::from_slice::<Job>(payload) {
        Ok(job) => job,
        Err(e) => {
            // Not one of ours: acknowledged (never redelivered forever) and counted.
            tracing::warn!(error = %e, "queue message is not a shipping job; acknowledged and counted");
            Stats::bump(&env.stats.malformed);
            return;
        }
    };
    if env.ledger.claim(&job.run, job.order_id) == Claim::Duplicate {
        tracing::info!(
            order_id = job.order_id,
            order_key = %job.key,
            "shipping job delivered again; already shipped, acknowledged without shipping twice"
        );
        return;
    }
    let mut guard = ClaimGuard {
        ledger: &env.ledger,
        run: &job.run,
        order_id: job.order_id,
        done: false,
    };
    tracing::info!(
        order_id = job.order_id,
        item = %job.item,
        quantity = job.quantity,
        "shipping job received"
    );
    tokio::time::sleep(env.packing).await;
    env.ledger.shipped(&job.run, job.order_id);
    guard.done = true;
    let earlier = job.run != env.ledger.run();
    tracing::info!(
        order_id = job.order_id,
        order_key = %job.key,
        run = %job.run,
        earlier_run = earlier,
        "parcel packed and handed to the carrier"
    );
}

/// Connects the queue `settings` name, declares it and starts the worker.
pub(crate) async fn connect(
    settings: &Settings,
    policy: Policy,
    stats: Arc<Stats>,
    ledger: Arc<Ledger>,
    dispatch: Dispatch,
) -> anyhow::Result<Queue> {
    let name = match &settings.url {
        BrokerUrl::Embedded => format!(
            "embedded (in-process queue of {} jobs, JSON envelope)",
            settings.capacity.max(1)
        ),
        BrokerUrl::Nats(_) => format!("NATS {} JetStream stream {}", settings.url, settings.queue),
        BrokerUrl::Amqp(_) => format!("AMQP {} queue {}", settings.url, settings.queue),
        BrokerUrl::Redis(_) => format!("Redis {} stream {}", settings.url, settings.queue),
    };
    let health = Health::new(name);
    let env = Arc::new(Env {
        dispatch,
        stats,
        ledger,
        health: health.clone(),
        packing: settings.packing,
        concurrency: settings.concurrency.max(1),
    });
    let restore = restore::Restore::new(policy);
    let (stop, stopped) = watch::channel(false);
    let (publisher, destination, task) = match &settings.url {
        BrokerUrl::Embedded => {
            let (p, task) = embedded::start(settings.capacity, env, restore, stopped);
            (Pub::Embedded(p), "embedded queue shipping".to_owned(), task)
        }
        BrokerUrl::Nats(u) => {
            let (p, task) = nats::start(u, &settings.queue, env, restore, stopped).await?;
            (
                Pub::Nats(Box::new(p)),
                format!("NATS stream {}", settings.queue),
                task,
            )
        }
        BrokerUrl::Amqp(u) => {
            let (p, task) = amqp::start(u, &settings.queue, env, restore, stopped).await?;
            (Pub::Amqp(p), format!("AMQP queue {}", settings.queue), task)
        }
        BrokerUrl::Redis(u) => {
            let (p, task) = redis::start(u, &settings.queue, env, restore, stopped).await?;
            (
                Pub::Redis(p),
                format!("Redis stream {}", settings.queue),
                task,
            )
        }
    };
    Ok(Queue {
        publisher: Publisher {
            inner: Arc::new(publisher),
            destination: destination.into(),
            health,
        },
        worker: Worker { stop, task },
    })
}

/// Builds the status shown on the journeys page.
pub(crate) fn status(publisher: &Publisher, stats: &Stats, concurrency: usize) -> QueueStatus {
    let h = publisher.health.lock().clone();
    let waiting = publisher.waiting();
    QueueStatus {
        queue: publisher.health.queue().to_owned(),
        durable: waiting.is_none(),
        connected: h.connected,
        since: rfc3339(h.since_us),
        disconnections: h.disconnections,
        last_error: h.last_error,
        worker_concurrency: concurrency,
        in_flight: stats.in_flight.load(Ordering::SeqCst),
        peak_in_flight: stats.peak_in_flight.load(Ordering::SeqCst),
        waiting: waiting.map(|w| w.0),
        capacity: waiting.map(|w| w.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_urls_and_hides_passwords() {
        assert_eq!("embedded".parse::<BrokerUrl>(), Ok(BrokerUrl::Embedded));
        assert!(matches!(
            "nats://127.0.0.1:4222".parse(),
            Ok(BrokerUrl::Nats(_))
        ));
        assert!(matches!(
            "redis://127.0.0.1:6379".parse(),
            Ok(BrokerUrl::Redis(_))
        ));
        let amqp: BrokerUrl = "amqp://guest:secret@127.0.0.1:5672".parse().unwrap();
        assert_eq!(amqp.to_string(), "amqp://guest:***@127.0.0.1:5672");
        assert!("kafka://x".parse::<BrokerUrl>().is_err());
    }

    #[test]
    fn queue_names_and_keys_are_checked() {
        for (name, ok) in [
            ("threadline-demo-shipping", true),
            ("a_b-1", true),
            ("", false),
            ("a.b", false),
            ("a b", false),
            ("a>", false),
            (&"x".repeat(65), false),
        ] {
            assert_eq!(check_queue_name(name).is_ok(), ok, "{name:?}");
        }
        assert!(valid_key(&new_key()));
        assert!(valid_key("order-1.retry_2"));
        assert!(!valid_key("a b") && !valid_key("") && !valid_key(&"k".repeat(65)));
        assert!(!valid_key("k\u{202e}"));
    }

    #[test]
    fn dispatch_sends_claimed_keys_to_the_sandbox_while_the_rule_lives() {
        use threadline_route::{Router, Rule, Upstream};
        let key = RoutingKey::new("sandbox-f").unwrap();
        let other = RoutingKey::new("someone-else").unwrap();
        assert_eq!(Dispatch::baseline_only().instance(Some(&key)), BASELINE);

        let router = Router::new();
        let rule = Rule::new(
            "sandbox-f-worker",
            "shipping-worker",
            ["sandbox-f"],
            Upstream::parse("http://127.0.0.1:9001").unwrap(),
        )
        .unwrap();
        router.set_rules("demo", vec![rule]).unwrap();
        let d = Dispatch::with_sandbox(
            Selector::new(router.clone(), "shipping-worker"),
            &sandbox_instance(&key),
        );
        assert_eq!(d.instance(Some(&key)), "sandbox:sandbox-f");
        assert_eq!(d.instance(Some(&other)), BASELINE);
        assert_eq!(d.instance(None), BASELINE);
        // The sandbox leaves: its jobs go back to the baseline.
        router.set_rules("demo", Vec::new()).unwrap();
        assert_eq!(d.instance(Some(&key)), BASELINE);
    }

    #[test]
    fn health_logs_each_transition_once() {
        let h = Health::new("test queue");
        assert!(h.connected());
        h.down("connection reset");
        h.down("connection refused");
        assert!(!h.connected());
        h.up();
        h.up();
        let g = h.lock().clone();
        assert!(g.connected);
        assert_eq!(g.disconnections, 1);
        assert_eq!(g.last_error.as_deref(), Some("connection refused"));
    }
}
