//! Shared by the demo's integration tests: an HTTP client with timeouts, the order
//! scenario (one good order, one `F` order, each with its own correlation id and
//! traceparent), and the checks on the JSON logs and the journey JSON.

#![allow(dead_code)]

pub mod process;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use threadline_cli::demo::logs::{self, Capture, LogFormat};
use threadline_cli::demo::{self, Args, Journeys, Summary};
use tracing_subscriber::filter::LevelFilter;

/// Every network step of the tests is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Whether the service on 127.0.0.1:`port` answers. When it does not: a loud SKIP, or a
/// failure under `THREADLINE_REQUIRE_SERVICES=1`.
pub fn service_up(test: &str, name: &str, port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok() {
        return true;
    }
    threadline_testkit::unavailable(test, name, &addr.to_string(), "no TCP answer");
    false
}

/// One HTTP exchange: status, response headers, body as text.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> (u16, http::HeaderMap, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("request");
    let resp = tokio::time::timeout(TIMEOUT, client.request(req))
        .await
        .unwrap_or_else(|_| panic!("{method} {url}: no answer in time"))
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = tokio::time::timeout(TIMEOUT, resp.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// `GET url` with `Accept: application/json`, parsed.
pub async fn get_json(url: &str) -> (u16, Value) {
    let (status, _, body) = request("GET", url, &[("accept", "application/json")], None).await;
    let v =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"));
    (status, v)
}

fn hex(n: usize) -> String {
    (0..n)
        .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
        .collect()
}

/// One order as placed: what was sent.
#[derive(Clone, Debug)]
pub struct Sent {
    pub correlation_id: String,
    pub trace_id: String,
    pub parent_id: String,
    pub tenant: String,
    pub item: String,
}

impl Sent {
    fn new(label: &str, item: &str) -> Self {
        Sent {
            correlation_id: format!("it-{label}-{}-{}", std::process::id(), hex(8)),
            trace_id: format!("{}{}", "a", hex(31)),
            parent_id: format!("{}{}", "b", hex(15)),
            tenant: format!("tenant-{}", hex(4)),
            item: item.to_owned(),
        }
    }

    fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.parent_id)
    }
}

/// The two orders of the scenario.
#[derive(Clone, Debug)]
pub struct Placed {
    pub good: Sent,
    pub bad: Sent,
}

/// Places one good order and one `F` order through `POST /orders` (form-encoded, as
/// the browser does, asking for JSON back), each with its own `X-Correlation-Id` and
/// `traceparent`; checks the answers.
pub async fn place_orders(store: &str) -> Placed {
    let good = Sent::new("good", "Kettle");
    let bad = Sent::new("bad", "Fondue set");
    for (sent, expect_status, expect) in [(&good, 200, "accepted"), (&bad, 422, "rejected")] {
        let tp = sent.traceparent();
        let body = format!(
            "item={}&quantity=2&tenant={}",
            sent.item.replace(' ', "+"),
            sent.tenant
        );
        let (status, headers, text) = request(
            "POST",
            &format!("{store}/orders"),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("accept", "application/json"),
                ("x-correlation-id", &sent.correlation_id),
                ("traceparent", &tp),
            ],
            Some(body),
        )
        .await;
        assert_eq!(
            status, expect_status,
            "POST /orders for {}: {text}",
            sent.item
        );
        let v: Value = serde_json::from_str(&text).expect("JSON outcome");
        assert_eq!(v["status"], expect, "{text}");
        assert_eq!(v["correlation_id"], sent.correlation_id.as_str(), "{text}");
        assert_eq!(
            headers["x-correlation-id"],
            sent.correlation_id.as_str(),
            "the store echoes the correlation id"
        );
    }
    Placed { good, bad }
}

