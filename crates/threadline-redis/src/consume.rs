//! Consumer side: stream entries as [`threadline::restore::Message`], so one
//! [`threadline::Restorer`] restores their context around the handler.
//!
//! Read entries as [`Entry`] (an `XREAD`/`XREADGROUP` reply as [`ReadReply`], an
//! `XRANGE` or `XCLAIM` reply as `Vec<Entry>`): it keeps the fields as the server sent
//! them, so a context field written twice is seen as a duplicate. redis-rs's own
//! `StreamId` works too, but its field map has already merged such duplicates.

use std::collections::HashMap;

use redis::streams::StreamId;
use redis::{FromRedisValue, ParsingError, Value};
use threadline::Policy;
use threadline::restore::Message;

use crate::carrier::{DEFAULT_PREFIX, StreamFields};

/// The marker of this crate's [`Message`] implementations. It is inferred; callers
/// never name it.
#[derive(Clone, Copy, Debug)]
pub enum Redis {}

/// One stream entry with its fields in the order the server sent them, repeated
/// fields included.
///
/// ```
/// use redis::{FromRedisValue, Value};
/// use threadline::{HeaderRule, Policy, Restorer, Trust};
/// use threadline_redis::Entry;
///
/// let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
/// // What XRANGE answers for one entry whose producer wrote the tenant twice.
/// let reply = Value::Array(vec![
///     bulk("1-0"),
///     Value::Array(vec![
///         bulk("payload"), bulk("{}"),
///         bulk("tl:x-tenant-id"), bulk("acme"),
///         bulk("tl:x-tenant-id"), bulk("evil"),
///     ]),
/// ]);
/// let entry = Entry::from_redis_value(reply).unwrap();
/// assert_eq!(entry.get("payload"), Some(&bulk("{}")));
///
/// let policy = Policy::builder().header("x-tenant-id").build().unwrap();
/// let captured = Restorer::new(policy).trust(Trust::Trusted).restore(&entry);
/// assert_eq!(captured.context.get("x-tenant-id"), None); // a duplicate: neither is believed
/// assert_eq!(captured.report.len(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Entry {
    /// The entry id (`1700000000000-0`).
    pub id: String,
    /// The fields, in order; a field may appear more than once.
    pub fields: Vec<(String, Value)>,
}

impl Entry {
    /// An entry with this id and these fields (in order).
    pub fn new(id: impl Into<String>, fields: Vec<(String, Value)>) -> Self {
        Entry {
            id: id.into(),
            fields,
        }
    }

    /// The first value of the field `name` (exact name).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Reads the context from fields under `prefix` instead of [`DEFAULT_PREFIX`]; `""`
    /// for producers that write plain header names (`traceparent`,
    /// `x-correlation-id`), as a producer in another language may. See [`WithPrefix`].
    pub fn with_prefix(self, prefix: &'static str) -> WithPrefix<Entry> {
        WithPrefix {
            entry: self,
            prefix,
        }
    }
}

fn text(v: Value) -> Result<String, ParsingError> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).map_err(Into::into),
        Value::SimpleString(s) => Ok(s),
        Value::VerbatimString { text, .. } => Ok(text),
        other => Err(format!("a stream field name or id, not {other:?}").into()),
    }
}

impl FromRedisValue for Entry {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let Value::Array(parts) = v else {
            return Err("a stream entry is an array of its id and its fields".into());
        };
        let mut parts = parts.into_iter();
        let (Some(id), Some(fields), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err("a stream entry is an array of its id and its fields".into());
        };
        let id = text(id)?;
        let flat = match fields {
            Value::Array(flat) => flat,
            // RESP3 servers may answer a map; keep its pairs in order.
            Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            Value::Nil => Vec::new(),
            other => return Err(format!("stream entry fields, not {other:?}").into()),
        };
        if flat.len() % 2 != 0 {
            return Err("stream entry fields come in name/value pairs".into());
        }
        let mut fields = Vec::with_capacity(flat.len() / 2);
        let mut flat = flat.into_iter();
        while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
            fields.push((text(k)?, v));
        }
        Ok(Entry { id, fields })
    }
}

/// The entries of one stream in an `XREAD` / `XREADGROUP` reply.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct StreamEntries {
    /// The stream's key.
    pub key: String,
    /// Its entries, in order.
    pub entries: Vec<Entry>,
}

/// An `XREAD` / `XREADGROUP` reply that keeps each entry's fields as sent (see
/// [`Entry`]); `Nil` (nothing new before the block timed out) reads as no streams.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ReadReply {
    /// One item per stream that had entries.
    pub streams: Vec<StreamEntries>,
}

