//! Stream entry fields as a Threadline carrier: [`StreamFields`] to read, [`CmdFields`]
//! and [`FieldList`] to write.

use std::collections::HashMap;
use std::io::Write;

use http::{HeaderName, HeaderValue};
use redis::{Cmd, RedisWrite, ToRedisArgs, Value};
use smallvec::SmallVec;
use threadline::{CarrierKind, CarrierValue, Extractor, Injector};

/// The default prefix of context fields: `tl:`. A `:` never appears in a header name,
/// so what follows the prefix is always exactly the header name other brokers carry.
pub const DEFAULT_PREFIX: &str = "tl:";

/// The header name inside `key`, when `key` starts with `prefix` (ASCII case-insensitive).
/// With an empty prefix every non-empty key is a header name.
pub(crate) fn strip<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    let n = prefix.len();
    (key.len() > n
        && key.is_char_boundary(n)
        && key.as_bytes()[..n].eq_ignore_ascii_case(prefix.as_bytes()))
    .then(|| &key[n..])
}

/// Reads context from the fields of a received stream entry.
///
/// Only fields named `<prefix><header name>` are read: the payload fields beside them
/// are never taken for context, whatever they are called. A field whose value is not
/// UTF-8 text (an integer reply, a nested array, binary bytes) is handed to the policy
/// as a value of the wrong type, which drops and reports it.
///
/// Read from the entry's field list as the server sent it ([`StreamFields::from_pairs`],
/// what [`Entry`](crate::Entry) holds), a field that appears twice is two values — a
/// duplicate the policy refuses. redis-rs's `StreamId::map` ([`StreamFields::new`])
/// has already kept only one of them, so a duplicate cannot be seen there.
#[derive(Clone, Copy, Debug)]
pub struct StreamFields<'a> {
    source: Source<'a>,
    prefix: &'a str,
}

/// Where the fields come from.
#[derive(Clone, Copy, Debug)]
enum Source<'a> {
    Map(&'a HashMap<String, Value>),
    Pairs(&'a [(String, Value)]),
}

impl<'a> Source<'a> {
    fn iter(self) -> impl Iterator<Item = (&'a String, &'a Value)> {
        let (map, pairs) = match self {
            Source::Map(m) => (Some(m), None),
            Source::Pairs(p) => (None, Some(p)),
        };
        map.into_iter()
            .flatten()
            .chain(pairs.into_iter().flatten().map(|(k, v)| (k, v)))
    }
}

impl<'a> StreamFields<'a> {
    /// Reads the fields of a field map (`StreamId::map`) under [`DEFAULT_PREFIX`].
    pub fn new(map: &'a HashMap<String, Value>) -> Self {
        Self::with_prefix(map, DEFAULT_PREFIX)
    }

    /// Reads the fields of a field map under `prefix` (`""`: plain header names).
    pub fn with_prefix(map: &'a HashMap<String, Value>, prefix: &'a str) -> Self {
        StreamFields {
            source: Source::Map(map),
            prefix,
        }
    }

    /// Reads an entry's fields in the order the server sent them, under `prefix`.
    pub fn from_pairs(pairs: &'a [(String, Value)], prefix: &'a str) -> Self {
        StreamFields {
            source: Source::Pairs(pairs),
            prefix,
        }
    }

    /// Whether any field carries context.
    pub fn is_empty(&self) -> bool {
        self.keys().next().is_none()
    }
}

fn text(v: &Value) -> CarrierValue<'_> {
    match v {
        Value::BulkString(b) => match std::str::from_utf8(b) {
            Ok(s) => CarrierValue::Text(s),
            Err(_) => CarrierValue::Invalid,
        },
        Value::SimpleString(s) => CarrierValue::Text(s),
        _ => CarrierValue::Invalid,
    }
}

impl<'m> Extractor for StreamFields<'m> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn get_all<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = CarrierValue<'a>> + use<'a, 'm> {
        let name = name.as_str();
        let mut out: SmallVec<[CarrierValue<'a>; 1]> = SmallVec::new();
        for (k, v) in self.source.iter() {
            if strip(k, self.prefix).is_some_and(|h| h.eq_ignore_ascii_case(name)) {
                out.push(text(v));
            }
        }
        out.into_iter()
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        let prefix = self.prefix;
        self.source
            .iter()
            .filter_map(move |(k, _)| strip(k, prefix))
    }
}

/// A field name written as `<prefix><header name>` straight into the command buffer.
struct Prefixed<'a>(&'a str, &'a str);

impl ToRedisArgs for Prefixed<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let mut w = out.writer_for_next_arg();
        // Writing into the in-memory command buffer cannot fail.
        let _ = w.write_all(self.0.as_bytes());
        let _ = w.write_all(self.1.as_bytes());
    }
}

