//! Rules from shared stores, against the local NATS (4222, JetStream) and Redis
//! (6379). Each test prints a loud SKIP and returns when its service is unreachable,
//! unless THREADLINE_REQUIRE_SERVICES=1.

use std::time::Duration;

use threadline::RoutingKey;
use threadline_route::source::nats::NatsKvRules;
use threadline_route::source::redis::RedisRules;
use threadline_route::{RequestHead, Router, RuleErrorKind, RuleSpec, Status};

const WAIT: Duration = Duration::from_secs(10);

async fn until(router: &Router, what: &str, f: impl Fn(&Status, &Router) -> bool) -> Status {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = router.status();
        if f(&s, router) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn upstream_of(router: &Router, key: &str) -> Option<String> {
    router
        .route(
            "warehouse",
            None,
            &RoutingKey::new(key).unwrap(),
            &RequestHead::none(),
        )
        .map(|r| r.upstream().to_string())
}

#[tokio::test]
async fn nats_kv_rules_are_watched() {
    let test = "nats_kv_rules_are_watched";
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
    let bucket = threadline_testkit::unique("routes", '_');
    let store = NatsKvRules::bucket(&js, &bucket).await.unwrap();
    // One rule before the router starts: read from the history.
    NatsKvRules::put(
        &store,
        &RuleSpec::new("alice", "warehouse", "alice", "http://127.0.0.1:9001"),
    )
    .await
    .unwrap();
    let router = Router::new();
    router.add_source(NatsKvRules::new(store.clone()));
    until(&router, "history", |_, r| upstream_of(r, "alice").is_some()).await;

    // A put while watching.
    NatsKvRules::put(
        &store,
        &RuleSpec::new("bob", "warehouse", "bob", "http://127.0.0.1:9002"),
    )
    .await
    .unwrap();
    until(&router, "put", |_, r| upstream_of(r, "bob").is_some()).await;

    // An entry that does not parse: that key keeps its last good rule, the rest
    // apply, the status says why.
    store.put("alice", "{ not json".into()).await.unwrap();
    store
        .put(
            "carol",
            r#"{"service":"warehouse","key":"bad key","upstream":"http://x"}"#.into(),
        )
        .await
        .unwrap();
    let s = until(&router, "bad entries reported", |s, _| {
        s.sources[0]
            .last_error
            .as_ref()
            .is_some_and(|(_, e)| e.to_string().contains("carol"))
    })
    .await;
    let err = s.sources[0].last_error.as_ref().unwrap().1.clone();
    assert!(err.to_string().contains("\"alice\""), "{err}");
    assert_eq!(err.kind(), RuleErrorKind::Syntax);
    assert_eq!(
        upstream_of(&router, "alice").as_deref(),
        Some("http://127.0.0.1:9001")
    );
    assert_eq!(
        upstream_of(&router, "bob").as_deref(),
        Some("http://127.0.0.1:9002")
    );

    // A delete removes the rule.
    NatsKvRules::remove(&store, "bob").await.unwrap();
    until(&router, "delete", |_, r| upstream_of(r, "bob").is_none()).await;

    // A heartbeat rule: expires by the server's write time once the puts stop.
    let mut beat = RuleSpec::new("dave", "warehouse", "dave", "http://127.0.0.1:9004");
    beat.ttl_secs = Some(1);
    NatsKvRules::put(&store, &beat).await.unwrap();
    until(&router, "heartbeat rule", |_, r| {
        upstream_of(r, "dave").is_some()
    })
    .await;
    until(&router, "heartbeat stopped", |_, r| {
        upstream_of(r, "dave").is_none()
    })
    .await;
    assert!(
        router.table().get("dave").is_some(),
        "still in the table, expired"
    );

    drop(router);
    js.delete_stream(format!("KV_{bucket}")).await.unwrap();
}

#[tokio::test]
async fn redis_hash_rules_reload_on_invalidation() {
    let test = "redis_hash_rules_reload_on_invalidation";
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
    let hash = threadline_testkit::unique("routes", ':');
    RedisRules::put(
        &mut con,
        &hash,
        &RuleSpec::new("alice", "warehouse", "alice", "http://127.0.0.1:9001"),
    )
    .await
    .unwrap();
    let router = Router::new();
    // A long resync: what follows is seen through the invalidation channel.
    router.add_source(
        RedisRules::new(client.clone(), hash.clone()).resync(Duration::from_secs(3600)),
    );
    until(&router, "load", |_, r| upstream_of(r, "alice").is_some()).await;

    RedisRules::put(
        &mut con,
        &hash,
        &RuleSpec::new("bob", "warehouse", "bob", "http://127.0.0.1:9002"),
    )
    .await
    .unwrap();
    until(&router, "put", |_, r| upstream_of(r, "bob").is_some()).await;

    // A bad field, then an invalidation: reported, the last good rule kept.
    let _: () = redis::cmd("HSET")
        .arg(&hash)
        .arg("alice")
        .arg("{ not json")
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("PUBLISH")
        .arg(format!("{hash}:changed"))
        .arg("alice")
        .query_async(&mut con)
        .await
        .unwrap();
    let s = until(&router, "bad entry reported", |s, _| s.has_errors()).await;
    assert!(s.to_string().contains("\"alice\""), "{s}");
    assert_eq!(
        upstream_of(&router, "alice").as_deref(),
        Some("http://127.0.0.1:9001")
    );

    RedisRules::remove(&mut con, &hash, "bob").await.unwrap();
    until(&router, "remove", |_, r| upstream_of(r, "bob").is_none()).await;

    // ttl_secs cannot be honoured without a write time: refused by the writer.
    let mut beat = RuleSpec::new("dave", "warehouse", "dave", "http://127.0.0.1:9004");
    beat.ttl_secs = Some(1);
    assert!(RedisRules::put(&mut con, &hash, &beat).await.is_err());

    drop(router);
    let _: () = redis::cmd("DEL")
        .arg(&hash)
        .query_async(&mut con)
        .await
        .unwrap();
}
