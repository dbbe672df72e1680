//! Selective consumption on Redis Streams.
//!
//! Baseline and sandboxes are consumers of the **same consumer group**; an entry
//! changes hands by moving it in the group's pending list, never by copying it, so
//! there is one copy of each message and one decision point:
//!
//! - A **sandbox** registers each of its keys under `<stream>:tl-route:<group>:<key>`
//!   (its consumer name, with a lease it renews), reads only its own pending entries
//!   (`XREADGROUP … 0`), handles each and `XACK`s it.
//! - The **baseline** reads new entries (`XREADGROUP … >`). For an entry whose key a
//!   live rule claims, one script, atomic on the server, looks the key's registration
//!   up and, when a sandbox holds it, `XCLAIM`s the entry to that sandbox; otherwise
//!   (no sandbox, or its lease ran out) the baseline handles the entry itself. Either
//!   way the baseline acknowledges only what it handled.
//! - A sandbox that stops (the `stop` future of [`SelectiveRedis::sandbox`]) first
//!   removes its registrations (from then on no entry is moved to it), then hands
//!   every entry still pending for it back: one script adds a copy at the end of the
//!   stream and acknowledges the original, so the baseline reads it as a new entry
//!   (a new id, later in the stream); last it deletes its consumer from the group.
//! - A sandbox that disappears without stopping: its registrations expire with their
//!   lease, and the baseline periodically claims (`XAUTOCLAIM`) entries idle longer
//!   than the lease, whoever holds them, and decides them again.
//!
//! While the table is stable each entry is handled by exactly one side; nothing is
//! acknowledged before it is handled, so nothing is lost. The duplicate window: a side
//! that handled an entry and died (or lost its connection) before its `XACK`, and a
//! sandbox whose handler keeps one entry longer than the lease (the baseline claims it
//! back and handles it too): at least once, as any consumer group.
//!
//! Entries are read as [`threadline_redis::Entry`] (fields as sent, context under the
//! `tl:` prefix). Use a connection of its own for each side: the baseline blocks on it
//! for up to 100 ms at a time, under the multiplexed connection's default response
//! timeout; a read that times out anyway is followed by a read of the baseline's own
//! pending entries, so what the server delivered meanwhile is not left behind.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, Value};
use threadline::{Restorer, RoutingKey};
use threadline_redis::{Entry, ReadReply};

use super::{SelectStats, Selector};
use crate::error::{RuleError, RuleErrorKind};

/// Moves entry ARGV[2] to the consumer registered under KEYS[2], if any.
const RELAY: &str = r"
local c = redis.call('GET', KEYS[2])
if not c then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], c, 0, ARGV[2], 'JUSTID')
return 1
";

/// Adds a copy of each entry ARGV[2..] at the end of the stream and acknowledges the
/// original, in one step.
const HAND_BACK: &str = r"
for i = 2, #ARGV do
  local e = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if e[1] then redis.call('XADD', KEYS[1], '*', unpack(e[1][2])) end
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
end
return #ARGV - 1
";

/// Renews (or takes again) the registration KEYS[1..] for consumer ARGV[1].
const RENEW: &str = r"
for i = 1, #KEYS do
  local c = redis.call('GET', KEYS[i])
  if (not c) or c == ARGV[1] then redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2]) end
end
return 1
";

/// Removes the registrations KEYS[1..] that are still consumer ARGV[1]'s.
const UNREGISTER: &str = r"
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 1
";

/// One side of selective consumption of a stream by a consumer group:
/// [`SelectiveRedis::baseline`] or [`SelectiveRedis::sandbox`]. See the
/// [module docs](self).
#[derive(Clone, Debug)]
pub struct SelectiveRedis {
    stream: String,
    group: String,
    lease: Duration,
    poll: Duration,
    block: Duration,
    count: usize,
    restorer: Arc<Restorer>,
    stats: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    handled: AtomicU64,
    relayed: AtomicU64,
    fell_back: AtomicU64,
}

impl SelectiveRedis {
    /// Consumption of `stream` by `group` (which must exist: `XGROUP CREATE`),
    /// entries restored with `restorer` (its policy reads the routing key; its trust
    /// decides whether the entries may set one).
    pub fn new(stream: impl Into<String>, group: impl Into<String>, restorer: Restorer) -> Self {
        SelectiveRedis {
            stream: stream.into(),
            group: group.into(),
            lease: Duration::from_secs(10),
            poll: Duration::from_millis(20),
            block: Duration::from_millis(100),
            count: 100,
            restorer: Arc::new(restorer),
            stats: Arc::default(),
        }
    }