/// Waits (bounded) until the worker finished the good order's job.
pub async fn wait_for_worker(store: &str, correlation_id: &str) {
    let url = format!("{store}/journeys/{correlation_id}");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (status, v) = get_json(&url).await;
        let done = status == 200
            && v["events"].as_array().is_some_and(|evs| {
                evs.iter().any(|e| {
                    e["service"] == "worker"
                        && e["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("handed to the carrier"))
                })
            });
        if done {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never finished the job of {correlation_id}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Which hop a log line (its `app` field) or a journey hop (its `service`) belongs to.
fn role(line: &Value) -> Option<&'static str> {
    let app = line["app"].as_str().or(line["service"].as_str());
    match (app, line["task"].as_str()) {
        (Some("store"), None) => Some("store"),
        (Some("warehouse"), None) => Some("warehouse"),
        (Some("warehouse"), Some("audit")) => Some("audit"),
        (Some("worker"), None) => Some("worker"),
        _ => None,
    }
}

/// Checks the JSON log lines: store, warehouse, audit task and worker all carry the
/// good order's correlation id and trace id, one span id each, four distinct ones; the
/// `F` order never reaches the worker. Answers span id per role.
pub fn check_logs(lines: &[Value], placed: &Placed) -> BTreeMap<&'static str, String> {
    assert!(!lines.is_empty(), "no JSON log lines");
    for l in lines {
        for key in ["timestamp", "level", "message"] {
            assert!(l.get(key).is_some(), "every line has {key}: {l}");
        }
    }
    let good: Vec<&Value> = lines
        .iter()
        .filter(|l| l["correlation_id"] == placed.good.correlation_id.as_str())
        .collect();
    assert!(
        good.iter()
            .all(|l| l["level"] != "WARN" && l["level"] != "ERROR"),
        "a trusted caller's good order logs no warning: {good:#?}"
    );
    let mut spans: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for l in &good {
        assert_eq!(
            l["trace_id"],
            placed.good.trace_id.as_str(),
            "same trace id: {l}"
        );
        let r = role(l).unwrap_or_else(|| panic!("a line of an unknown service: {l}"));
        let span = l["span_id"].as_str().expect("span_id").to_owned();
        spans.entry(r).or_default().insert(span);
        if r != "store" {
            // Propagated from the store: the tenant it set, the user it bound.
            assert_eq!(
                l["tenant_id"],
                placed.good.tenant.as_str(),
                "tenant reached {r}: {l}"
            );
            assert_eq!(l["user.id"], "alice", "user.id reached {r}: {l}");
        }
        if r == "store" {
            assert_eq!(
                l["parent_id"],
                placed.good.parent_id.as_str(),
                "the store continues the caller's trace: {l}"
            );
        }
    }
    let mut out = BTreeMap::new();
    for r in ["store", "warehouse", "audit", "worker"] {
        let s = spans
            .get(r)
            .unwrap_or_else(|| panic!("no {r} line for the good order; lines: {good:#?}"));
        assert_eq!(s.len(), 1, "{r} logs under one span id: {s:?}");
        out.insert(r, s.iter().next().cloned().unwrap_or_default());
    }
    let distinct: BTreeSet<&String> = out.values().collect();
    assert_eq!(distinct.len(), 4, "four distinct span ids: {out:?}");

    let bad: Vec<&Value> = lines
        .iter()
        .filter(|l| l["correlation_id"] == placed.bad.correlation_id.as_str())
        .collect();
    assert!(
        bad.iter().any(|l| l["app"] == "store"),
        "store logged the F order"
    );
    assert!(
        bad.iter()
            .any(|l| l["app"] == "warehouse" && l["level"] == "WARN"),
        "the warehouse logged the rejection: {bad:#?}"
    );
    assert!(
        bad.iter()
            .all(|l| l["trace_id"] == placed.bad.trace_id.as_str()),
        "the F order keeps its own trace"
    );
    assert!(
        !bad.iter()
            .any(|l| l["app"] == "worker" || l["task"] == "audit"),
        "a rejected order never reaches the worker or the audit"
    );
    out
}

/// Checks the journey JSON of the good order: all three services, every event under
/// the correlation id, and the hop links store → warehouse → worker and warehouse →
/// audit. Answers span id per role.
pub async fn check_journey(store: &str, placed: &Placed) -> BTreeMap<&'static str, String> {
    let cid = &placed.good.correlation_id;
    let (status, v) = get_json(&format!("{store}/journeys/{cid}")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["correlation_id"], cid.as_str());
    assert_eq!(
        v["services"],
        serde_json::json!(["store", "warehouse", "worker"]),
        "{v}"
    );
    assert_eq!(
        v["trace_ids"],
        serde_json::json!([placed.good.trace_id]),
        "{v}"
    );
    let events = v["events"].as_array().expect("events");
    assert!(events.iter().all(|e| e["correlation_id"] == cid.as_str()));
    let hops = v["hops"].as_array().expect("hops");
    let mut by_role: BTreeMap<&'static str, &Value> = BTreeMap::new();
    for h in hops {
        if let Some(r) = role(h) {
            assert!(
                by_role.insert(r, h).is_none(),
                "one hop per role: {hops:#?}"
            );
        }
    }
    let span = |r: &str| by_role[r]["span_id"].as_str().expect("span").to_owned();
    for r in ["store", "warehouse", "audit", "worker"] {
        assert!(by_role.contains_key(r), "a {r} hop: {hops:#?}");
    }
    assert_eq!(
        by_role["store"]["parent_id"],
        placed.good.parent_id.as_str()
    );
    assert!(
        by_role["store"]["called_by"].is_null(),
        "the store is the root"
    );
    assert_eq!(by_role["warehouse"]["called_by"], span("store").as_str());
    assert_eq!(by_role["audit"]["called_by"], span("warehouse").as_str());
    assert_eq!(by_role["worker"]["called_by"], span("warehouse").as_str());
    let links = v["links"].as_array().expect("links");
    assert!(links.len() >= 3, "{links:#?}");
    for l in links {
        let from_call = events
            .iter()
            .any(|e| e["span_id"] == l["from"] && e["call_id"] == l["call_id"]);
        assert!(
            from_call,
            "each link comes from a call the caller logged: {l}"
        );
    }

    let (status, list) = get_json(&format!("{store}/journeys")).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["journeys"]
        .as_array()
        .expect("journeys")
        .iter()
        .filter_map(|j| j["correlation_id"].as_str())
        .collect();
    assert!(
        ids.contains(&cid.as_str()) && ids.contains(&placed.bad.correlation_id.as_str()),
        "{ids:?}"
    );

    ["store", "warehouse", "audit", "worker"]
        .into_iter()
        .map(|r| (r, span(r)))
        .collect()
}

