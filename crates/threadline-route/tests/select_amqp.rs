//! Selective consumption on RabbitMQ (127.0.0.1:5672, guest/guest): 1,000 messages on a
//! queue, some with a key a sandbox claims, and a change in the middle: every message
//! handled once, never twice, none lost, and acked; the sandbox's queue gone once it
//! has stopped. Each test prints a loud SKIP and returns when RabbitMQ is unreachable,
//! unless THREADLINE_REQUIRE_SERVICES=1.

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::{END, N, Seen, WAIT, claim_alice, key_of, record, restorer, until};

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use threadline::RoutingKey;
use threadline_route::select::amqp::SelectiveAmqp;
use threadline_route::{Router, Selector};

const END2: u32 = u32::MAX - 1;
const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

async fn connect(test: &str) -> Option<Arc<Connection>> {
    threadline_testkit::connect(
        test,
        "RabbitMQ",
        "127.0.0.1:5672",
        Duration::from_secs(5),
        Connection::connect(URI, ConnectionProperties::default()),
    )
    .await
    .map(Arc::new)
}

fn id_of(payload: &[u8]) -> u32 {
    std::str::from_utf8(payload).unwrap().parse().unwrap()
}

async fn publish(ch: &Channel, queue: &str, i: u32) {
    let mut headers = FieldTable::default();
    if let Some(k) = key_of(i) {
        headers.insert(
            "x-routing-key".into(),
            AMQPValue::LongString(LongString::from(k.as_bytes())),
        );
    }
    ch.basic_publish(
        "".into(),
        ShortString::try_new(queue).unwrap(),
        BasicPublishOptions::default(),
        i.to_string().as_bytes(),
        BasicProperties::default().with_headers(headers),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

/// Whether a queue named `name` exists: a `mandatory` probe (no key, not a relay: a
/// sandbox rejects it) is returned when it does not. Another connection's exclusive
/// queue cannot be declared passively, hence the probe.
async fn exists(ch: &Channel, name: &str) -> bool {
    let confirm = ch
        .basic_publish(
            "".into(),
            ShortString::try_new(name).unwrap(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"probe",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    matches!(confirm, Confirmation::Ack(None))
}

/// Runs the scenario: `change` is applied once the sandbox has handled a few messages.
async fn scenario(
    test: &str,
    change: impl FnOnce(&Router, &mut Option<tokio::sync::oneshot::Sender<()>>),
) {
    let (Some(producer), Some(base_conn), Some(sbx_conn)) = (
        connect(test).await,
        connect(test).await,
        connect(test).await,
    ) else {
        return;
    };
    let queue = threadline_testkit::unique("orders", '.');
    let pch = producer.create_channel().await.unwrap();
    pch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    pch.queue_declare(
        ShortString::try_new(queue.as_str()).unwrap(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();

    let router = Router::new();
    claim_alice(&router);
    let seen: Seen = Arc::default();

    let baseline =
        SelectiveAmqp::new(queue.clone(), restorer()).relay_timeout(Duration::from_secs(1));
    let selector = Selector::new(router.clone(), "orders");
    let (b, s2, bc) = (baseline.clone(), seen.clone(), base_conn.clone());
    let base_task = tokio::spawn(async move {
        b.baseline(&bc, &selector, |d| {
            record(&s2, "baseline", id_of(&d.data));
            std::future::ready(())
        })
        .await
    });

    let sandbox = SelectiveAmqp::new(queue.clone(), restorer());
    let relay_queue = sandbox.relay_queue(&RoutingKey::new("alice").unwrap());
    let (s, s3, sc) = (sandbox.clone(), seen.clone(), sbx_conn.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sbx_task = tokio::spawn(async move {
        let alice = [RoutingKey::new("alice").unwrap()];
        s.sandbox(
            &sc,
            &alice,
            |d| {
                record(&s3, "sandbox", id_of(&d.data));
                std::future::ready(())
            },
            async {
                let _ = stop_rx.await;
            },
        )
        .await
    });
    let deadline = tokio::time::Instant::now() + WAIT;
    while !exists(&pch, &relay_queue).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sandbox never ready"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let (pch2, q2) = (pch.clone(), queue.clone());
    let publisher = tokio::spawn(async move {
        for i in 0..N {
            publish(&pch2, &q2, i).await;
        }
    });
    until("the sandbox took some", || sandbox.stats().handled >= 20).await;
    let mut stop = Some(stop_tx);
    change(&router, &mut stop);
    publisher.await.unwrap();
    publish(&pch, &queue, END).await;
    // The baseline decides in queue order, waiting for each relay's answer: once the
    // end marker is handled, every message before it has been decided and handled.
    until("end marker", || seen.lock().unwrap().contains_key(&END)).await;

    {
        let by_sandbox = support::assert_each_once(&seen);
        assert_eq!(baseline.stats().relayed, by_sandbox);
    }

    // Every message acked: the baseline acks each before taking the next, so once a
    // second marker is handled and the baseline's connection closed, only that marker
    // can come back.
    publish(&pch, &queue, END2).await;
    until("second end marker", || {
        seen.lock().unwrap().contains_key(&END2)
    })
    .await;
    base_task.abort();
    let _ = base_task.await;
    base_conn.close(200, "done".into()).await.unwrap();
    let gch = producer.create_channel().await.unwrap();
    while let Some(left) = gch
        .basic_get(
            ShortString::try_new(queue.as_str()).unwrap(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        assert_eq!(id_of(&left.delivery.data), END2, "a message left unacked");
    }

    // Once the sandbox has stopped, its queue is gone.
    if let Some(stop) = stop.take() {
        let _ = stop.send(());
    }
    sbx_task.await.unwrap().unwrap();
    assert!(
        !exists(&pch, &relay_queue).await,
        "sandbox queue left behind"
    );
    gch.queue_delete(
        ShortString::try_new(queue.as_str()).unwrap(),
        QueueDeleteOptions::default(),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_rule_removed_mid_stream_each_message_once() {
    scenario(
        "rabbitmq_rule_removed_mid_stream_each_message_once",
        |router, _stop| {
            // The sandbox keeps running: it is simply no longer relayed to.
            router.set_rules("code", Vec::new()).unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_sandbox_stops_mid_stream_each_message_once() {
    scenario(
        "rabbitmq_sandbox_stops_mid_stream_each_message_once",
        |_router, stop| {
            // The rule stays in the table; the sandbox goes away with its queue.
            let _ = stop.take().unwrap().send(());
        },
    )
    .await;
}
