//! No context leaks between requests: 10,000 concurrent requests with distinct ids on
//! a 2-worker runtime (handlers that yield, spawn with `threadline::spawn`, log, call
//! downstream, and sometimes panic), and requests pinned to one reused thread.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use common::{TIMEOUT, h2_client, serve_axum, serve_hyper, text};
use http::{Request, StatusCode, Uri};
use http_body_util::Full;
use threadline::{Context, Policy};
use threadline_tower::{PropagateLayer, Targets, ThreadlineLayer};
use tower::{ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerCx, SubscriberExt};

const REQUESTS: usize = 10_000;

/// Counts log events, and events whose `expected` field differs from the correlation
/// id current when the event is emitted.
#[derive(Default)]
struct LogCheck {
    events: AtomicUsize,
    mismatches: AtomicUsize,
}

struct CheckLayer(Arc<LogCheck>);

struct Expected(Option<String>);

impl Visit for Expected {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "expected" {
            self.0 = Some(value.to_owned());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "expected" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CheckLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: LayerCx<'_, S>) {
        let mut v = Expected(None);
        event.record(&mut v);
        let Some(expected) = v.0 else { return };
        self.0.events.fetch_add(1, Ordering::Relaxed);
        let current =
            Context::with_current(|c| c.correlation_id().map(|id| id.as_str() == expected));
        if current != Some(Some(true)) {
            self.0.mismatches.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn log_check() -> &'static Arc<LogCheck> {
    static CHECK: OnceLock<Arc<LogCheck>> = OnceLock::new();
    CHECK.get_or_init(|| {
        let check = Arc::new(LogCheck::default());
        let subscriber = tracing_subscriber::registry().with(CheckLayer(check.clone()));
        // This test binary's own subscriber; the library installs none.
        tracing::subscriber::set_global_default(subscriber)
            .expect("one subscriber per test binary");
        // Intentional panics stay quiet; anything else is printed as usual.
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let quiet = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|s| s.starts_with("intentional"));
            if !quiet {
                default_hook(info);
            }
        }));
        check
    })
}

fn query_id(uri: &Uri) -> String {
    uri.query()
        .and_then(|q| q.strip_prefix("id="))
        .unwrap_or_default()
        .to_owned()
}

