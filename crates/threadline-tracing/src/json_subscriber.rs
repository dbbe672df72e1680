//! The context in [`json-subscriber`](::json_subscriber)'s output (feature
//! `json-subscriber`).
//!
//! [`ContextMembers`] registers the context fields with a json-subscriber layer as
//! dynamic members, read at event time from the current context: every line written
//! in a scope carries the correlation id, trace and span ids, header fields and the
//! fields bound with [`threadline::bind`] (bound a moment before included), once each.
//!
//! ```
//! use threadline::Policy;
//! use threadline_tracing::json_subscriber::ContextMembers;
//! use tracing_subscriber::prelude::*;
//! # use std::sync::{Arc, Mutex};
//! # #[derive(Clone, Default)] struct Buf(Arc<Mutex<Vec<u8>>>);
//! # impl std::io::Write for Buf {
//! #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
//! #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
//! # }
//! # let buf = Buf::default(); let out = buf.clone();
//!
//! let mut json = json_subscriber::fmt::layer().flatten_event(true)
//! #   .with_writer(move || buf.clone())
//! ;
//! ContextMembers::new().install(json.inner_layer_mut());
//! let subscriber = tracing_subscriber::registry().with(json);
//! let _guard = tracing::subscriber::set_default(subscriber);
//!
//! let ctx = Policy::default().new_root();
//! ctx.clone().sync_scope(|| {
//!     threadline::bind("user.id", "alice");
//!     tracing::info!(order = 7, "saved");
//! });
//! # let line = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
//! let event: serde_json::Value = serde_json::from_str(&line).unwrap();
//! assert_eq!(event["message"], "saved");
//! assert_eq!(event["correlation_id"], ctx.correlation_id().unwrap().as_str());
//! assert_eq!(event["user.id"], "alice");
//! ```
//!
//! # No key twice
//!
//! json-subscriber writes dynamic members without looking at the others, so
//! [`ContextMembers`] leaves out a context field whose name is already taken:
//!
//! - **the event's own field wins**: a context field with the name of one of the
//!   event's fields is left out of that line (whether the layer flattens the event or
//!   writes it under `fields`), as in [`ContextFormat`](crate::ContextFormat)'s JSON;
//! - the members the layer itself writes: by default those of `json_subscriber::fmt`
//!   (`timestamp`, `level`, `target`, `fields`, `span`, `spans`, `filename`,
//!   `line_number`, `threadName`, `threadId`, `openTelemetry`); name others (static
//!   fields you added, renamed keys) with [`ContextMembers::taken`];
//! - among the context's fields the first under a name wins
//!   ([`ContextFields`] explains the order).
//!
//! With [`ContextFields::nest_under`] the fields form one object under that key
//! instead, and only the key itself has to be free.

use std::borrow::Cow;
use std::sync::Arc;

use ::json_subscriber::JsonLayer;
use serde::ser::{SerializeMap, Serializer};
use tracing_core::Subscriber;
use tracing_subscriber::registry::LookupSpan;

use crate::fields::{ContextFields, ContextValue};

/// The member names `json_subscriber::fmt`'s layer can write.
const FMT_MEMBERS: &[&str] = &[
    "timestamp",
    "level",
    "target",
    "fields",
    "span",
    "spans",
    "filename",
    "line_number",
    "threadName",
    "threadId",
    "openTelemetry",
];

/// The context fields as members of each JSON line of a json-subscriber layer; see the
/// [module docs](self).
#[derive(Clone, Debug)]
pub struct ContextMembers {
    fields: ContextFields,
    taken: Vec<Cow<'static, str>>,
}

impl Default for ContextMembers {
    fn default() -> Self {
        ContextMembers {
            fields: ContextFields::default(),
            taken: FMT_MEMBERS.iter().map(|&n| Cow::Borrowed(n)).collect(),
        }
    }
}

impl ContextMembers {
    /// The default [`ContextFields`], and the member names of `json_subscriber::fmt`
    /// taken.
    pub fn new() -> Self {
        Self::default()
    }

    /// Chooses which fields are written and under which names.
    pub fn fields(mut self, fields: ContextFields) -> Self {
        self.fields = fields;
        self
    }

    /// Adds member names the layer writes itself (a static field, a renamed
    /// timestamp): a context field of such a name is left out.
    pub fn taken<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<Cow<'static, str>>,
    {
        self.taken.extend(names.into_iter().map(Into::into));
        self
    }

    /// Registers the members with `layer` (for `json_subscriber::fmt::Layer`, pass
    /// `layer.inner_layer_mut()`).
    pub fn install<S, W>(self, layer: &mut JsonLayer<S, W>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let this = Arc::new(self);
        layer.add_multiple_dynamic_fields(move |event, _ctx, writer| {
            if threadline::Context::with_current(|_| ()).is_none() {
                return;
            }
            let fields = &this.fields;
            let free = |name: &str| {
                !this.taken.iter().any(|t| t == name)
                    && !event.metadata().fields().iter().any(|f| f.name() == name)
            };
            match fields.nested_under() {
                Some(key) => {
                    if free(key) {
                        let _ = writer.write_field(key, Nested(fields));
                    }
                }
                None => fields.visit_current(|name, value| {
                    if free(name) {
                        let _ = writer.write_field(name, Value(value));
                    }
                }),
            }
        });
    }
}

/// A value as JSON: a string, or `true`/`false`.
struct Value<'a>(ContextValue<'a>);

impl serde::Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ContextValue::Bool(b) => s.serialize_bool(b),
            other => s.serialize_str(other.as_str()),
        }
    }
}

/// The current context's fields as one JSON object.
struct Nested<'a>(&'a ContextFields);

impl serde::Serialize for Nested<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        let mut result = Ok(());
        self.0.visit_current(|name, value| {
            if result.is_ok() {
                result = map.serialize_entry(name, &Value(value));
            }
        });
        result?;
        map.end()
    }
}
