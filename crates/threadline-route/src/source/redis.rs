//! [`RedisRules`]: rules in a Redis hash, reloaded on pub/sub invalidation.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;

use super::{join_errors, rules_from_entries};
use crate::error::{RuleError, RuleErrorKind};
use crate::router::{RuleSource, SourceSink};
use crate::rule::{Rule, RuleSpec};

/// Rules in a Redis hash: one field per rule, the field its id, the value a JSON
/// [`RuleSpec`]. The source subscribes to an invalidation channel (default
/// `<hash>:changed`) and reloads the whole hash on every message there, and every
/// `resync` (default 30 s) in case a message was lost (pub/sub does not keep
/// messages for a subscriber that is reconnecting). Writers change the hash and then
/// publish: [`RedisRules::put`], [`RedisRules::remove`]. Redis does not record when a
/// field was written, so rules here expire by `expires_at` (the writer's clock), not
/// `ttl_secs`.
#[derive(Debug)]
pub struct RedisRules {
    client: redis::Client,
    hash: String,
    channel: String,
    resync: Duration,
    retry: Duration,
}

impl RedisRules {
    /// Rules from the hash `hash`, invalidated on `<hash>:changed`.
    pub fn new(client: redis::Client, hash: impl Into<String>) -> Self {
        let hash = hash.into();
        RedisRules {
            channel: format!("{hash}:changed"),
            client,
            hash,
            resync: Duration::from_secs(30),
            retry: Duration::from_secs(1),
        }
    }

    /// The invalidation channel (default `<hash>:changed`).
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// How often the hash is reloaded without a message (default 30 s).
    pub fn resync(mut self, every: Duration) -> Self {
        self.resync = every.max(Duration::from_millis(100));
        self
    }

    /// Writes `spec` into `hash` under its id and publishes on `<hash>:changed`.
    pub async fn put<C: redis::aio::ConnectionLike + Send>(
        con: &mut C,
        hash: &str,
        spec: &RuleSpec,
    ) -> Result<(), RuleError> {
        spec.to_rule(None)?;
        let json = serde_json::to_string(spec)
            .map_err(|e| RuleError::new(RuleErrorKind::InvalidRule, e.to_string()))?;
        let err = |e: redis::RedisError| {
            RuleError::new(RuleErrorKind::Source, format!("hash {hash}: {e}"))
        };
        let _: () = redis::pipe()
            .atomic()
            .hset(hash, &spec.id, json)
            .ignore()
            .publish(format!("{hash}:changed"), &spec.id)
            .ignore()
            .query_async(con)
            .await
            .map_err(err)?;
        Ok(())
    }

    /// Removes rule `id` from `hash` and publishes on `<hash>:changed`.
    pub async fn remove<C: redis::aio::ConnectionLike + Send>(
        con: &mut C,
        hash: &str,
        id: &str,
    ) -> Result<(), RuleError> {
        let err = |e: redis::RedisError| {
            RuleError::new(RuleErrorKind::Source, format!("hash {hash}: {e}"))
        };
        let _: () = redis::pipe()
            .atomic()
            .hdel(hash, id)
            .ignore()
            .publish(format!("{hash}:changed"), id)
            .ignore()
            .query_async(con)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn session(
        &self,
        sink: &SourceSink,
        last_good: &mut BTreeMap<String, Rule>,
    ) -> Result<(), RuleError> {
        let err = |what: &str, e: redis::RedisError| {
            RuleError::new(
                RuleErrorKind::Source,
                format!("hash {}: {what}: {e}", self.hash),
            )
        };
        // Subscribed before the first load: no change between them is missed.
        let mut pubsub = self
            .client
            .get_async_pubsub()
            .await
            .map_err(|e| err("subscribe", e))?;
        pubsub
            .subscribe(&self.channel)
            .await
            .map_err(|e| err("subscribe", e))?;
        let mut con = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| err("connect", e))?;
        let mut messages = pubsub.on_message();
        let mut tick = tokio::time::interval(self.resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let fields: HashMap<String, Vec<u8>> = con
                .hgetall(&self.hash)
                .await
                .map_err(|e| err("hgetall", e))?;
            let entries = fields.into_iter().map(|(k, v)| (k, (v, None))).collect();
            let (rules, errors) = rules_from_entries(&entries, last_good);
            sink.replace(rules);
            if let Some(e) = join_errors(errors) {
                sink.error(e);
            }
            if sink.is_closed() {
                return Ok(());
            }
            tokio::select! {
                m = messages.next() => {
                    if m.is_none() {
                        return Err(RuleError::new(RuleErrorKind::Source, format!("hash {}: subscription ended", self.hash)));
                    }
                }
                _ = tick.tick() => {}
            }
        }
    }
}

impl RuleSource for RedisRules {
    fn name(&self) -> String {
        format!("redis hash {}", self.hash)
    }

    fn run(self: Box<Self>, sink: SourceSink) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut last_good = BTreeMap::new();
            while !sink.is_closed() {
                if let Err(e) = self.session(&sink, &mut last_good).await {
                    sink.error(e);
                }
                tokio::time::sleep(self.retry).await;
            }
        })
    }
}
