//! How long a route table change takes to reach a fleet: 10 routers (each with its
//! own connection, as 10 processes would have) watch one NATS JetStream key-value
//! bucket, then one Redis hash; a writer changes a rule's upstream and the time until
//! all 10 tables hold the new upstream is measured, 200 times per store. Prints the
//! median and p99 of "write to all applied" and of "write to each applied".
//!
//! `cargo bench -p threadline-route --features nats,redis --bench propagation`
//! (needs NATS with JetStream on 127.0.0.1:4222 and Redis on 127.0.0.1:6379; prints
//! SKIP for a store that is not reachable).

use std::time::{Duration, Instant};

use threadline::RoutingKey;
use threadline_route::source::nats::NatsKvRules;
use threadline_route::source::redis::RedisRules;
use threadline_route::{RequestHead, Router, RuleSpec};

const SUBSCRIBERS: usize = 10;
const CHANGES: usize = 200;

fn upstream_of(router: &Router, key: &RoutingKey) -> Option<String> {
    router
        .route("orders", None, key, &RequestHead::none())
        .map(|r| r.upstream().to_string())
}

/// Waits until every router routes `key` to `want`; answers each router's delay.
async fn all_applied(
    routers: &[Router],
    key: &RoutingKey,
    want: &str,
    from: Instant,
) -> Vec<Duration> {
    let mut seen: Vec<Option<Duration>> = vec![None; routers.len()];
    let deadline = from + Duration::from_secs(10);
    while seen.iter().any(Option::is_none) {
        for (i, r) in routers.iter().enumerate() {
            if seen[i].is_none() && upstream_of(r, key).as_deref() == Some(want) {
                seen[i] = Some(from.elapsed());
            }
        }
        assert!(
            Instant::now() < deadline,
            "a change never reached every router"
        );
        tokio::time::sleep(Duration::from_micros(50)).await;
    }
    seen.into_iter().map(Option::unwrap).collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(store: &str, all: &mut [Duration], each: &mut [Duration]) {
    all.sort();
    each.sort();
    println!(
        "{store}: {SUBSCRIBERS} subscribers, {CHANGES} changes: write to all applied median {:.2} ms, p99 {:.2} ms; write to each applied median {:.2} ms, p99 {:.2} ms",
        percentile(all, 0.5).as_secs_f64() * 1e3,
        percentile(all, 0.99).as_secs_f64() * 1e3,
        percentile(each, 0.5).as_secs_f64() * 1e3,
        percentile(each, 0.99).as_secs_f64() * 1e3,
    );
}

async fn nats() {
    let Ok(Ok(writer)) = tokio::time::timeout(
        Duration::from_secs(3),
        async_nats::connect("127.0.0.1:4222"),
    )
    .await
    else {
        eprintln!("SKIP propagation (NATS KV): NATS is not reachable on 127.0.0.1:4222");
        return;
    };
    let js = async_nats::jetstream::new(writer);
    let bucket = format!("bench_routes_{}", std::process::id());
    let store = NatsKvRules::bucket(&js, &bucket).await.unwrap();
    let mut routers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let client = async_nats::connect("127.0.0.1:4222").await.unwrap();
        let kv = async_nats::jetstream::new(client)
            .get_key_value(&bucket)
            .await
            .unwrap();
        let router = Router::new();
        router.add_source(NatsKvRules::new(kv));
        routers.push(router);
    }
    let key = RoutingKey::new("alice").unwrap();
    let (mut all, mut each) = (Vec::new(), Vec::new());
    for i in 0..CHANGES + 10 {
        let up = format!("http://127.0.0.1:{}", 10_000 + i);
        let start = Instant::now();
        NatsKvRules::put(&store, &RuleSpec::new("alice", "orders", "alice", &up))
            .await
            .unwrap();
        let delays = all_applied(&routers, &key, &up, start).await;
        if i >= 10 {
            // The first ten warm the connections up.
            all.push(*delays.iter().max().unwrap());
            each.extend(delays);
        }
    }
    report("NATS KV", &mut all, &mut each);
    drop(routers);
    js.delete_stream(format!("KV_{bucket}")).await.unwrap();
}

async fn redis() {
    let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    let Ok(Ok(mut con)) = tokio::time::timeout(
        Duration::from_secs(3),
        client.get_multiplexed_async_connection(),
    )
    .await
    else {
        eprintln!("SKIP propagation (Redis): Redis is not reachable on 127.0.0.1:6379");
        return;
    };
    let hash = format!("bench-routes:{}", std::process::id());
    let mut routers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let router = Router::new();
        router.add_source(RedisRules::new(
            redis::Client::open("redis://127.0.0.1:6379/").unwrap(),
            hash.clone(),
        ));
        routers.push(router);
    }
    // Let every subscriber's pub/sub subscription be in place before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let key = RoutingKey::new("alice").unwrap();
    let (mut all, mut each) = (Vec::new(), Vec::new());
    for i in 0..CHANGES + 10 {
        let up = format!("http://127.0.0.1:{}", 20_000 + i);
        let start = Instant::now();
        RedisRules::put(
            &mut con,
            &hash,
            &RuleSpec::new("alice", "orders", "alice", &up),
        )
        .await
        .unwrap();
        let delays = all_applied(&routers, &key, &up, start).await;
        if i >= 10 {
            all.push(*delays.iter().max().unwrap());
            each.extend(delays);
        }
    }
    report("Redis hash + pub/sub", &mut all, &mut each);
    drop(routers);
    let _: () = redis::AsyncCommands::del(&mut con, &hash).await.unwrap();
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not used.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        nats().await;
        redis().await;
    });
}
