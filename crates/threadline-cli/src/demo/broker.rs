//! The shipping queue between the warehouse and the worker.
//!
//! | `--broker` | carrier of the context | consumer side |
//! |---|---|---|
//! | `embedded` (default) | the JSON envelope: an `_http_headers` object inside the job ([`threadline::json`]) | [`threadline::Restorer::restore_from`] on [`JsonCarrier`] |
//! | `nats://…` | NATS message headers (`Context::inject_into`) | [`threadline::Restorer::handle`] |
//! | `amqp://…` | AMQP headers and `correlation_id` (`Context::inject_into`), publisher confirms | [`threadline::Restorer::handle`] |
//! | `redis://…` | `tl:` fields of a Redis Streams entry (`Context::inject_into`) | [`threadline::Restorer::handle`] |
//!
//! The worker's restorer trusts its queue (the demo's own, on loopback): see
//! `trusted_restorer`.
//!
//! Each run uses its own subject, queue or stream name (process id and a random
//! suffix), so runs never see each other's jobs; the queue and the stream are removed
//! at shutdown. Every publish returns the parent id it sent (the `call_id` the
//! journey links the worker's hop with).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use threadline::codec::SpanId;
use threadline::json::{JsonCarrier, JsonCarrierMut};
use threadline::{Context, Policy};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
// The adapters teach `Context::inject_into` and `Restorer` their clients' message types;
// the crates must be linked for those implementations to be seen.
use {threadline_amqp as _, threadline_nats as _, threadline_redis as _};

use super::Stats;

/// How long connecting, publishing and flushing may take.
const NETWORK: Duration = Duration::from_secs(5);
/// Capacity of the embedded queue; publishing waits when it is full.
const EMBEDDED_CAPACITY: usize = 1024;
/// The simulated work of packing one parcel.
const PACKING: Duration = Duration::from_millis(40);

/// Which queue carries the shipping jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerUrl {
    /// In-process, nothing to install.
    Embedded,
    /// NATS (`nats://host:port`).
    Nats(String),
    /// RabbitMQ or another AMQP 0.9.1 broker (`amqp://user:pass@host:port[/vhost]`).
    Amqp(String),
    /// Redis Streams (`redis://host:port`).
    Redis(String),
}

impl FromStr for BrokerUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s == "embedded" {
            return Ok(BrokerUrl::Embedded);
        }
        let scheme = s.split("://").next().unwrap_or_default();
        match scheme {
            "nats" => Ok(BrokerUrl::Nats(s.to_owned())),
            "amqp" => Ok(BrokerUrl::Amqp(s.to_owned())),
            "redis" => Ok(BrokerUrl::Redis(s.to_owned())),
            _ => Err(format!(
                "unknown broker {s:?}: use embedded, nats://HOST:PORT, amqp://USER:PASS@HOST:PORT or redis://HOST:PORT"
            )),
        }
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerUrl::Embedded => f.write_str("embedded"),
            BrokerUrl::Nats(u) | BrokerUrl::Redis(u) => f.write_str(u),
            // Never print the password.
            BrokerUrl::Amqp(u) => f.write_str(&without_password(u)),
        }
    }
}

fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user_pass = &url[s + 3..at];
            let user = user_pass.split(':').next().unwrap_or_default();
            format!("{}://{}:***@{}", &url[..s], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// One shipping job: what the warehouse asks the worker to ship.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    /// The warehouse's order number.
    pub order_id: u64,
    /// What to ship.
    pub item: String,
    /// How many.
    pub quantity: u32,
}

/// A unique name for this run's queue.
fn unique(sep: char) -> String {
    format!(
        "threadline{sep}demo{sep}{}{sep}{:08x}{sep}shipping",
        std::process::id(),
        fastrand::u32(..)
    )
}

enum Pub {
    Embedded(mpsc::Sender<Vec<u8>>),
    Nats {
        client: async_nats::Client,
        subject: String,
    },
    Amqp {
        channel: lapin::Channel,
        queue: String,
    },
    Redis {
        con: redis::aio::MultiplexedConnection,
        key: String,
    },
}

/// The warehouse's side of the queue. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Pub>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("destination", &self.destination())
            .finish()
    }
}

