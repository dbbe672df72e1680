//! Messages per second through a core NATS subscriber that restores each message's
//! context and runs a handler, without and with selective consumption (the baseline
//! side of `SelectiveNats`, a 1,000-rule table, the messages carrying keys no rule
//! claims, as most traffic does), in the same run, against the NATS on 127.0.0.1:4222.
//! Each iteration publishes a batch of 2,000 messages and waits until the consumer has
//! handled them all.
//!
//! ```text
//! cargo bench -p threadline-route --features nats --bench select_nats
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_main};
use futures_util::StreamExt;
use threadline_nats as _;
use threadline_route::Selector;
use threadline_route::select::nats::SelectiveNats;

mod support;
use support::{BATCH, restorer, router};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let connect = || {
        rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(3),
                async_nats::connect("127.0.0.1:4222"),
            )
            .await
        })
    };
    let (Ok(Ok(producer)), Ok(Ok(consumer))) = (connect(), connect()) else {
        eprintln!("\n*** SKIP select_nats bench: NATS is not reachable on 127.0.0.1:4222 ***\n");
        return;
    };
    let handled = Arc::new(AtomicU64::new(0));
    let plain_subject = format!("bench.select.plain.{}", std::process::id());
    let selective_subject = format!("bench.select.selective.{}", std::process::id());

    // Without: a subscriber restoring each message's context around the handler.
    {
        let (consumer, handled, subject) =
            (consumer.clone(), handled.clone(), plain_subject.clone());
        rt.block_on(async move {
            let mut sub = consumer.subscribe(subject).await.unwrap();
            consumer.flush().await.unwrap();
            tokio::spawn(async move {
                let restorer = restorer();
                while let Some(msg) = sub.next().await {
                    let handled = handled.clone();
                    restorer
                        .handle(msg, |m| async move {
                            std::hint::black_box(&m.payload);
                            handled.fetch_add(1, Ordering::Relaxed);
                        })
                        .await;
                }
            });
        });
    }
    // With: the baseline side of selective consumption.
    {
        let side = SelectiveNats::new(consumer.clone(), selective_subject.clone(), restorer());
        let selector = Selector::new(router(), "orders");
        let handled = handled.clone();
        rt.spawn(async move {
            side.baseline(&selector, move |m| {
                std::hint::black_box(&m.payload);
                handled.fetch_add(1, Ordering::Relaxed);
                std::future::ready(())
            })
            .await
        });
        rt.block_on(async { consumer.flush().await.unwrap() });
        std::thread::sleep(Duration::from_millis(200));
    }

    let mut g = c.benchmark_group("core NATS consumer, 2,000-message batches");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(10));
    for (name, subject) in [
        ("restore + handler (without)", plain_subject.clone()),
        (
            "selective baseline, 1,000 rules, keys unclaimed (with)",
            selective_subject.clone(),
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (producer, handled, subject) =
                    (producer.clone(), handled.clone(), subject.clone());
                rt.block_on(async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let target = handled.load(Ordering::Relaxed) + BATCH;
                        let start = Instant::now();
                        for i in 0..BATCH {
                            let mut headers = async_nats::HeaderMap::new();
                            headers.insert("x-routing-key", format!("user{}", i % 64).as_str());
                            producer
                                .publish_with_headers(subject.clone(), headers, "x".into())
                                .await
                                .unwrap();
                        }
                        producer.flush().await.unwrap();
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
}

#[allow(missing_docs)]
mod groups {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(groups::benches);
