//! NATS with JetStream: a file-backed work-queue stream named after the queue, a
//! durable pull consumer, and acknowledged publishes.
//!
//! A publish is reported accepted only when the stream acknowledged it. While the
//! client is not connected a publish is refused without being handed to the client
//! (which would buffer it and send it on reconnect: the ghost orders of core NATS).
//! A publish handed over but not acknowledged in [`CONFIRM`] is of unknown outcome: the
//! client may still send it after a reconnect. Its `Nats-Msg-Id` is the order's
//! idempotency key, so the stream keeps one copy whatever the retries within its
//! de-duplication window ([`KEY_WINDOW`]).
//!
//! The worker pulls as many jobs as it has free slots, acknowledges each one after the
//! parcel is packed (and waits for the server to confirm the acknowledgement); jobs not
//! pulled at shutdown stay in the stream for the next start.

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{
    Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType,
};
use async_nats::jetstream::{self, Context as JetStream};
use futures_util::StreamExt as _;
use threadline::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::super::ledger::KEY_WINDOW;
use super::restore::Restore;
use super::{CONFIRM, Env, Job, MAX_QUEUED, NETWORK, Pool, Published, pause, ship};

/// The durable consumer's name.
const CONSUMER: &str = "worker";
/// How long one pull waits for jobs.
const PULL: Duration = Duration::from_millis(500);
/// How long a pulled job may stay unacknowledged before the server delivers it again
/// (a job is pulled only when a slot is free, so this is ample).
const ACK_WAIT: Duration = Duration::from_secs(10);

pub(super) struct Publisher {
    client: async_nats::Client,
    js: JetStream,
    subject: String,
}

/// The subject the stream listens on.
fn subject_of(queue: &str) -> String {
    format!("{queue}.jobs")
}

impl Publisher {
    pub(super) async fn publish(&self, ctx: &Context, job: &Job) -> Published {
        if self.client.connection_state() != State::Connected {
            // Not handed to the client at all: certainly not created.
            return Published::refused("the NATS connection is down");
        }
        let Ok(payload) = serde_json::to_vec(job) else {
            return Published::refused("the job could not be serialised");
        };
        let mut headers = async_nats::HeaderMap::new();
        let call = ctx.inject_into(&mut headers);
        let publish = PublishMessage::build()
            .headers(headers)
            .message_id(&job.key)
            .payload(payload.into());
        let ack = match tokio::time::timeout(
            NETWORK,
            self.js.send_publish(self.subject.clone(), publish),
        )
        .await
        {
            Ok(Ok(ack)) => ack,
            // The client refused it before sending (closed, over the size limit).
            Ok(Err(e)) => return Published::refused(format!("NATS publish failed: {e}")),
            Err(_) => return Published::unknown("the NATS client did not take the job in time"),
        };
        match tokio::time::timeout(CONFIRM + Duration::from_secs(1), ack).await {
            Ok(Ok(ack)) => Published::Accepted {
                call,
                duplicate: ack.duplicate,
            },
            Ok(Err(e)) => match e.kind() {
                // No stream listens on the subject: the server dropped it.
                PublishErrorKind::StreamNotFound => {
                    Published::refused("no JetStream stream takes the job")
                }
                // The stream answered with an error (full, ...): not stored.
                PublishErrorKind::Other
                    if std::error::Error::source(&e)
                        .is_some_and(|s| s.is::<async_nats::jetstream::Error>()) =>
                {
                    Published::refused(format!("the JetStream stream refused the job: {e}"))
                }
                _ => Published::unknown(format!("JetStream did not confirm the job: {e}")),
            },
            Err(_) => Published::unknown("JetStream did not confirm the job in time"),
        }
    }
}