/// JSON objects among `text`'s lines.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("a broken JSON line ({e}): {l}"))
        })
        .collect()
}

/// Runs `f` against a demo started with `args` on a runtime of its own, with this
/// demo's logs captured; answers the summary and the captured JSON lines.
pub fn with_demo<F, Fut>(args: Args, f: F) -> (Summary, Vec<serde_json::Value>)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let journeys = Journeys::default();
    let capture = Capture::default();
    let dispatch = logs::dispatch(
        LogFormat::Json,
        LevelFilter::INFO,
        capture.clone(),
        false,
        journeys.clone(),
    );
    let on_start = dispatch.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // This runtime's threads log into this demo's capture for their lifetime.
            std::mem::forget(tracing::dispatcher::set_default(&on_start));
        })
        .build()
        .expect("runtime");
    let summary = tracing::dispatcher::with_default(&dispatch, || {
        rt.block_on(async move {
            let running = tokio::time::timeout(TIMEOUT, demo::start(args, journeys))
                .await
                .expect("the demo starts in time")
                .expect("the demo starts");
            f(format!("http://{}", running.store)).await;
            tokio::time::timeout(TIMEOUT * 2, running.shutdown())
                .await
                .expect("the demo shuts down in time")
                .expect("a clean shutdown")
        })
    });
    drop(rt);
    (summary, json_lines(&capture.text()))
}

/// A queue name no other test run uses (valid on every broker).
pub fn unique_queue() -> String {
    threadline_testkit::unique("tl-demo", '-')
}

