//! Redis Streams: a stream named after the queue, read by the consumer group
//! `workers`; jobs are added by one atomic script that also records the order's
//! idempotency key.
//!
//! The script answers the id of the entry it added, or the id an earlier attempt with
//! the same key added (a duplicate: nothing is added twice within [`KEY_WINDOW`]), or
//! an error when the stream holds [`MAX_QUEUED`] jobs. Its reply is the confirmation:
//! accepted. A Redis error reply is a refusal; no connection is a refusal without
//! sending; a connection that breaks after the script was sent leaves the outcome
//! unknown (a retry with the same key settles it).
//!
//! The worker reads with `XREADGROUP`, acknowledges (`XACK`) and removes (`XDEL`) each
//! job after the parcel is packed. After a reconnect it first reads the jobs it was
//! given but had not acknowledged; every 30 s it claims jobs another consumer left
//! unacknowledged for a minute (a run that was killed). Jobs not read at shutdown stay
//! in the stream for the next start. Whether they survive a restart of Redis itself
//! depends on Redis persisting its data: the demo warns at start when it does not.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use threadline::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::super::ledger::KEY_WINDOW;
use super::restore::Restore;
use super::{CONFIRM, Env, Health, Job, MAX_QUEUED, NETWORK, Pool, Published, pause, ship};

const GROUP: &str = "workers";
/// How long one read waits for jobs, in milliseconds.
const BLOCK_MS: usize = 500;
/// How often jobs left by a dead consumer are claimed.
const CLAIM_EVERY: Duration = Duration::from_secs(30);
/// How long a job must have been unacknowledged before it is claimed, in milliseconds.
const CLAIM_IDLE_MS: u64 = 60_000;

/// Adds a job unless its key was seen: `KEYS[1]` stream, `KEYS[2]` the key's marker;
/// `ARGV[1]` the marker's lifetime in seconds, `ARGV[2]` the stream's bound, then the
/// entry's fields and values.
const ADD: &str = r"
local seen = redis.call('GET', KEYS[2])
if seen then return {seen, 1} end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[2]) then
  return redis.error_reply('FULL the shipping queue is full')
end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[2], id, 'EX', tonumber(ARGV[1]))
return {id, 0}
";

/// The connection shared by the publisher and the worker's acknowledgements. `None`
/// while it is down; the worker reconnects it.
struct Link {
    publish: RwLock<Option<MultiplexedConnection>>,
    health: Health,
}

impl Link {
    fn get(&self) -> Option<MultiplexedConnection> {
        self.publish
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, c: Option<MultiplexedConnection>) {
        *self.publish.write().unwrap_or_else(PoisonError::into_inner) = c;
    }

    /// A command failed on the connection: it is dropped and reconnected.
    fn broken(&self, why: &str) {
        self.set(None);
        self.health.down(why);
    }
}

pub(super) struct Publisher {
    link: Arc<Link>,
    stream: String,
}

fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

impl Publisher {
    pub(super) async fn publish(&self, ctx: &Context, job: &Job) -> Published {
        let Some(mut con) = self.link.get() else {
            return Published::refused("the Redis connection is down");
        };
        let Ok(payload) = serde_json::to_string(job) else {
            return Published::refused("the job could not be serialised");
        };
        let mut fields: Vec<(String, String)> = Vec::new();
        let call = ctx.inject_into(&mut fields);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ADD)
            .arg(2)
            .arg(&self.stream)
            .arg(format!("{}:key:{}", self.stream, job.key))
            .arg(KEY_WINDOW.as_secs())
            .arg(MAX_QUEUED)
            .arg("payload")
            .arg(payload);
        for (k, v) in &fields {
            cmd.arg(k).arg(v);
        }
        let reply: Result<Result<(String, i64), redis::RedisError>, _> =
            tokio::time::timeout(CONFIRM, cmd.query_async(&mut con)).await;
        match reply {
            Ok(Ok((_, duplicate))) => Published::Accepted {
                call,
                duplicate: duplicate == 1,
            },
            Ok(Err(e)) if is_connection_error(&e) => {
                self.link.broken(&e.to_string());
                Published::unknown(format!("the Redis connection broke: {e}"))
            }
            // An error reply: the script did not add the job.
            Ok(Err(e)) => Published::refused(format!("Redis refused the job: {e}")),
            Err(_) => Published::unknown("Redis did not answer in time"),
        }
    }
}

async fn open(
    client: &redis::Client,
    response: Duration,
) -> redis::RedisResult<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(NETWORK))
        .set_response_timeout(Some(response));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Opens both connections and makes sure the group exists.
async fn session(
    client: &redis::Client,
    stream: &str,
) -> redis::RedisResult<(MultiplexedConnection, MultiplexedConnection)> {
    let mut publish = open(client, CONFIRM).await?;
    let reader = open(client, NETWORK).await?;
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut publish)
        .await;
    match created {
        Err(e) if e.code() != Some("BUSYGROUP") => return Err(e),
        _ => {}
    }
    Ok((publish, reader))
}

/// Warns when Redis keeps nothing across its own restart.
async fn warn_if_not_persistent(con: &mut MultiplexedConnection, queue: &str) {
    let get = |what: &'static str| {
        let mut con = con.clone();
        async move {
            let v: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(what)
                .query_async(&mut con)
                .await;
            v.ok().and_then(|v| v.get(1).cloned())
        }
    };
    if let (Some(aof), Some(save)) = (get("appendonly").await, get("save").await)
        && aof == "no"
        && save.trim().is_empty()
    {
        tracing::warn!(
            queue,
            "Redis persists nothing (appendonly no, no save points): jobs waiting in the stream are lost if Redis restarts"
        );
    }
}

