//! The demo under load and faults, as an outside tester runs it: the real binary,
//! dozens of concurrent clients placing orders, the broker killed (SIGKILL) and started
//! again mid-load, Ctrl-C (SIGINT) while the load is still running, a second start on
//! the same queue, and hostile headers for memory.
//!
//! Every order has an idempotency key chosen by the client; what the client was told
//! is compared, key by key, with what the workers logged as shipped
//! (`parcel packed and handed to the carrier`, with `order_key`) and with the summary
//! lines both runs print at exit:
//!
//! * no order the client was told was not created (503 `refused`) ever ships;
//! * every order the client was told was accepted ships exactly once, in the run that
//!   took it or (brokers) in the next start on the same queue;
//! * no order ships twice;
//! * the summary's per-order counts equal the client's.
//!
//! The brokers are servers this test starts itself on free loopback ports
//! (`nats-server -js`, `redis-server` with an fsynced append-only file, a RabbitMQ node
//! of its own); the shared services on the standard ports are never touched. The
//! tests run one at a time (they share two cores).
//!
//! Sizes are bounded for CI (about 1.5 s of load before the fault, a 2 s outage,
//! 1.5 s after it, 32 clients). `THREADLINE_LOAD_BENCH=1` runs the variant whose
//! figures BENCHMARKS.md records (64 clients, the demo's default worker, 10 s of
//! steady load, a 12 s outage, 200,000 hostile requests; CI sends 4,000); each phase can also be set
//! with `THREADLINE_LOAD_CONCURRENCY`, `THREADLINE_LOAD_STEADY_SECS`,
//! `THREADLINE_LOAD_OUTAGE_SECS` and `THREADLINE_LOAD_HOSTILE`, and the first run's
//! worker with `THREADLINE_LOAD_WORKER_CONCURRENCY` and `THREADLINE_LOAD_QUEUE_CAPACITY`
//! (both).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use common::process::{DemoProcess, Kind, OwnBroker};

/// One scenario at a time: they measure, and the machine has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The size of a run.
#[derive(Clone, Debug)]
struct Conf {
    /// Concurrent clients.
    concurrency: usize,
    /// Load before the fault.
    steady: Duration,
    /// How long the broker stays dead.
    outage: Duration,
    /// Load after the broker is back, before Ctrl-C.
    recovery: Duration,
    /// Never more orders than this.
    max_orders: usize,
    /// The first run's worker: `--worker-concurrency` and `--queue-capacity`, or the
    /// defaults (None). A slow worker makes a backlog, so Ctrl-C finds jobs waiting.
    slow_worker: Option<(usize, usize)>,
    /// Whether the first run's worker is the CI's slow one (4 at a time, 256 queued),
    /// so that the embedded queue fills and Ctrl-C finds a broker backlog: asserted.
    expect_backlog: bool,
    /// Hostile requests for the memory test.
    hostile: usize,
}

fn conf() -> Conf {
    let bench = std::env::var("THREADLINE_LOAD_BENCH").as_deref() == Ok("1");
    let (conc, steady, outage, hostile) = if bench {
        (64.0, 10.0, 12.0, 200_000.0)
    } else {
        (32.0, 1.5, 2.0, 4000.0)
    };
    Conf {
        concurrency: env_num("THREADLINE_LOAD_CONCURRENCY", conc) as usize,
        steady: Duration::from_secs_f64(env_num("THREADLINE_LOAD_STEADY_SECS", steady)),
        outage: Duration::from_secs_f64(env_num("THREADLINE_LOAD_OUTAGE_SECS", outage)),
        recovery: Duration::from_secs_f64(env_num("THREADLINE_LOAD_STEADY_SECS", steady)),
        max_orders: if bench { 500_000 } else { 50_000 },
        slow_worker: match (
            std::env::var("THREADLINE_LOAD_WORKER_CONCURRENCY"),
            std::env::var("THREADLINE_LOAD_QUEUE_CAPACITY"),
        ) {
            (Ok(w), Ok(c)) => Some((w.parse().unwrap_or(4), c.parse().unwrap_or(256))),
            _ if bench => None,
            _ => Some((4, 256)),
        },
        expect_backlog: !bench && std::env::var("THREADLINE_LOAD_WORKER_CONCURRENCY").is_err(),
        hostile: env_num("THREADLINE_LOAD_HOSTILE", hostile) as usize,
    }
}

