//! HTTP-pushed tasks (the Cloud Tasks pattern: the queue calls your endpoint with the
//! headers you gave it), end to end on 127.0.0.1:
//!
//! - an axum API (behind [`ThreadlineLayer`]) whose request handler enqueues a task
//!   into an in-memory queue, the task's headers being what the client layer
//!   ([`PropagateLayer::inject`]) would send to the task's URL;
//! - a dispatcher, outside any request, that later POSTs each task with its stored
//!   headers through a hyper-util client wrapped in [`PropagateLayer`];
//! - a real axum task endpoint (behind [`ThreadlineLayer`]) whose handler sees the
//!   producer's correlation id and trace id, a new parent id, `x-tenant-id` and the
//!   bound `user.id`;
//! - a periodic task started outside any request with [`Policy::new_root`]: a new
//!   trace and correlation id, which the endpoint sees.
//!
//! Local fields (`user.id`) travel on HTTP only when the policy says so: the policy has
//! `fields_over_http(true)`, and the endpoint trusts only the dispatcher (a shared
//! secret it adds to each delivery), so `tl-field-*` headers from anyone else are
//! ignored.

#![cfg(feature = "axum")]

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use bytes::Bytes;
use common::{TIMEOUT, client, send, serve_axum, text};
use http::{HeaderMap, Request, Uri};
use http_body_util::Full;
use serde_json::{Value, json};
use threadline::{Context, Policy};
use threadline_tower::{PropagateLayer, Target, Targets, ThreadlineLayer, TrustPolicy};
use tokio::sync::mpsc;
use tower::{ServiceBuilder, ServiceExt};

/// The header the dispatcher authenticates with (Cloud Tasks would send an OIDC token).
const QUEUE_TOKEN: &str = "x-queue-token";

fn secret() -> String {
    format!("queue-secret-{}", std::process::id())
}

/// Custom header `x-tenant-id`; local fields on HTTP too, accepted from trusted callers.
fn policy() -> Policy {
    Policy::builder()
        .header("x-tenant-id")
        .fields_over_http(true)
        .build()
        .unwrap()
}

/// One task in the queue: where to push it, the headers to push it with, its body.
struct Task {
    url: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// The in-memory queue.
#[derive(Clone, Default)]
struct Queue(Arc<Mutex<VecDeque<Task>>>);

impl Queue {
    fn push(&self, task: Task) {
        self.0.lock().unwrap().push_back(task);
    }

