//! RabbitMQ (AMQP 0.9.1): a durable queue named after the queue, persistent messages
//! published `mandatory` on a channel with publisher confirms, and a worker with a
//! prefetch of its concurrency.
//!
//! A publish is accepted only when the broker confirmed it (for a persistent message on
//! a durable queue: once it is on disk). A nack, or a return of an unroutable message,
//! is a refusal; no channel (the connection is down) is a refusal without sending.
//! Sent but not confirmed in [`CONFIRM`]: unknown. RabbitMQ has no de-duplication of
//! its own; the job carries the idempotency key as `message_id` and the worker's
//! ledger ships an order once however often it is delivered.
//!
//! The connection is supervised: when it is lost the worker reconnects with backoff,
//! declares the queue again and resumes; jobs being handled when it broke are
//! delivered again (unacknowledged) and recognised. At shutdown the consumer is
//! cancelled, jobs in hand finish and are acknowledged, the rest stay in the queue.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::Confirmation;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use threadline::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::restore::Restore;
use super::{CONFIRM, Env, Job, MAX_QUEUED, NETWORK, Pool, Published, pause, ship};

type Slot = Arc<RwLock<Option<lapin::Channel>>>;

pub(super) struct Publisher {
    channel: Slot,
    queue: String,
}

impl Publisher {
    pub(super) async fn publish(&self, ctx: &Context, job: &Job) -> Published {
        let channel = self
            .channel
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(channel) = channel.filter(|c| c.status().connected()) else {
            return Published::refused("the AMQP connection is down");
        };
        let Ok(payload) = serde_json::to_vec(job) else {
            return Published::refused("the job could not be serialised");
        };
        let mut props = lapin::BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(job.key.as_str().into());
        let call = ctx.inject_into(&mut props);
        let confirm = match tokio::time::timeout(
            NETWORK,
            channel.basic_publish(
                "".into(),
                self.queue.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &payload,
                props,
            ),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Published::unknown(format!("AMQP publish failed: {e}")),
            Err(_) => return Published::unknown("AMQP publish did not complete in time"),
        };
        match tokio::time::timeout(CONFIRM, confirm).await {
            Ok(Ok(Confirmation::Ack(None))) => Published::Accepted {
                call,
                duplicate: false,
            },
            Ok(Ok(Confirmation::Ack(Some(_)))) => {
                Published::refused("no queue took the job (returned as unroutable)")
            }
            Ok(Ok(Confirmation::Nack(_))) => {
                Published::refused("the broker refused the job (nack: the queue is full?)")
            }
            Ok(Ok(Confirmation::NotRequested)) => {
                Published::unknown("the channel does not confirm publishes")
            }
            Ok(Err(e)) => Published::unknown(format!("the publish was not confirmed: {e}")),
            Err(_) => Published::unknown("the broker did not confirm the job in time"),
        }
    }
}

/// One connection with its two channels and the consumer.
struct Session {
    conn: lapin::Connection,
    publish: lapin::Channel,
    consume: lapin::Channel,
    consumer: lapin::Consumer,
}

const CONSUMER_TAG: &str = "threadline-demo-worker";

async fn session(url: &str, queue: &str, concurrency: usize) -> anyhow::Result<Session> {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
    let publish = conn.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(MAX_QUEUED as i64),
    );
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    publish
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await?;
    let consume = conn.create_channel().await?;
    consume
        .basic_qos(
            concurrency.min(u16::MAX as usize) as u16,
            BasicQosOptions::default(),
        )
        .await?;
    let consumer = consume
        .basic_consume(
            queue.into(),
            CONSUMER_TAG.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(Session {
        conn,
        publish,
        consume,
        consumer,
    })
}

enum Ended {
    Stopped,
    Lost(String),
}

pub(super) async fn start(
    url: &str,
    queue: &str,
    env: Arc<Env>,
    restore: Restore,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<(Publisher, JoinHandle<()>)> {
    let first = tokio::time::timeout(NETWORK, session(url, queue, env.concurrency))
        .await
        .map_err(|_| anyhow::anyhow!("AMQP connect timed out"))??;
    let slot: Slot = Arc::new(RwLock::new(Some(first.publish.clone())));
    let set = |slot: &Slot, c: Option<lapin::Channel>| {
        *slot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = c;
    };
    let worker_slot = slot.clone();
    let url = url.to_owned();
    let queue_name = queue.to_owned();
    let task = tokio::spawn(async move {
        let mut pool = Pool::new(&env);
        let mut current = Some(first);
        let mut backoff = Duration::from_millis(100);
        loop {
            let Some(mut s) = current.take() else {
                // Reconnect, with backoff, until connected or stopped.
                if !pause(&mut stopped, &mut backoff).await {
                    break;
                }
                match tokio::time::timeout(NETWORK, session(&url, &queue_name, env.concurrency))
                    .await
                {
                    Ok(Ok(s)) => {
                        set(&worker_slot, Some(s.publish.clone()));
                        env.health.up();
                        backoff = Duration::from_millis(100);
                        current = Some(s);
                    }
                    Ok(Err(e)) => env.health.down(&e.to_string()),
                    Err(_) => env.health.down("connecting timed out"),
                }
                continue;
            };
            // The consumer is watched even while every slot is taken, so a lost
            // connection is noticed at once; the prefetch (= the slots) bounds the
            // deliveries that can arrive meanwhile.
            let ended = loop {
                let delivery = tokio::select! {
                    biased;
                    _ = stopped.wait_for(|s| *s) => break Ended::Stopped,
                    d = s.consumer.next() => d,
                };
                let delivery = match delivery {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => break Ended::Lost(e.to_string()),
                    None => break Ended::Lost("the consumer was closed".into()),
                };
                // Not acknowledged if stopped first: the broker delivers it again.
                let permit = tokio::select! {
                    biased;
                    _ = stopped.wait_for(|s| *s) => break Ended::Stopped,
                    p = pool.permit() => p,
                };
                let ctx = restore.amqp(&delivery);
                let env = env.clone();
                pool.spawn(permit, async move {
                    ctx.scope(ship(&env, &delivery.data)).await;
                    // On a broken channel the ack fails and the broker delivers the
                    // job again; the ledger keeps it from shipping twice.
                    match tokio::time::timeout(NETWORK, delivery.ack(BasicAckOptions::default()))
                        .await
                    {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::debug!(error = %e, "job acknowledgement failed"),
                        Err(_) => tracing::debug!("job acknowledgement timed out"),
                    }
                });
            };
            match ended {
                Ended::Stopped => {
                    set(&worker_slot, None);
                    let _ = tokio::time::timeout(
                        NETWORK,
                        s.consume
                            .basic_cancel(CONSUMER_TAG.into(), BasicCancelOptions::default()),
                    )
                    .await;
                    pool.finish().await;
                    let _ = tokio::time::timeout(
                        NETWORK,
                        s.consume.close(200, "worker stopped".into()),
                    )
                    .await;
                    let _ =
                        tokio::time::timeout(NETWORK, s.publish.close(200, "demo stopped".into()))
                            .await;
                    let _ = tokio::time::timeout(NETWORK, s.conn.close(200, "demo stopped".into()))
                        .await;
                    break;
                }
                Ended::Lost(why) => {
                    set(&worker_slot, None);
                    env.health.down(&why);
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        s.conn.close(200, "reconnecting".into()),
                    )
                    .await;
                }
            }
        }
        pool.finish().await;
    });
    Ok((
        Publisher {
            channel: slot,
            queue: queue.to_owned(),
        },
        task,
    ))
}
