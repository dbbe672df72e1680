//! Routing by context on 127.0.0.1: a store whose handler calls a warehouse through
//! the client layers; a route table sends the calls of a routed key to the
//! warehouse's sandbox copy. Preview links set the key from a browser's URL.

#![cfg(all(feature = "axum", feature = "route"))]

mod common;

use std::net::SocketAddr;

use axum::Router as Axum;
use axum::extract::Request as AxumRequest;
use axum::routing::get;
use bytes::Bytes;
use common::{client, serve_axum, text};
use http::{HeaderMap, HeaderName, Request};
use http_body_util::Full;
use threadline::{Context, Policy, Routing, RoutingForm, RoutingKey};
use threadline_route::{Router, Rule, Upstream};
use threadline_tower::{PropagateLayer, RouteLayer, Targets, ThreadlineLayer, TrustPolicy};
use tower::{ServiceBuilder, ServiceExt};

fn policy() -> Policy {
    Policy::builder()
        .routing(
            Routing::header("x-routing-key")
                .read(RoutingForm::query("preview"))
                .read(RoutingForm::cookie("preview"))
                .accept_untrusted(true),
        )
        .build()
        .unwrap()
}

/// A warehouse that says which copy it is and the key it was sent.
async fn warehouse(name: &'static str) -> SocketAddr {
    let app = Axum::new()
        .route(
            "/stock",
            get(move |headers: HeaderMap| async move {
                let key = headers
                    .get("x-routing-key")
                    .map_or("-".to_owned(), |v| v.to_str().unwrap().to_owned());
                format!("{name} key={key}")
            }),
        )
        .layer(ThreadlineLayer::new(policy()).trust_all());
    serve_axum(app).await
}

fn client_stack(
    router: Router,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = http::Response<hyper::body::Incoming>,
    Error = threadline_tower::RouteError<hyper_util::client::legacy::Error>,
    Future: Send,
> + Clone
+ Send
+ 'static {
    ServiceBuilder::new()
        .layer(PropagateLayer::new(Targets::everywhere()))
        .layer(RouteLayer::new(router).response_header(HeaderName::from_static("x-route")))
        .service(client())
}

fn rules(baseline: SocketAddr, sandbox: SocketAddr) -> Router {
    let router = Router::new();
    router
        .set_rules(
            "code",
            vec![
                Rule::new(
                    "alice-warehouse",
                    &format!("localhost:{}", baseline.port()),
                    ["alice"],
                    Upstream::parse(&format!("http://{sandbox}")).unwrap(),
                )
                .unwrap(),
            ],
        )
        .unwrap();
    router
}

