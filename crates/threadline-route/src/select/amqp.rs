//! Selective consumption on RabbitMQ (AMQP 0.9.1, lapin).
//!
//! One decision point, as on NATS: the **baseline** consumes the queue and, for a
//! message whose key a live rule claims for its service, *relays* a copy to the key's
//! sandbox and keeps the original unacknowledged until it knows the outcome. The
//! **sandbox** declares one exclusive, auto-delete queue per key
//! (`_tl_route.<queue>.<key>`), handles what arrives there and answers `ok` on the
//! baseline's reply queue. The relay is published `mandatory` with publisher confirms:
//!
//! - returned (no sandbox queue: none started, or it left and its queue went with it),
//!   nacked, or no `ok` within the relay timeout (a `no`: the sandbox is stopping or
//!   the key is not its own) → the baseline handles the original itself, then acks it;
//! - `ok` → the baseline acks the original.
//!
//! So while the table is stable each message is handled by exactly one side; a table
//! change takes effect at one point of the baseline's stream; a sandbox that stops
//! (the `stop` future of [`SelectiveAmqp::sandbox`]) cancels its consumers, answers
//! `no` to what it had received or what is still queued, and deletes its queues; a
//! sandbox that disappears takes its exclusive queues with it, and what was relayed
//! there and not answered costs the relay timeout, after which the baseline handles
//! it. The original is never acked before one side has handled it, so nothing is
//! lost: if the baseline dies mid-relay, RabbitMQ redelivers the original to another
//! consumer of the queue.
//!
//! The duplicate window: a sandbox's `ok` that does not arrive within the relay
//! timeout (handled there, then by the baseline), and the baseline dying after a
//! side handled a message but before its ack reached the server (redelivered,
//! handled again): at least once, as any acked consumer.
//!
//! The relayed copy keeps the original's body and properties; two headers,
//! `tl-relay-reply` and `tl-relay-id`, carry the reply address and are removed before
//! the sandbox's handler sees the delivery. Messages of claimed keys go to the sandbox
//! one at a time, in order (the baseline waits for each answer); everything else
//! costs the baseline one table lookup.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::Confirmation;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use threadline::{Restorer, RoutingKey};
// The `Message` impl of lapin's `Delivery`.
use threadline_amqp as _;

use super::SelectStats;
use super::Selector;
use crate::error::{RuleError, RuleErrorKind};

const OK: &[u8] = b"ok";
const NO: &[u8] = b"no";
const REPLY: &str = "tl-relay-reply";
const ID: &str = "tl-relay-id";

/// One side of selective consumption of a RabbitMQ queue: [`SelectiveAmqp::baseline`]
/// or [`SelectiveAmqp::sandbox`]. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct SelectiveAmqp {
    queue: String,
    timeout: Duration,
    prefetch: u16,
    restorer: Arc<Restorer>,
    stats: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    handled: AtomicU64,
    relayed: AtomicU64,
    fell_back: AtomicU64,
}

impl SelectiveAmqp {
    /// Consumption of `queue`, messages restored with `restorer` (its policy reads the
    /// routing key; its trust decides whether the messages may set one).
    pub fn new(queue: impl Into<String>, restorer: Restorer) -> Self {
        SelectiveAmqp {
            queue: queue.into(),
            timeout: Duration::from_secs(2),
            prefetch: 64,
            restorer: Arc::new(restorer),
            stats: Arc::default(),
        }
    }

    /// How long the baseline waits for a sandbox's answer before handling a relayed
    /// message itself (default 2 s).
    pub fn relay_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The baseline's prefetch (`basic.qos`; default 64).
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// The queue relays for `key` go to, declared by the key's sandbox.
    pub fn relay_queue(&self, key: &RoutingKey) -> String {
        format!("_tl_route.{}.{key}", self.queue)
    }

    /// What this side did so far.
    pub fn stats(&self) -> SelectStats {
        SelectStats {
            handled: self.stats.handled.load(Ordering::Relaxed),
            relayed: self.stats.relayed.load(Ordering::Relaxed),
            fell_back: self.stats.fell_back.load(Ordering::Relaxed),
        }
    }

