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
//! let restored = policy.capture(&JsonCarrier::new(&job), Trust::Trusted).context;
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
        Self::from_value(map.get(key))
    }

    /// Reads the context from the value that sat under the envelope's key (`None`:
    /// the key was absent).
    pub fn from_value(value: Option<&'a Value>) -> Self {
        match value {
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

    /// Every value under `name`, matched ignoring case: two keys that differ only in
    /// case (`traceparent` and `Traceparent`) are two values, a duplicate, never one
    /// picked silently.
    fn find<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a Value> + use<'a, 'n> {
        self.inner
            .into_iter()
            .flat_map(move |o| {
                let exact = o.get_key_value(name);
                let others = o
                    .iter()
                    .filter(move |(k, _)| k.len() == name.len() && k.as_str() != name)
                    .filter(move |(k, _)| k.eq_ignore_ascii_case(name));
                exact.into_iter().chain(others)
            })
            .map(|(_, v)| v)
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
        for v in self.find(name.as_str()) {
            match v {
                Value::String(s) => out.push(CarrierValue::Text(s)),
                Value::Array(items) => out.extend(items.iter().map(|v| match v {
                    Value::String(s) => CarrierValue::Text(s),
                    _ => CarrierValue::Invalid,
                })),
                _ => out.push(CarrierValue::Invalid),
            }
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

pub use envelope::{Envelope, EnvelopeSeed};

mod envelope {
    //! [`Envelope`]: a typed payload with the context under one key.

    use std::borrow::Cow;
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, Error as _};
    use serde::ser::{Error as _, SerializeMap, Serializer};
    use serde::{Deserialize, Serialize};
    use serde_json::{Map, Value};

    use super::{DEFAULT_KEY, JsonCarrier, JsonCarrierMut};
    use crate::restore::{Core, Message};
    use crate::{Captured, Context, Policy, Restorer};

    /// A typed payload with the context under one key, for queues that only carry a
    /// JSON body (a Postgres job table, SQS, Pub/Sub-style HTTP pushes).
    ///
    /// It serialises as the payload's own JSON object plus one key (default
    /// [`DEFAULT_KEY`], `_http_headers`) holding the context as an object of header
    /// name → string: the correlation id, a child `traceparent` (same trace id, new
    /// parent id), `tracestate`, `baggage`, the policy's custom headers and the local
    /// fields as `tl-field-<name>` — the same keys as
    /// [`JsonCarrierMut`], readable by consumers in any language.
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use threadline::json::Envelope;
    /// use threadline::{Context, Policy, Restorer, Trust};
    ///
    /// #[derive(Serialize, Deserialize, Debug, PartialEq)]
    /// struct SendInvoice { order: u64 }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let policy = Policy::builder().header("x-tenant-id").build().unwrap();
    /// let mut inbound = http::HeaderMap::new();
    /// inbound.insert("x-correlation-id", "order-42".parse().unwrap());
    /// inbound.insert("x-tenant-id", "acme".parse().unwrap());
    /// let request = policy.capture(&inbound, Trust::Trusted).context;
    ///
    /// // Producer, inside the request's scope: nothing passed by hand.
    /// let body = request.clone().scope(async {
    ///     threadline::bind("user.id", "alice");
    ///     serde_json::to_string(&Envelope::wrap(SendInvoice { order: 42 })).unwrap()
    /// }).await;
    /// let raw: serde_json::Value = serde_json::from_str(&body).unwrap();
    /// assert_eq!(raw["order"], 42);
    /// assert_eq!(raw["_http_headers"]["x-correlation-id"], "order-42");
    /// assert_eq!(raw["_http_headers"]["tl-field-user.id"], "alice");
    ///
    /// // Consumer: the payload and the restored context.
    /// // Our own job queue: only our services write to it.
    /// let restorer = Restorer::new(policy).trust(Trust::Trusted);
    /// let envelope: Envelope<SendInvoice> = serde_json::from_str(&body).unwrap();
    /// let (job, captured) = envelope.into_parts(&restorer);
    /// assert_eq!(job, SendInvoice { order: 42 });
    /// assert!(captured.report.is_empty());
    /// let ctx = captured.context;
    /// assert_eq!(ctx.correlation_id().unwrap().as_str(), "order-42");
    /// assert_eq!(ctx.trace_id(), request.trace_id()); // same trace, new parent id
    /// assert_eq!(ctx.get("x-tenant-id"), Some("acme"));
    /// assert_eq!(ctx.field("user.id"), Some("alice"));
    /// # }
    /// ```
    ///
    /// # Serialisation
    ///
    /// The payload must serialise as a JSON object (a struct with named fields or a
    /// map). Anything else — a number, a string, a sequence, a tuple struct, a unit —
    /// and a payload that already has a field named like the envelope's key make
    /// serialisation fail with a serde error that says so; nothing panics. Building an
    /// envelope ([`Envelope::wrap`], [`Envelope::with_context`]) never fails: the
    /// payload is only looked at when it is serialised. The payload goes through a
    /// `serde_json::Value` on the way (so map keys become strings as `serde_json`
    /// makes them); the key comes last. When the context is empty (outside any scope)
    /// the key is left out.
    ///
    /// # Deserialisation
    ///
    /// `Deserialize` reads an object, takes the key ([`DEFAULT_KEY`]) off it and
    /// deserialises the rest as `T`; use [`Envelope::seed`] or
    /// [`Envelope::from_value_with_key`] for another key. Whatever sits under the key
    /// is kept as it came: a broken context never fails the payload's
    /// deserialisation. It is judged by a [`Restorer`] (its policy and the trust it
    /// gives the queue) in [`Envelope::into_parts`] / [`Envelope::context`], like
    /// [`JsonCarrier`] with [`Policy::capture`]: a missing or `null` key means a fresh context (new
    /// correlation id, new trace); a key holding a string, number or array is counted
    /// as a broken envelope and also means a fresh context; values of the wrong type,
    /// oversized or invalid ones are dropped and counted while the valid part is kept.
    #[derive(Clone, Debug)]
    pub struct Envelope<T> {
        payload: T,
        context: Option<Value>,
        key: Cow<'static, str>,
    }

    /// The context as the object an envelope carries; `None` when it is empty.
    fn headers_of(ctx: &Context) -> Option<Value> {
        let mut outer = Map::new();
        ctx.inject(&mut JsonCarrierMut::new(&mut outer));
        match outer.remove(DEFAULT_KEY) {
            Some(Value::Object(o)) if !o.is_empty() => Some(Value::Object(o)),
            _ => None,
        }
    }

    fn kind_of(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }

    impl<T> Envelope<T> {
        /// Wraps `payload` with the current context ([`Context::current`]): a child
        /// `traceparent` is minted now, so each envelope is its own hop. Outside any
        /// scope the envelope carries no context.
        pub fn wrap(payload: T) -> Self {
            let context = Context::with_current(headers_of).flatten();
            Envelope {
                payload,
                context,
                key: Cow::Borrowed(DEFAULT_KEY),
            }
        }

        /// Wraps `payload` with `ctx` (for work started outside any scope, say with
        /// [`Policy::new_root`]).
        pub fn with_context(ctx: &Context, payload: T) -> Self {
            Envelope {
                payload,
                context: headers_of(ctx),
                key: Cow::Borrowed(DEFAULT_KEY),
            }
        }

        /// Puts the context under `key` instead of [`DEFAULT_KEY`] when serialised.
        pub fn with_key(mut self, key: impl Into<Cow<'static, str>>) -> Self {
            self.key = key.into();
            self
        }

        /// The key the context goes under.
        pub fn key(&self) -> &str {
            &self.key
        }

        /// The payload.
        pub fn payload(&self) -> &T {
            &self.payload
        }

        /// The payload, mutably.
        pub fn payload_mut(&mut self) -> &mut T {
            &mut self.payload
        }

        /// The payload, dropping the context.
        pub fn into_payload(self) -> T {
            self.payload
        }

        /// The context as carried (unchecked): the JSON value under the key, `None`
        /// when the key was absent. Use [`Envelope::context`] to restore it.
        pub fn raw_context(&self) -> Option<&Value> {
            self.context.as_ref()
        }

        /// Restores the context through `restorer` (its policy, and the trust it gives
        /// the queue): allow-list, validation and limits apply, what is dropped is
        /// listed in the report; a missing or broken key gives a fresh context. Never
        /// fails.
        pub fn context(&self, restorer: &Restorer) -> Captured {
            restorer.restore(self)
        }

        /// The payload and the restored context (see [`Envelope::context`]).
        pub fn into_parts(self, restorer: &Restorer) -> (T, Captured) {
            let captured = self.context(restorer);
            (self.payload, captured)
        }
    }

    impl<T> Message<Core> for Envelope<T> {
        type Carrier<'a>
            = JsonCarrier<'a>
        where
            T: 'a;

        fn carrier<'a>(&'a self, _: &'a Policy) -> Option<JsonCarrier<'a>> {
            Some(JsonCarrier::from_value(self.context.as_ref()))
        }
    }

    impl<T: DeserializeOwned> Envelope<T> {
        /// A `DeserializeSeed` that reads an envelope whose context is under `key`.
        ///
        /// ```
        /// use serde::de::DeserializeSeed;
        /// use threadline::json::Envelope;
        /// use threadline::{Policy, Restorer};
        ///
        /// let body = r#"{"order": 7, "ctx": {"x-correlation-id": "job-7"}}"#;
        /// let mut de = serde_json::Deserializer::from_str(body);
        /// let envelope = Envelope::<serde_json::Value>::seed("ctx").deserialize(&mut de).unwrap();
        /// assert_eq!(envelope.payload(), &serde_json::json!({"order": 7}));
        /// let ctx = envelope.context(&Restorer::new(Policy::default())).context;
        /// assert_eq!(ctx.correlation_id().unwrap().as_str(), "job-7");
        /// ```
        pub fn seed(key: impl Into<Cow<'static, str>>) -> EnvelopeSeed<T> {
            EnvelopeSeed {
                key: key.into(),
                payload: PhantomData,
            }
        }

        /// Reads an envelope from a JSON value with the context under `key`.
        pub fn from_value_with_key(
            value: Value,
            key: impl Into<Cow<'static, str>>,
        ) -> Result<Self, serde_json::Error> {
            Self::seed(key).deserialize(value)
        }
    }

    impl<T: Serialize> Serialize for Envelope<T> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let fields = match serde_json::to_value(&self.payload) {
                Ok(Value::Object(fields)) => fields,
                Ok(other) => {
                    return Err(S::Error::custom(format_args!(
                        "an envelope's payload must serialise as a JSON object \
                         (a struct with named fields or a map), not {}",
                        kind_of(&other)
                    )));
                }
                Err(e) => return Err(S::Error::custom(e)),
            };
            if fields.contains_key(&*self.key) {
                return Err(S::Error::custom(format_args!(
                    "the envelope's payload already has a field named {:?}, the key of \
                     its context",
                    &*self.key
                )));
            }
            let mut map = serializer
                .serialize_map(Some(fields.len() + usize::from(self.context.is_some())))?;
            for (k, v) in &fields {
                map.serialize_entry(k, v)?;
            }
            if let Some(ctx) = &self.context {
                map.serialize_entry(&*self.key, ctx)?;
            }
            map.end()
        }
    }

    impl<'de, T: DeserializeOwned> Deserialize<'de> for Envelope<T> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            Envelope::seed(DEFAULT_KEY).deserialize(deserializer)
        }
    }

    /// Deserialises an [`Envelope`] whose context is under a key of your choice
    /// (made by [`Envelope::seed`]).
    pub struct EnvelopeSeed<T> {
        key: Cow<'static, str>,
        payload: PhantomData<fn() -> T>,
    }

    impl<T> fmt::Debug for EnvelopeSeed<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("EnvelopeSeed")
                .field("key", &self.key)
                .finish()
        }
    }

    impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for EnvelopeSeed<T> {
        type Value = Envelope<T>;

        fn deserialize<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Envelope<T>, D::Error> {
            let mut fields = Map::<String, Value>::deserialize(deserializer)?;
            let context = fields.remove(&*self.key);
            let payload = T::deserialize(Value::Object(fields)).map_err(D::Error::custom)?;
            Ok(Envelope {
                payload,
                context,
                key: self.key,
            })
        }
    }
}
