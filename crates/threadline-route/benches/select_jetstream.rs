//! Messages per second through a JetStream pull consumer that restores each message's
//! context, runs a handler and acknowledges, without and with selective consumption
//! (the baseline side of `SelectiveNats::baseline_jetstream`, a 1,000-rule table, the
//! messages carrying keys no rule claims, as most traffic does), in the same run,
//! against the NATS on 127.0.0.1:4222. Each iteration publishes a batch of 2,000
//! messages and waits until the consumer has handled them all.
//!
//! ```text
//! cargo bench -p threadline-route --features nats --bench select_jetstream
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use criterion::{Criterion, Throughput, criterion_main};
use futures_util::StreamExt;
use threadline_nats as _;
use threadline_route::Selector;
use threadline_route::select::nats::SelectiveNats;

mod support;
use support::{BATCH, restorer, router};

async fn consumer_on(js: &jetstream::Context, name: &str) -> jetstream::consumer::PullConsumer {
    let _ = js.delete_stream(name).await;
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: name.to_owned(),
            subjects: vec![name.to_owned()],
            storage: jetstream::stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("bench".into()),
            ..Default::default()
        })
        .await
        .unwrap()
}

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
        eprintln!(
            "\n*** SKIP select_jetstream bench: NATS is not reachable on 127.0.0.1:4222 ***\n"
        );
        return;
    };
    let js = rt.block_on(async { jetstream::new(consumer.clone()) });
    let handled = Arc::new(AtomicU64::new(0));
    let plain = format!("bench_select_js_plain_{}", std::process::id());
    let selective = format!("bench_select_js_selective_{}", std::process::id());

    // Without: a pull consumer restoring each message's context around the handler,
    // then acknowledging.
    {
        let pull = rt.block_on(consumer_on(&js, &plain));
        let handled = handled.clone();
        rt.spawn(async move {
            let restorer = restorer();
            let mut messages = pull.messages().await.unwrap();
            while let Some(Ok(msg)) = messages.next().await {
                let handled = handled.clone();
                let msg = restorer
                    .handle(msg, |m| async move {
                        std::hint::black_box(&m.payload);
                        handled.fetch_add(1, Ordering::Relaxed);
                        m
                    })
                    .await;
                let _ = msg.ack().await;
            }
        });
    }
    // With: the baseline side of selective consumption.
    {
        let pull = rt.block_on(consumer_on(&js, &selective));
        let side = SelectiveNats::new(consumer.clone(), selective.clone(), restorer());
        let selector = Selector::new(router(), "orders");
        let handled = handled.clone();
        rt.spawn(async move {
            side.baseline_jetstream(&pull, &selector, move |m| {
                std::hint::black_box(&m.payload);
                handled.fetch_add(1, Ordering::Relaxed);
                std::future::ready(())
            })
            .await
        });
    }
    std::thread::sleep(Duration::from_millis(300));

    let mut g = c.benchmark_group("JetStream pull consumer, 2,000-message batches");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    for (name, subject) in [
        ("restore + handler + ack (without)", plain.clone()),
        (
            "selective baseline, 1,000 rules, keys unclaimed (with)",
            selective.clone(),
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
    rt.block_on(async {
        let _ = js.delete_stream(&plain).await;
        let _ = js.delete_stream(&selective).await;
    });
}

#[allow(missing_docs)]
mod groups {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(groups::benches);