    /// Consumes the queue (which must exist) as the baseline of `selector`'s service:
    /// runs `handler` (inside the message's restored context) for every message no
    /// live rule claims and acks it after; relays the others and acks them once their
    /// sandbox took them. Returns when the consumer ends; channel and consumer
    /// errors are [`RuleErrorKind::Source`].
    pub async fn baseline<F, Fut>(
        &self,
        conn: &Connection,
        selector: &Selector,
        mut handler: F,
    ) -> Result<(), RuleError>
    where
        F: FnMut(Delivery) -> Fut,
        Fut: Future<Output = ()>,
    {
        let what = |e: lapin::Error| source(&self.queue, &e);
        let ch = conn.create_channel().await.map_err(what)?;
        ch.basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(what)?;
        let mut deliveries = ch
            .basic_consume(
                short(&self.queue)?,
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(what)?;
        let mut relay: Option<Relay> = None;
        while let Some(next) = deliveries.next().await {
            let delivery = next.map_err(what)?;
            let ctx = self.restorer.restore(&delivery).context;
            if let Some(key) = ctx.routing_key().filter(|k| selector.claimed(Some(k))) {
                // A relay channel the server closed is opened again.
                if relay.as_ref().is_some_and(|r| !r.ch.status().connected()) {
                    relay = None;
                }
                if relay.is_none() {
                    relay = Relay::open(conn)
                        .await
                        .map_err(what)
                        .inspect_err(|e| {
                            tracing::warn!(target: "threadline_route", error = %e, "relay channel");
                        })
                        .ok();
                }
                let taken = match relay.as_mut() {
                    Some(r) => {
                        r.relay(&self.relay_queue(key), &delivery, self.timeout)
                            .await
                    }
                    None => false,
                };
                if taken {
                    self.stats.relayed.fetch_add(1, Ordering::Relaxed);
                    ack(&delivery.acker).await;
                    continue;
                }
                self.stats.fell_back.fetch_add(1, Ordering::Relaxed);
            }
            let acker = delivery.acker.clone();
            ctx.scope_with(|| handler(delivery)).await;
            self.stats.handled.fetch_add(1, Ordering::Relaxed);
            ack(&acker).await;
        }
        Ok(())
    }

    /// Consumes the relays of `keys` as their sandbox: declares their queues, runs
    /// `handler` (inside the message's restored context) and answers `ok`, until
    /// `stop` completes; then cancels its consumers, answers `no` to what it had
    /// received or what is still queued, so that the baseline handles it, and deletes
    /// its queues.
    pub async fn sandbox<F, Fut, S>(
        &self,
        conn: &Connection,
        keys: &[RoutingKey],
        mut handler: F,
        stop: S,
    ) -> Result<(), RuleError>
    where
        F: FnMut(Delivery) -> Fut,
        Fut: Future<Output = ()>,
        S: Future<Output = ()>,
    {
        let what = |e: lapin::Error| source(&self.queue, &e);
        let ch = conn.create_channel().await.map_err(what)?;
        ch.basic_qos(1, BasicQosOptions::default())
            .await
            .map_err(what)?;
        let mut queues = Vec::with_capacity(keys.len());
        let mut consumers = Vec::with_capacity(keys.len());
        for k in keys {
            let q = short(&self.relay_queue(k))?;
            let opts = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            };
            ch.queue_declare(q.clone(), opts, FieldTable::default())
                .await
                .map_err(what)?;
            let c: Consumer = ch
                .basic_consume(
                    q.clone(),
                    ShortString::from(""),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(what)?;
            queues.push(q);
            consumers.push(c);
        }
        let tags: Vec<ShortString> = consumers.iter().map(|c| c.tag()).collect();
        let mut all = futures_util::stream::select_all(consumers);
        let mut stop = std::pin::pin!(stop);
        loop {
            let delivery = tokio::select! {
                biased;
                () = &mut stop => break,
                d = all.next() => match d {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => return Err(what(e)),
                    None => return Ok(()),
                },
            };
            let (delivery, reply) = take_reply(delivery);
            let ctx = self.restorer.restore(&delivery).context;
            let own = ctx.routing_key().is_some_and(|k| keys.contains(k));
            let acker = delivery.acker.clone();
            match (own, reply) {
                (true, reply) => {
                    ctx.scope_with(|| handler(delivery)).await;
                    self.stats.handled.fetch_add(1, Ordering::Relaxed);
                    if let Some(r) = reply {
                        answer(&ch, &r, OK).await;
                    }
                    ack(&acker).await;
                }
                (false, Some(r)) => {
                    answer(&ch, &r, NO).await;
                    ack(&acker).await;
                }
                (false, None) => {
                    // Not a relay, not this sandbox's key: nobody holds an original.
                    tracing::warn!(target: "threadline_route", queue = %delivery.routing_key, "a message that is not a relay, for a key not this sandbox's; rejected");
                    let _ = acker.reject(BasicRejectOptions { requeue: false }).await;
                }
            }
        }
        // No new deliveries; then what was delivered but not handled, and what is
        // still queued, is answered `no`; then the queues go.
        for tag in tags {
            let _ = ch.basic_cancel(tag, BasicCancelOptions::default()).await;
        }
        while let Ok(Some(Ok(d))) =
            tokio::time::timeout(Duration::from_millis(200), all.next()).await
        {
            self.refuse(&ch, d).await;
        }
        for q in queues {
            while let Ok(Some(got)) = ch.basic_get(q.clone(), BasicGetOptions::default()).await {
                self.refuse(&ch, got.delivery).await;
            }
            let _ = ch.queue_delete(q, QueueDeleteOptions::default()).await;
        }
        let _ = ch.close(200, ShortString::from("sandbox stopped")).await;
        Ok(())
    }

    async fn refuse(&self, ch: &Channel, d: Delivery) {
        let (d, reply) = take_reply(d);
        if let Some(r) = reply {
            answer(ch, &r, NO).await;
        }
        ack(&d.acker).await;
    }
}

/// The baseline's relay channel (publisher confirms) and reply queue.
struct Relay {
    ch: Channel,
    reply_queue: ShortString,
    replies: Consumer,
    next_id: i64,
}

impl Relay {
    async fn open(conn: &Connection) -> lapin::Result<Relay> {
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let q = ch
            .queue_declare(
                ShortString::from(""),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let reply_queue = q.name().clone();
        let replies = ch
            .basic_consume(
                reply_queue.clone(),
                ShortString::from(""),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(Relay {
            ch,
            reply_queue,
            replies,
            next_id: 0,
        })
    }

    /// Whether the sandbox queue `queue` took the message (its sandbox answered `ok`).
    async fn relay(&mut self, queue: &str, delivery: &Delivery, timeout: Duration) -> bool {
        let Ok(routing_key) = ShortString::try_new(queue) else {
            tracing::warn!(target: "threadline_route", "relay queue name over 255 bytes; handled by the baseline");
            return false;
        };
        self.next_id += 1;
        let id = self.next_id;
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(
            ShortString::from(REPLY),
            AMQPValue::LongString(LongString::from(self.reply_queue.as_str().as_bytes())),
        );
        headers.insert(ShortString::from(ID), AMQPValue::LongLongInt(id));
        let props = delivery.properties.clone().with_headers(headers);
        let published = self
            .ch
            .basic_publish(
                ShortString::from(""),
                routing_key,
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &delivery.data,
                props,
            )
            .await;
        let confirmed = match published {
            Ok(confirm) => tokio::time::timeout(timeout, confirm).await,
            Err(e) => {
                tracing::warn!(target: "threadline_route", error = %e, "relay not published; handled by the baseline");
                return false;
            }
        };
        match confirmed {
            Ok(Ok(Confirmation::Ack(None))) => {}
            // Returned: no sandbox queue. Nacked, or no confirm: the baseline's.
            Ok(Ok(_)) => return false,
            Ok(Err(e)) => {
                tracing::warn!(target: "threadline_route", error = %e, "relay not confirmed; handled by the baseline");
                return false;
            }
            Err(_) => return false,
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.replies.next()).await {
                Ok(Some(Ok(r))) => {
                    // An answer to an earlier relay that timed out is stale.
                    let for_id = r
                        .properties
                        .correlation_id()
                        .as_ref()
                        .and_then(|c| c.as_str().parse::<i64>().ok());
                    if for_id == Some(id) {
                        return r.data == OK;
                    }
                }
                Ok(_) => return false,
                Err(_) => {
                    tracing::warn!(target: "threadline_route", queue, "no answer from the sandbox in time; handled by the baseline");
                    return false;
                }
            }
        }
    }
}

/// Where and under which id to answer, taken out of a relayed delivery's headers.
struct ReplyTo {
    queue: ShortString,
    id: i64,
}

fn take_reply(mut d: Delivery) -> (Delivery, Option<ReplyTo>) {
    let Some(headers) = d.properties.headers().as_ref() else {
        return (d, None);
    };
    let mut map = headers.inner().clone();
    let queue = match map.remove(REPLY) {
        Some(AMQPValue::LongString(s)) => std::str::from_utf8(s.as_bytes())
            .ok()
            .and_then(|s| ShortString::try_new(s).ok()),
        _ => None,
    };
    let id = match map.remove(ID) {
        Some(AMQPValue::LongLongInt(i)) => Some(i),
        _ => None,
    };
    let (Some(queue), Some(id)) = (queue, id) else {
        return (d, None);
    };
    let props = std::mem::take(&mut d.properties);
    d.properties = props.with_headers(FieldTable::from(map));
    (d, Some(ReplyTo { queue, id }))
}

async fn answer(ch: &Channel, to: &ReplyTo, what: &'static [u8]) {
    let props =
        BasicProperties::default().with_correlation_id(ShortString::from(to.id.to_string()));
    let sent = ch
        .basic_publish(
            ShortString::from(""),
            to.queue.clone(),
            BasicPublishOptions::default(),
            what,
            props,
        )
        .await;
    if let Err(e) = sent {
        tracing::warn!(target: "threadline_route", error = %e, "answer to the baseline not sent");
    }
}

async fn ack(acker: &lapin::Acker) {
    if let Err(e) = acker.ack(BasicAckOptions::default()).await {
        tracing::warn!(target: "threadline_route", error = %e, "ack not sent; the message will be redelivered");
    }
}

fn short(name: &str) -> Result<ShortString, RuleError> {
    ShortString::try_new(name).map_err(|_| {
        RuleError::new(
            RuleErrorKind::Source,
            format!("queue name over 255 bytes: {name:.64}…"),
        )
    })
}

fn source(queue: &str, e: &dyn std::fmt::Display) -> RuleError {
    RuleError::new(RuleErrorKind::Source, format!("queue {queue}: {e}"))
}