/// Appends context fields (`<prefix><name> <value>` pairs) to an `XADD` command being
/// built, without intermediate allocations. Append it after the entry id.
///
/// It cannot see the fields already on the command, so it never checks for a clash:
/// the prefix is what keeps context fields and payload fields apart.
#[derive(Debug)]
pub struct CmdFields<'a> {
    cmd: &'a mut Cmd,
    prefix: &'a str,
}

impl<'a> CmdFields<'a> {
    /// Writes under [`DEFAULT_PREFIX`].
    pub fn new(cmd: &'a mut Cmd) -> Self {
        Self::with_prefix(cmd, DEFAULT_PREFIX)
    }

    /// Writes under `prefix`.
    pub fn with_prefix(cmd: &'a mut Cmd, prefix: &'a str) -> Self {
        CmdFields { cmd, prefix }
    }
}

impl Injector for CmdFields<'_> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn contains(&self, _name: &HeaderName) -> bool {
        false
    }

    fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.cmd
            .arg(Prefixed(self.prefix, name.as_str()))
            .arg(value.as_bytes());
    }
}

/// Collects context fields into a `Vec<(String, String)>` (for `xadd`, `xadd_map`,
/// `xadd_options` or a pipeline). Names already in the list are never overwritten.
#[derive(Debug)]
pub struct FieldList<'a> {
    fields: &'a mut Vec<(String, String)>,
    prefix: &'a str,
}

impl<'a> FieldList<'a> {
    /// Writes under [`DEFAULT_PREFIX`].
    pub fn new(fields: &'a mut Vec<(String, String)>) -> Self {
        Self::with_prefix(fields, DEFAULT_PREFIX)
    }

    /// Writes under `prefix`.
    pub fn with_prefix(fields: &'a mut Vec<(String, String)>, prefix: &'a str) -> Self {
        FieldList { fields, prefix }
    }
}

impl Injector for FieldList<'_> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn contains(&self, name: &HeaderName) -> bool {
        self.fields.iter().any(|(k, _)| {
            strip(k, self.prefix).is_some_and(|h| h.eq_ignore_ascii_case(name.as_str()))
        })
    }

    fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
        if let Ok(v) = value.to_str() {
            let mut key = String::with_capacity(self.prefix.len() + name.as_str().len());
            key.push_str(self.prefix);
            key.push_str(name.as_str());
            self.fields.push((key, v.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    #[test]
    fn reads_only_prefixed_fields_in_any_casing() {
        let map: HashMap<String, Value> = [
            ("payload".to_owned(), bulk(b"{}")),
            ("x-tenant-id".to_owned(), bulk(b"user-field")),
            ("TL:X-Tenant-Id".to_owned(), bulk(b"acme")),
            ("tl:x-count".to_owned(), Value::Int(3)),
            ("tl:x-bin".to_owned(), bulk(b"\xff\xfe")),
            ("tl:".to_owned(), bulk(b"empty name")),
        ]
        .into_iter()
        .collect();
        let c = StreamFields::new(&map);
        let get = |n: &'static str| -> Vec<Option<&[u8]>> {
            c.get_all(&HeaderName::from_static(n))
                .map(|v| v.as_bytes())
                .collect()
        };
        assert_eq!(get("x-tenant-id"), vec![Some(b"acme".as_slice())]);
        assert_eq!(get("x-count"), vec![None], "integer: wrong type");
        assert_eq!(get("x-bin"), vec![None], "binary: wrong type");
        assert_eq!(get("payload"), Vec::<Option<&[u8]>>::new());
        let mut keys: Vec<_> = c.keys().collect();
        keys.sort_unstable();
        assert_eq!(keys, ["X-Tenant-Id", "x-bin", "x-count"]);
    }

    #[test]
    fn field_list_never_overwrites() {
        let mut fields = vec![("tl:x-correlation-id".to_owned(), "mine".to_owned())];
        let mut c = FieldList::new(&mut fields);
        assert!(c.contains(&HeaderName::from_static("x-correlation-id")));
        assert!(!c.contains(&HeaderName::from_static("traceparent")));
        c.set(
            &HeaderName::from_static("traceparent"),
            &HeaderValue::from_static("00-x"),
        );
        assert_eq!(fields[1], ("tl:traceparent".to_owned(), "00-x".to_owned()));
    }

    #[test]
    fn cmd_fields_write_prefixed_pairs() {
        let mut cmd = redis::cmd("XADD");
        cmd.arg("jobs").arg("*").arg("payload").arg("{}");
        CmdFields::new(&mut cmd).set(
            &HeaderName::from_static("x-tenant-id"),
            &HeaderValue::from_static("acme"),
        );
        let args: Vec<Vec<u8>> = cmd
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => b.to_vec(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(
            args[5..],
            [b"tl:x-tenant-id".to_vec(), b"acme".to_vec()],
            "context after the payload"
        );
    }
}
