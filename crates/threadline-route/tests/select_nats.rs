//! Selective consumption on core NATS (127.0.0.1:4222): 1,000 messages, some with a
//! key a sandbox claims, and a change in the middle: every message handled once,
//! never twice, none lost. Each test prints a loud SKIP and returns when NATS is
//! unreachable, unless THREADLINE_REQUIRE_SERVICES=1.

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::{END, N, Seen, WAIT, claim_alice, key_of, restorer, until};

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

fn recorder(
    seen: &Seen,
    who: &'static str,
) -> impl FnMut(async_nats::Message) -> std::future::Ready<()> + use<> {
    let seen = seen.clone();
    move |msg| {
        let id: u32 = std::str::from_utf8(&msg.payload).unwrap().parse().unwrap();
        // The handler runs in the message's restored context.
        let key = threadline::Context::current()
            .routing_key()
            .map(|k| k.to_string());
        seen.lock().unwrap().entry(id).or_default().push((who, key));
        std::future::ready(())
    }
}

async fn publish(client: &async_nats::Client, subject: &str, i: u32) {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(k) = key_of(i) {
        headers.insert("x-routing-key", k);
    }
    client
        .publish_with_headers(subject.to_owned(), headers, i.to_string().into())
        .await
        .unwrap();
}

/// Waits until the sandbox answers relays (a probe without a key gets its `no`).
async fn sandbox_ready(client: &async_nats::Client, side: &SelectiveNats) {
    let subject = side.relay_subject(&RoutingKey::new("alice").unwrap());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(reply) = client.request(subject.clone(), "probe".into()).await
            && reply.payload.as_ref() == b"no"
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sandbox never ready"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs the scenario: `change` is applied once the sandbox has handled a few messages.
async fn scenario(test: &str, change: impl FnOnce(&Router, tokio::sync::oneshot::Sender<()>)) {
    let (Some(producer), Some(base_client), Some(sbx_client)) = (
        connect(test).await,
        connect(test).await,
        connect(test).await,
    ) else {
        return;
    };
    let subject = threadline_testkit::unique("orders", '.');
    let router = Router::new();
    claim_alice(&router);
    let seen: Seen = Arc::default();

    let baseline = SelectiveNats::new(base_client, subject.clone(), restorer())
        .relay_timeout(Duration::from_secs(1));
    let selector = Selector::new(router.clone(), "orders");
    let b = baseline.clone();
    let on_base = recorder(&seen, "baseline");
    let base_task = tokio::spawn(async move { b.baseline(&selector, on_base).await });

    let sandbox = SelectiveNats::new(sbx_client, subject.clone(), restorer());
    let s = sandbox.clone();
    let on_sbx = recorder(&seen, "sandbox");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sbx_task = tokio::spawn(async move {
        let alice = [RoutingKey::new("alice").unwrap()];
        s.sandbox(&alice, on_sbx, async {
            let _ = stop_rx.await;
        })
        .await
    });
    sandbox_ready(&producer, &sandbox).await;
    // The baseline is subscribed once a message without a key reaches it.
    publish(&producer, &subject, 2).await;
    until("baseline subscribed", || {
        seen.lock().unwrap().contains_key(&2)
    })
    .await;

    let p = producer.clone();
    let subj = subject.clone();
    let publisher = tokio::spawn(async move {
        for i in (0..N).filter(|i| *i != 2) {
            publish(&p, &subj, i).await;
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    until("the sandbox took some", || sandbox.stats().handled >= 20).await;
    change(&router, stop_tx);
    publisher.await.unwrap();
    publish(&producer, &subject, END).await;
    producer.flush().await.unwrap();
    // The baseline handles in order, waiting for each relay's answer: once the end
    // marker is handled, every message before it has been decided and handled.
    until("end marker", || seen.lock().unwrap().contains_key(&END)).await;

    let by_sandbox = support::assert_each_once(&seen);
    let stats = baseline.stats();
    assert_eq!(stats.relayed, by_sandbox);
    base_task.abort();
    sbx_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_core_rule_removed_mid_stream_each_message_once() {
    scenario(
        "nats_core_rule_removed_mid_stream_each_message_once",
        |router, stop| {
            router.set_rules("code", Vec::new()).unwrap();
            // The sandbox keeps running: it is simply no longer relayed to.
            std::mem::forget(stop);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_core_sandbox_stops_mid_stream_each_message_once() {
    scenario(
        "nats_core_sandbox_stops_mid_stream_each_message_once",
        |_router, stop| {
            // The rule stays in the table; the sandbox goes away.
            let _ = stop.send(());
        },
    )
    .await;
}

#[test]
fn the_selector_claims_live_keys_only() {
    let router = Router::new();
    let selector = Selector::new(router.clone(), "Orders");
    let alice = RoutingKey::new("alice").unwrap();
    assert!(!selector.claimed(Some(&alice)));
    claim_alice(&router);
    assert!(selector.claimed(Some(&alice)));
    assert!(!selector.claimed(Some(&RoutingKey::new("bob").unwrap())));
    assert!(!selector.claimed(None));
}