/// Waits (bounded) until the store's journeys page says the queue is connected (or
/// not).
pub async fn wait_for_queue(store: &str, connected: bool) {
    wait_for_queue_within(store, connected, TIMEOUT).await;
}

/// [`wait_for_queue`], waiting at most `within`.
pub async fn wait_for_queue_within(store: &str, connected: bool, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (_, v) = get_json(&format!("{store}/journeys")).await;
        if v["queue"]["connected"] == connected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue never became connected={connected}: {}",
            v["queue"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Removes a queue a test made on a shared broker (best effort, bounded).
pub fn remove_queue(url: &demo::BrokerUrl, queue: &str) {
    use demo::BrokerUrl;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let step = Duration::from_secs(5);
    rt.block_on(async {
        match url {
            BrokerUrl::Embedded => {}
            BrokerUrl::Nats(u) => {
                if let Ok(Ok(c)) = tokio::time::timeout(step, async_nats::connect(u.as_str())).await
                {
                    let js = async_nats::jetstream::new(c);
                    let _ = tokio::time::timeout(step, js.delete_stream(queue)).await;
                }
            }
            BrokerUrl::Amqp(u) => {
                let conn = tokio::time::timeout(
                    step,
                    lapin::Connection::connect(u, lapin::ConnectionProperties::default()),
                )
                .await;
                if let Ok(Ok(conn)) = conn {
                    if let Ok(Ok(ch)) = tokio::time::timeout(step, conn.create_channel()).await {
                        let _ = tokio::time::timeout(
                            step,
                            ch.queue_delete(
                                queue.into(),
                                lapin::options::QueueDeleteOptions::default(),
                            ),
                        )
                        .await;
                    }
                    let _ = tokio::time::timeout(step, conn.close(200, "test done".into())).await;
                }
            }
            BrokerUrl::Redis(u) => {
                if let Ok(client) = redis::Client::open(u.as_str())
                    && let Ok(Ok(mut con)) =
                        tokio::time::timeout(step, client.get_multiplexed_async_connection()).await
                {
                    let _: Result<Result<i64, _>, _> = tokio::time::timeout(
                        step,
                        redis::cmd("DEL").arg(queue).query_async(&mut con),
                    )
                    .await;
                }
            }
        }
    });
}

/// A TCP proxy to 127.0.0.1:`upstream` that can be cut (the broker goes away) or
/// paused (the broker stops answering while the connection stays open).
pub struct Proxy {
    pub addr: SocketAddr,
    tasks: std::sync::Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
    paused: tokio::sync::watch::Sender<bool>,
}

/// Copies `from` to `to` while not paused.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let n = tokio::select! {
            n = from.read(&mut buf) => n,
            _ = paused.wait_for(|p| *p) => continue,
        };
        let Ok(n) = n else { return };
        if n == 0 {
            return;
        }
        // Bytes read are forwarded even when a pause starts meanwhile: a pause holds
        // what is still unread, as a stalled broker would.
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    pub async fn start(upstream: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks = std::sync::Arc::new(std::sync::Mutex::new(tokio::task::JoinSet::new()));
        let (paused, watch) = tokio::sync::watch::channel(false);
        let t = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let watch = watch.clone();
                t.lock().unwrap().spawn(async move {
                    let Ok(out) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = out.into_split();
                    tokio::join!(pipe(ir, ow, watch.clone()), pipe(or, iw, watch));
                });
            }
        });
        Proxy {
            addr,
            tasks,
            accept,
            paused,
        }
    }

    /// Closes every connection and stops accepting.
    pub fn cut(&self) {
        self.accept.abort();
        self.tasks.lock().unwrap().abort_all();
    }

    /// Stops forwarding in both directions; connections stay open.
    pub fn pause(&self) {
        let _ = self.paused.send(true);
    }

    /// Forwards again, what was held first.
    pub fn resume(&self) {
        let _ = self.paused.send(false);
    }
}