/// What a client was told about one order, after its retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Told {
    Accepted,
    Refused,
    Unknown,
    Rejected,
    /// The demo had stopped listening: the order never reached it.
    NoAnswer,
    Other(u16),
}

#[derive(Debug)]
struct Rec {
    key: String,
    told: Told,
    /// First attempt's latency.
    latency: Duration,
    done_at: Instant,
}

#[derive(Default)]
struct Load {
    next: AtomicUsize,
    answered: AtomicUsize,
    gone: AtomicBool,
}

type Http = Client<HttpConnector, Full<Bytes>>;

async fn post(
    client: &Http,
    url: &str,
    key: &str,
    body: String,
) -> Result<(u16, Option<u64>), String> {
    let req = http::Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .header("idempotency-key", key)
        .header("connection", "close")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| "no answer in 30 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    tokio::time::timeout(Duration::from_secs(30), resp.into_body().collect())
        .await
        .map_err(|_| "body not in 30 s".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok((status, retry))
}

/// An order whose outcome the client was told is unknown, to be tried again.
struct Pending {
    rec: Rec,
    item: &'static str,
    due: Instant,
    attempts: u32,
}

/// What one answer means for the order.
fn told_of(answer: &Result<(u16, Option<u64>), String>) -> Told {
    match answer {
        Ok((200, _)) => Told::Accepted,
        Ok((422, _)) => Told::Rejected,
        Ok((503, _)) => Told::Refused,
        Ok((504, _)) => Told::Unknown,
        Ok((s, _)) => Told::Other(*s),
        Err(_) => Told::NoAnswer,
    }
}

/// When to try an unknown order again: its `Retry-After`, at most 2 s.
fn due(answer: &Result<(u16, Option<u64>), String>) -> Instant {
    let secs = match answer {
        Ok((_, Some(s))) => *s,
        _ => 1,
    };
    Instant::now() + Duration::from_secs(secs).min(Duration::from_secs(2))
}

/// Places orders from `concurrency` clients until the demo stops answering (or
/// `max` orders). A client told "unknown" keeps placing new orders and tries the
/// unknown one again (same key: safe) when its `Retry-After` is due, as a real client
/// would; what it was last told is the order's outcome.
async fn run_load(store: String, concurrency: usize, max: usize, load: Arc<Load>) -> Vec<Rec> {
    let client: Http = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("{store}/orders");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, load) = (client.clone(), url.clone(), load.clone());
        tasks.spawn(async move {
            let mut recs = Vec::new();
            let mut pending: std::collections::VecDeque<Pending> = Default::default();
            while !load.gone.load(Ordering::SeqCst) {
                if pending.front().is_some_and(|p| p.due <= Instant::now()) {
                    let mut p = pending.pop_front().expect("a pending order");
                    let body = format!("item={}&quantity=1&tenant=load", p.item);
                    let answer = post(&client, &url, &p.rec.key, body).await;
                    p.attempts += 1;
                    match told_of(&answer) {
                        Told::NoAnswer => {
                            load.gone.store(true, Ordering::SeqCst);
                            pending.push_back(p);
                        }
                        Told::Unknown if p.attempts < 30 => {
                            p.due = due(&answer);
                            pending.push_back(p);
                        }
                        told => {
                            p.rec.told = told;
                            p.rec.done_at = Instant::now();
                            recs.push(p.rec);
                        }
                    }
                    continue;
                }
                let i = load.next.fetch_add(1, Ordering::SeqCst);
                if i >= max {
                    break;
                }
                let key = format!("lt{i}-{:08x}", fastrand::u32(..));
                let item = if i % 10 == 7 { "Fondue" } else { "Kettle" };
                let t0 = Instant::now();
                let answer = post(
                    &client,
                    &url,
                    &key,
                    format!("item={item}&quantity=1&tenant=load"),
                )
                .await;
                let rec = Rec {
                    key,
                    told: told_of(&answer),
                    latency: t0.elapsed(),
                    done_at: Instant::now(),
                };
                match rec.told {
                    Told::NoAnswer => load.gone.store(true, Ordering::SeqCst),
                    _ => {
                        load.answered.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if rec.told == Told::Unknown {
                    pending.push_back(Pending {
                        rec,
                        item,
                        due: due(&answer),
                        attempts: 1,
                    });
                } else {
                    recs.push(rec);
                }
            }
            // The demo is gone: what is still unknown stays unknown.
            recs.extend(pending.into_iter().map(|p| p.rec));
            recs
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.expect("a load task"));
    }
    all
}

/// Keys the worker shipped, with how often, from the JSON log lines.
fn shipped(lines: &[String]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for l in lines {
        let Ok(v) = serde_json::from_str::<Value>(l) else {
            continue;
        };
        if v["message"] == "parcel packed and handed to the carrier"
            && let Some(k) = v["order_key"].as_str()
        {
            *out.entry(k.to_owned()).or_insert(0) += 1;
        }
    }
    out
}

/// The `key=value` pairs of the summary line.
fn summary(lines: &[String]) -> HashMap<String, u64> {
    let line = lines
        .iter()
        .find(|l| l.starts_with("threadline demo: orders="))
        .unwrap_or_else(|| {
            panic!(
                "no summary line in {:#?}",
                &lines[lines.len().saturating_sub(5)..]
            )
        });
    line.trim_start_matches("threadline demo: ")
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap_or(u64::MAX)))
        .collect()
}

