//! Where the client layer sits: below a layer that calls it from another task
//! (`tower::buffer`), the task has no context; a `Context` in the request's extensions
//! carries it anyway. What the layer says when a call leaves without one, or goes to a
//! destination no target allows.

use std::convert::Infallible;

use http::{HeaderMap, Request};
use threadline::{Context, Policy, Trust};
use threadline_testkit::logs::Captured;
use threadline_tower::{PropagateLayer, Target, Targets};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tracing::Level;

fn ctx(id: &str) -> Context {
    let policy = Policy::builder().header("x-tenant-id").build().unwrap();
    let mut h = HeaderMap::new();
    h.insert("x-correlation-id", id.parse().unwrap());
    h.insert("x-tenant-id", "acme".parse().unwrap());
    policy.capture(&h, Trust::Trusted).context
}

fn echo() -> impl Service<Request<()>, Response = HeaderMap, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(req.headers().clone()) })
}

fn targets() -> Targets {
    Targets::new()
        .allow(Target::host("*.internal"))
        .others_traceparent_only()
}

#[tokio::test(flavor = "current_thread")]
async fn a_context_in_the_extensions_wins_over_the_tasks() {
    let client = ServiceBuilder::new()
        .layer(PropagateLayer::new(targets()))
        .service(echo());
    let sent = ctx("from-the-task")
        .scope(async {
            let mut req = Request::get("http://orders.internal/").body(()).unwrap();
            req.extensions_mut().insert(ctx("from-the-request"));
            client.oneshot(req).await.unwrap()
        })
        .await;
    assert_eq!(sent["x-correlation-id"], "from-the-request");
    assert_eq!(sent["x-tenant-id"], "acme");
}

#[tokio::test(flavor = "current_thread")]
async fn below_a_buffer_the_request_carries_its_context_in_the_extensions() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    // The buffer's worker task calls the client layer: the caller's task context does
    // not reach it.
    let client = ServiceBuilder::new()
        .buffer(8)
        .layer(PropagateLayer::new(targets()))
        .service(echo());

    let lost = ctx("req-1")
        .scope(async {
            let req = Request::get("http://orders.internal/").body(()).unwrap();
            client.clone().oneshot(req).await.unwrap()
        })
        .await;
    assert!(
        lost.is_empty(),
        "below the buffer the task context is gone: {lost:?}"
    );

    let carried = ctx("req-2")
        .scope(async {
            let mut req = Request::get("http://orders.internal/").body(()).unwrap();
            req.extensions_mut().insert(Context::current());
            client.clone().oneshot(req).await.unwrap()
        })
        .await;
    assert_eq!(carried["x-correlation-id"], "req-2");
    assert_eq!(carried["x-tenant-id"], "acme");
    assert!(carried.contains_key("traceparent"));

    // The lost one was said, once, at debug.
    for _ in 0..3 {
        let req = Request::get("http://orders.internal/").body(()).unwrap();
        client.clone().oneshot(req).await.unwrap();
    }
    let said = logs.at(Level::DEBUG);
    let outside: Vec<_> = said
        .iter()
        .filter(|l| l.contains("outside any context scope"))
        .collect();
    assert_eq!(outside.len(), 1, "once per layer: {said:?}");
    assert!(outside[0].contains("tower::buffer"), "{}", outside[0]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_destination_no_target_allows_is_warned_once_per_host() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let client = ServiceBuilder::new()
        .layer(PropagateLayer::new(
            Targets::new().allow(Target::host("*.svc.internal")),
        ))
        .service(echo());
    ctx("req-3")
        .scope(async {
            for uri in [
                "http://127.0.0.1:8081/a",
                "http://127.0.0.1:8081/b",
                "http://orders.svc.internal/",
                "http://localhost:9000/",
            ] {
                let req = Request::get(uri).body(()).unwrap();
                let sent = client.clone().oneshot(req).await.unwrap();
                if uri.contains("svc.internal") {
                    assert_eq!(sent["x-correlation-id"], "req-3");
                } else {
                    assert!(sent.is_empty(), "{uri}: the default fallback sends nothing");
                }
            }
        })
        .await;
    // Outside any scope nothing would be sent anyway: no warning for it.
    let req = Request::get("http://203.0.113.9/").body(()).unwrap();
    client.clone().oneshot(req).await.unwrap();

    let warnings = logs.at(Level::WARN);
    assert_eq!(warnings.len(), 2, "one per host: {warnings:?}");
    assert!(warnings[0].contains("no propagation target allows 127.0.0.1"));
    assert!(
        warnings[0].contains("Target::host(\"127.0.0.1\")"),
        "names the fix"
    );
    assert!(warnings[1].contains("localhost"));
}

#[tokio::test(flavor = "current_thread")]
async fn warnings_about_hosts_are_bounded() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let client = ServiceBuilder::new()
        .layer(PropagateLayer::new(targets()))
        .service(echo());
    ctx("req-4")
        .scope(async {
            for i in 0..200 {
                let req = Request::get(format!("http://host-{i}.example/"))
                    .body(())
                    .unwrap();
                client.clone().oneshot(req).await.unwrap();
            }
        })
        .await;
    assert_eq!(
        logs.at(Level::WARN).len(),
        threadline_tower::MAX_WARNED_HOSTS
    );
}