impl ReadReply {
    /// Every entry of every stream, with its stream's key.
    pub fn into_entries(self) -> impl Iterator<Item = (String, Entry)> {
        self.streams
            .into_iter()
            .flat_map(|s| s.entries.into_iter().map(move |e| (s.key.clone(), e)))
    }
}

impl FromRedisValue for ReadReply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let pairs: Vec<(Value, Value)> = match v {
            Value::Nil => return Ok(ReadReply::default()),
            Value::Map(pairs) => pairs,
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::Array(kv) if kv.len() == 2 => {
                        let mut kv = kv.into_iter();
                        match (kv.next(), kv.next()) {
                            (Some(k), Some(v)) => Ok((k, v)),
                            _ => Err(ParsingError::from("a stream and its entries")),
                        }
                    }
                    _ => Err(ParsingError::from("a stream and its entries")),
                })
                .collect::<Result<_, _>>()?,
            other => return Err(format!("an XREAD reply, not {other:?}").into()),
        };
        let mut streams = Vec::with_capacity(pairs.len());
        for (key, entries) in pairs {
            let entries = match entries {
                Value::Nil => Vec::new(),
                v => Vec::<Entry>::from_redis_value(v)?,
            };
            streams.push(StreamEntries {
                key: text(key)?,
                entries,
            });
        }
        Ok(ReadReply { streams })
    }
}

/// A stream entry whose context fields are under `prefix` rather than
/// [`DEFAULT_PREFIX`]: the one setting for producers that write plain header names
/// (`prefix = ""`: `traceparent`, `x-correlation-id`, … as fields of the entry).
///
/// With plain names, every field the policy lists is read as context, so keep payload
/// fields from using header names (and do not combine it with "capture all").
///
/// ```
/// use redis::Value;
/// use threadline::{Policy, Restorer};
/// use threadline_redis::Entry;
///
/// let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
/// let entry = Entry::new(
///     "1-0",
///     vec![
///         ("x-correlation-id".into(), bulk("order-42")),
///         ("payload".into(), bulk("{}")),
///     ],
/// );
/// let ctx = Restorer::new(Policy::default()).restore(&entry.with_prefix("")).context;
/// assert_eq!(ctx.correlation_id().unwrap().as_str(), "order-42");
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct WithPrefix<E> {
    /// The entry.
    pub entry: E,
    /// The prefix of its context fields.
    pub prefix: &'static str,
}

impl<E> std::ops::Deref for WithPrefix<E> {
    type Target = E;

    fn deref(&self) -> &E {
        &self.entry
    }
}

/// An entry type this crate reads fields from: [`Entry`], redis-rs's `StreamId`, a
/// field map.
pub trait StreamEntry {
    /// The entry's fields under `prefix`.
    fn fields_under<'a>(&'a self, prefix: &'a str) -> StreamFields<'a>;
}

impl StreamEntry for Entry {
    fn fields_under<'a>(&'a self, prefix: &'a str) -> StreamFields<'a> {
        StreamFields::from_pairs(&self.fields, prefix)
    }
}

impl StreamEntry for StreamId {
    fn fields_under<'a>(&'a self, prefix: &'a str) -> StreamFields<'a> {
        StreamFields::with_prefix(&self.map, prefix)
    }
}

impl StreamEntry for HashMap<String, Value> {
    fn fields_under<'a>(&'a self, prefix: &'a str) -> StreamFields<'a> {
        StreamFields::with_prefix(self, prefix)
    }
}

/// An entry without context fields carries no context.
fn carrier(fields: StreamFields<'_>) -> Option<StreamFields<'_>> {
    (!fields.is_empty()).then_some(fields)
}

impl Message<Redis> for Entry {
    type Carrier<'a> = StreamFields<'a>;

    fn carrier<'a>(&'a self, _: &'a Policy) -> Option<StreamFields<'a>> {
        carrier(self.fields_under(DEFAULT_PREFIX))
    }
}

impl Message<Redis> for StreamId {
    type Carrier<'a> = StreamFields<'a>;

    fn carrier<'a>(&'a self, _: &'a Policy) -> Option<StreamFields<'a>> {
        carrier(self.fields_under(DEFAULT_PREFIX))
    }
}

impl Message<Redis> for HashMap<String, Value> {
    type Carrier<'a> = StreamFields<'a>;

    fn carrier<'a>(&'a self, _: &'a Policy) -> Option<StreamFields<'a>> {
        carrier(self.fields_under(DEFAULT_PREFIX))
    }
}

impl<E: StreamEntry> Message<Redis> for WithPrefix<E> {
    type Carrier<'a>
        = StreamFields<'a>
    where
        E: 'a;

    fn carrier<'a>(&'a self, _: &'a Policy) -> Option<StreamFields<'a>> {
        carrier(self.entry.fields_under(self.prefix))
    }
}
