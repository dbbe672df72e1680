//! Messages whose header block async-nats cannot parse, published by a raw socket
//! client to the NATS server on 127.0.0.1:4222 (with JetStream). Each test prints a loud
//! SKIP and returns when NATS is unreachable, unless THREADLINE_REQUIRE_SERVICES=1.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use threadline::{Context, Policy, Restorer, Trust};
use threadline_nats::malformed::{Malformation, check};
use tokio::time::timeout;

use support::{Gate, client, raw};

const WAIT: Duration = Duration::from_secs(10);
/// How long a test waits for something it expects not to come.
const QUIET: Duration = Duration::from_millis(1500);

fn unique(prefix: &str) -> String {
    threadline_testkit::unique(prefix, '_')
}

fn policy() -> Policy {
    Policy::builder().header("x-tenant-id").build().unwrap()
}

const NON_UTF8_VALUE: &[u8] =
    b"NATS/1.0\r\nx-correlation-id: bad-1\r\nx-tenant-id: caf\xe9\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_malformed_block_drops_the_connection_and_loses_what_was_in_flight() {
    let test = "core_malformed_block_drops_the_connection_and_loses_what_was_in_flight";
    let gate = Gate::default();
    let Some((client, events)) = client(test, Some(gate.clone())).await else {
        return;
    };
    let Some(mut publisher) = raw(test).await else {
        return;
    };
    let subject = unique("threadline.test.malformed.core");
    let mut sub = client.subscribe(subject.clone()).await.unwrap();
    support::live(&client, &mut sub, &subject).await;

    // The reconnect is held back until the server has routed the whole burst: what it
    // routed after the bad message went to the dropped connection.
    gate.close();
    for i in 0..3 {
        publisher.good(&subject, &format!("before-{i}"));
    }
    publisher.hpub(&subject, NON_UTF8_VALUE, b"bad");
    for i in 0..3 {
        publisher.good(&subject, &format!("after-{i}"));
    }
    publisher.flush().await.unwrap();
    assert!(
        events.wait_for("disconnected", 1, WAIT).await,
        "{:?}",
        events.all()
    );
    gate.open();
    assert!(
        events.wait_for("connected", 1, WAIT).await,
        "{:?}",
        events.all()
    );

    // Delivered before the drop: the three good messages before the bad one. Then
    // the subscription, renewed on the new connection, receives what comes next.
    let arrived = support::live(&client, &mut sub, &subject).await;
    publisher.good(&subject, "later").flush().await.unwrap();
    let later = timeout(WAIT, sub.next()).await.unwrap().unwrap();
    assert!(timeout(QUIET, sub.next()).await.is_err(), "nothing else");
    println!("events: {:?}, arrived: {arrived:?}", events.all());
    assert_eq!(
        arrived,
        ["before-0", "before-1", "before-2"],
        "the bad message and the three after it are lost"
    );
    assert_eq!(&later.payload[..], b"later");
    assert_eq!(events.count("disconnected"), 1);
}