    fn pop(&self) -> Option<Task> {
        self.0.lock().unwrap().pop_front()
    }
}

/// Creates a task for `url` from inside any scope: its headers are what the client
/// layer would send to `url` right now (correlation id, a child traceparent, tenant,
/// local fields), so the context is captured at enqueue time, not at delivery.
fn enqueue(queue: &Queue, push: &PropagateLayer, url: &Uri, body: Value) {
    let mut headers = HeaderMap::new();
    push.inject(url, &mut headers);
    queue.push(Task {
        url: url.clone(),
        headers,
        body: Bytes::from(body.to_string()),
    });
}

/// The context a handler sees, as JSON.
fn view(ctx: &Context) -> Value {
    let t = ctx.trace().expect("a trace in every scope");
    json!({
        "cid": ctx.correlation_id().map(|c| c.as_str().to_owned()),
        "trace": t.trace_id().to_string(),
        "parent": t.parent_id().map(|p| p.to_string()),
        "span": t.span_id().to_string(),
        "tenant": ctx.get("x-tenant-id"),
        "user": ctx.field("user.id"),
        "job": ctx.field("job"),
    })
}

/// The task endpoint: reports what it saw (with the task body) and answers 200.
async fn serve_endpoint(policy: &Policy) -> (SocketAddr, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    let app = Router::new()
        .route(
            "/tasks/invoice",
            post(
                |State(tx): State<mpsc::UnboundedSender<Value>>, body: String| async move {
                    let task: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    tx.send(json!({"task": task, "ctx": view(&Context::current())}))
                        .unwrap();
                    "done"
                },
            ),
        )
        .with_state(tx)
        .layer(
            ThreadlineLayer::new(policy.clone())
                .trust(TrustPolicy::shared_secret(QUEUE_TOKEN, &secret()).unwrap()),
        );
    (serve_axum(app).await, rx)
}

#[derive(Clone)]
struct Api {
    queue: Queue,
    push: PropagateLayer,
    task_url: Uri,
}

/// The API whose request handler enqueues a task. Its callers are untrusted.
async fn serve_api(api: Api, policy: &Policy) -> SocketAddr {
    let app = Router::new()
        .route(
            "/orders",
            post(|State(api): State<Api>| async move {
                // An untrusted caller cannot set local fields: none before the bind.
                assert_eq!(Context::current().field("user.id"), None);
                threadline::bind("user.id", "alice");
                enqueue(&api.queue, &api.push, &api.task_url, json!({"order": 42}));
                view(&Context::current()).to_string()
            }),
        )
        .with_state(api)
        .layer(ThreadlineLayer::new(policy.clone()));
    serve_axum(app).await
}

/// The dispatcher: outside any request scope, POSTs every queued task with its stored
/// headers plus the queue's token, through a hyper-util client behind the client
/// layer. Answers how many tasks were delivered with a 200.
async fn dispatch(queue: Queue) -> usize {
    tokio::spawn(async move {
        assert!(
            Context::try_current().is_err(),
            "the dispatcher runs outside any request"
        );
        let http = ServiceBuilder::new()
            .layer(PropagateLayer::new(
                Targets::new().allow(Target::host("127.0.0.1")),
            ))
            .service(client());
        let mut delivered = 0;
        while let Some(task) = queue.pop() {
            let mut req = Request::post(task.url)
                .header(QUEUE_TOKEN, secret())
                .header("content-type", "application/json")
                .body(Full::new(task.body))
                .unwrap();
            req.headers_mut().extend(task.headers);
            let resp = tokio::time::timeout(TIMEOUT, http.clone().oneshot(req))
                .await
                .expect("delivery in time")
                .expect("delivery");
            if resp.status() == 200 {
                delivered += 1;
            }
        }
        delivered
    })
    .await
    .unwrap()
}

fn task_url(endpoint: SocketAddr) -> Uri {
    format!("http://{endpoint}/tasks/invoice").parse().unwrap()
}

fn push_layer() -> PropagateLayer {
    PropagateLayer::new(Targets::new().allow(Target::host("127.0.0.1")))
}

#[tokio::test]
async fn http_push_task_carries_the_request_context_to_the_endpoint() {
    let policy = policy();
    let (endpoint, mut seen) = serve_endpoint(&policy).await;
    let queue = Queue::default();
    let api = serve_api(
        Api {
            queue: queue.clone(),
            push: push_layer(),
            task_url: task_url(endpoint),
        },
        &policy,
    )
    .await;

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_parent = "00f067aa0ba902b7";
    let cid = format!("order-{}", std::process::id());
    let req = Request::post(format!("http://{api}/orders"))
        .header("x-correlation-id", &cid)
        .header("traceparent", format!("00-{trace}-{caller_parent}-01"))
        .header("x-tenant-id", "acme")
        // An untrusted caller cannot set local fields.
        .header("tl-field-user.id", "mallory")
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = send(req).await;
    assert_eq!(resp.status(), 200);
    let producer: Value = serde_json::from_str(&text(resp.into_body()).await).unwrap();
    assert_eq!(producer["cid"], cid.as_str());
    assert_eq!(producer["trace"], trace);
    assert_eq!(
        producer["user"], "alice",
        "bound in the handler, not the caller's"
    );

    // Nothing is pushed until the dispatcher runs.
    assert!(seen.try_recv().is_err());
    assert_eq!(dispatch(queue.clone()).await, 1, "one task, delivered once");

    let got = tokio::time::timeout(TIMEOUT, seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got["task"], json!({"order": 42}));
    let ctx = &got["ctx"];
    assert_eq!(ctx["cid"], cid.as_str(), "same correlation id");
    assert_eq!(ctx["trace"], trace, "same trace id");
    assert_ne!(ctx["parent"], Value::Null);
    assert_ne!(ctx["parent"], caller_parent, "a new parent id");
    assert_ne!(ctx["parent"], producer["span"], "the task is its own hop");
    assert_ne!(ctx["span"], producer["span"]);
    assert_eq!(ctx["tenant"], "acme");
    assert_eq!(
        ctx["user"], "alice",
        "the bound field travels with the task"
    );
    assert!(queue.pop().is_none(), "the queue is empty");
}

#[tokio::test]
async fn http_push_endpoint_ignores_fields_from_callers_other_than_the_dispatcher() {
    let policy = policy();
    let (endpoint, mut seen) = serve_endpoint(&policy).await;
    let req = Request::post(task_url(endpoint))
        .header("x-correlation-id", "direct-1")
        .header("x-tenant-id", "acme")
        .header("tl-field-user.id", "mallory")
        .body(Full::new(Bytes::from_static(b"{\"order\": 1}")))
        .unwrap();
    let resp = send(req).await;
    assert_eq!(resp.status(), 200);
    let got = tokio::time::timeout(TIMEOUT, seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got["ctx"]["cid"], "direct-1");
    assert_eq!(got["ctx"]["tenant"], "acme");
    assert_eq!(
        got["ctx"]["user"],
        Value::Null,
        "untrusted: no local fields"
    );
}

#[tokio::test]
async fn http_push_periodic_task_outside_any_request_starts_a_new_trace() {
    let policy = policy();
    let (endpoint, mut seen) = serve_endpoint(&policy).await;
    let queue = Queue::default();
    let push = push_layer();
    let url = task_url(endpoint);

    // A scheduler: three ticks, each outside any request. Each tick is a new unit of
    // work: a new correlation id and a new trace.
    const TICKS: usize = 3;
    let scheduler = {
        let (queue, push, url, policy) = (queue.clone(), push.clone(), url.clone(), policy.clone());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(std::time::Duration::from_millis(1));
            let mut roots = Vec::new();
            for tick in 0..TICKS {
                ticks.tick().await;
                assert!(Context::try_current().is_err(), "no request around");
                let root = policy.new_root();
                let mine = root
                    .clone()
                    .scope(async {
                        threadline::bind("job", "nightly-report");
                        enqueue(&queue, &push, &url, json!({"tick": tick}));
                        Context::current()
                    })
                    .await;
                roots.push(mine);
            }
            roots
        })
    };
    let roots = tokio::time::timeout(TIMEOUT, scheduler)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dispatch(queue).await, TICKS);

    let mut cids = std::collections::HashSet::new();
    let mut traces = std::collections::HashSet::new();
    for _ in 0..TICKS {
        let got = tokio::time::timeout(TIMEOUT, seen.recv())
            .await
            .unwrap()
            .unwrap();
        let tick = usize::try_from(got["task"]["tick"].as_u64().unwrap()).unwrap();
        let root = &roots[tick];
        let ctx = &got["ctx"];
        assert_eq!(
            ctx["cid"],
            root.correlation_id().unwrap().as_str(),
            "tick {tick}: the scheduler's new correlation id"
        );
        assert_eq!(
            ctx["trace"],
            root.trace_id().unwrap().to_string(),
            "tick {tick}: the scheduler's new trace"
        );
        assert_ne!(
            ctx["parent"],
            root.span_id().unwrap().to_string(),
            "tick {tick}: a new parent id"
        );
        assert_ne!(ctx["parent"], Value::Null);
        assert_eq!(ctx["tenant"], Value::Null);
        assert_eq!(ctx["job"], "nightly-report", "tick {tick}: the bound field");
        cids.insert(ctx["cid"].as_str().unwrap().to_owned());
        traces.insert(ctx["trace"].as_str().unwrap().to_owned());
    }
    assert_eq!(cids.len(), TICKS, "a correlation id per tick");
    assert_eq!(traces.len(), TICKS, "a trace per tick");
}
