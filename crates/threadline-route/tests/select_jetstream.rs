//! Selective consumption on NATS JetStream (127.0.0.1:4222): 1,000 messages on a
//! stream, some with a key a sandbox claims, and a change in the middle: every message
//! handled once, never twice, none lost, and acknowledged. Each test prints a loud
//! SKIP and returns when NATS is unreachable, unless THREADLINE_REQUIRE_SERVICES=1.

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::{END, N, Seen, WAIT, claim_alice, key_of, record, restorer, until};

use async_nats::jetstream;
use threadline::RoutingKey;
use threadline_route::select::nats::SelectiveNats;
use threadline_route::{Router, Selector};

async fn connect(test: &str) -> Option<async_nats::Client> {
    threadline_testkit::connect(
        test,
        "NATS",
        "127.0.0.1:4222",
        Duration::from_secs(3),
        async_nats::connect("127.0.0.1:4222"),
    )
    .await
}

fn id_of(payload: &[u8]) -> u32 {
    std::str::from_utf8(payload).unwrap().parse().unwrap()
}

async fn publish(js: &jetstream::Context, subject: &str, i: u32) {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(k) = key_of(i) {
        headers.insert("x-routing-key", k);
    }
    js.publish_with_headers(subject.to_owned(), headers, i.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Whether anything answers on the relay subject of `alice` (a probe without a key:
/// a live sandbox answers `no`).
async fn sandbox_answers(client: &async_nats::Client, side: &SelectiveNats) -> bool {
    let subject = side.relay_subject(&RoutingKey::new("alice").unwrap());
    matches!(
        tokio::time::timeout(Duration::from_secs(2), client.request(subject, "probe".into())).await,
        Ok(Ok(reply)) if reply.payload.as_ref() == b"no"
    )
}

/// Runs the scenario: `change` is applied once the sandbox has handled a few messages.
async fn scenario(
    test: &str,
    change: impl FnOnce(&Router, &mut Option<tokio::sync::oneshot::Sender<()>>),
) {
    let (Some(producer), Some(base_client), Some(sbx_client)) = (
        connect(test).await,
        connect(test).await,
        connect(test).await,
    ) else {
        return;
    };
    let name = threadline_testkit::unique("orders", '_');
    let subject = name.replace('_', ".");
    let js = jetstream::new(producer.clone());
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("orders".into()),
            ..Default::default()
        })
        .await
        .unwrap();

    let router = Router::new();
    claim_alice(&router);
    let seen: Seen = Arc::default();

    let baseline = SelectiveNats::new(base_client, name.clone(), restorer())
        .relay_timeout(Duration::from_secs(1));
    let selector = Selector::new(router.clone(), "orders");
    let (b, s2, c) = (baseline.clone(), seen.clone(), consumer.clone());
    let base_task = tokio::spawn(async move {
        b.baseline_jetstream(&c, &selector, |m| {
            record(&s2, "baseline", id_of(&m.payload));
            std::future::ready(())
        })
        .await
    });

    let sandbox = SelectiveNats::new(sbx_client, name.clone(), restorer());
    let (s, s3) = (sandbox.clone(), seen.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sbx_task = tokio::spawn(async move {
        let alice = [RoutingKey::new("alice").unwrap()];
        s.sandbox(
            &alice,
            |m| {
                record(&s3, "sandbox", id_of(&m.payload));
                std::future::ready(())
            },
            async {
                let _ = stop_rx.await;
            },
        )
        .await
    });
    let deadline = tokio::time::Instant::now() + WAIT;
    while !sandbox_answers(&producer, &sandbox).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sandbox never ready"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let (js2, subj) = (js.clone(), subject.clone());
    let publisher = tokio::spawn(async move {
        for i in 0..N {
            publish(&js2, &subj, i).await;
        }
    });
    until("the sandbox took some", || sandbox.stats().handled >= 20).await;
    let mut stop = Some(stop_tx);
    change(&router, &mut stop);
    publisher.await.unwrap();
    publish(&js, &subject, END).await;
    // The baseline decides in stream order, waiting for each relay's answer: once the
    // end marker is handled, every message before it has been decided and handled.
    until("end marker", || seen.lock().unwrap().contains_key(&END)).await;

    {
        let by_sandbox = support::assert_each_once(&seen);
        assert_eq!(baseline.stats().relayed, by_sandbox);
    }

    // Every message acknowledged: nothing left to redeliver.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let info = consumer.clone().info().await.unwrap().clone();
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "unacknowledged: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The sandbox had no consumer of its own on the stream, and once it has stopped
    // nothing answers on its relay subject.
    assert_eq!(stream.clone().info().await.unwrap().state.consumer_count, 1);
    if let Some(stop) = stop.take() {
        let _ = stop.send(());
    }
    sbx_task.await.unwrap().unwrap();
    assert!(
        !sandbox_answers(&producer, &sandbox).await,
        "the stopped sandbox still answers"
    );
    base_task.abort();
    js.delete_stream(&name).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_jetstream_rule_removed_mid_stream_each_message_once() {
    scenario(
        "nats_jetstream_rule_removed_mid_stream_each_message_once",
        |router, _stop| {
            // The sandbox keeps running: it is simply no longer relayed to.
            router.set_rules("code", Vec::new()).unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_jetstream_sandbox_stops_mid_stream_each_message_once() {
    scenario(
        "nats_jetstream_sandbox_stops_mid_stream_each_message_once",
        |_router, stop| {
            // The rule stays in the table; the sandbox goes away.
            let _ = stop.take().unwrap().send(());
        },
    )
    .await;
}