fn logged(lines: &[String], message: &str, queue: &str) -> bool {
    lines.iter().any(|l| {
        serde_json::from_str::<Value>(l).is_ok_and(|v| {
            v["message"] == message && v["queue"].as_str().is_some_and(|q| q.contains(queue))
        })
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Orders per second and latency percentiles of the orders answered before the fault.
fn figures(label: &str, recs: &[Rec], start: Instant, steady_end: Instant, conf: &Conf) {
    let mut lat: Vec<Duration> = recs
        .iter()
        .filter(|r| r.done_at <= steady_end && r.told != Told::NoAnswer)
        .map(|r| r.latency)
        .collect();
    lat.sort();
    let secs = steady_end.duration_since(start).as_secs_f64();
    println!(
        "LOAD {label}: {} orders answered in {secs:.1} s before the fault = {:.0} orders/s at {}-way; \
         p50 {:.1} ms, p99 {:.1} ms ({})",
        lat.len(),
        lat.len() as f64 / secs,
        conf.concurrency,
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        match conf.slow_worker {
            None => "default worker".to_owned(),
            Some((w, c)) => format!("worker: {w} at a time, {c} queued"),
        },
    );
}

/// What the clients were told, second by second (printed, for reading a run).
fn timeline(label: &str, recs: &[Rec], start: Instant) {
    let mut by_sec: std::collections::BTreeMap<u64, HashMap<Told, usize>> = Default::default();
    for r in recs {
        let sec = r.done_at.saturating_duration_since(start).as_secs();
        *by_sec.entry(sec).or_default().entry(r.told).or_insert(0) += 1;
    }
    for (sec, c) in by_sec {
        println!("LOAD {label}: t={sec:>3}s {c:?}");
    }
}

fn counts(recs: &[Rec]) -> HashMap<Told, usize> {
    let mut c = HashMap::new();
    for r in recs {
        *c.entry(r.told).or_insert(0) += 1;
    }
    c
}

/// The whole scenario for one queue: load, broker killed and restarted (brokers),
/// Ctrl-C under load, a second start on the same queue (brokers), then the checks.
fn scenario(kind: Option<Kind>, test: &str) {
    let _one_at_a_time = serial();
    let conf = conf();
    let mut broker = match kind {
        None => None,
        Some(k) => match OwnBroker::start(k) {
            Ok(b) => Some(b),
            Err(why) => {
                threadline_testkit::unavailable(test, OwnBroker::program(k), "a free port", &why);
                return;
            }
        },
    };
    let queue = common::unique_queue();
    let url = broker.as_ref().map(|b| b.url());
    let mut args: Vec<String> = vec!["--queue".into(), queue.clone()];
    if let Some(u) = &url {
        args.extend(["--broker".into(), u.clone()]);
    }
    if let Some((workers, capacity)) = conf.slow_worker {
        args.extend([
            "--worker-concurrency".into(),
            workers.to_string(),
            "--queue-capacity".into(),
            capacity.to_string(),
        ]);
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = DemoProcess::start(&arg_refs);
    let store = first.store.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let load = Arc::new(Load::default());
    let (recs, first_lines, first_status, start, steady_end, seen_down) = rt.block_on(async {
        let start = Instant::now();
        let task = tokio::spawn(run_load(
            store.clone(),
            conf.concurrency,
            conf.max_orders,
            load.clone(),
        ));
        tokio::time::sleep(conf.steady).await;
        let steady_end = Instant::now();
        let mut seen_down = false;
        if let Some(mut b) = broker.take() {
            println!(
                "LOAD: broker killed at {:.1} s",
                start.elapsed().as_secs_f64()
            );
            // SIGKILL under load; the demo notices, says so, refuses honestly.
            let mut b = tokio::task::spawn_blocking(move || {
                b.kill();
                b
            })
            .await
            .expect("kill");
            println!(
                "LOAD: broker dead at {:.1} s",
                start.elapsed().as_secs_f64()
            );
            common::wait_for_queue(&store, false).await;
            println!("LOAD: queue down at {:.1} s", start.elapsed().as_secs_f64());
            seen_down = true;
            tokio::time::sleep(conf.outage).await;
            b = tokio::task::spawn_blocking(move || {
                b.restart().expect("the broker starts again");
                b
            })
            .await
            .expect("restart");
            println!(
                "LOAD: broker restarted at {:.1} s",
                start.elapsed().as_secs_f64()
            );
            common::wait_for_queue_within(&store, true, Duration::from_secs(60)).await;
            println!(
                "LOAD: queue connected at {:.1} s",
                start.elapsed().as_secs_f64()
            );
            broker = Some(b);
        }
        tokio::time::sleep(conf.recovery).await;
        assert!(
            !load.gone.load(Ordering::SeqCst),
            "the load still runs when Ctrl-C comes"
        );
        // Ctrl-C while the clients are still placing orders.
        let (status, lines) = tokio::task::spawn_blocking(move || first.interrupt())
            .await
            .expect("interrupt");
        load.gone.store(true, Ordering::SeqCst);
        let recs = task.await.expect("the load");
        (recs, lines, status, start, steady_end, seen_down)
    });
    let label = match kind {
        None => "embedded".to_owned(),
        Some(k) => format!("{k:?}"),
    };
    figures(&label, &recs, start, steady_end, &conf);
    let told = counts(&recs);
    if std::env::var("THREADLINE_LOAD_TIMELINE").as_deref() == Ok("1") {
        timeline(&label, &recs, start);
    }
    println!("LOAD {label}: told {told:?}");
    let s1 = summary(&first_lines);
    println!("LOAD {label}: first run {s1:?}");
    let shipped1 = shipped(&first_lines);

    // A second start on the same queue ships what the first left in it.
    let accepted: HashSet<&str> = recs
        .iter()
        .filter(|r| r.told == Told::Accepted)
        .map(|r| r.key.as_str())
        .collect();
    let left: HashSet<&str> = accepted
        .iter()
        .copied()
        .filter(|k| !shipped1.contains_key(*k))
        .collect();
    let (s2, shipped2) = if let Some(u) = &url {
        let second = DemoProcess::start(&["--queue", &queue, "--broker", u]);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let got = shipped(&second.lines());
            if left.iter().all(|k| got.contains_key(*k)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} of the {} accepted orders left in the queue were not shipped by the next start",
                left.iter().filter(|k| !got.contains_key(**k)).count(),
                left.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, lines) = second.interrupt();
        assert!(status.success(), "second run's exit: {status}");
        let s2 = summary(&lines);
        println!("LOAD {label}: second run {s2:?}");
        (Some(s2), shipped(&lines))
    } else {
        (None, HashMap::new())
    };
    drop(broker);

    // Per order: what the client was told against what was shipped.
    let times =
        |k: &str| shipped1.get(k).copied().unwrap_or(0) + shipped2.get(k).copied().unwrap_or(0);
    let ghosts: Vec<&str> = recs
        .iter()
        .filter(|r| r.told == Told::Refused && times(&r.key) > 0)
        .map(|r| r.key.as_str())
        .collect();
    assert!(
        ghosts.is_empty(),
        "{label}: refused orders shipped: {ghosts:?}"
    );
    let lost: Vec<&str> = accepted.iter().copied().filter(|k| times(k) == 0).collect();
    assert!(
        lost.is_empty(),
        "{label}: accepted orders never shipped: {lost:?}"
    );
    let twice: Vec<&str> = recs
        .iter()
        .filter(|r| times(&r.key) > 1)
        .map(|r| r.key.as_str())
        .collect();
    assert!(twice.is_empty(), "{label}: orders shipped twice: {twice:?}");
    let rejected_shipped = recs
        .iter()
        .filter(|r| r.told == Told::Rejected && times(&r.key) > 0)
        .count();
    assert_eq!(rejected_shipped, 0, "{label}: out-of-stock orders shipped");

    // The first run's summary is the per-order count.
    let n = |t: Told| told.get(&t).copied().unwrap_or(0) as u64;
    assert!(
        told.keys().all(|t| !matches!(t, Told::Other(_))),
        "{label}: unexpected answers {told:?}"
    );
    assert!(
        first_status.success(),
        "{label}: first run's exit: {first_status}"
    );
    assert_eq!(
        s1["accepted"],
        n(Told::Accepted),
        "{label}: {s1:?} vs {told:?}"
    );
    assert_eq!(
        s1["refused"],
        n(Told::Refused),
        "{label}: {s1:?} vs {told:?}"
    );
    assert_eq!(
        s1["unknown"],
        n(Told::Unknown),
        "{label}: {s1:?} vs {told:?}"
    );
    assert_eq!(
        s1["rejected"],
        n(Told::Rejected),
        "{label}: {s1:?} vs {told:?}"
    );
    assert_eq!(
        s1["orders"],
        n(Told::Accepted) + n(Told::Refused) + n(Told::Unknown),
        "{label}: {s1:?}"
    );
    assert_eq!(s1["shipped_after_refusal"], 0, "{label}");
    assert_eq!(s1["lost"], 0, "{label}");
    assert_eq!(
        s1["shipped"],
        shipped1.len() as u64,
        "{label}: the summary counts what the worker logged"
    );
    assert_eq!(
        s1["left_in_queue"],
        left.len() as u64,
        "{label}: accepted and not shipped at Ctrl-C"
    );
    assert!(n(Told::Accepted) > 0, "{label}: orders were accepted");
    match &s2 {
        None => {
            assert!(left.is_empty(), "{label}: the embedded queue keeps nothing");
            if conf.expect_backlog {
                assert!(
                    n(Told::Refused) > 0,
                    "{label}: the bounded queue pushed back on the store: {told:?}"
                );
            }
        }
        Some(s2) => {
            assert!(
                seen_down,
                "{label}: the journeys page showed the queue down"
            );
            assert!(
                n(Told::Refused) + n(Told::Unknown) > 0,
                "{label}: orders were placed during the outage: {told:?}"
            );
            assert!(
                logged(
                    &first_lines,
                    "shipping queue connection lost; reconnecting",
                    &queue
                ) && logged(&first_lines, "shipping queue connection restored", &queue),
                "{label}: losing and regaining the broker is logged with the queue named"
            );
            if conf.expect_backlog {
                assert!(
                    !left.is_empty(),
                    "{label}: Ctrl-C found accepted orders waiting in the queue"
                );
            }
            assert_eq!(
                s2["earlier_runs"],
                shipped2.len() as u64,
                "{label}: the second run shipped only the first run's orders: {s2:?}"
            );
            assert_eq!(
                (s2["orders"], s2["left_in_queue"], s2["lost"]),
                (0, 0, 0),
                "{label}: {s2:?}"
            );
        }
    }
}

#[test]
fn load_and_faults_embedded_queue_sigint_under_load_ships_every_accepted_order() {
    scenario(
        None,
        "load_and_faults_embedded_queue_sigint_under_load_ships_every_accepted_order",
    );
}

#[test]
fn load_and_faults_nats_jetstream_own_server_killed_restarted_and_sigint() {
    scenario(
        Some(Kind::Nats),
        "load_and_faults_nats_jetstream_own_server_killed_restarted_and_sigint",
    );
}

#[test]
fn load_and_faults_redis_own_server_killed_restarted_and_sigint() {
    scenario(
        Some(Kind::Redis),
        "load_and_faults_redis_own_server_killed_restarted_and_sigint",
    );
}

#[test]
fn load_and_faults_rabbitmq_own_node_killed_restarted_and_sigint() {
    scenario(
        Some(Kind::Rabbit),
        "load_and_faults_rabbitmq_own_node_killed_restarted_and_sigint",
    );
}

/// What the hostile load of the issue sent: 4 KB tenant and user values on every
/// request, 200 correlation ids reused, forms the store refuses (one event each).
#[test]
fn load_hostile_headers_memory_stays_within_the_journey_bound() {
    let _one_at_a_time = serial();
    let conf = conf();
    let demo = DemoProcess::start(&["--journey-mib", "2", "--log-level", "warn"]);
    let store = demo.store.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let big_tenant = "t".repeat(4000);
    let big_user = "u".repeat(4000);
    let send = |n: usize, hostile: bool| {
        let (store, t, u) = (store.clone(), big_tenant.clone(), big_user.clone());
        let concurrency = conf.concurrency;
        async move {
            let client: Http = Client::builder(TokioExecutor::new()).build_http();
            let next = Arc::new(AtomicUsize::new(0));
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..concurrency {
                let (client, store, t, u, next) = (
                    client.clone(),
                    store.clone(),
                    t.clone(),
                    u.clone(),
                    next.clone(),
                );
                tasks.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= n {
                            break;
                        }
                        let mut req = http::Request::post(format!("{store}/orders"))
                            .header("content-type", "application/x-www-form-urlencoded")
                            .header("accept", "application/json")
                            .header("x-correlation-id", format!("hostile-{}", i % 200));
                        if hostile {
                            req = req.header("x-tenant-id", &t).header("tl-field-user.id", &u);
                        }
                        let req = req
                            .body(Full::new(Bytes::from_static(
                                b"item=Kettle&quantity=lots&tenant=acme",
                            )))
                            .expect("request");
                        let resp =
                            tokio::time::timeout(Duration::from_secs(30), client.request(req))
                                .await
                                .expect("an answer in time")
                                .expect("an answer");
                        assert_eq!(resp.status(), 400);
                        let _ = resp.into_body().collect().await;
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.expect("a client task");
            }
        }
    };
    // Warm up (connections, buffers, allocator arenas), then measure.
    rt.block_on(send(2000, false));
    let (before, _) = demo.memory_kib();
    let t0 = Instant::now();
    rt.block_on(send(conf.hostile, true));
    let secs = t0.elapsed().as_secs_f64();
    let (after, peak) = demo.memory_kib();
    let (status, v) = rt.block_on(common::get_json(&format!("{store}/journeys")));
    assert_eq!(status, 200);
    let usage = &v["journey_store"];
    let (bytes, max) = (
        usage["bytes"].as_u64().expect("bytes"),
        usage["max_bytes"].as_u64().expect("max_bytes"),
    );
    println!(
        "HOSTILE: {} requests with 8 KB of header values in {secs:.1} s; RSS {} KiB before, \
         {} KiB after, peak {} KiB; journey store {} of {} bytes, {} journeys evicted",
        conf.hostile, before, after, peak, bytes, max, usage["evicted_journeys"]
    );
    assert_eq!(max, 2 << 20);
    assert!(bytes <= max, "{usage}");
    // The bound (2 MiB) plus room for the allocator and buffers in flight: the same
    // 4,000 requests grew the demo by 37 MiB when the journey store was bounded by
    // counts only (the growth goes on with the requests), and by 2 to 5 MiB with the
    // byte bound.
    let growth_mib = peak.saturating_sub(before) / 1024;
    assert!(
        growth_mib < 24,
        "the demo grew by {growth_mib} MiB under hostile headers (RSS {before} -> peak {peak} KiB)"
    );
    let (status, lines) = demo.interrupt();
    assert!(status.success(), "{status}");
    let s = summary(&lines);
    assert_eq!(s["invalid"], (conf.hostile + 2000) as u64, "{s:?}");
}