#[tokio::test]
async fn preview_links_route_the_calls_they_lead_to() {
    let logs = threadline_testkit::logs::Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let baseline = warehouse("baseline").await;
    let sandbox = warehouse("sandbox").await;
    let calls = client_stack(rules(baseline, sandbox));
    let store = Axum::new()
        .route(
            "/order",
            get(move |req: AxumRequest| {
                let calls = calls.clone();
                async move {
                    let seen = req.uri().to_string();
                    let key = Context::current()
                        .routing_key()
                        .map_or("-".to_owned(), |k| k.to_string());
                    let url = format!("http://localhost:{}/stock", baseline.port());
                    let resp = calls
                        .oneshot(Request::get(url).body(Full::default()).unwrap())
                        .await
                        .unwrap();
                    format!("{seen}|{key}|{}", text(resp.into_body()).await)
                }
            }),
        )
        .layer(ThreadlineLayer::new(policy()).trust(TrustPolicy::never()));
    let store = serve_axum(store).await;
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut req = Request::get(format!("http://{store}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::default()).unwrap();
        async move {
            let resp = client().request(req).await.unwrap();
            let cookie = resp
                .headers()
                .get("set-cookie")
                .map(|v| v.to_str().unwrap().to_owned());
            (text(resp.into_body()).await, cookie)
        }
    };

    // The link: the parameter leaves the URL, the key the context, a cookie is set,
    // and the store's call goes to the sandbox, which is sent the key.
    let (body, cookie) = get("/order?preview=alice&item=F1", &[]).await;
    assert_eq!(body, "/order?item=F1|alice|sandbox key=alice");
    assert_eq!(
        cookie.as_deref(),
        Some("preview=alice; Path=/; HttpOnly; SameSite=Lax")
    );
    // The browser's next request carries the cookie.
    let (body, cookie) = get("/order", &[("cookie", "preview=alice")]).await;
    assert_eq!(body, "/order|alice|sandbox key=alice");
    assert_eq!(cookie, None);
    // An empty value clears both.
    let (body, cookie) = get("/order?preview=", &[("cookie", "preview=alice")]).await;
    assert_eq!(body, "/order|-|baseline key=-");
    assert_eq!(
        cookie.as_deref(),
        Some("preview=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax")
    );
    // A malformed key: stripped, ignored, the baseline.
    let (body, cookie) = get("/order?preview=a*b", &[]).await;
    assert_eq!(body, "/order|-|baseline key=-");
    assert_eq!(cookie, None);
    // A key no rule routes: carried on, to the baseline.
    let (body, _) = get("/order", &[("x-routing-key", "bob")]).await;
    assert_eq!(body, "/order|bob|baseline key=bob");
    // Conflicting forms: no key, the baseline.
    let (body, _) = get(
        "/order",
        &[("x-routing-key", "bob"), ("cookie", "preview=alice")],
    )
    .await;
    assert_eq!(body, "/order|-|baseline key=-");
    // No key at all.
    let (body, _) = get("/order", &[]).await;
    assert_eq!(body, "/order|-|baseline key=-");

    let routed: Vec<String> = logs
        .at(tracing::Level::INFO)
        .into_iter()
        .filter(|l| l.contains("call routed"))
        .collect();
    assert_eq!(routed.len(), 2, "{routed:?}");
    assert!(routed[0].contains("route=alice-warehouse"), "{}", routed[0]);
    assert!(
        routed[0].contains(&format!("upstream=http://{sandbox}")),
        "{}",
        routed[0]
    );
}

#[tokio::test]
async fn preview_links_from_untrusted_callers_are_ignored_unless_opened() {
    let closed = Policy::builder()
        .routing(Routing::header("x-routing-key").read(RoutingForm::query("preview")))
        .build()
        .unwrap();
    let app = Axum::new()
        .route(
            "/",
            get(|req: AxumRequest| async move {
                let key = Context::current()
                    .routing_key()
                    .map_or("-".to_owned(), |k| k.to_string());
                format!("{}|{key}", req.uri())
            }),
        )
        .layer(ThreadlineLayer::new(closed));
    let resp = app
        .oneshot(
            Request::get("/?preview=alice&x=1")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(resp.headers().get("set-cookie").is_none());
    assert_eq!(text(resp.into_body()).await, "/?x=1|-");
}

#[tokio::test]
async fn a_refused_upstream_is_the_callers_error_with_the_route_named() {
    let baseline = warehouse("baseline").await;
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let router = Router::new();
    router
        .set_rules(
            "code",
            vec![
                Rule::new(
                    "dead-sandbox",
                    &format!("localhost:{}", baseline.port()),
                    ["carol"],
                    Upstream::parse(&format!("http://{dead}")).unwrap(),
                )
                .unwrap(),
            ],
        )
        .unwrap();
    let calls = client_stack(router);
    let ctx = policy()
        .new_root()
        .with_routing_key(RoutingKey::new("carol").unwrap());
    let url = format!("http://localhost:{}/stock", baseline.port());
    let err = ctx
        .clone()
        .scope(
            calls
                .clone()
                .oneshot(Request::get(&url).body(Full::default()).unwrap()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.route(), Some("dead-sandbox"));
    assert!(!err.allows_fallback());
    let text_of = err.to_string();
    assert!(
        text_of.contains(&format!("(route dead-sandbox to http://{dead})")),
        "{text_of}"
    );
    // Never a silent fallback: the same call without the key reaches the baseline.
    let ok = calls
        .oneshot(Request::get(&url).body(Full::default()).unwrap())
        .await
        .unwrap();
    assert!(ok.headers().get("x-route").is_none());
    assert_eq!(text(ok.into_body()).await, "baseline key=-");
}

#[tokio::test]
async fn the_route_is_named_on_the_response_on_demand() {
    let baseline = warehouse("baseline").await;
    let sandbox = warehouse("sandbox").await;
    let calls = client_stack(rules(baseline, sandbox));
    let url = format!("http://localhost:{}/stock", baseline.port());
    // The request's own context wins over the task's (none here).
    let mut req = Request::get(&url).body(Full::default()).unwrap();
    req.extensions_mut().insert(
        policy()
            .new_root()
            .with_routing_key(RoutingKey::new("alice").unwrap()),
    );
    let resp = calls.oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["x-route"], "alice-warehouse");
    assert_eq!(text(resp.into_body()).await, "sandbox key=alice");
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn reqwest_calls_are_routed_by_the_middleware() {
    use threadline_tower::{PropagateMiddleware, RouteMiddleware};
    let baseline = warehouse("baseline").await;
    let sandbox = warehouse("sandbox").await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let router = rules(baseline, sandbox);
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(PropagateMiddleware::new(Targets::everywhere()))
        .with(RouteMiddleware::new(router.clone()))
        .build();
    let url = format!("http://localhost:{}/stock", baseline.port());
    let get = |ctx: Context| {
        let client = client.clone();
        let url = url.clone();
        ctx.scope(async move {
            let resp = client.get(&url).send().await?;
            Ok::<_, reqwest_middleware::Error>(resp.text().await.unwrap())
        })
    };
    let plain = policy().new_root();
    let alice = plain.with_routing_key(RoutingKey::new("alice").unwrap());
    let bob = plain.with_routing_key(RoutingKey::new("bob").unwrap());
    assert_eq!(get(plain.clone()).await.unwrap(), "baseline key=-");
    assert_eq!(get(alice.clone()).await.unwrap(), "sandbox key=alice");
    assert_eq!(get(bob).await.unwrap(), "baseline key=bob");
    // A context in the middleware's extensions wins over the task's.
    let resp = client
        .get(&url)
        .with_extension(alice.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "sandbox key=alice");

    // The sandbox down: the caller's error names the route; no silent fallback.
    router
        .set_rules(
            "code",
            vec![
                Rule::new(
                    "alice-warehouse",
                    &format!("localhost:{}", baseline.port()),
                    ["alice"],
                    Upstream::parse(&format!("http://{dead}")).unwrap(),
                )
                .unwrap(),
            ],
        )
        .unwrap();
    let err = get(alice).await.unwrap_err();
    let text_of = err.to_string();
    assert!(
        text_of.contains(&format!("(route alice-warehouse to http://{dead})")),
        "{text_of}"
    );
}
