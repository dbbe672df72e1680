//! Inject: from a [`Context`] to an outgoing carrier (HTTP headers, message headers,
//! a JSON map), each header only where the caller's grant allows it.
//!
//! [`Context::inject`] writes into any [`Injector`]. For a broker client's own message
//! types, adapter crates implement [`Outgoing`], so one call serves them all:
//! [`Context::inject_into`] and [`inject_current`] (the producer side of what
//! [`restore::Message`](crate::restore::Message) is on the consumer side).
//!
//! ```
//! use std::collections::HashMap;
//! use threadline::{Policy, Trust};
//!
//! let ctx = Policy::default().new_root().with_field("user.id", "alice");
//! let mut headers: HashMap<String, String> = HashMap::new();
//! ctx.inject_into(&mut headers);
//! assert_eq!(headers["tl-field-user.id"], "alice");
//! assert!(headers.contains_key("traceparent"));
//! ```

use http::{HeaderName, HeaderValue};

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use crate::carrier::{CarrierKind, Injector};
use crate::codec::{B3, SpanId, encode_baggage_value, shared_header_value};
use crate::context::Context;
use crate::format::{BaggageParts, Format, Parts, Sampling, TraceParts};
use crate::names;
use crate::policy::B3Emit;

impl Context {
    /// Writes the context into a carrier. See [`Context::inject_where`].
    pub fn inject<I: Injector + ?Sized>(&self, carrier: &mut I) -> Option<SpanId> {
        self.inject_where(carrier, |_| true)
    }

    /// Writes the context into a carrier, each header only when `allow(outbound name)`:
    /// the correlation id, a child `traceparent` (same trace id, fresh parent id, whose
    /// id is returned), `tracestate`, B3 when the policy says so, `baggage`, the custom
    /// headers under their outbound names, and the local fields on message carriers
    /// (as `<prefix><name>`, percent-encoded like baggage values).
    ///
    /// A header the carrier already has is never overwritten; when it already has a
    /// `traceparent`, `tracestate` and B3 are left to it as well.
    pub fn inject_where<I, F>(&self, carrier: &mut I, allow: F) -> Option<SpanId>
    where
        I: Injector + ?Sized,
        F: Fn(&HeaderName) -> bool,
    {
        let i = &*self.inner;
        let p = &*i.policy.inner;
        let put = |carrier: &mut I, name: &HeaderName, value: &HeaderValue| {
            if allow(name) {
                carrier.set_if_absent(name, value);
            }
        };
        if let Some(id) = &i.correlation_id {
            put(carrier, &p.correlation_header, id.header_value());
        }
        let mut sent = None;
        if let Some(t) = &i.trace {
            // One lookup for the usual case (no traceparent set by the caller): the
            // child value is made first and written only if the slot is free.
            let written = if p.w3c && allow(&names::TRACEPARENT) {
                let tp = t.child();
                shared_header_value(tp.encode().as_bytes())
                    .is_some_and(|v| carrier.set_if_absent(&names::TRACEPARENT, &v))
                    .then_some(tp)
            } else {
                None
            };
            if let Some(tp) = written {
                sent = Some(tp.parent_id());
                if let Some(ts) = t.tracestate() {
                    put(carrier, &names::TRACESTATE, ts.header_value());
                }
                let b3 = B3::from_trace_parent(&tp);
                match p.emit_b3 {
                    B3Emit::None => {}
                    B3Emit::Single => {
                        if let Some(v) = shared_header_value(b3.encode_single().as_bytes()) {
                            put(carrier, &names::B3, &v);
                        }
                    }
                    B3Emit::Multi => {
                        for (name, buf) in b3.encode_multi().into_iter().flatten() {
                            if let Some(v) = shared_header_value(buf.as_bytes()) {
                                put(carrier, &HeaderName::from_static(name), &v);
                            }
                        }
                    }
                }
            }
        }
        if let Some(b) = &i.baggage {
            put(carrier, &names::BAGGAGE, b.header_value());
        }
        if let (Some(formats), Some(t)) = (&p.formats, &i.trace) {
            if !formats.writers.is_empty() {
                // The call's own parent id: the one the traceparent carries, else a new one.
                let parent = sent.unwrap_or_else(|| {
                    let id = SpanId::random();
                    sent = Some(id);
                    id
                });
                self.write_formats(&formats.writers, t, parent, carrier, &allow);
            }
        }
        for h in &i.headers {
            put(carrier, self.names_of(h).1, &h.value);
        }
        // The routing key's header forms (its baggage and tracestate members are in
        // those lists already).
        if let (Some(r), Some(key)) = (&p.routing, i.routing_key.as_deref()) {
            for name in &r.write_headers {
                put(carrier, name, key.header_value());
            }
        }
        if !i.fields.is_empty() && (carrier.kind() == CarrierKind::Message || p.fields_over_http) {
            let mut key = String::with_capacity(p.field_prefix.len() + 16);
            let mut value = String::new();
            for f in &i.fields {
                key.clear();
                key.push_str(&p.field_prefix);
                key.extend(f.name.chars().map(|c| c.to_ascii_lowercase()));
                value.clear();
                encode_baggage_value(f.value.as_str(), &mut value);
                if let (Ok(k), Ok(v)) = (
                    HeaderName::from_bytes(key.as_bytes()),
                    HeaderValue::from_str(&value),
                ) {
                    put(carrier, &k, &v);
                }
            }
        }
        sent
    }
}

