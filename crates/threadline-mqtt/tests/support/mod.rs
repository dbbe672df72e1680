//! Shared by the Mosquitto tests: a publisher and a subscriber on a topic of their own,
//! driven as the shared suites' [`Broker`].

#![allow(dead_code)]

pub mod raw;

use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, PublishProperties, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use threadline_mqtt::AsyncClientExt;
use threadline_testkit::suites::Broker;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

pub const HOST: &str = "127.0.0.1";
pub const PORT: u16 = 1883;
pub const ADDR: &str = "127.0.0.1:1883";
/// How long a message may take to arrive.
pub const WAIT: Duration = Duration::from_secs(10);

/// An MQTT 5 connection whose CONNACK has arrived.
async fn connect(
    id: String,
    manual_acks: bool,
) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    let mut options = MqttOptions::new(id, HOST, PORT);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_manual_acks(manual_acks);
    // Mosquitto sends a client as many unacknowledged QoS 1 publishes as its Receive
    // Maximum allows: the concurrent suite holds all of its messages before it
    // acknowledges any.
    options.set_receive_maximum(Some(u16::MAX));
    // rumqttc takes incoming packets of 10 KiB at most unless told otherwise; the
    // oversized test sends more than 64 KiB of context.
    options.set_max_packet_size(Some(1 << 20));
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    loop {
        if let Event::Incoming(Packet::ConnAck(_)) = eventloop.poll().await? {
            return Ok((client, eventloop));
        }
    }
}

/// Polls a connection until it fails, handing every publish received to `tx`.
fn drive(
    name: &'static str,
    mut eventloop: EventLoop,
    tx: Option<mpsc::UnboundedSender<Publish>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Some(tx) = &tx {
                        let _ = tx.send(p);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("{name}: connection ended: {e}");
                    return;
                }
            }
        }
    })
}

/// A publisher and a subscriber (QoS 1, acknowledged by hand after handling) on one
/// topic no other run uses.
pub struct Mosquitto {
    pub publisher: AsyncClient,
    pub subscriber: AsyncClient,
    pub topic: String,
    received: mpsc::UnboundedReceiver<Publish>,
    tasks: Vec<JoinHandle<()>>,
}

impl Mosquitto {
    /// Connects both clients and subscribes, or reports Mosquitto as unavailable
    /// (`None`: the test returns).
    pub async fn new(test: &str) -> Option<Mosquitto> {
        let topic = threadline_testkit::unique("threadline/suite", '/');
        let (publisher, subscriber) = threadline_testkit::connect(
            test,
            "Mosquitto (MQTT 5)",
            ADDR,
            Duration::from_secs(5),
            async {
                let publisher = connect(threadline_testkit::unique("tl-pub", '-'), false).await?;
                let subscriber = connect(threadline_testkit::unique("tl-sub", '-'), true).await?;
                Ok::<_, ConnectionError>((publisher, subscriber))
            },
        )
        .await?;
        let (publisher, pub_loop) = publisher;
        let (subscriber, mut sub_loop) = subscriber;
        subscriber
            .subscribe(topic.clone(), QoS::AtLeastOnce)
            .await
            .unwrap();
        timeout(WAIT, async {
            loop {
                if let Event::Incoming(Packet::SubAck(ack)) = sub_loop.poll().await.unwrap() {
                    assert!(
                        matches!(
                            ack.return_codes[..],
                            [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
                        ),
                        "{ack:?}"
                    );
                    return;
                }
            }
        })
        .await
        .expect("the subscription acknowledged in time");
        let (tx, received) = mpsc::unbounded_channel();
        let tasks = vec![
            drive("publisher", pub_loop, None),
            drive("subscriber", sub_loop, Some(tx)),
        ];
        Some(Mosquitto {
            publisher,
            subscriber,
            topic,
            received,
            tasks,
        })
    }

    /// Publishes with exactly these properties (none at all when `None`).
    pub async fn publish_props(&self, props: Option<PublishProperties>, payload: &str) {
        let payload = payload.as_bytes().to_vec();
        match props {
            None => {
                self.publisher
                    .publish(self.topic.clone(), QoS::AtLeastOnce, false, payload)
                    .await
            }
            Some(p) => {
                self.publisher
                    .publish_with_properties(
                        self.topic.clone(),
                        QoS::AtLeastOnce,
                        false,
                        payload,
                        p,
                    )
                    .await
            }
        }
        .unwrap();
    }

    /// The next publish on the topic, or `None` when none comes within `within`.
    pub async fn try_receive(&mut self, within: Duration) -> Option<Publish> {
        timeout(within, self.received.recv())
            .await
            .ok()
            .map(|p| p.expect("the subscriber is connected"))
    }

    /// Disconnects both clients.
    pub async fn finish(self) {
        let _ = self.publisher.disconnect().await;
        let _ = self.subscriber.disconnect().await;
        for t in self.tasks {
            let _ = timeout(WAIT, t).await;
        }
    }
}

/// User properties from `(name, value)` pairs, repeats kept.
pub fn user_properties(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Broker for Mosquitto {
    type Msg = Publish;

    async fn publish_raw(&mut self, pairs: &[(&str, &str)], payload: &str) {
        let props = (!pairs.is_empty()).then(|| PublishProperties {
            user_properties: user_properties(pairs),
            ..Default::default()
        });
        self.publish_props(props, payload).await;
    }

    async fn publish_in_context(&mut self, payload: &str) {
        self.publisher
            .publish_in_context(
                self.topic.clone(),
                QoS::AtLeastOnce,
                false,
                payload.as_bytes().to_vec(),
            )
            .await
            .unwrap();
    }

    async fn receive(&mut self) -> Publish {
        self.try_receive(WAIT).await.expect("a publish in time")
    }

    fn payload(msg: &Publish) -> String {
        String::from_utf8(msg.payload.to_vec()).unwrap()
    }

    async fn ack(&mut self, msg: &Publish) {
        self.subscriber.ack(msg).await.unwrap();
    }
}
