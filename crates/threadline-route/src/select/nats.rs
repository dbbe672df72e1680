//! Selective consumption on core NATS.
//!
//! Core NATS has no acknowledgement and no redelivery: two subscribers that each
//! decide from their own copy of the table cannot hand a key over without a message
//! handled twice or by nobody while the table changes. So one of them decides: the
//! **baseline** subscribes to the subject (with its queue group, if it has replicas)
//! and, for a message whose key a live rule claims for its service, *relays* it to the
//! key's sandbox with a request on `<relay prefix>.<key>`; the **sandbox** subscribes
//! there, handles the message and answers `ok`. Whatever else happens the baseline
//! handles the message itself: no sandbox subscribed (NATS answers "no responders" at
//! once), the sandbox answers `no` (it is stopping, or the key is not its own), or no
//! answer within the relay timeout.
//!
//! - While the table is stable, each message is handled by exactly one of them.
//! - A table change takes effect at one point of the baseline's stream: messages
//!   before it go where the old table said, messages after where the new one says;
//!   the sandbox's own copy of the table plays no part.
//! - A sandbox that stops (the `stop` future of [`SelectiveNats::sandbox`]) first
//!   unsubscribes, then answers `no` to what it had already received: its keys fall
//!   back to the baseline, nothing lost (a relay that reaches its connection after it
//!   unsubscribed goes unanswered and costs the relay timeout).
//! - A sandbox that disappears without stopping (a laptop closed) costs the relay
//!   timeout on the messages in flight, which the baseline then handles. The one case
//!   of a message handled twice: a sandbox that handled it and whose `ok` never
//!   arrived (the connection cut between the two): relays are at least once.
//!
//! Messages of claimed keys go to the sandbox one at a time, in order (the baseline
//! waits for each answer); everything else costs the baseline one table lookup.
//!
//! # JetStream
//!
//! [`SelectiveNats::baseline_jetstream`] is the same baseline on a JetStream pull
//! consumer, and the sandbox is the same [`SelectiveNats::sandbox`]: relays are core
//! NATS requests, so the sandbox needs no consumer of its own on the stream and leaves
//! nothing behind there when it goes. The baseline acknowledges a message only once it
//! is decided: after the sandbox's `ok`, or after handling it itself. The decision
//! stays with the baseline, one point in the stream, as on core NATS; what JetStream
//! adds is that nothing in flight is lost when the baseline itself dies: a message not
//! yet acknowledged is redelivered (after the consumer's `ack_wait`) and decided again.
//! The duplicate window: a message handled (by either side) whose acknowledgement
//! never reached the server is handled again on redelivery, and, as on core NATS, a
//! sandbox's `ok` lost in transit makes the baseline handle the message too.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::{Client, Message};
use bytes::Bytes;
use futures_util::StreamExt;
use threadline::{Restorer, RoutingKey};
// The `Message` impl of `async_nats::Message`.
use threadline_nats as _;

use super::Selector;
use crate::error::{RuleError, RuleErrorKind};

const OK: &[u8] = b"ok";
const NO: &[u8] = b"no";

/// One side of selective consumption of a NATS subject: [`SelectiveNats::baseline`]
/// or [`SelectiveNats::sandbox`]. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct SelectiveNats {
    client: Client,
    subject: String,
    relay: String,
    timeout: Duration,
    queue_group: Option<String>,
    restorer: Arc<Restorer>,
    stats: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    handled: AtomicU64,
    relayed: AtomicU64,
    fell_back: AtomicU64,
}

pub use super::SelectStats;

