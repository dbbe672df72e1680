//! The JSON envelope: context under one key (default `_http_headers`) next to the payload,
//! for queues that only carry a body (a Postgres job table, SQS, Pub/Sub-style pushes).
//!
//! ```
//! use serde_json::json;
//! use threadline::json::{JsonCarrier, JsonCarrierMut};
//! use threadline::{Policy, Trust};
//!
//! let policy = Policy::builder().header("x-tenant-id").build().unwrap();
//! let mut inbound = http::HeaderMap::new();
//! inbound.insert("x-correlation-id", "order-42".parse().unwrap());
//! inbound.insert("x-tenant-id", "acme".parse().unwrap());
//! let ctx = policy.capture(&inbound, Trust::Trusted).context;
//!
//! let mut job = json!({"order": 42}).as_object().unwrap().clone();
//! ctx.inject(&mut JsonCarrierMut::new(&mut job));
//! assert_eq!(job["_http_headers"]["x-correlation-id"], "order-42");
//! assert_eq!(job["order"], 42);
//!
//! let restored = policy.extract(&JsonCarrier::new(&job)).context;
//! assert_eq!(restored.correlation_id().unwrap().as_str(), "order-42");
//! assert_eq!(restored.get("x-tenant-id"), Some("acme"));
//! ```

use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use smallvec::SmallVec;

use crate::carrier::{CarrierKind, CarrierValue, Extractor, Injector};

/// The default envelope key, as django-cloud-tasks and others use it.
pub const DEFAULT_KEY: &str = "_http_headers";

/// Reads context from `map[key]` (a JSON object of header name → string or array of
/// strings). Any other shape is treated as no context and reported as malformed.
#[derive(Clone, Copy, Debug)]
pub struct JsonCarrier<'a> {
    inner: Option<&'a Map<String, Value>>,
    malformed: bool,
}

impl<'a> JsonCarrier<'a> {
    /// Reads the context under [`DEFAULT_KEY`].
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Self::with_key(map, DEFAULT_KEY)
    }

    /// Reads the context under `key`.
    pub fn with_key(map: &'a Map<String, Value>, key: &str) -> Self {
        match map.get(key) {
            None | Some(Value::Null) => JsonCarrier {
                inner: None,
                malformed: false,
            },
            Some(Value::Object(o)) => JsonCarrier {
                inner: Some(o),
                malformed: false,
            },
            Some(_) => JsonCarrier {
                inner: None,
                malformed: true,
            },
        }
    }

    fn find(&self, name: &str) -> Option<&'a Value> {
        let o = self.inner?;
        o.get(name).or_else(|| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
    }
}

impl<'j> Extractor for JsonCarrier<'j> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn get_all<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = CarrierValue<'a>> + use<'a, 'j> {
        let mut out: SmallVec<[CarrierValue<'_>; 2]> = SmallVec::new();
        match self.find(name.as_str()) {
            None => {}
            Some(Value::String(s)) => out.push(CarrierValue::Text(s)),
            Some(Value::Array(items)) => out.extend(items.iter().map(|v| match v {
                Value::String(s) => CarrierValue::Text(s),
                _ => CarrierValue::Invalid,
            })),
            Some(_) => out.push(CarrierValue::Invalid),
        }
        out.into_iter()
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.inner
            .into_iter()
            .flat_map(|o| o.keys().map(String::as_str))
    }

    fn is_malformed(&self) -> bool {
        self.malformed
    }
}

/// Writes context into `map[key]` as an object of header name → string, creating it
/// when absent. A non-object value under the key is replaced (the key belongs to the
/// envelope); names already present in the object are never overwritten.
#[derive(Debug)]
pub struct JsonCarrierMut<'a> {
    inner: &'a mut Map<String, Value>,
}

impl<'a> JsonCarrierMut<'a> {
    /// Writes under [`DEFAULT_KEY`].
    pub fn new(map: &'a mut Map<String, Value>) -> Self {
        Self::with_key(map, DEFAULT_KEY)
    }

    /// Writes under `key`.
    pub fn with_key(map: &'a mut Map<String, Value>, key: &str) -> Self {
        let slot = map
            .entry(key.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(inner) = slot else {
            unreachable!("the slot was just made an object")
        };
        JsonCarrierMut { inner }
    }
}

impl Injector for JsonCarrierMut<'_> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn contains(&self, name: &HeaderName) -> bool {
        self.inner.contains_key(name.as_str())
            || self
                .inner
                .keys()
                .any(|k| k.eq_ignore_ascii_case(name.as_str()))
    }

    fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
        if let Ok(v) = value.to_str() {
            self.inner
                .insert(name.as_str().to_owned(), Value::String(v.to_owned()));
        }
    }
}
