//! [`NatsKvRules`]: rules in a NATS JetStream key-value bucket, watched.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv::{Operation, Store};
use futures_util::StreamExt;

use super::{join_errors, rules_from_entries};
use crate::error::{RuleError, RuleErrorKind};
use crate::router::{RuleSource, SourceSink};
use crate::rule::{Rule, RuleSpec};

/// Rules in a JetStream key-value bucket: one entry per rule, the key its id, the
/// value a JSON [`RuleSpec`]. The bucket is watched: a put or a delete reaches the
/// router as soon as NATS delivers it (after the history is read on start and after
/// each reconnect). An entry that does not parse keeps the rule it last gave and is
/// reported; `ttl_secs` counts from the entry's write time on the server, so a
/// developer's tool that puts its rule every few seconds (a heartbeat) stops receiving
/// traffic at most `ttl_secs` after its last put, whatever the clocks of the machines.
#[derive(Debug)]
pub struct NatsKvRules {
    store: Store,
    retry: Duration,
}

impl NatsKvRules {
    /// Rules from the bucket `store` (`jetstream.create_key_value(..)` or
    /// `get_key_value(..)`).
    pub fn new(store: Store) -> Self {
        NatsKvRules {
            store,
            retry: Duration::from_secs(1),
        }
    }

    /// Opens the bucket `name`, making it first when it does not exist (a file-backed
    /// stream `KV_<name>` keeping one revision per key). It makes the bucket's stream
    /// itself rather than calling `create_key_value`, which first asks for the
    /// account's info: async-nats 0.51 cannot read nats-server 2.9's answer to that.
    pub async fn bucket(
        js: &async_nats::jetstream::Context,
        name: &str,
    ) -> Result<Store, RuleError> {
        use async_nats::jetstream::stream;
        let err = |e: &dyn std::fmt::Display| {
            RuleError::new(RuleErrorKind::Source, format!("bucket {name:?}: {e}"))
        };
        if let Ok(store) = js.get_key_value(name).await {
            return Ok(store);
        }
        js.get_or_create_stream(stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            allow_direct: true,
            allow_rollup: true,
            deny_delete: true,
            discard: stream::DiscardPolicy::New,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| err(&e))?;
        js.get_key_value(name).await.map_err(|e| err(&e))
    }

    /// Writes `spec` under its id (a heartbeat: call it again before `ttl_secs`).
    pub async fn put(store: &Store, spec: &RuleSpec) -> Result<u64, RuleError> {
        spec.to_rule(Some(SystemTime::now()))?;
        let json = serde_json::to_vec(spec)
            .map_err(|e| RuleError::new(RuleErrorKind::InvalidRule, e.to_string()))?;
        store
            .put(&spec.id, json.into())
            .await
            .map_err(|e| RuleError::new(RuleErrorKind::Source, format!("put {:?}: {e}", spec.id)))
    }

    /// Removes the rule `id`.
    pub async fn remove(store: &Store, id: &str) -> Result<(), RuleError> {
        store
            .delete(id)
            .await
            .map_err(|e| RuleError::new(RuleErrorKind::Source, format!("delete {id:?}: {e}")))
    }

    async fn watch_once(
        &self,
        sink: &SourceSink,
        last_good: &mut BTreeMap<String, Rule>,
    ) -> Result<(), RuleError> {
        let source = |what: &str, e: &dyn std::fmt::Display| {
            RuleError::new(
                RuleErrorKind::Source,
                format!("bucket {}: {what}: {e}", self.store.name),
            )
        };
        let mut watch = self
            .store
            .watch_with_history(">")
            .await
            .map_err(|e| source("watch", &e))?;
        let mut stream = self.store.stream.clone();
        let empty = stream
            .info()
            .await
            .map_err(|e| source("stream info", &e))?
            .state
            .messages
            == 0;
        let mut entries: BTreeMap<String, (Vec<u8>, Option<SystemTime>)> = BTreeMap::new();
        if empty {
            apply(sink, &entries, last_good);
        }
        while let Some(entry) = watch.next().await {
            let entry = entry.map_err(|e| source("watch", &e))?;
            match entry.operation {
                Operation::Put => {
                    let nanos = entry.created.unix_timestamp_nanos();
                    let written = u64::try_from(nanos)
                        .ok()
                        .map(|n| UNIX_EPOCH + Duration::from_nanos(n));
                    entries.insert(entry.key, (entry.value.to_vec(), written));
                }
                Operation::Delete | Operation::Purge => {
                    entries.remove(&entry.key);
                }
            }
            // Applied once the history is read, then on every change.
            if entry.delta == 0 {
                apply(sink, &entries, last_good);
            }
            if sink.is_closed() {
                return Ok(());
            }
        }
        Err(source("watch", &"ended"))
    }
}

fn apply(
    sink: &SourceSink,
    entries: &BTreeMap<String, (Vec<u8>, Option<SystemTime>)>,
    last_good: &mut BTreeMap<String, Rule>,
) {
    let (rules, errors) = rules_from_entries(entries, last_good);
    sink.replace(rules);
    if let Some(e) = join_errors(errors) {
        sink.error(e);
    }
}

impl RuleSource for NatsKvRules {
    fn name(&self) -> String {
        format!("nats kv {}", self.store.name)
    }

    fn run(self: Box<Self>, sink: SourceSink) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut last_good = BTreeMap::new();
            while !sink.is_closed() {
                if let Err(e) = self.watch_once(&sink, &mut last_good).await {
                    sink.error(e);
                }
                tokio::time::sleep(self.retry).await;
            }
        })
    }
}