async fn consumer(js: &JetStream, queue: &str, concurrency: usize) -> anyhow::Result<PullConsumer> {
    let stream = js
        .get_or_create_stream(StreamConfig {
            name: queue.to_owned(),
            subjects: vec![subject_of(queue)],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            duplicate_window: KEY_WINDOW,
            max_messages: MAX_QUEUED as i64,
            discard: DiscardPolicy::New,
            ..Default::default()
        })
        .await?;
    Ok(stream
        .get_or_create_consumer(
            CONSUMER,
            PullConfig {
                durable_name: Some(CONSUMER.to_owned()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: (concurrency * 2).max(16) as i64,
                ..Default::default()
            },
        )
        .await?)
}

pub(super) async fn start(
    url: &str,
    queue: &str,
    env: Arc<Env>,
    restore: Restore,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<(Publisher, JoinHandle<()>)> {
    let health = env.health.clone();
    let events = health.clone();
    let options = async_nats::ConnectOptions::new()
        .connection_timeout(NETWORK)
        .reconnect_delay_callback(|attempt| {
            Duration::from_millis((attempt as u64).saturating_mul(100).min(1000))
        })
        .event_callback(move |event| {
            let health = events.clone();
            async move {
                match event {
                    async_nats::Event::Connected => health.up(),
                    async_nats::Event::Disconnected => {
                        health.down("disconnected from the NATS server")
                    }
                    _ => {}
                }
            }
        });
    let client = tokio::time::timeout(NETWORK, options.connect(url))
        .await
        .map_err(|_| anyhow::anyhow!("NATS connect timed out"))??;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(CONFIRM);
    let mut pull = tokio::time::timeout(NETWORK, consumer(&js, queue, env.concurrency))
        .await
        .map_err(|_| anyhow::anyhow!("creating the JetStream stream timed out"))??;
    let queue_name = queue.to_owned();
    let worker_js = js.clone();
    let worker_client = client.clone();
    let task = tokio::spawn(async move {
        let restore = Arc::new(restore);
        let mut pool = Pool::new(&env);
        let mut backoff = Duration::from_millis(100);
        let mut rebuild = false;
        while !*stopped.borrow() {
            if rebuild {
                // After a server restart without the stream's files, or a deleted
                // consumer: declare them again.
                match tokio::time::timeout(
                    NETWORK,
                    consumer(&worker_js, &queue_name, env.concurrency),
                )
                .await
                {
                    Ok(Ok(c)) => {
                        pull = c;
                        rebuild = false;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "JetStream consumer not ready"),
                    Err(_) => tracing::debug!("JetStream consumer not ready in time"),
                }
                if rebuild {
                    if !pause(&mut stopped, &mut backoff).await {
                        break;
                    }
                    continue;
                }
            }
            let first = tokio::select! {
                biased;
                _ = stopped.wait_for(|s| *s) => break,
                p = pool.permit() => p,
            };
            let want = 1 + pool.free();
            let batch = pull
                .batch()
                .max_messages(want)
                .expires(PULL)
                .messages()
                .await;
            let mut batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    drop(first);
                    tracing::debug!(error = %e, "JetStream pull failed; retrying");
                    rebuild = worker_client.connection_state() == State::Connected;
                    if !pause(&mut stopped, &mut backoff).await {
                        break;
                    }
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            // A pull ends within PULL; if the server goes away meanwhile, the client
            // would wait several seconds more, so the wait is cut at PULL and a bit.
            // Every job a pull brings has a free slot.
            let mut first = Some(first);
            let ends = tokio::time::Instant::now() + PULL + Duration::from_millis(500);
            while let Ok(Some(msg)) = tokio::time::timeout_at(ends, batch.next()).await {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!(error = %e, "JetStream pull ended with an error");
                        break;
                    }
                };
                let permit = match first.take() {
                    Some(p) => p,
                    None => pool.permit().await,
                };
                let ctx = restore.nats(&msg);
                let env = env.clone();
                pool.spawn(permit, async move {
                    ctx.scope(ship(&env, &msg.payload)).await;
                    match tokio::time::timeout(NETWORK, msg.double_ack()).await {
                        Ok(Ok(())) => {}
                        // Delivered again after ACK_WAIT; the ledger keeps it from
                        // shipping twice.
                        Ok(Err(e)) => tracing::debug!(error = %e, "job acknowledgement failed"),
                        Err(_) => tracing::debug!("job acknowledgement timed out"),
                    }
                });
            }
        }
        pool.finish().await;
        let _ = tokio::time::timeout(NETWORK, worker_client.flush()).await;
    });
    if client.connection_state() != State::Connected {
        health.down("not connected to the NATS server");
    }
    Ok((
        Publisher {
            client,
            js,
            subject: subject_of(queue),
        },
        task,
    ))
}