    /// How long a sandbox's registration lives without renewal, and how long an entry
    /// may stay pending with one consumer before the baseline claims it back (default
    /// 10 s). A sandbox renews at a third of it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    /// How often a sandbox looks for entries moved to it (default 20 ms).
    pub fn poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The key that registers `key`'s sandbox.
    pub fn registration(&self, key: &RoutingKey) -> String {
        format!("{}:tl-route:{}:{key}", self.stream, self.group)
    }

    /// The consumer name of the sandbox of `keys`.
    pub fn sandbox_consumer(keys: &[RoutingKey]) -> String {
        let names: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
        format!("tl-sandbox:{}", names.join(","))
    }

    /// What this side did so far.
    pub fn stats(&self) -> SelectStats {
        SelectStats {
            handled: self.stats.handled.load(Ordering::Relaxed),
            relayed: self.stats.relayed.load(Ordering::Relaxed),
            fell_back: self.stats.fell_back.load(Ordering::Relaxed),
        }
    }

    /// Consumes the stream as the group's consumer `consumer`, the baseline of
    /// `selector`'s service: runs `handler` (inside the entry's restored context) for
    /// every entry no live rule claims, or whose sandbox is not registered, and
    /// `XACK`s it after; moves the others to their sandbox. Entries left pending with
    /// this consumer by an earlier run are decided first; every lease, entries idle
    /// longer than the lease are claimed back. Returns on a connection error
    /// ([`RuleErrorKind::Source`]).
    pub async fn baseline<F, Fut>(
        &self,
        conn: &mut MultiplexedConnection,
        consumer: &str,
        selector: &Selector,
        mut handler: F,
    ) -> Result<(), RuleError>
    where
        F: FnMut(Entry) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut from = "0".to_owned();
        let mut next_reclaim = tokio::time::Instant::now() + self.lease;
        loop {
            let entries = if tokio::time::Instant::now() >= next_reclaim {
                next_reclaim = tokio::time::Instant::now() + self.lease;
                self.reclaim(conn, consumer).await?
            } else {
                let mut cmd = redis::cmd("XREADGROUP");
                cmd.arg("GROUP").arg(&self.group).arg(consumer);
                cmd.arg("COUNT").arg(self.count);
                if from == ">" {
                    cmd.arg("BLOCK").arg(self.block.as_millis() as u64);
                }
                cmd.arg("STREAMS").arg(&self.stream).arg(&from);
                let reply: ReadReply = match cmd.query_async(conn).await {
                    Ok(r) => r,
                    // The client gave up waiting (its response timeout): whatever the
                    // server delivered meanwhile is pending with this consumer, so
                    // read the pending entries again.
                    Err(e) if e.is_timeout() => {
                        from = "0".to_owned();
                        continue;
                    }
                    Err(e) => return Err(self.error(&e)),
                };
                let entries: Vec<Entry> = reply.into_entries().map(|(_, e)| e).collect();
                // Our own pending entries first (an earlier run's), from after the
                // last one decided; then new ones.
                if from != ">" {
                    from = match entries.last() {
                        Some(e) => e.id.clone(),
                        None => ">".to_owned(),
                    };
                }
                entries
            };
            for entry in entries {
                let id = entry.id.clone();
                if !entry.fields.is_empty() {
                    let ctx = self.restorer.restore(&entry).context;
                    if let Some(key) = ctx.routing_key().filter(|k| selector.claimed(Some(k))) {
                        if self.relay(conn, key, &id).await {
                            self.stats.relayed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        self.stats.fell_back.fetch_add(1, Ordering::Relaxed);
                    }
                    ctx.scope_with(|| handler(entry)).await;
                    self.stats.handled.fetch_add(1, Ordering::Relaxed);
                }
                // A pending entry already deleted from the stream has nothing to handle.
                self.ack(conn, &id).await;
            }
        }
    }