#[derive(Default)]
struct Counters {
    handler_mismatch: AtomicUsize,
    spawned_mismatch: AtomicUsize,
    downstream_seen: AtomicUsize,
    downstream_mismatch: AtomicUsize,
    panics: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leakage_10k_concurrent_requests_two_workers() {
    let logs = log_check().clone();
    let counters = Arc::new(Counters::default());

    // Downstream: checks the id it received in the header against the one in the URI.
    let c = counters.clone();
    let downstream = Router::new().route(
        "/down",
        get(move |uri: Uri| {
            let c = c.clone();
            async move {
                let want = query_id(&uri);
                c.downstream_seen.fetch_add(1, Ordering::Relaxed);
                let got = Context::current()
                    .correlation_id()
                    .map(|i| i.as_str().to_owned());
                if got.as_deref() != Some(want.as_str()) {
                    c.downstream_mismatch.fetch_add(1, Ordering::Relaxed);
                }
                tracing::info!(expected = %want, "downstream");
                want
            }
        }),
    );
    let down_svc = ServiceBuilder::new()
        .layer(ThreadlineLayer::new(Policy::default()).trust_all())
        .service(downstream);
    let down_addr = serve_hyper(down_svc).await;

    // Front: yields, spawns, logs, calls downstream, panics on some requests.
    let out = ServiceBuilder::new()
        .layer(PropagateLayer::new(Targets::everywhere()))
        .service(h2_client());
    let c = counters.clone();
    let front = Router::new().route(
        "/work",
        get(move |uri: Uri| {
            let c = c.clone();
            let out = out.clone();
            async move {
                let id = query_id(&uri);
                let check = |c: &Counters, which: &AtomicUsize| {
                    let ok = Context::with_current(|ctx| {
                        ctx.correlation_id().map(|i| i.as_str()) == Some(id.as_str())
                            && ctx.field("req.id").is_none_or(|f| f == id)
                    });
                    if ok != Some(true) {
                        which.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = c;
                };
                check(&c, &c.handler_mismatch);
                tracing::info!(expected = %id, "handler start");
                tokio::task::yield_now().await;
                threadline::bind("req.id", id.clone());
                let spawned = threadline::spawn(async move {
                    tokio::task::yield_now().await;
                    let ctx = Context::current();
                    if let Some(cid) = ctx.correlation_id() {
                        tracing::info!(expected = %cid, "in spawned task");
                    }
                    (
                        ctx.correlation_id().map(|i| i.as_str().to_owned()),
                        ctx.field("req.id").map(str::to_owned),
                    )
                });
                let (cid, field) = spawned.await.expect("spawned task");
                if cid.as_deref() != Some(id.as_str()) || field.as_deref() != Some(id.as_str()) {
                    c.spawned_mismatch.fetch_add(1, Ordering::Relaxed);
                }
                tokio::task::yield_now().await;
                check(&c, &c.handler_mismatch);
                let n: usize = id
                    .rsplit('-')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                if n % 97 == 13 {
                    c.panics.fetch_add(1, Ordering::Relaxed);
                    panic!("intentional panic in request {id}");
                }
                let req = Request::get(format!("http://{down_addr}/down?id={id}"))
                    .body(Full::<Bytes>::default())
                    .unwrap();
                let resp = out.oneshot(req).await.expect("downstream call");
                let body = text(resp.into_body()).await;
                check(&c, &c.handler_mismatch);
                tracing::info!(expected = %id, "handler end");
                if body != id {
                    return Err(StatusCode::BAD_GATEWAY);
                }
                Ok(id)
            }
        }),
    );
    let front_svc = ServiceBuilder::new()
        .layer(ThreadlineLayer::new(Policy::default()).trust_all())
        .layer(CatchPanicLayer::new())
        .service(front);
    let front_addr = serve_hyper(front_svc).await;

    // 10,000 requests in flight at once over one HTTP/2 connection.
    let client = h2_client();
    let run = std::process::id();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..REQUESTS {
        let client = client.clone();
        tasks.spawn(async move {
            let id = format!("leak-{run}-{i}");
            let req = Request::get(format!("http://{front_addr}/work?id={id}"))
                .header("x-correlation-id", &id)
                .body(Full::<Bytes>::default())
                .unwrap();
            let resp = client.request(req).await.expect("front answers");
            let status = resp.status();
            let echoed = resp.headers().get("x-correlation-id").cloned();
            let body = text(resp.into_body()).await;
            (i, id, status, echoed, body)
        });
    }
    let (mut ok, mut errors) = (0usize, 0usize);
    let results = tokio::time::timeout(TIMEOUT * 4, async {
        let mut all = Vec::with_capacity(REQUESTS);
        while let Some(r) = tasks.join_next().await {
            all.push(r.expect("client task"));
        }
        all
    })
    .await
    .expect("all requests answered in time");
    assert_eq!(results.len(), REQUESTS);
    for (i, id, status, echoed, body) in results {
        assert_eq!(
            echoed.as_ref().and_then(|v| v.to_str().ok()),
            Some(id.as_str()),
            "response {i} carries its own id (status {status})"
        );
        if i % 97 == 13 {
            assert_eq!(
                status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "request {i} panicked"
            );
            errors += 1;
        } else {
            assert_eq!(status, StatusCode::OK, "request {i}");
            assert_eq!(body, id, "request {i} body");
            ok += 1;
        }
    }
    let panics = counters.panics.load(Ordering::Relaxed);
    assert_eq!(errors, panics, "every panic became a 500 with its own id");
    assert!(panics > 100, "some requests panicked: {panics}");
    assert_eq!(counters.handler_mismatch.load(Ordering::Relaxed), 0);
    assert_eq!(counters.spawned_mismatch.load(Ordering::Relaxed), 0);
    assert_eq!(
        counters.downstream_seen.load(Ordering::Relaxed),
        ok,
        "one downstream call per served request"
    );
    assert_eq!(counters.downstream_mismatch.load(Ordering::Relaxed), 0);
    let events = logs.events.load(Ordering::Relaxed);
    assert!(events >= REQUESTS * 2, "log lines were checked: {events}");
    assert_eq!(
        logs.mismatches.load(Ordering::Relaxed),
        0,
        "every log line carries its own request's id"
    );
}

/// Requests pinned on one reused thread: request B, served while request A is parked
/// with a bound field, and request C, served after A panicked, never see A's fields.
#[tokio::test(flavor = "current_thread")]
async fn leakage_current_thread_reused_thread() {
    log_check();
    let (park_tx, park_rx) = tokio::sync::watch::channel(false);
    let threads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let t = threads.clone();
    let app = Router::new().route(
        "/r",
        get(move |uri: Uri| {
            let mut park = park_rx.clone();
            let t = t.clone();
            async move {
                t.lock().unwrap().push(std::thread::current().id());
                let q = uri.query().unwrap_or_default().to_owned();
                let before = Context::current().field("user.id").map(str::to_owned);
                if q.contains("bind") {
                    threadline::bind("user.id", "alice");
                }
                if q.contains("park") {
                    while !*park.borrow_and_update() {
                        park.changed().await.unwrap();
                    }
                }
                if q.contains("panic") {
                    panic!("intentional panic after binding");
                }
                let after = Context::current().field("user.id").map(str::to_owned);
                let cid = Context::current().correlation_id().unwrap().to_string();
                format!(
                    "{cid}|{}|{}",
                    before.unwrap_or_default(),
                    after.unwrap_or_default()
                )
            }
        }),
    );
    let app = app
        .layer(CatchPanicLayer::new())
        .layer(ThreadlineLayer::new(Policy::default()));
    let addr = serve_axum(app).await;
    let client = common::client();
    let send = |q: &'static str, id: &'static str| {
        let client = client.clone();
        async move {
            let req = Request::get(format!("http://{addr}/r?{q}"))
                .header("x-correlation-id", id)
                .body(Full::<Bytes>::default())
                .unwrap();
            let resp = tokio::time::timeout(TIMEOUT, client.request(req))
                .await
                .unwrap()
                .unwrap();
            let status = resp.status();
            (status, text(resp.into_body()).await)
        }
    };

    // A binds user.id and parks; B runs meanwhile on the same thread.
    let a = tokio::spawn(send("bind&park", "req-a"));
    tokio::task::yield_now().await;
    let (status_b, body_b) = send("plain", "req-b").await;
    assert_eq!(status_b, 200);
    assert_eq!(body_b, "req-b||", "B sees no field of A");
    park_tx.send(true).unwrap();
    let (status_a, body_a) = a.await.unwrap();
    assert_eq!(status_a, 200);
    assert_eq!(body_a, "req-a||alice", "A keeps its own field");

    // A request that binds and panics; the next one starts clean.
    let (status_p, _) = send("bind&panic", "req-p").await;
    assert_eq!(status_p, 500);
    let (status_c, body_c) = send("plain", "req-c").await;
    assert_eq!(status_c, 200);
    assert_eq!(body_c, "req-c||");
    let (_, body_d) = send("bind", "req-d").await;
    assert_eq!(body_d, "req-d||alice");
    assert!(
        Context::try_current().is_err(),
        "nothing current outside the requests"
    );

    let threads = threads.lock().unwrap();
    assert_eq!(threads.len(), 5);
    assert!(
        threads.iter().all(|t| *t == threads[0]),
        "all served on one reused thread"
    );
}
