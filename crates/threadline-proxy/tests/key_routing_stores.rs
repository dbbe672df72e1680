//! The proxy's `[routing]` rules from the shared stores, against the local NATS
//! (JetStream key-value) and Redis: a rule written to the store routes the proxy's
//! next requests, its removal sends them back to the baseline. Each test skips loudly
//! when its service is absent, and fails under `THREADLINE_REQUIRE_SERVICES=1`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{get, serve, start, upstream};
use http_body_util::Full;
use hyper::Response;
use threadline::{Policy, Routing};
use threadline_proxy::{ProxyConfig, ProxyFile, RoutingConfig};
use threadline_route::RuleSpec;
use threadline_route::source::nats::NatsKvRules;
use threadline_route::source::redis::RedisRules;
use threadline_tower::TrustPolicy;

async fn named_app(name: &'static str) -> SocketAddr {
    let (addr, _) =
        serve(move |_req| async move { Response::new(Full::new(Bytes::from(name))) }).await;
    addr
}

fn routing(section: &str) -> RoutingConfig {
    ProxyFile::from_toml(&format!(
        "upstream = \"http://127.0.0.1:1\"\n[routing]\nservice = \"orders\"\n{section}\n"
    ))
    .unwrap()
    .into_config()
    .unwrap()
    .routing
    .unwrap()
}

/// Asks until `want` answers (the store's change reaches the proxy asynchronously),
/// at most 5 s.
async fn eventually(url: &str, want: &str) {
    let mut last = String::new();
    for _ in 0..250 {
        let (_, _, body) = get(url, &[("x-routing-key", "alice")]).await;
        if body == want {
            return;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never answered by {want}; last answer {last:?}");
}

async fn proxy_with(routing: RoutingConfig) -> (threadline_proxy::Running, String) {
    let baseline = named_app("baseline").await;
    let mut config = ProxyConfig::new(upstream(baseline))
        .policy(
            Policy::builder()
                .routing(Routing::header("x-routing-key"))
                .build()
                .unwrap(),
        )
        .trust(TrustPolicy::loopback());
    config.routing = Some(routing);
    let proxy = start(config).await;
    let url = format!("http://{}/orders", proxy.local_addr());
    (proxy, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_kv_rules_route_the_proxy() {
    let test = "nats_kv_rules_route_the_proxy";
    let Some(client) = threadline_testkit::connect(
        test,
        "NATS",
        "127.0.0.1:4222",
        Duration::from_secs(3),
        async_nats::connect("127.0.0.1:4222"),
    )
    .await
    else {
        return;
    };
    let js = async_nats::jetstream::new(client);
    let bucket = threadline_testkit::unique("proxy_routes", '_');
    let store = NatsKvRules::bucket(&js, &bucket).await.unwrap();
    let sandbox = named_app("sandbox").await;

    let (proxy, url) = proxy_with(routing(&format!(
        "nats = {{ url = \"127.0.0.1:4222\", bucket = \"{bucket}\" }}"
    )))
    .await;
    let (_, _, body) = get(&url, &[("x-routing-key", "alice")]).await;
    assert_eq!(body, "baseline", "an empty bucket routes nothing");

    let spec = RuleSpec::new("alice", "orders", "alice", &format!("http://{sandbox}"));
    NatsKvRules::put(&store, &spec).await.unwrap();
    eventually(&url, "sandbox").await;
    store.delete("alice").await.unwrap();
    eventually(&url, "baseline").await;

    proxy.shutdown().await;
    js.delete_stream(format!("KV_{bucket}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hash_rules_route_the_proxy() {
    let test = "redis_hash_rules_route_the_proxy";
    let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    let Some(mut con) = threadline_testkit::connect(
        test,
        "Redis",
        "127.0.0.1:6379",
        Duration::from_secs(3),
        client.get_multiplexed_async_connection(),
    )
    .await
    else {
        return;
    };
    let hash = threadline_testkit::unique("proxy-routes", ':');
    let sandbox = named_app("sandbox").await;
    let spec = RuleSpec::new("alice", "orders", "alice", &format!("http://{sandbox}"));
    RedisRules::put(&mut con, &hash, &spec).await.unwrap();

    let (proxy, url) = proxy_with(routing(&format!(
        "redis = {{ url = \"redis://127.0.0.1:6379\", hash = \"{hash}\" }}"
    )))
    .await;
    // Read before the first request: the start waits for the hash.
    let (_, _, body) = get(&url, &[("x-routing-key", "alice")]).await;
    assert_eq!(body, "sandbox");
    RedisRules::remove(&mut con, &hash, "alice").await.unwrap();
    eventually(&url, "baseline").await;

    proxy.shutdown().await;
    let _: () = redis::AsyncCommands::del(&mut con, &hash).await.unwrap();
}