    /// Entries idle longer than the lease, with whichever consumer, now this one's.
    async fn reclaim(
        &self,
        conn: &mut MultiplexedConnection,
        consumer: &str,
    ) -> Result<Vec<Entry>, RuleError> {
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(consumer)
            .arg(self.lease.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(self.count)
            .query_async(conn)
            .await
            .map_err(|e| self.error(&e))?;
        let Value::Array(parts) = reply else {
            return Ok(Vec::new());
        };
        match parts.into_iter().nth(1) {
            Some(v @ Value::Array(_)) => Vec::<Entry>::from_redis_value(v).map_err(|e| {
                RuleError::new(RuleErrorKind::Source, format!("XAUTOCLAIM reply: {e}"))
            }),
            _ => Ok(Vec::new()),
        }
    }

    /// Whether the entry was moved to the key's registered sandbox.
    async fn relay(&self, conn: &mut MultiplexedConnection, key: &RoutingKey, id: &str) -> bool {
        let moved: Result<i64, _> = redis::cmd("EVAL")
            .arg(RELAY)
            .arg(2)
            .arg(&self.stream)
            .arg(self.registration(key))
            .arg(&self.group)
            .arg(id)
            .query_async(conn)
            .await;
        match moved {
            Ok(n) => n == 1,
            Err(e) => {
                tracing::warn!(target: "threadline_route", key = %key, error = %e, "move to the sandbox failed; handled by the baseline");
                false
            }
        }
    }

    async fn ack(&self, conn: &mut MultiplexedConnection, id: &str) {
        let acked: Result<i64, _> = redis::cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(id)
            .query_async(conn)
            .await;
        if let Err(e) = acked {
            tracing::warn!(target: "threadline_route", error = %e, "XACK failed; the entry stays pending and will be claimed again");
        }
    }

    /// Consumes the entries moved to the sandbox of `keys`: registers the keys, runs
    /// `handler` (inside the entry's restored context) and `XACK`s, until `stop`
    /// completes; then unregisters, hands what is still pending for it back to the
    /// stream and deletes its consumer from the group.
    pub async fn sandbox<F, Fut, S>(
        &self,
        conn: &mut MultiplexedConnection,
        keys: &[RoutingKey],
        mut handler: F,
        stop: S,
    ) -> Result<(), RuleError>
    where
        F: FnMut(Entry) -> Fut,
        Fut: Future<Output = ()>,
        S: Future<Output = ()>,
    {
        let consumer = Self::sandbox_consumer(keys);
        let registrations: Vec<String> = keys.iter().map(|k| self.registration(k)).collect();
        let renew_every = self.lease / 3;
        let mut next_renew = tokio::time::Instant::now();
        let mut stop = std::pin::pin!(stop);
        let mut stopping = false;
        while !stopping {
            if tokio::time::Instant::now() >= next_renew {
                self.script(
                    conn,
                    RENEW,
                    &registrations,
                    &[
                        consumer.as_str(),
                        self.lease.as_millis().to_string().as_str(),
                    ],
                )
                .await?;
                next_renew = tokio::time::Instant::now() + renew_every;
            }
            let mine = self.pending_for(conn, &consumer).await?;
            for entry in mine {
                let id = entry.id.clone();
                let ctx = self.restorer.restore(&entry).context;
                if entry.fields.is_empty() {
                    self.ack(conn, &id).await;
                } else if ctx.routing_key().is_some_and(|k| keys.contains(k)) {
                    ctx.scope_with(|| handler(entry)).await;
                    self.stats.handled.fetch_add(1, Ordering::Relaxed);
                    self.ack(conn, &id).await;
                } else {
                    self.script(
                        conn,
                        HAND_BACK,
                        std::slice::from_ref(&self.stream),
                        &[self.group.as_str(), id.as_str()],
                    )
                    .await?;
                }
            }
            tokio::select! {
                biased;
                () = &mut stop => stopping = true,
                () = tokio::time::sleep(self.poll) => {}
            }
        }
        // From here on nothing is moved to this consumer; what it still holds goes back.
        self.script(conn, UNREGISTER, &registrations, &[consumer.as_str()])
            .await?;
        loop {
            let mine = self.pending_for(conn, &consumer).await?;
            if mine.is_empty() {
                break;
            }
            let mut args: Vec<&str> = vec![self.group.as_str()];
            args.extend(mine.iter().map(|e| e.id.as_str()));
            self.script(conn, HAND_BACK, std::slice::from_ref(&self.stream), &args)
                .await?;
        }
        let _: i64 = redis::cmd("XGROUP")
            .arg("DELCONSUMER")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&consumer)
            .query_async(conn)
            .await
            .map_err(|e| self.error(&e))?;
        Ok(())
    }

    /// The entries pending with `consumer` (moved to it), oldest first.
    async fn pending_for(
        &self,
        conn: &mut MultiplexedConnection,
        consumer: &str,
    ) -> Result<Vec<Entry>, RuleError> {
        let reply: ReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(consumer)
            .arg("COUNT")
            .arg(self.count)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg("0")
            .query_async(conn)
            .await
            .map_err(|e| self.error(&e))?;
        Ok(reply.into_entries().map(|(_, e)| e).collect())
    }

    async fn script(
        &self,
        conn: &mut MultiplexedConnection,
        script: &str,
        keys: &[String],
        args: &[&str],
    ) -> Result<(), RuleError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
        let _: Value = cmd.query_async(conn).await.map_err(|e| self.error(&e))?;
        Ok(())
    }

    fn error(&self, e: &redis::RedisError) -> RuleError {
        RuleError::new(
            RuleErrorKind::Source,
            format!("stream {} group {}: {e}", self.stream, self.group),
        )
    }
}
