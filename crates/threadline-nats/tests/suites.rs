//! The shared broker suites (threadline_testkit::suites) against the local NATS
//! (127.0.0.1:4222): core publish/subscribe and JetStream. Each prints a loud SKIP and
//! returns when NATS is unreachable, unless THREADLINE_REQUIRE_SERVICES=1.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use async_nats::{Client, HeaderMap, Subscriber};
use futures_util::StreamExt;
use threadline_nats::{ClientExt, JetStreamExt};
use threadline_testkit::suites::{self, Broker};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

async fn connect(test: &str) -> Option<Client> {
    threadline_testkit::connect(
        test,
        "NATS",
        "127.0.0.1:4222",
        Duration::from_secs(3),
        async_nats::connect("127.0.0.1:4222"),
    )
    .await
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, *v);
    }
    h
}

/// Core NATS: one subject, one subscription.
struct Core {
    client: Client,
    subject: String,
    sub: Subscriber,
}

impl Core {
    async fn new(test: &str) -> Option<Core> {
        let client = connect(test).await?;
        let subject = threadline_testkit::unique("threadline.suite", '.');
        let sub = client.subscribe(subject.clone()).await.unwrap();
        client.flush().await.unwrap();
        Some(Core {
            client,
            subject,
            sub,
        })
    }
}

impl Broker for Core {
    type Msg = async_nats::Message;

    async fn publish_raw(&mut self, pairs: &[(&str, &str)], payload: &str) {
        let subject = self.subject.clone();
        let payload = payload.to_owned().into();
        if pairs.is_empty() {
            self.client.publish(subject, payload).await.unwrap();
        } else {
            self.client
                .publish_with_headers(subject, headers(pairs), payload)
                .await
                .unwrap();
        }
        self.client.flush().await.unwrap();
    }

    async fn publish_in_context(&mut self, payload: &str) {
        self.client
            .publish_in_context(self.subject.clone(), payload.to_owned().into())
            .await
            .unwrap();
    }

    async fn receive(&mut self) -> async_nats::Message {
        self.client.flush().await.unwrap();
        timeout(WAIT, self.sub.next())
            .await
            .expect("a message in time")
            .expect("the subscription is open")
    }

    fn payload(msg: &async_nats::Message) -> String {
        String::from_utf8(msg.payload.to_vec()).unwrap()
    }

    async fn ack(&mut self, _: &async_nats::Message) {}
}

/// JetStream: a stream of its own and a pull consumer.
struct Js {
    js: jetstream::Context,
    name: String,
    subject: String,
    messages: pull::Stream,
}

impl Js {
    async fn new(test: &str) -> Option<Js> {
        let js = jetstream::new(connect(test).await?);
        let name = threadline_testkit::unique("THREADLINE_SUITE", '_');
        let subject = format!("{name}.jobs");
        let stream = js
            .create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![subject.clone()],
                ..Default::default()
            })
            .await
            .unwrap();
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some("suite".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        let messages = consumer.messages().await.unwrap();
        Some(Js {
            js,
            name,
            subject,
            messages,
        })
    }

    async fn finish(self) {
        self.js.delete_stream(&self.name).await.unwrap();
    }
}

impl Broker for Js {
    type Msg = jetstream::Message;

    async fn publish_raw(&mut self, pairs: &[(&str, &str)], payload: &str) {
        let subject = self.subject.clone();
        let payload = payload.to_owned().into();
        let ack = if pairs.is_empty() {
            self.js.publish(subject, payload).await.unwrap()
        } else {
            self.js
                .publish_with_headers(subject, headers(pairs), payload)
                .await
                .unwrap()
        };
        ack.await.unwrap();
    }

    async fn publish_in_context(&mut self, payload: &str) {
        self.js
            .publish_in_context(self.subject.clone(), payload.to_owned().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    async fn receive(&mut self) -> jetstream::Message {
        timeout(WAIT, self.messages.next())
            .await
            .expect("a message in time")
            .expect("the consumer is open")
            .unwrap()
    }

    fn payload(msg: &jetstream::Message) -> String {
        String::from_utf8(msg.payload.to_vec()).unwrap()
    }

    async fn ack(&mut self, msg: &jetstream::Message) {
        msg.ack().await.unwrap();
    }
}

#[tokio::test]
async fn nats_core_suite_round_trip_trust_malformed() {
    let Some(mut b) = Core::new("nats_core_suite_round_trip_trust_malformed").await else {
        return;
    };
    suites::round_trip(&mut b).await;
    suites::trust(&mut b).await;
    suites::malformed_and_oversized(&mut b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_core_suite_thousand_concurrent() {
    let Some(mut b) = Core::new("nats_core_suite_thousand_concurrent").await else {
        return;
    };
    suites::concurrent(&mut b, 1000).await;
}

#[tokio::test]
async fn nats_jetstream_suite_round_trip_trust_malformed() {
    let Some(mut b) = Js::new("nats_jetstream_suite_round_trip_trust_malformed").await else {
        return;
    };
    suites::round_trip(&mut b).await;
    suites::trust(&mut b).await;
    suites::malformed_and_oversized(&mut b).await;
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_jetstream_suite_thousand_concurrent() {
    let Some(mut b) = Js::new("nats_jetstream_suite_thousand_concurrent").await else {
        return;
    };
    suites::concurrent(&mut b, 1000).await;
    b.finish().await;
}