impl Publisher {
    /// Where jobs go, for logs and the journey (`queue embedded`, `nats <subject>`, …).
    pub fn destination(&self) -> String {
        match &*self.inner {
            Pub::Embedded(_) => "embedded queue shipping".to_owned(),
            Pub::Nats { subject, .. } => format!("NATS subject {subject}"),
            Pub::Amqp { queue, .. } => format!("AMQP queue {queue}"),
            Pub::Redis { key, .. } => format!("Redis stream {key}"),
        }
    }

    /// Publishes `job` with the current context. Answers the parent id sent with the
    /// message (`None` outside any scope). An error means the queue did not take the
    /// job: the caller must not count it as enqueued.
    pub async fn publish(&self, job: &Job) -> anyhow::Result<Option<SpanId>> {
        let ctx = Context::current();
        match &*self.inner {
            Pub::Embedded(tx) => {
                let mut map = match serde_json::to_value(job)? {
                    serde_json::Value::Object(m) => m,
                    _ => serde_json::Map::new(),
                };
                let call = ctx.inject(&mut JsonCarrierMut::new(&mut map));
                let bytes = serde_json::to_vec(&map)?;
                tokio::time::timeout(NETWORK, tx.send(bytes))
                    .await
                    .context("the embedded queue is full")?
                    .map_err(|_| anyhow::anyhow!("the embedded queue is closed"))?;
                Ok(call)
            }
            Pub::Nats { client, subject } => {
                let payload = serde_json::to_vec(job)?;
                let mut headers = async_nats::HeaderMap::new();
                let call = ctx.inject_into(&mut headers);
                tokio::time::timeout(
                    NETWORK,
                    client.publish_with_headers(subject.clone(), headers, payload.into()),
                )
                .await
                .context("NATS publish timed out")??;
                tokio::time::timeout(NETWORK, client.flush())
                    .await
                    .context("NATS flush timed out")??;
                Ok(call)
            }
            Pub::Amqp { channel, queue } => {
                let payload = serde_json::to_vec(job)?;
                let props = lapin::BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2);
                let mut props = props;
                let call = ctx.inject_into(&mut props);
                let confirm = tokio::time::timeout(
                    NETWORK,
                    channel.basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        lapin::options::BasicPublishOptions::default(),
                        &payload,
                        props,
                    ),
                )
                .await
                .context("AMQP publish timed out")??;
                let confirmation = tokio::time::timeout(NETWORK, confirm)
                    .await
                    .context("AMQP publisher confirm timed out")??;
                anyhow::ensure!(!confirmation.is_nack(), "the broker refused the job (nack)");
                Ok(call)
            }
            Pub::Redis { con, key } => {
                let payload = serde_json::to_vec(job)?;
                let mut cmd = redis::cmd("XADD");
                cmd.arg(key).arg("*").arg("payload").arg(payload);
                let call = ctx.inject_into(&mut cmd);
                let mut con = con.clone();
                let _: String = tokio::time::timeout(NETWORK, cmd.query_async(&mut con))
                    .await
                    .context("Redis XADD timed out")??;
                Ok(call)
            }
        }
    }
}

/// The worker: consumes jobs until stopped.
pub struct Worker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    cleanup: Option<Cleanup>,
}

enum Cleanup {
    Amqp {
        conn: Box<lapin::Connection>,
        channel: lapin::Channel,
        queue: String,
    },
    Redis {
        con: redis::aio::MultiplexedConnection,
        key: String,
    },
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl Worker {
    /// Stops consuming (a job being handled finishes first, within `bound`) and removes
    /// this run's queue or stream from the broker.
    pub async fn stop(mut self, bound: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(bound, &mut self.task).await.is_err() {
            self.task.abort();
        }
        match self.cleanup.take() {
            Some(Cleanup::Amqp {
                conn,
                channel,
                queue,
            }) => {
                let _ = tokio::time::timeout(
                    NETWORK,
                    channel.queue_delete(
                        queue.as_str().into(),
                        lapin::options::QueueDeleteOptions::default(),
                    ),
                )
                .await;
                let _ = tokio::time::timeout(NETWORK, conn.close(200, "demo stopped".into())).await;
            }
            Some(Cleanup::Redis { mut con, key }) => {
                let _: Result<Result<usize, _>, _> = tokio::time::timeout(
                    NETWORK,
                    redis::cmd("DEL").arg(&key).query_async(&mut con),
                )
                .await;
            }
            None => {}
        }
    }
}

/// A connected queue: the publisher for the warehouse and the running worker.
pub struct Queue {
    publisher: Publisher,
    worker: Worker,
    name: String,
}

impl Queue {
    /// What the queue is, for the start-up banner.
    pub fn describe(&self) -> String {
        self.name.clone()
    }