impl Context {
    /// Writes the trace in each extra format of the policy (beside W3C), with the call's
    /// parent id; a writer of the format the trace was read from forwards what only that
    /// format carries (X-Ray's other keys, Datadog's origin and tags).
    fn write_formats<I, F>(
        &self,
        writers: &[std::sync::Arc<dyn Format>],
        t: &crate::TraceContext,
        parent: SpanId,
        carrier: &mut I,
        allow: &F,
    ) where
        I: Injector + ?Sized,
        F: Fn(&HeaderName) -> bool,
    {
        let received = self.inner.received.as_deref();
        let stored: Option<http::HeaderMap> = received.map(|r| r.headers.iter().cloned().collect());
        let baggage = self
            .inner
            .baggage
            .as_ref()
            .map(|b| BaggageParts::list(b.as_str()));
        let mut out = Allowed { carrier, allow };
        for w in writers {
            let mut trace =
                TraceParts::new(t.trace_id(), Some(parent), Sampling::from_flags(t.flags()));
            let own = match (received, &stored) {
                (Some(r), Some(headers)) if r.codec == w.codec() => w.decode(headers).ok(),
                _ => None,
            };
            if let Some(extras) = own.and_then(|p| p.trace).map(|t| t.extras) {
                trace = trace.with_extras(extras);
            }
            w.encode(&Parts::new(Some(trace), baggage.clone()), &mut out);
        }
    }
}

/// An injector that writes only the names `allow` lets through (a destination's grant).
struct Allowed<'a, I: ?Sized, F> {
    carrier: &'a mut I,
    allow: &'a F,
}

impl<I, F> Injector for Allowed<'_, I, F>
where
    I: Injector + ?Sized,
    F: Fn(&HeaderName) -> bool,
{
    fn kind(&self) -> CarrierKind {
        self.carrier.kind()
    }

    fn contains(&self, name: &HeaderName) -> bool {
        self.carrier.contains(name)
    }

    fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
        if (self.allow)(name) {
            self.carrier.set(name, value);
        }
    }

    fn set_if_absent(&mut self, name: &HeaderName, value: &HeaderValue) -> bool {
        (self.allow)(name) && self.carrier.set_if_absent(name, value)
    }
}

/// An outgoing message (or its headers, or a command being built) that a context can be
/// written into. Adapter crates implement it for their client's types
/// (`async_nats::HeaderMap`, lapin's `BasicProperties`, a redis `Cmd`, apalis's
/// `MetadataStore`); `A` is the adapter's marker type, inferred at the call site, as
/// for [`restore::Message`](crate::restore::Message).
pub trait Outgoing<A> {
    /// Writes `ctx` into the message (never overwriting what is already set) and
    /// answers the parent id of the child `traceparent` it sent, if any.
    fn inject_context(&mut self, ctx: &Context) -> Option<SpanId>;
}

/// The marker of the outgoing types this crate itself knows.
#[derive(Clone, Copy, Debug)]
pub enum Core {}

impl<S: BuildHasher> Outgoing<Core> for HashMap<String, String, S> {
    fn inject_context(&mut self, ctx: &Context) -> Option<SpanId> {
        ctx.inject(self)
    }
}

impl Outgoing<Core> for BTreeMap<String, String> {
    fn inject_context(&mut self, ctx: &Context) -> Option<SpanId> {
        ctx.inject(self)
    }
}

impl Outgoing<Core> for crate::carrier::MessageHeaders<&mut http::HeaderMap> {
    fn inject_context(&mut self, ctx: &Context) -> Option<SpanId> {
        ctx.inject(self)
    }
}

impl Context {
    /// Writes the context into an outgoing message of any adapter (see [`Outgoing`]);
    /// answers the parent id of the child `traceparent` it sent.
    pub fn inject_into<A, M: Outgoing<A> + ?Sized>(&self, msg: &mut M) -> Option<SpanId> {
        msg.inject_context(self)
    }
}

/// Writes the current context into an outgoing message (nothing outside any scope);
/// answers the parent id of the child `traceparent` it sent.
pub fn inject_current<A, M: Outgoing<A> + ?Sized>(msg: &mut M) -> Option<SpanId> {
    Context::with_current(|ctx| msg.inject_context(ctx)).flatten()
}
