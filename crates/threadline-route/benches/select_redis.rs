//! Entries per second through a Redis Streams consumer-group reader that restores each
//! entry's context, runs a handler and `XACK`s, without and with selective consumption
//! (the baseline side of `SelectiveRedis`, a 1,000-rule table, the entries carrying
//! keys no rule claims, as most traffic does), in the same run, against the Redis on
//! 127.0.0.1:6379. Both read 100 entries per `XREADGROUP` and acknowledge each entry
//! after its handler. Each iteration adds a batch of 2,000 entries (one pipeline) and
//! waits until the consumer has handled them all.
//!
//! ```text
//! cargo bench -p threadline-route --features redis --bench select_redis
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_main};
use redis::aio::MultiplexedConnection;
use threadline_redis::ReadReply;
use threadline_route::Selector;
use threadline_route::select::redis::SelectiveRedis;

mod support;
use support::{BATCH, restorer, router};

const GROUP: &str = "bench";

async fn group(conn: &mut MultiplexedConnection, stream: &str) {
    let _: () = redis::cmd("DEL")
        .arg(stream)
        .query_async(conn)
        .await
        .unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(GROUP)
        .arg("$")
        .arg("MKSTREAM")
        .query_async(conn)
        .await
        .unwrap();
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    let connect = || {
        rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(3),
                client.get_multiplexed_async_connection(),
            )
            .await
        })
    };
    let (Ok(Ok(mut producer)), Ok(Ok(plain_conn)), Ok(Ok(selective_conn))) =
        (connect(), connect(), connect())
    else {
        eprintln!("\n*** SKIP select_redis bench: Redis is not reachable on 127.0.0.1:6379 ***\n");
        return;
    };
    let handled = Arc::new(AtomicU64::new(0));
    let plain = format!("bench:select:plain:{}", std::process::id());
    let selective = format!("bench:select:selective:{}", std::process::id());
    rt.block_on(async {
        group(&mut producer, &plain).await;
        group(&mut producer, &selective).await;
    });

    // Without: a group reader restoring each entry's context around the handler, then
    // acknowledging it.
    {
        let (mut conn, handled, stream) = (plain_conn, handled.clone(), plain.clone());
        rt.spawn(async move {
            let restorer = restorer();
            loop {
                let reply: ReadReply = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg("c1")
                    .arg("COUNT")
                    .arg(100)
                    .arg("BLOCK")
                    .arg(100)
                    .arg("STREAMS")
                    .arg(&stream)
                    .arg(">")
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                for (_, entry) in reply.into_entries() {
                    let id = entry.id.clone();
                    let handled = handled.clone();
                    restorer
                        .handle(entry, |e| async move {
                            std::hint::black_box(&e.fields);
                            handled.fetch_add(1, Ordering::Relaxed);
                        })
                        .await;
                    let _: i64 = redis::cmd("XACK")
                        .arg(&stream)
                        .arg(GROUP)
                        .arg(&id)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                }
            }
        });
    }
    // With: the baseline side of selective consumption.
    {
        let side = SelectiveRedis::new(selective.clone(), GROUP, restorer());
        let selector = Selector::new(router(), "orders");
        let (mut conn, handled) = (selective_conn, handled.clone());
        rt.spawn(async move {
            side.baseline(&mut conn, "c1", &selector, move |e| {
                std::hint::black_box(&e.fields);
                handled.fetch_add(1, Ordering::Relaxed);
                std::future::ready(())
            })
            .await
        });
    }
    std::thread::sleep(Duration::from_millis(300));

    let mut g = c.benchmark_group("Redis Streams group reader, 2,000-entry batches");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    for (name, stream) in [
        ("restore + handler + XACK (without)", plain.clone()),
        (
            "selective baseline, 1,000 rules, keys unclaimed (with)",
            selective.clone(),
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (mut producer, handled, stream) =
                    (producer.clone(), handled.clone(), stream.clone());
                rt.block_on(async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let target = handled.load(Ordering::Relaxed) + BATCH;
                        let start = Instant::now();
                        let mut pipe = redis::pipe();
                        for i in 0..BATCH {
                            pipe.cmd("XADD")
                                .arg(&stream)
                                .arg("*")
                                .arg("payload")
                                .arg("x")
                                .arg("tl:x-routing-key")
                                .arg(format!("user{}", i % 64))
                                .ignore();
                        }
                        let _: () = pipe.query_async(&mut producer).await.unwrap();
                        while handled.load(Ordering::Relaxed) < target {
                            tokio::task::yield_now().await;
                        }
                        total += start.elapsed();
                    }
                    total
                })
            })
        });
    }
    g.finish();
    rt.block_on(async {
        let _: Result<(), _> = redis::cmd("DEL")
            .arg(&plain)
            .arg(&selective)
            .query_async(&mut producer)
            .await;
    });
}

#[allow(missing_docs)]
mod groups {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(groups::benches);
