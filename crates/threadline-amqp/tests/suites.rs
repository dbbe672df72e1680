//! The shared broker suites (threadline_testkit::suites) against the local RabbitMQ
//! (127.0.0.1:5672, guest/guest). Each prints a loud SKIP and returns when RabbitMQ is
//! unreachable, unless THREADLINE_REQUIRE_SERVICES=1.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use threadline_amqp::ChannelExt;
use threadline_testkit::suites::{self, Broker};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);
const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// One queue of its own on the default exchange, publisher confirms on, one consumer.
struct Amqp {
    _conn: Connection,
    channel: Channel,
    queue: String,
    consumer: Consumer,
}

impl Amqp {
    async fn new(test: &str) -> Option<Amqp> {
        let conn = threadline_testkit::connect(
            test,
            "RabbitMQ",
            "127.0.0.1:5672",
            Duration::from_secs(5),
            Connection::connect(URI, ConnectionProperties::default()),
        )
        .await?;
        let channel = conn.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let queue = threadline_testkit::unique("threadline.suite", '.');
        channel
            .queue_declare(
                ShortString::try_new(queue.as_str()).unwrap(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let consumer = channel
            .basic_consume(
                ShortString::try_new(queue.as_str()).unwrap(),
                "threadline-suite".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        Some(Amqp {
            _conn: conn,
            channel,
            queue,
            consumer,
        })
    }

    fn routing_key(&self) -> ShortString {
        ShortString::try_new(self.queue.as_str()).unwrap()
    }

    async fn finish(self) {
        self.channel
            .queue_delete(self.routing_key(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
}

impl Broker for Amqp {
    type Msg = Delivery;

    async fn publish_raw(&mut self, pairs: &[(&str, &str)], payload: &str) {
        let mut props = BasicProperties::default();
        if !pairs.is_empty() {
            let mut table = FieldTable::default();
            for (k, v) in pairs {
                table.insert(
                    ShortString::try_new(*k).unwrap(),
                    AMQPValue::LongString(LongString::from(v.as_bytes())),
                );
            }
            props = props.with_headers(table);
        }
        self.channel
            .basic_publish(
                "".into(),
                self.routing_key(),
                BasicPublishOptions::default(),
                payload.as_bytes(),
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    async fn publish_in_context(&mut self, payload: &str) {
        self.channel
            .basic_publish_in_context(
                "".into(),
                self.routing_key(),
                BasicPublishOptions::default(),
                payload.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    async fn receive(&mut self) -> Delivery {
        timeout(WAIT, self.consumer.next())
            .await
            .expect("a delivery in time")
            .expect("the consumer is open")
            .unwrap()
    }

    fn payload(msg: &Delivery) -> String {
        String::from_utf8(msg.data.clone()).unwrap()
    }

    async fn ack(&mut self, msg: &Delivery) {
        msg.ack(BasicAckOptions::default()).await.unwrap();
    }
}

#[tokio::test]
async fn rabbitmq_suite_round_trip_trust_malformed() {
    let Some(mut b) = Amqp::new("rabbitmq_suite_round_trip_trust_malformed").await else {
        return;
    };
    suites::round_trip(&mut b).await;
    suites::trust(&mut b).await;
    suites::malformed_and_oversized(&mut b).await;
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_suite_thousand_concurrent() {
    let Some(mut b) = Amqp::new("rabbitmq_suite_thousand_concurrent").await else {
        return;
    };
    suites::concurrent(&mut b, 1000).await;
    b.finish().await;
}