    /// The two halves.
    pub fn into_parts(self) -> (Publisher, Worker) {
        (self.publisher, self.worker)
    }
}

/// The worker's handler, run inside the context the job carried.
async fn ship(stats: &Stats, payload: &[u8]) {
    threadline::bind("app", "worker");
    match serde_json::from_slice::<Job>(payload) {
        Ok(job) => {
            tracing::info!(
                order_id = job.order_id,
                item = %job.item,
                quantity = job.quantity,
                "shipping job received"
            );
            tokio::time::sleep(PACKING).await;
            tracing::info!(
                order_id = job.order_id,
                "parcel packed and handed to the carrier"
            );
            Stats::bump(&stats.handled);
        }
        Err(e) => {
            // Not one of ours: acknowledged (never redelivered forever) and counted.
            tracing::warn!(error = %e, "queue message is not a shipping job; acknowledged and counted");
            Stats::bump(&stats.malformed);
        }
    }
}

/// Connects `url`, declares this run's queue and starts the worker.
pub async fn connect(url: &BrokerUrl, policy: Policy, stats: Arc<Stats>) -> anyhow::Result<Queue> {
    let (stop, mut stopped) = watch::channel(false);
    match url {
        BrokerUrl::Embedded => {
            let (tx, mut rx) = mpsc::channel::<Vec<u8>>(EMBEDDED_CAPACITY);
            let restorer = trusted_restorer(policy);
            let task = tokio::spawn(async move {
                loop {
                    let msg = tokio::select! {
                        biased;
                        _ = stopped.wait_for(|s| *s) => break,
                        m = rx.recv() => m,
                    };
                    let Some(bytes) = msg else { break };
                    let map: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_slice(&bytes).unwrap_or_default();
                    let ctx = restorer.restore_from(&JsonCarrier::new(&map)).context;
                    ctx.scope(ship(&stats, &bytes)).await;
                }
            });
            Ok(Queue {
                publisher: Publisher {
                    inner: Arc::new(Pub::Embedded(tx)),
                },
                worker: Worker {
                    stop,
                    task,
                    cleanup: None,
                },
                name: "embedded (in-process queue, JSON envelope)".to_owned(),
            })
        }
        BrokerUrl::Nats(u) => {
            let client = tokio::time::timeout(NETWORK, async_nats::connect(u.as_str()))
                .await
                .context("NATS connect timed out")??;
            let subject = unique('.');
            let mut sub = client.subscribe(subject.clone()).await?;
            tokio::time::timeout(NETWORK, client.flush())
                .await
                .context("NATS flush timed out")??;
            let restorer = trusted_restorer(policy);
            let task = tokio::spawn(async move {
                loop {
                    let msg = tokio::select! {
                        biased;
                        _ = stopped.wait_for(|s| *s) => break,
                        m = sub.next() => m,
                    };
                    let Some(msg) = msg else { break };
                    let stats = &stats;
                    restorer
                        .handle(msg, |msg| async move { ship(stats, &msg.payload).await })
                        .await;
                }
                let _ = sub.unsubscribe().await;
            });
            Ok(Queue {
                publisher: Publisher {
                    inner: Arc::new(Pub::Nats {
                        client,
                        subject: subject.clone(),
                    }),
                },
                worker: Worker {
                    stop,
                    task,
                    cleanup: None,
                },
                name: format!("NATS {url} subject {subject}"),
            })
        }
        BrokerUrl::Amqp(u) => {
            use lapin::options::{
                BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
                QueueDeclareOptions,
            };
            use lapin::types::FieldTable;
            let conn = tokio::time::timeout(
                NETWORK,
                lapin::Connection::connect(u, lapin::ConnectionProperties::default()),
            )
            .await
            .context("AMQP connect timed out")??;
            let queue = unique('-');
            let publish = conn.create_channel().await?;
            publish
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            publish
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let consume = conn.create_channel().await?;
            consume.basic_qos(16, BasicQosOptions::default()).await?;
            let mut consumer = consume
                .basic_consume(
                    queue.as_str().into(),
                    "threadline-demo-worker".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let restorer = trusted_restorer(policy);
            let task = tokio::spawn(async move {
                loop {
                    let delivery = tokio::select! {
                        biased;
                        _ = stopped.wait_for(|s| *s) => break,
                        d = consumer.next() => d,
                    };
                    let delivery = match delivery {
                        Some(Ok(d)) => d,
                        Some(Err(e)) => {
                            tracing::error!(error = %e, "AMQP consumer failed; the worker stops");
                            break;
                        }
                        None => break,
                    };
                    let stats = &stats;
                    restorer
                        .handle(delivery, |d| async move {
                            ship(stats, &d.data).await;
                            if let Err(e) = d.ack(BasicAckOptions::default()).await {
                                tracing::warn!(error = %e, "could not acknowledge the job");
                            }
                        })
                        .await;
                }
                let _ = consume.close(200, "worker stopped".into()).await;
            });
            Ok(Queue {
                publisher: Publisher {
                    inner: Arc::new(Pub::Amqp {
                        channel: publish.clone(),
                        queue: queue.clone(),
                    }),
                },
                worker: Worker {
                    stop,
                    task,
                    cleanup: Some(Cleanup::Amqp {
                        conn: Box::new(conn),
                        channel: publish,
                        queue: queue.clone(),
                    }),
                },
                name: format!("AMQP {url} queue {queue}"),
            })
        }
        BrokerUrl::Redis(u) => {
            use redis::streams::{StreamReadOptions, StreamReadReply};
            let client = redis::Client::open(u.as_str())?;
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(NETWORK))
                .set_response_timeout(Some(NETWORK));
            let con = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            // Blocking reads get a connection of their own.
            let mut reader = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let key = unique(':');
            let restorer = trusted_restorer(policy);
            let stream = key.clone();
            let task = tokio::spawn(async move {
                let mut last = "0-0".to_owned();
                let opts = StreamReadOptions::default().block(500).count(16);
                let mut backoff = Duration::from_millis(100);
                while !*stopped.borrow() {
                    let reply: redis::RedisResult<Option<StreamReadReply>> =
                        redis::AsyncCommands::xread_options(
                            &mut reader,
                            &[stream.as_str()],
                            &[last.as_str()],
                            &opts,
                        )
                        .await;
                    let entries = match reply {
                        Ok(r) => {
                            backoff = Duration::from_millis(100);
                            r.map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect::<Vec<_>>())
                        }
                        Err(e) => {
                            // Unacknowledged reads are not lost: the entries stay in
                            // the stream and are read again from `last`.
                            tracing::warn!(error = %e, "Redis read failed; retrying");
                            let _ = tokio::time::timeout(backoff, stopped.wait_for(|s| *s)).await;
                            backoff = (backoff * 2).min(Duration::from_secs(2));
                            continue;
                        }
                    };
                    for entry in entries.unwrap_or_default() {
                        last = entry.id.clone();
                        let stats = &stats;
                        restorer
                            .handle(entry, |entry| async move {
                                let payload: Vec<u8> = entry.get("payload").unwrap_or_default();
                                ship(stats, &payload).await;
                            })
                            .await;
                    }
                }
            });
            Ok(Queue {
                publisher: Publisher {
                    inner: Arc::new(Pub::Redis {
                        con: con.clone(),
                        key: key.clone(),
                    }),
                },
                worker: Worker {
                    stop,
                    task,
                    cleanup: Some(Cleanup::Redis {
                        con,
                        key: key.clone(),
                    }),
                },
                name: format!("Redis {url} stream {key}"),
            })
        }
    }
}

/// The worker's restorer. The demo's queues are its own, on loopback: only the
/// warehouse publishes to them, so the source is trusted and the tenant and user ids
/// travel with the job. A queue other services or users can publish to would be
/// restored untrusted (`Restorer::new(policy)`), dropping those.
fn trusted_restorer(policy: Policy) -> threadline::Restorer {
    threadline::Restorer::new(policy).trust(threadline::Trust::Trusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_urls_and_hides_passwords() {
        assert_eq!("embedded".parse::<BrokerUrl>(), Ok(BrokerUrl::Embedded));
        assert!(matches!(
            "nats://127.0.0.1:4222".parse(),
            Ok(BrokerUrl::Nats(_))
        ));
        assert!(matches!(
            "redis://127.0.0.1:6379".parse(),
            Ok(BrokerUrl::Redis(_))
        ));
        let amqp: BrokerUrl = "amqp://guest:secret@127.0.0.1:5672".parse().unwrap();
        assert_eq!(amqp.to_string(), "amqp://guest:***@127.0.0.1:5672");
        assert!("kafka://x".parse::<BrokerUrl>().is_err());
    }
}
