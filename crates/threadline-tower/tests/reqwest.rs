//! The `reqwest-middleware` middleware against a real server.

#![cfg(feature = "reqwest")]

mod common;

use axum::Router;
use axum::routing::get;
use common::{TIMEOUT, serve_axum};
use http::HeaderMap;
use serde_json::{Map, Value};
use threadline::{HeaderRule, Policy, Trust};
use threadline_tower::{PropagateMiddleware, Target, Targets};

async fn header_echo() -> std::net::SocketAddr {
    serve_axum(Router::new().route(
        "/",
        get(|headers: HeaderMap| async move {
            let map: Map<String, Value> = headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        Value::from(v.to_str().unwrap_or("?")),
                    )
                })
                .collect();
            Value::Object(map).to_string()
        }),
    ))
    .await
}

async fn fetch(client: &reqwest_middleware::ClientWithMiddleware, url: String) -> Value {
    let resp = tokio::time::timeout(
        TIMEOUT,
        client.get(url).header("x-caller", "set-by-caller").send(),
    )
    .await
    .unwrap()
    .unwrap();
    serde_json::from_str(&resp.text().await.unwrap()).unwrap()
}

#[tokio::test]
async fn reqwest_middleware_propagates_only_to_allowed_targets() {
    let allowed = header_echo().await;
    let other = header_echo().await;
    let targets = Targets::new()
        .allow(Target::host("127.0.0.1").port(allowed.port()))
        .others_traceparent_only();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(PropagateMiddleware::new(targets))
        .build();

    let policy = Policy::builder()
        .header_rule(HeaderRule::new("x-tenant-id").rename("x-org-id"))
        .header("x-caller")
        .header("authorization")
        .build()
        .unwrap();
    let mut inbound = HeaderMap::new();
    inbound.insert("x-tenant-id", "acme".parse().unwrap());
    inbound.insert("x-caller", "from-context".parse().unwrap());
    inbound.insert("authorization", "Bearer secret".parse().unwrap());
    let ctx = policy.capture(&inbound, Trust::Trusted).context;
    let cid = ctx.correlation_id().unwrap().to_string();
    let trace = ctx.trace_id().unwrap().to_string();

    let (seen, seen_other) = ctx
        .scope(async {
            (
                fetch(&client, format!("http://{allowed}/")).await,
                fetch(&client, format!("http://{other}/")).await,
            )
        })
        .await;
    assert_eq!(seen["x-correlation-id"], cid.as_str());
    assert_eq!(seen["x-org-id"], "acme", "renamed on the way out");
    assert!(seen.get("x-tenant-id").is_none());
    assert_eq!(
        seen["x-caller"], "set-by-caller",
        "never overwrites the caller's header"
    );
    assert!(
        seen.get("authorization").is_none(),
        "credentials not forwarded"
    );
    assert!(seen["traceparent"].as_str().unwrap().contains(&trace));

    assert!(seen_other["traceparent"].as_str().unwrap().contains(&trace));
    for internal in ["x-correlation-id", "x-org-id", "authorization", "baggage"] {
        assert!(seen_other.get(internal).is_none(), "{internal} leaked");
    }

    // Outside any scope: passed through untouched.
    let outside = fetch(&client, format!("http://{allowed}/")).await;
    assert!(outside.get("traceparent").is_none());
    assert!(outside.get("x-correlation-id").is_none());
}
