#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn
//! Publish throughput on one NATS connection, in the same run:
//!
//! - `nats_publish/*`: core fire-and-forget `publish` of a 128-byte payload, plain
//!   (`without_context`), with the same context headers built once and cloned
//!   (`prebuilt_headers`: what async-nats and the server charge for headers at all), and
//!   `publish_in_context` (`with_context`: correlation id, traceparent, x-tenant-id and a
//!   bound user.id), and `context_headers_reused` (`ContextHeaders`: the context's
//!   headers built once per scope, cloned per message with a fresh traceparent);
//! - `nats_jetstream_publish_ack/*`: JetStream publish awaiting the stream's ack;
//! - an interleaved same-run ratio (batches of each variant alternate), printed;
//! - `core_inject_http_headermap` / `nats_inject_only`: the injection alone.
//!
//! `cargo bench -p threadline-nats --bench nats_publish` (needs NATS with JetStream on
//! 127.0.0.1:4222; prints SKIP and does nothing without it).

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use threadline::{Policy, Trust};
use threadline_nats::{ClientExt, JetStreamExt};

fn publish(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let client = match rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(3),
            async_nats::connect("127.0.0.1:4222"),
        )
        .await
    }) {
        Ok(Ok(client)) => client,
        _ => {
            eprintln!("SKIP nats_publish: NATS is not reachable on 127.0.0.1:4222");
            return;
        }
    };
    let subject = format!("threadline.bench.{}", std::process::id());
    let payload = bytes::Bytes::from(vec![b'x'; 128]);

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

    let mut group = c.benchmark_group("nats_publish");
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
                    client
                        .publish(subject.clone(), payload.clone())
                        .await
                        .expect("publish");
                }
                client.flush().await.expect("flush");
                start.elapsed()
            })
        })
    });

    // The same headers, built once: what the wire and the server cost, without inject.
    let prebuilt = {
        let mut h = async_nats::HeaderMap::new();
        ctx.inject_into(&mut h);
        h
    };
    group.bench_function("prebuilt_headers", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    client
                        .publish_with_headers(subject.clone(), prebuilt.clone(), payload.clone())
                        .await
                        .expect("publish");
                }
                client.flush().await.expect("flush");
                start.elapsed()
            })
        })
    });

    group.bench_function("with_context", |b| {
        b.iter_custom(|iters| {
            rt.block_on(ctx.clone().scope(async {
                let start = Instant::now();
                for _ in 0..iters {
                    client
                        .publish_in_context(subject.clone(), payload.clone())
                        .await
                        .expect("publish");
                }
                client.flush().await.expect("flush");
                start.elapsed()
            }))
        })
    });
    // The context's headers built once per scope, cloned per message with a fresh
    // traceparent (`ContextHeaders`): for many messages published from one context.
    group.bench_function("context_headers_reused", |b| {
        b.iter_custom(|iters| {
            rt.block_on(ctx.clone().scope(async {
                let reused = threadline_nats::ContextHeaders::current();
                let start = Instant::now();
                for _ in 0..iters {
                    client
                        .publish_with_headers(subject.clone(), reused.headers(), payload.clone())
                        .await
                        .expect("publish");
                }
                client.flush().await.expect("flush");
                start.elapsed()
            }))
        })
    });
    group.finish();

    // JetStream: each publish waits for the stream's acknowledgement (a round trip).
    let js = rt.block_on(async { async_nats::jetstream::new(client.clone()) });
    let stream_name = format!("THREADLINE_BENCH_{}", std::process::id());
    let js_subject = format!("{stream_name}.jobs");
    rt.block_on(js.create_stream(async_nats::jetstream::stream::Config {
        name: stream_name.clone(),
        subjects: vec![js_subject.clone()],
        storage: async_nats::jetstream::stream::StorageType::Memory,
        max_messages: 10_000,
        ..Default::default()
    }))
    .expect("create bench stream");
    let mut group = c.benchmark_group("nats_jetstream_publish_ack");
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
                    js.publish(js_subject.clone(), payload.clone())
                        .await
                        .expect("publish")
                        .await
                        .expect("ack");
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("with_context", |b| {
        b.iter_custom(|iters| {
            rt.block_on(ctx.clone().scope(async {
                let start = Instant::now();
                for _ in 0..iters {
                    js.publish_in_context(js_subject.clone(), payload.clone())
                        .await
                        .expect("publish")
                        .await
                        .expect("ack");
                }
                start.elapsed()
            }))
        })
    });
    group.finish();
    rt.block_on(js.delete_stream(&stream_name))
        .expect("delete bench stream");

    // Same-run ratio, robust to load drifting on a shared machine: batches of each
    // variant alternate, and the totals are compared.
    let (mut plain, mut prebuilt_t, mut with, mut reused_t) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    const ROUNDS: usize = 20;
    const BATCH: usize = 2000;
    let mut rounds: Vec<[f64; 4]> = Vec::with_capacity(ROUNDS);
    rt.block_on(async {
        for _ in 0..ROUNDS {
            let before = [plain, prebuilt_t, with, reused_t];
            let start = Instant::now();
            for _ in 0..BATCH {
                client
                    .publish(subject.clone(), payload.clone())
                    .await
                    .expect("publish");
            }
            client.flush().await.expect("flush");
            plain += start.elapsed();

            let start = Instant::now();
            for _ in 0..BATCH {
                client
                    .publish_with_headers(subject.clone(), prebuilt.clone(), payload.clone())
                    .await
                    .expect("publish");
            }
            client.flush().await.expect("flush");
            prebuilt_t += start.elapsed();

            with += ctx
                .clone()
                .scope(async {
                    let start = Instant::now();
                    for _ in 0..BATCH {
                        client
                            .publish_in_context(subject.clone(), payload.clone())
                            .await
                            .expect("publish");
                    }
                    client.flush().await.expect("flush");
                    start.elapsed()
                })
                .await;

            reused_t += ctx
                .clone()
                .scope(async {
                    let reused = threadline_nats::ContextHeaders::current();
                    let start = Instant::now();
                    for _ in 0..BATCH {
                        client
                            .publish_with_headers(
                                subject.clone(),
                                reused.headers(),
                                payload.clone(),
                            )
                            .await
                            .expect("publish");
                    }
                    client.flush().await.expect("flush");
                    start.elapsed()
                })
                .await;
            let after = [plain, prebuilt_t, with, reused_t];
            rounds.push(std::array::from_fn(|i| {
                (after[i] - before[i]).as_secs_f64()
            }));
        }
    });
    // Per-round throughput ratios, median: robust to load that comes and goes.
    let median = |f: &dyn Fn(&[f64; 4]) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "nats_publish interleaved, median of per-round ratios: with/without = {:.3}, \
         with/prebuilt = {:.3}, prebuilt/without = {:.3}, reused/without = {:.3}, \
         reused/prebuilt = {:.3}",
        median(&|r| r[0] / r[2]),
        median(&|r| r[1] / r[2]),
        median(&|r| r[0] / r[1]),
        median(&|r| r[0] / r[3]),
        median(&|r| r[1] / r[3]),
    );
    let per = |d: Duration| d.as_nanos() as f64 / (ROUNDS * BATCH) as f64;
    println!(
        "nats_publish interleaved ({ROUNDS}x{BATCH} each): without_context {:.0} ns/msg, \
         prebuilt_headers {:.0} ns/msg, with_context {:.0} ns/msg, \
         context_headers_reused {:.0} ns/msg; \
         throughput with/without = {:.3}, with/prebuilt = {:.3}, prebuilt/without = {:.3}, \
         reused/without = {:.3}, reused/prebuilt = {:.3}",
        per(plain),
        per(prebuilt_t),
        per(with),
        per(reused_t),
        plain.as_secs_f64() / with.as_secs_f64(),
        prebuilt_t.as_secs_f64() / with.as_secs_f64(),
        plain.as_secs_f64() / prebuilt_t.as_secs_f64(),
        plain.as_secs_f64() / reused_t.as_secs_f64(),
        prebuilt_t.as_secs_f64() / reused_t.as_secs_f64(),
    );

    // The core's own share: the same context into an `http::HeaderMap` message carrier.
    c.bench_function("core_inject_http_headermap", |b| {
        b.iter(|| {
            let mut h = http::HeaderMap::new();
            ctx.inject(&mut threadline::MessageHeaders(&mut h));
            h
        })
    });

    c.bench_function("nats_inject_only", |b| {
        b.iter(|| {
            let mut h = async_nats::HeaderMap::new();
            ctx.inject_into(&mut h);
            h
        })
    });
}

criterion_group!(benches, publish);
criterion_main!(benches);
