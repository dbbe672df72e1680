//! Messages per second through a RabbitMQ consumer that restores each message's
//! context, runs a handler and acks, without and with selective consumption (the
//! baseline side of `SelectiveAmqp`, a 1,000-rule table, the messages carrying keys no
//! rule claims, as most traffic does), in the same run, against the RabbitMQ on
//! 127.0.0.1:5672. Both consume with a prefetch of 64. Each iteration publishes a batch
//! of 2,000 messages and waits until the consumer has handled them all.
//!
//! ```text
//! cargo bench -p threadline-route --features amqp --bench select_amqp
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_main};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use threadline_amqp as _;
use threadline_route::Selector;
use threadline_route::select::amqp::SelectiveAmqp;

mod support;
use support::{BATCH, restorer, router};

const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let connect = || {
        rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                Connection::connect(URI, ConnectionProperties::default()),
            )
            .await
        })
    };
    let (Ok(Ok(producer)), Ok(Ok(consumer))) = (connect(), connect()) else {
        eprintln!(
            "\n*** SKIP select_amqp bench: RabbitMQ is not reachable on 127.0.0.1:5672 ***\n"
        );
        return;
    };
    let consumer = Arc::new(consumer);
    let handled = Arc::new(AtomicU64::new(0));
    let plain = format!("bench.select.plain.{}", std::process::id());
    let selective = format!("bench.select.selective.{}", std::process::id());
    let pch = rt.block_on(async {
        let ch = producer.create_channel().await.unwrap();
        for q in [&plain, &selective] {
            ch.queue_declare(
                ShortString::try_new(q.as_str()).unwrap(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        }
        ch
    });

    // Without: a consumer restoring each message's context around the handler, then
    // acking.
    {
        let (consumer, handled, queue) = (consumer.clone(), handled.clone(), plain.clone());
        rt.spawn(async move {
            let ch = consumer.create_channel().await.unwrap();
            ch.basic_qos(64, BasicQosOptions::default()).await.unwrap();
            let mut deliveries = ch
                .basic_consume(
                    ShortString::try_new(queue).unwrap(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
            let restorer = restorer();
            while let Some(Ok(d)) = deliveries.next().await {
                let handled = handled.clone();
                let acker = d.acker.clone();
                restorer
                    .handle(d, |d| async move {
                        std::hint::black_box(&d.data);
                        handled.fetch_add(1, Ordering::Relaxed);
                    })
                    .await;
                let _ = acker.ack(BasicAckOptions::default()).await;
            }
        });
    }
    // With: the baseline side of selective consumption.
    {
        let side = SelectiveAmqp::new(selective.clone(), restorer()).prefetch(64);
        let selector = Selector::new(router(), "orders");
        let (consumer, handled) = (consumer.clone(), handled.clone());
        rt.spawn(async move {
            side.baseline(&consumer, &selector, move |d| {
                std::hint::black_box(&d.data);
                handled.fetch_add(1, Ordering::Relaxed);
                std::future::ready(())
            })
            .await
        });
    }
    std::thread::sleep(Duration::from_millis(300));

    let mut g = c.benchmark_group("RabbitMQ consumer, 2,000-message batches");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    for (name, queue) in [
        ("restore + handler + ack (without)", plain.clone()),
        (
            "selective baseline, 1,000 rules, keys unclaimed (with)",
            selective.clone(),
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (pch, handled, queue) = (pch.clone(), handled.clone(), queue.clone());
                rt.block_on(async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let target = handled.load(Ordering::Relaxed) + BATCH;
                        let start = Instant::now();
                        for i in 0..BATCH {
                            let mut headers = FieldTable::default();
                            headers.insert(
                                "x-routing-key".into(),
                                AMQPValue::LongString(LongString::from(
                                    format!("user{}", i % 64).as_bytes(),
                                )),
                            );
                            pch.basic_publish(
                                "".into(),
                                ShortString::try_new(queue.as_str()).unwrap(),
                                BasicPublishOptions::default(),
                                b"x",
                                BasicProperties::default().with_headers(headers),
                            )
                            .await
                            .unwrap();
                        }
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
        for q in [&plain, &selective] {
            let _ = pch
                .queue_delete(
                    ShortString::try_new(q.as_str()).unwrap(),
                    QueueDeleteOptions::default(),
                )
                .await;
        }
    });
}

#[allow(missing_docs)]
mod groups {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(groups::benches);