/// Header blocks the NATS server forwards as they are, each with what async-nats 0.51
/// does on receiving it, as [`check`] predicts.
const VARIANTS: &[(&str, &[u8])] = &[
    ("well-formed", b"NATS/1.0\r\nx-tenant-id: acme\r\n\r\n"),
    ("empty name", b"NATS/1.0\r\n: v\r\n\r\n"),
    (
        "control byte in a value",
        b"NATS/1.0\r\nx-tenant-id: a\x01b\r\n\r\n",
    ),
    ("no final empty line", b"NATS/1.0\r\nx-tenant-id: acme\r\n"),
    (
        "non-UTF-8 value",
        b"NATS/1.0\r\nx-tenant-id: caf\xe9\r\n\r\n",
    ),
    ("space in a name", b"NATS/1.0\r\nX Tenant: acme\r\n\r\n"),
    (
        "space before the colon",
        b"NATS/1.0\r\nx-tenant-id : acme\r\n\r\n",
    ),
    ("tab in a name", b"NATS/1.0\r\nx\ttenant: acme\r\n\r\n"),
    (
        "non-ASCII name",
        b"NATS/1.0\r\nx-t\xc3\xa9nant: acme\r\n\r\n",
    ),
    ("line without a colon", b"NATS/1.0\r\nacme\r\n\r\n"),
    (
        "bare line feed in a value",
        b"NATS/1.0\r\nx-tenant-id: a\nb\r\n\r\n",
    ),
    ("other version", b"NATS/2.0\r\nx-tenant-id: acme\r\n\r\n"),
    ("text status", b"NATS/1.0 fine\r\n\r\n"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_each_refused_variant_drops_the_connection_as_check_predicts() {
    let test = "core_each_refused_variant_drops_the_connection_as_check_predicts";
    let Some(mut publisher) = raw(test).await else {
        return;
    };
    for (name, block) in VARIANTS {
        let Some((client, events)) = client(test, None).await else {
            return;
        };
        let subject = unique("threadline.test.malformed.variant");
        let mut sub = client.subscribe(subject.clone()).await.unwrap();
        support::live(&client, &mut sub, &subject).await;
        publisher
            .hpub(&subject, block, b"variant")
            .flush()
            .await
            .unwrap();
        let predicted = check(block);
        match predicted {
            Ok(()) => {
                let msg = timeout(WAIT, sub.next()).await.unwrap().unwrap();
                assert_eq!(&msg.payload[..], b"variant", "{name}");
                client.flush().await.unwrap();
                assert_eq!(
                    events.count("disconnected"),
                    0,
                    "{name}: {:?}",
                    events.all()
                );
            }
            Err(why) => {
                assert!(!why.kills_client(), "{name}");
                let dropped = events.wait_for("disconnected", 1, WAIT).await;
                if !dropped {
                    let got = timeout(QUIET, sub.next()).await;
                    panic!("{name} ({why}): {:?} {got:?}", events.all());
                }
                assert!(events.wait_for("connected", 2, WAIT).await, "{name}");
                // Not delivered: the next message the subscription sees is the marker.
                support::live(&client, &mut sub, &subject).await;
                publisher.good(&subject, "marker").flush().await.unwrap();
                let msg = timeout(WAIT, sub.next()).await.unwrap().unwrap();
                assert_eq!(&msg.payload[..], b"marker", "{name}");
            }
        }
        println!("{name}: {predicted:?}, events {:?}", events.all());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_carriage_return_in_a_value_kills_the_client_for_good() {
    let test = "core_carriage_return_in_a_value_kills_the_client_for_good";
    let Some((client, events)) = client(test, None).await else {
        return;
    };
    let Some(mut publisher) = raw(test).await else {
        return;
    };
    let block = b"NATS/1.0\r\nx-tenant-id: a\rb\r\n\r\n";
    assert_eq!(check(block), Err(Malformation::CarriageReturnInValue));
    let subject = unique("threadline.test.malformed.cr");
    let mut sub = client.subscribe(subject.clone()).await.unwrap();
    support::live(&client, &mut sub, &subject).await;
    publisher
        .hpub(&subject, block, b"cr")
        .flush()
        .await
        .unwrap();

    // The connection task panicked: the subscription ends, nothing can be sent, and the
    // client never reconnects.
    assert!(timeout(WAIT, sub.next()).await.unwrap().is_none());
    // (The command channel closes a moment after the subscriptions: publishing can
    // still succeed, into a channel nobody reads, for that moment.)
    timeout(WAIT, async {
        while client.publish(subject.clone(), "x".into()).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("publishing fails");
    assert!(client.flush().await.is_err());
    assert!(client.subscribe(subject.clone()).await.is_err());
    tokio::time::sleep(QUIET).await;
    println!(
        "state {:?}, events {:?}",
        client.connection_state(),
        events.all()
    );
    assert_eq!(
        events.all(),
        ["connected"],
        "no disconnect, no reconnect reported"
    );
}

use async_nats::jetstream::{self, consumer::pull, stream};
use threadline_nats::dead_letter::{DeadLetters, recommended_pull_config};

/// A stream in memory on `<name>.jobs`, and the raw publisher's burst stored in it:
/// `good-<i>` messages with a well-formed block, and each of `bad` (its payload the
/// variant's name).
async fn stream_with_burst(
    js: &jetstream::Context,
    publisher: &mut support::raw::RawPublisher,
    name: &str,
    goods: usize,
    bad: &[(&str, &[u8])],
) -> (stream::Stream, Vec<String>) {
    let subject = format!("{name}.jobs");
    let stream = js
        .create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut good = Vec::new();
    let per_gap = goods / (bad.len() + 1);
    for (i, _) in (0..goods).enumerate() {
        let payload = format!("good-{i}");
        publisher.good(&subject, &payload);
        good.push(payload);
        if per_gap > 0
            && (i + 1) % per_gap == 0
            && let Some((tag, block)) = bad.get((i + 1) / per_gap - 1)
        {
            publisher.hpub(&subject, block, tag.as_bytes());
        }
    }
    publisher.flush().await.unwrap();
    let total = (goods + bad.len()) as u64;
    let mut stream = stream;
    timeout(WAIT, async {
        while stream.info().await.unwrap().state.messages < total {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the burst is stored");
    (stream, good)
}

/// Consumes `consumer` with the pull `messages()` stream: each message handled in its
/// context, acknowledged, its payload reported.
fn consume(
    consumer: jetstream::consumer::Consumer<pull::Config>,
    batch: usize,
    restorer: Restorer,
    handled: tokio::sync::mpsc::UnboundedSender<String>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(batch)
            .messages()
            .await
            .unwrap();
        while let Some(msg) = messages.next().await {
            let Ok(msg) = msg else { continue };
            let payload = restorer
                .handle(msg, |msg| async move {
                    let ctx = Context::current();
                    let payload = String::from_utf8_lossy(&msg.payload).into_owned();
                    assert_eq!(ctx.correlation_id().unwrap().as_str(), payload);
                    let _ = msg.ack().await;
                    payload
                })
                .await;
            let _ = handled.send(payload);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_without_max_deliver_the_malformed_message_comes_back_and_drops_the_connection_every_time()
 {
    let test = "jetstream_without_max_deliver_the_malformed_message_comes_back_and_drops_the_connection_every_time";
    let Some((client, events)) = client(test, None).await else {
        return;
    };
    let Some(mut publisher) = raw(test).await else {
        return;
    };
    let js = jetstream::new(client);
    let name = unique("THREADLINE_POISON_LOOP");
    let (stream, good) =
        stream_with_burst(&js, &mut publisher, &name, 10, &[("bad", NON_UTF8_VALUE)]).await;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("loop".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let (tx, mut rx) = support::seen();
    let task = consume(consumer.clone(), 200, Restorer::new(policy()), tx);

    // The bad message (sequence 6) comes back every ack_wait and drops the connection
    // each time; the good messages pulled in the same batch behind it are lost with it
    // and come back with it, behind it again.
    let dropped = events
        .wait_for("disconnected", 3, Duration::from_secs(30))
        .await;
    task.abort();
    let mut handled = std::collections::BTreeSet::new();
    while let Ok(payload) = rx.try_recv() {
        handled.insert(payload);
    }
    let mut consumer = consumer;
    let info = consumer.info().await.unwrap().clone();
    js.delete_stream(&name).await.unwrap();
    println!(
        "events {:?}, handled {handled:?}, info {info:?}",
        events.all()
    );
    assert!(dropped, "{:?}", events.all());
    assert!(!handled.contains("bad"));
    for before in &good[..5] {
        assert!(handled.contains(before), "{before}");
    }
    assert_eq!(
        info.ack_floor.stream_sequence, 5,
        "stuck before the bad message"
    );
    assert!(info.num_ack_pending >= 1);
    assert_eq!(
        info.num_pending, 0,
        "everything delivered, not everything handled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_bounded_redelivery_and_dead_letters_lose_no_good_message() {
    bounded_with_dead_letters(
        "jetstream_bounded_redelivery_and_dead_letters_lose_no_good_message",
        200,
    )
    .await;
}

/// Pulled one at a time, the good messages behind a bad one are not in flight with it
/// and go through the consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_bounded_redelivery_and_dead_letters_with_batches_of_one() {
    let letters = bounded_with_dead_letters(
        "jetstream_bounded_redelivery_and_dead_letters_with_batches_of_one",
        1,
    )
    .await;
    println!("dead letters with batches of one: {letters:?}");
}

/// The burst (12 good, 3 bad) through a consumer bounded to two deliveries and pulled
/// `batch` at a time, with [`DeadLetters`] on another connection; returns the payloads
/// handled as dead letters.
async fn bounded_with_dead_letters(test: &str, batch: usize) -> Vec<String> {
    let Some((consumer_client, events)) = client(test, None).await else {
        return Vec::new();
    };
    // The dead letters are watched on a connection of their own.
    let Some((watcher, watcher_events)) = client(test, None).await else {
        return Vec::new();
    };
    let Some(mut publisher) = raw(test).await else {
        return Vec::new();
    };
    let js = jetstream::new(consumer_client);
    let name = unique("THREADLINE_POISON_DLQ");
    let bad: &[(&str, &[u8])] = &[
        ("bad-utf8", b"NATS/1.0\r\nx-correlation-id: bad-utf8\r\nx-tenant-id: caf\xe9\r\n\r\n"),
        ("bad-name", b"NATS/1.0\r\nX Tenant: acme\r\nx-correlation-id: bad-name\r\nx-tenant-id: acme\r\n\r\n"),
        ("bad-colon", b"NATS/1.0\r\nx-correlation-id: bad-colon\r\nacme\r\n\r\n"),
    ];
    let (stream, good) = stream_with_burst(&js, &mut publisher, &name, 12, bad).await;
    // Test-sized bounds: two deliveries, one second apart.
    let config = pull::Config {
        max_deliver: 2,
        ack_wait: Duration::from_secs(1),
        backoff: Vec::new(),
        ..recommended_pull_config("orders")
    };
    let mut dead = DeadLetters::watch(jetstream::new(watcher), &name, "orders")
        .await
        .unwrap();
    let consumer = stream.create_consumer(config).await.unwrap();
    let restorer = Restorer::new(policy()).trust(Trust::Trusted);
    let (tx, mut rx) = support::seen();
    let task = consume(consumer.clone(), batch, restorer.clone(), tx);

    // Every message is handled once through one path or the other: the consumer, or
    // the dead letters (the bad ones, and any good one that ran out of deliveries
    // because it was in flight behind a bad one each time).
    let mut handled = std::collections::BTreeSet::new();
    let mut letters = Vec::new();
    let all = good.len() + bad.len();
    let finished = timeout(Duration::from_secs(60), async {
        while handled.len() + letters.len() < all {
            tokio::select! {
                Some(payload) = rx.recv() => { handled.insert(payload); }
                Some(letter) = dead.next() => {
                    let letter = letter.unwrap();
                    let (payload, correlation, tenant) = restorer
                        .handle(&letter, |letter| async move {
                            let ctx = Context::current();
                            (
                                String::from_utf8_lossy(letter.payload()).into_owned(),
                                ctx.correlation_id().unwrap().as_str().to_owned(),
                                ctx.get("x-tenant-id").map(str::to_owned),
                            )
                        })
                        .await;
                    dead.remove(&letter).await.unwrap();
                    letters.push((payload, correlation, tenant, letter.malformation(), letter.deliveries()));
                }
            }
        }
    })
    .await;
    task.abort();
    let mut consumer = consumer;
    let info = consumer.info().await.unwrap().clone();
    let mut stream = stream;
    let state = stream.info().await.unwrap().state.clone();
    // The recommended bounds, as they are, are accepted by the server.
    let mut recommended = stream
        .create_consumer(recommended_pull_config("recommended"))
        .await
        .unwrap();
    let recommended = recommended.info().await.unwrap().config.clone();
    js.delete_stream(&name).await.unwrap();
    assert_eq!(
        recommended.max_deliver,
        threadline_nats::dead_letter::MAX_DELIVER
    );
    assert_eq!(recommended.backoff, threadline_nats::dead_letter::BACKOFF);
    println!(
        "events {:?}\nwatcher {:?}\nhandled {handled:?}\nletters {letters:#?}\ninfo {info:?}",
        events.all(),
        watcher_events.all()
    );
    assert!(finished.is_ok(), "not everything handled in time");

    // No good message lost: each handled by the consumer or as a dead letter.
    let lettered: std::collections::BTreeSet<_> = letters.iter().map(|l| l.0.clone()).collect();
    for g in &good {
        assert!(handled.contains(g) || lettered.contains(g), "{g} lost");
    }
    // Each bad message reached the handler once, as a dead letter, in the context its
    // readable headers carry.
    for (tag, block) in bad {
        let l = letters
            .iter()
            .find(|l| l.0 == *tag)
            .unwrap_or_else(|| panic!("{tag}"));
        assert_eq!(l.1, *tag, "its correlation id restored");
        assert_eq!(l.3, check(block).err(), "{tag}");
        assert!(l.3.is_some());
        assert_eq!(l.4, 2, "given up after max_deliver");
        assert!(!handled.contains(*tag));
    }
    let tenant = |tag: &str| letters.iter().find(|l| l.0 == tag).unwrap().2.clone();
    assert_eq!(tenant("bad-utf8"), None, "not ASCII: dropped");
    assert_eq!(
        tenant("bad-name").as_deref(),
        Some("acme"),
        "the readable part kept"
    );
    for l in letters.iter().filter(|l| l.3.is_none()) {
        assert!(l.0.starts_with("good-"), "{l:?}");
    }
    // Each bad message dropped the consumer's connection at most max_deliver times; the
    // watcher's connection never dropped.
    let drops = events.count("disconnected");
    assert!((1..=2 * bad.len()).contains(&drops), "{drops}");
    assert_eq!(watcher_events.count("disconnected"), 0);
    assert_eq!((info.num_ack_pending, info.num_pending), (0, 0));
    assert_eq!(
        state.messages as usize,
        all - letters.len(),
        "dead letters removed"
    );
    letters.into_iter().map(|l| l.0).collect()
}