impl SelectiveNats {
    /// Consumption of `subject`, messages restored with `restorer` (its policy reads
    /// the routing key; its trust decides whether the messages may set one). Relays go
    /// to `_TL_ROUTE.<subject>.<key>`.
    pub fn new(client: Client, subject: impl Into<String>, restorer: Restorer) -> Self {
        let subject = subject.into();
        SelectiveNats {
            relay: format!("_TL_ROUTE.{subject}"),
            client,
            subject,
            timeout: Duration::from_secs(2),
            queue_group: None,
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

    /// The baseline's queue group (its replicas share the subject).
    pub fn queue_group(mut self, group: impl Into<String>) -> Self {
        self.queue_group = Some(group.into());
        self
    }

    /// The subject relays for `key` go to.
    pub fn relay_subject(&self, key: &RoutingKey) -> String {
        format!("{}.{key}", self.relay)
    }

    /// What this side did so far.
    pub fn stats(&self) -> SelectStats {
        SelectStats {
            handled: self.stats.handled.load(Ordering::Relaxed),
            relayed: self.stats.relayed.load(Ordering::Relaxed),
            fell_back: self.stats.fell_back.load(Ordering::Relaxed),
        }
    }

    /// Consumes the subject as the baseline of `selector`'s service: runs `handler`
    /// (inside the message's restored context) for every message no live rule claims,
    /// and relays the others. Returns when the subscription ends.
    pub async fn baseline<F, Fut>(
        &self,
        selector: &Selector,
        mut handler: F,
    ) -> Result<(), RuleError>
    where
        F: FnMut(Message) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut sub = match &self.queue_group {
            Some(g) => {
                self.client
                    .queue_subscribe(self.subject.clone(), g.clone())
                    .await
            }
            None => self.client.subscribe(self.subject.clone()).await,
        }
        .map_err(|e| source(&self.subject, &e))?;
        while let Some(msg) = sub.next().await {
            let ctx = self.restorer.restore(&msg).context;
            if let Some(key) = ctx.routing_key().filter(|k| selector.claimed(Some(k))) {
                if self.relay_to(key, &msg).await {
                    self.stats.relayed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                self.stats.fell_back.fetch_add(1, Ordering::Relaxed);
            }
            ctx.scope_with(|| handler(msg)).await;
            self.stats.handled.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Consumes a JetStream pull consumer as the baseline of `selector`'s service:
    /// runs `handler` (inside the message's restored context) for every message no
    /// live rule claims, relays the others to their sandbox (a [`SelectiveNats::sandbox`]
    /// on the same relay subjects), and acknowledges each message once it is decided:
    /// after the sandbox took it, or after `handler` returned. Returns when the
    /// consumer's message stream ends; an error creating it is a [`RuleErrorKind::Source`].
    pub async fn baseline_jetstream<F, Fut>(
        &self,
        consumer: &PullConsumer,
        selector: &Selector,
        mut handler: F,
    ) -> Result<(), RuleError>
    where
        F: FnMut(async_nats::jetstream::Message) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| source(&self.subject, &e))?;
        while let Some(next) = messages.next().await {
            let msg = match next {
                Ok(m) => m,
                Err(e) => {
                    // Missed heartbeats, a reconnect: the stream carries on.
                    tracing::warn!(target: "threadline_route", error = %e, "JetStream consumer");
                    continue;
                }
            };
            let ctx = self.restorer.restore(&msg).context;
            if let Some(key) = ctx.routing_key().filter(|k| selector.claimed(Some(k))) {
                if self.relay_to(key, &msg.message).await {
                    self.stats.relayed.fetch_add(1, Ordering::Relaxed);
                    ack(&msg).await;
                    continue;
                }
                self.stats.fell_back.fetch_add(1, Ordering::Relaxed);
            }
            // The acknowledgement is a publish to the message's reply subject, sent
            // once the handler (which owns the message) has returned.
            let (reply, client) = (msg.message.reply.clone(), msg.context.client());
            ctx.scope_with(|| handler(msg)).await;
            self.stats.handled.fetch_add(1, Ordering::Relaxed);
            if let Some(reply) = reply
                && let Err(e) = client.publish(reply, Bytes::new()).await
            {
                tracing::warn!(target: "threadline_route", error = %e, "acknowledgement not sent; the message will be redelivered");
            }
        }
        Ok(())
    }

    /// Whether the key's sandbox took the message.
    async fn relay_to(&self, key: &RoutingKey, msg: &Message) -> bool {
        let subject = self.relay_subject(key);
        let headers = msg.headers.clone().unwrap_or_default();
        let request = self
            .client
            .request_with_headers(subject, headers, msg.payload.clone());
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(reply)) => reply.payload.as_ref() == OK,
            Ok(Err(e)) => {
                if !matches!(e.kind(), async_nats::RequestErrorKind::NoResponders) {
                    tracing::warn!(target: "threadline_route", key = %key, error = %e, "relay to the sandbox failed; handled by the baseline");
                }
                false
            }
            Err(_) => {
                tracing::warn!(target: "threadline_route", key = %key, "no answer from the sandbox in time; handled by the baseline");
                false
            }
        }
    }

    /// Consumes the relays of `keys` as their sandbox: runs `handler` (inside the
    /// message's restored context) and answers `ok`, until `stop` completes; then
    /// unsubscribes and answers `no` to what was already received, so that the
    /// baseline handles it.
    pub async fn sandbox<F, Fut, S>(
        &self,
        keys: &[RoutingKey],
        mut handler: F,
        stop: S,
    ) -> Result<(), RuleError>
    where
        F: FnMut(Message) -> Fut,
        Fut: Future<Output = ()>,
        S: Future<Output = ()>,
    {
        let mut subs = Vec::with_capacity(keys.len());
        for k in keys {
            let subject = self.relay_subject(k);
            subs.push(
                self.client
                    .subscribe(subject.clone())
                    .await
                    .map_err(|e| source(&subject, &e))?,
            );
        }
        // Answered before the loop starts: the baseline may relay from now on.
        self.client
            .flush()
            .await
            .map_err(|e| source(&self.relay, &e))?;
        let mut all = futures_util::stream::select_all(subs.iter_mut());
        let mut stop = std::pin::pin!(stop);
        loop {
            let msg = tokio::select! {
                biased;
                () = &mut stop => break,
                m = all.next() => match m {
                    Some(m) => m,
                    None => return Ok(()),
                },
            };
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let ctx = self.restorer.restore(&msg).context;
            let own = ctx.routing_key().is_some_and(|k| keys.contains(k));
            if !own {
                self.answer(reply, NO).await;
                continue;
            }
            ctx.scope_with(|| handler(msg)).await;
            self.stats.handled.fetch_add(1, Ordering::Relaxed);
            self.answer(reply, OK).await;
        }
        drop(all);
        for mut s in subs {
            let _ = s.unsubscribe().await;
            // What was received before the server took the unsubscription in.
            while let Ok(Some(msg)) =
                tokio::time::timeout(Duration::from_millis(200), s.next()).await
            {
                if let Some(reply) = msg.reply {
                    self.answer(reply, NO).await;
                }
            }
        }
        let _ = self.client.flush().await;
        Ok(())
    }

    async fn answer(&self, reply: async_nats::Subject, what: &'static [u8]) {
        if let Err(e) = self.client.publish(reply, Bytes::from_static(what)).await {
            tracing::warn!(target: "threadline_route", error = %e, "answer to the baseline not sent");
        }
    }
}

async fn ack(msg: &async_nats::jetstream::Message) {
    if let Err(e) = msg.ack().await {
        tracing::warn!(target: "threadline_route", error = %e, "acknowledgement not sent; the message will be redelivered");
    }
}

fn source(subject: &str, e: &dyn std::fmt::Display) -> RuleError {
    RuleError::new(RuleErrorKind::Source, format!("subscribe {subject}: {e}"))
}