pub(super) async fn start(
    url: &str,
    queue: &str,
    env: Arc<Env>,
    restore: Restore,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<(Publisher, JoinHandle<()>)> {
    let client = redis::Client::open(url)?;
    let (mut publish, reader) = tokio::time::timeout(NETWORK, session(&client, queue))
        .await
        .map_err(|_| anyhow::anyhow!("Redis connect timed out"))??;
    warn_if_not_persistent(&mut publish, env.health.queue()).await;
    let link = Arc::new(Link {
        publish: RwLock::new(Some(publish)),
        health: env.health.clone(),
    });
    let stream = queue.to_owned();
    let consumer = format!("worker-{}", env.ledger.run());
    let worker_link = link.clone();
    let task = tokio::spawn(async move {
        let link = worker_link;
        let mut pool = Pool::new(&env);
        let in_hand: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut reader = Some(reader);
        let mut backoff = Duration::from_millis(100);
        // Some(cursor): reading our own unacknowledged jobs; None: new ones.
        let mut pending: Option<String> = Some("0-0".to_owned());
        let mut last_claim: Option<Instant> = None;
        while !*stopped.borrow() {
            let Some(con) = reader.as_mut().filter(|_| link.get().is_some()) else {
                if !pause(&mut stopped, &mut backoff).await {
                    break;
                }
                match tokio::time::timeout(NETWORK, session(&client, &stream)).await {
                    Ok(Ok((p, r))) => {
                        link.set(Some(p));
                        reader = Some(r);
                        pending = Some("0-0".to_owned());
                        env.health.up();
                        backoff = Duration::from_millis(100);
                    }
                    Ok(Err(e)) => link.broken(&e.to_string()),
                    Err(_) => link.broken("connecting timed out"),
                }
                continue;
            };
            if last_claim.is_none_or(|t| t.elapsed() >= CLAIM_EVERY) {
                last_claim = Some(Instant::now());
                let claimed: redis::RedisResult<redis::Value> = redis::cmd("XAUTOCLAIM")
                    .arg(&stream)
                    .arg(GROUP)
                    .arg(&consumer)
                    .arg(CLAIM_IDLE_MS)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(1000)
                    .arg("JUSTID")
                    .query_async(con)
                    .await;
                if claimed.is_ok() && pending.is_none() {
                    pending = Some("0-0".to_owned());
                }
            }
            let first = tokio::select! {
                biased;
                _ = stopped.wait_for(|s| *s) => break,
                p = pool.permit() => p,
            };
            let want = 1 + pool.free();
            let from = pending.clone().unwrap_or_else(|| ">".to_owned());
            let opts = StreamReadOptions::default()
                .group(GROUP, &consumer)
                .count(want)
                .block(BLOCK_MS);
            let reply: redis::RedisResult<Option<StreamReadReply>> =
                redis::AsyncCommands::xread_options(
                    con,
                    &[stream.as_str()],
                    &[from.as_str()],
                    &opts,
                )
                .await;
            let entries: Vec<_> = match reply {
                Ok(r) => r
                    .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
                    .unwrap_or_default(),
                Err(e) => {
                    drop(first);
                    if is_connection_error(&e) {
                        reader = None;
                        link.broken(&e.to_string());
                    } else {
                        tracing::warn!(error = %e, "Redis read failed; retrying");
                        if !pause(&mut stopped, &mut backoff).await {
                            break;
                        }
                    }
                    continue;
                }
            };
            if pending.is_some() {
                // Our own unacknowledged jobs, oldest first, until there are none.
                pending = entries.last().map(|e| e.id.clone());
            }
            let mut first = Some(first);
            for entry in entries {
                if !in_hand
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(entry.id.clone())
                {
                    continue;
                }
                let permit = match first.take() {
                    Some(p) => p,
                    None => pool.permit().await,
                };
                let ctx = restore.redis(&entry);
                let (env, link, stream, in_hand) =
                    (env.clone(), link.clone(), stream.clone(), in_hand.clone());
                pool.spawn(permit, async move {
                    let payload: Vec<u8> = entry.get("payload").unwrap_or_default();
                    ctx.scope(ship(&env, &payload)).await;
                    if let Some(mut con) = link.get() {
                        let mut pipe = redis::pipe();
                        pipe.cmd("XACK")
                            .arg(&stream)
                            .arg(GROUP)
                            .arg(&entry.id)
                            .ignore();
                        pipe.cmd("XDEL").arg(&stream).arg(&entry.id).ignore();
                        let done: redis::RedisResult<()> = pipe.query_async(&mut con).await;
                        if let Err(e) = done {
                            // Read again after the reconnect; the ledger keeps it
                            // from shipping twice.
                            tracing::debug!(error = %e, "job acknowledgement failed");
                        }
                    }
                    in_hand
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&entry.id);
                });
            }
        }
        pool.finish().await;
        // Leave the group tidy when nothing is left unacknowledged under our name.
        if let Some(mut con) = link.get() {
            let mine: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
                .arg(&stream)
                .arg(GROUP)
                .arg("-")
                .arg("+")
                .arg(1)
                .arg(&consumer)
                .query_async(&mut con)
                .await;
            if matches!(&mine, Ok(redis::Value::Array(v)) if v.is_empty()) {
                let _: redis::RedisResult<i64> = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&stream)
                    .arg(GROUP)
                    .arg(&consumer)
                    .query_async(&mut con)
                    .await;
            }
        }
    });
    Ok((
        Publisher {
            link,
            stream: queue.to_owned(),
        },
        task,
    ))
}
