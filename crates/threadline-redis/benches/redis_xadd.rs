//! `XADD` throughput on one Redis connection: plain `xadd` against `xadd_in_context`
//! (correlation id, traceparent, x-tenant-id and a bound user.id as `tl:` fields), in
//! the same run.
//!
//! `cargo bench -p threadline-redis --bench redis_xadd` (needs Redis on 127.0.0.1:6379;
//! prints SKIP and does nothing without it).

#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redis::AsyncCommands;
use threadline::{Policy, Trust};
use threadline_redis::StreamsExt;

fn xadd(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let con = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(3), async {
            redis::Client::open("redis://127.0.0.1:6379/")?
                .get_multiplexed_async_connection()
                .await
        })
        .await
    });
    let mut con = match con {
        Ok(Ok(con)) => con,
        _ => {
            eprintln!("SKIP redis_xadd: Redis is not reachable on 127.0.0.1:6379");
            return;
        }
    };
    let key = format!("threadline:bench:{}", std::process::id());
    let payload = "x".repeat(128);
    let items = [("payload", payload.as_str())];

    let policy = Policy::builder()
        .header("x-tenant-id")
        .build()
        .expect("policy");
    let mut inbound = http::HeaderMap::new();
    inbound.insert("x-correlation-id", "bench-order-42".parse().unwrap());
    inbound.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    inbound.insert("x-tenant-id", "acme".parse().unwrap());
    let ctx = policy
        .capture(&inbound, Trust::Trusted)
        .context
        .with_field("user.id", "alice");

    let mut group = c.benchmark_group("redis_xadd");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    group.bench_function("without_context", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let _: String = con.xadd(&key, "*", &items).await.expect("xadd");
                }
                let spent = start.elapsed();
                let _: usize = con.del(&key).await.expect("del");
                spent
            })
        })
    });

    group.bench_function("with_context", |b| {
        b.iter_custom(|iters| {
            rt.block_on(ctx.clone().scope(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let _: String = con.xadd_in_context(&key, "*", &items).await.expect("xadd");
                }
                let spent = start.elapsed();
                let _: usize = con.del(&key).await.expect("del");
                spent
            }))
        })
    });
    group.finish();

    // Same-run ratio, robust to load drifting on a shared machine: batches of each
    // variant alternate, and the totals are compared.
    let (mut plain, mut with) = (Duration::ZERO, Duration::ZERO);
    const ROUNDS: usize = 20;
    const BATCH: usize = 500;
    rt.block_on(async {
        for _ in 0..ROUNDS {
            let start = Instant::now();
            for _ in 0..BATCH {
                let _: String = con.xadd(&key, "*", &items).await.expect("xadd");
            }
            plain += start.elapsed();
            with += ctx
                .clone()
                .scope(async {
                    let start = Instant::now();
                    for _ in 0..BATCH {
                        let _: String = con.xadd_in_context(&key, "*", &items).await.expect("xadd");
                    }
                    start.elapsed()
                })
                .await;
            let _: usize = con.del(&key).await.expect("del");
        }
    });
    let per = |d: Duration| d.as_nanos() as f64 / (ROUNDS * BATCH) as f64;
    println!(
        "redis_xadd interleaved ({ROUNDS}x{BATCH} each): without_context {:.0} ns/entry, \
         with_context {:.0} ns/entry; throughput with/without = {:.3}",
        per(plain),
        per(with),
        plain.as_secs_f64() / with.as_secs_f64(),
    );

    c.bench_function("redis_inject_only", |b| {
        b.iter(|| {
            let mut cmd = redis::cmd("XADD");
            cmd.arg(&key).arg("*").arg(&items);
            ctx.inject_into(&mut cmd);
            cmd
        })
    });
}

criterion_group!(benches, xadd);
criterion_main!(benches);
