//! Producer side: the current context as headers of outgoing messages.

use std::future::Future;

use async_nats::client::{PublishError, RequestError};
use std::str::FromStr;

use async_nats::{Client, HeaderMap, HeaderName, HeaderValue, Message, ToSubject};
use bytes::Bytes;
use threadline::codec::{B3, SpanId};
use threadline::{Context, TraceContext};

use threadline::inject::Outgoing;

use crate::Nats;
use crate::carrier::NatsHeadersMut;

/// `async_nats::HeaderMap` as an outgoing message: `ctx.inject_into(&mut headers)` and
/// `threadline::inject_current(&mut headers)` write the correlation id, a child
/// `traceparent` (same trace id, new parent id, which is returned), `tracestate`,
/// `baggage`, the policy's custom headers and the local fields as `tl-field-<name>`.
/// Headers already set are kept.
impl Outgoing<Nats> for HeaderMap {
    fn inject_context(&mut self, ctx: &Context) -> Option<SpanId> {
        ctx.inject(&mut NatsHeadersMut::new(self))
    }
}

/// The current context into `headers` (nothing outside any scope).
fn inject_current(headers: &mut HeaderMap) -> Option<SpanId> {
    threadline::inject_current(headers)
}

/// The headers of one context, built once, for many messages published from it (a
/// fan-out inside one request, a batch job): [`ContextHeaders::headers`] clones the
/// prebuilt map and writes a fresh `traceparent` (same trace id, a new parent id) — and
/// fresh B3 headers when the policy sends them — so each message is still its own hop.
///
/// The same headers as [`Context::inject_into`], at the cost of one map clone and one header per
/// message instead of converting every header again.
///
/// ```
/// use threadline::{Policy, Trust};
/// use threadline_nats::ContextHeaders;
///
/// let policy = Policy::builder().header("x-tenant-id").build().unwrap();
/// let mut inbound = http::HeaderMap::new();
/// inbound.insert("x-tenant-id", "acme".parse().unwrap());
/// let ctx = policy.capture(&inbound, Trust::Trusted).context.with_field("user.id", "alice");
///
/// let prebuilt = ContextHeaders::new(&ctx);
/// let (a, b) = (prebuilt.headers(), prebuilt.headers());
/// assert_eq!(a.get("x-tenant-id").unwrap().as_str(), "acme");
/// assert_eq!(b.get("tl-field-user.id").unwrap().as_str(), "alice");
/// let (tp_a, tp_b) = (a.get("traceparent").unwrap().as_str(), b.get("traceparent").unwrap().as_str());
/// assert_eq!(tp_a[..35], tp_b[..35]); // same trace id
/// assert_ne!(tp_a, tp_b); // a new parent id per message
/// // client.publish_with_headers("orders.created", prebuilt.headers(), payload).await?;
/// ```
#[derive(Clone, Debug)]
pub struct ContextHeaders {
    template: HeaderMap,
    trace: Option<TraceContext>,
    b3_single: bool,
    b3_multi: bool,
}

impl ContextHeaders {
    /// Builds the headers of `ctx` once.
    pub fn new(ctx: &Context) -> Self {
        let mut template = HeaderMap::new();
        let sent = ctx.inject_into(&mut template);
        let has = |name: &str| {
            template
                .iter()
                .any(|(k, _)| AsRef::<str>::as_ref(k) == name)
        };
        ContextHeaders {
            trace: sent.and(ctx.trace().cloned()),
            b3_single: has("b3"),
            b3_multi: has("x-b3-spanid"),
            template,
        }
    }

    /// The headers of the current context (empty outside any scope).
    pub fn current() -> Self {
        Context::with_current(ContextHeaders::new).unwrap_or_else(|| ContextHeaders {
            template: HeaderMap::new(),
            trace: None,
            b3_single: false,
            b3_multi: false,
        })
    }

    /// Whether there is nothing to send (built outside any scope).
    pub fn is_empty(&self) -> bool {
        self.template.is_empty()
    }

    /// The headers for one message: the prebuilt ones with a fresh parent id.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = self.template.clone();
        if let Some(trace) = &self.trace {
            let tp = trace.child();
            put(&mut headers, "traceparent", tp.encode().as_str());
            if self.b3_single || self.b3_multi {
                let b3 = B3::from_trace_parent(&tp);
                if self.b3_single {
                    put(&mut headers, "b3", b3.encode_single().as_str());
                }
                if self.b3_multi {
                    for (name, value) in b3.encode_multi().into_iter().flatten() {
                        put(&mut headers, name, value.as_str());
                    }
                }
            }
        }
        headers
    }
}

/// Replaces `name` (a static, valid name) with `value` (hex and dashes, always valid).
fn put(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// Publishing on a core NATS [`Client`] with the current context as headers.
///
/// Each method takes the context current when it is called (the returned future does
/// not need to run in the scope). Outside any scope nothing is added.
pub trait ClientExt {
    /// `publish` with the current context as headers.
    fn publish_in_context<S: ToSubject + Send>(
        &self,
        subject: S,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// `publish_with_headers`, adding the current context to `headers` (headers you
    /// set yourself win).
    fn publish_with_headers_in_context<S: ToSubject + Send>(
        &self,
        subject: S,
        headers: HeaderMap,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// `request` with the current context as headers.
    fn request_in_context<S: ToSubject + Send>(
        &self,
        subject: S,
        payload: Bytes,
    ) -> impl Future<Output = Result<Message, RequestError>> + Send;

    /// `request_with_headers`, adding the current context to `headers`.
    fn request_with_headers_in_context<S: ToSubject + Send>(
        &self,
        subject: S,
        headers: HeaderMap,
        payload: Bytes,
    ) -> impl Future<Output = Result<Message, RequestError>> + Send;
}

impl ClientExt for Client {
    fn publish_in_context<S: ToSubject + Send>(
        &self,
        subject: S,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), PublishError>> + Send {
        self.publish_with_headers_in_context(subject, HeaderMap::new(), payload)
    }

    fn publish_with_headers_in_context<S: ToSubject + Send>(
        &self,
        subject: S,
        mut headers: HeaderMap,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), PublishError>> + Send {
        inject_current(&mut headers);
        async move {
            if headers.is_empty() {
                self.publish(subject, payload).await
            } else {
                self.publish_with_headers(subject, headers, payload).await
            }
        }
    }

    fn request_in_context<S: ToSubject + Send>(
        &self,
        subject: S,
        payload: Bytes,
    ) -> impl Future<Output = Result<Message, RequestError>> + Send {
        self.request_with_headers_in_context(subject, HeaderMap::new(), payload)
    }

    fn request_with_headers_in_context<S: ToSubject + Send>(
        &self,
        subject: S,
        mut headers: HeaderMap,
        payload: Bytes,
    ) -> impl Future<Output = Result<Message, RequestError>> + Send {
        inject_current(&mut headers);
        async move {
            if headers.is_empty() {
                self.request(subject, payload).await
            } else {
                self.request_with_headers(subject, headers, payload).await
            }
        }
    }
}

#[cfg(feature = "jetstream")]
pub use self::jetstream::JetStreamExt;

#[cfg(feature = "jetstream")]
mod jetstream {
    use std::future::Future;

    use async_nats::jetstream::context::{Context as JetStream, PublishAckFuture, PublishError};
    use async_nats::{HeaderMap, ToSubject};
    use bytes::Bytes;

    use super::inject_current;

    /// Publishing to JetStream with the current context as headers.
    ///
    /// As with JetStream's own `publish`, the returned future resolves once the message
    /// is sent; await the [`PublishAckFuture`] for the stream's acknowledgement.
    pub trait JetStreamExt {
        /// `publish` with the current context as headers.
        fn publish_in_context<S: ToSubject + Send>(
            &self,
            subject: S,
            payload: Bytes,
        ) -> impl Future<Output = Result<PublishAckFuture, PublishError>> + Send;

        /// `publish_with_headers`, adding the current context to `headers` (headers you
        /// set yourself, such as `Nats-Msg-Id`, are kept).
        fn publish_with_headers_in_context<S: ToSubject + Send>(
            &self,
            subject: S,
            headers: HeaderMap,
            payload: Bytes,
        ) -> impl Future<Output = Result<PublishAckFuture, PublishError>> + Send;
    }

    impl JetStreamExt for JetStream {
        fn publish_in_context<S: ToSubject + Send>(
            &self,
            subject: S,
            payload: Bytes,
        ) -> impl Future<Output = Result<PublishAckFuture, PublishError>> + Send {
            self.publish_with_headers_in_context(subject, HeaderMap::new(), payload)
        }

        fn publish_with_headers_in_context<S: ToSubject + Send>(
            &self,
            subject: S,
            mut headers: HeaderMap,
            payload: Bytes,
        ) -> impl Future<Output = Result<PublishAckFuture, PublishError>> + Send {
            inject_current(&mut headers);
            async move {
                if headers.is_empty() {
                    self.publish(subject, payload).await
                } else {
                    self.publish_with_headers(subject, headers, payload).await
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use threadline::{B3Emit, Policy, Trust};

    use super::*;

    fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
        h.get(HeaderName::from_str(name).unwrap())
            .map(HeaderValue::as_str)
    }

    #[test]
    fn context_headers_match_inject_with_a_new_parent_id_each_time() {
        for emit in [B3Emit::None, B3Emit::Single, B3Emit::Multi] {
            let policy = Policy::builder()
                .header("x-tenant-id")
                .emit_b3(emit)
                .build()
                .unwrap();
            let mut inbound = http::HeaderMap::new();
            inbound.insert("x-tenant-id", "acme".parse().unwrap());
            inbound.insert("tracestate", "vendor=1".parse().unwrap());
            inbound.insert(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                    .parse()
                    .unwrap(),
            );
            let ctx = policy
                .capture(&inbound, Trust::Trusted)
                .context
                .with_field("user.id", "alice");
            let mut direct = HeaderMap::new();
            ctx.inject_into(&mut direct);

            let prebuilt = ContextHeaders::new(&ctx);
            let mut parents = std::collections::HashSet::new();
            for _ in 0..3 {
                let h = prebuilt.headers();
                let mut keys: Vec<_> = h.iter().map(|(k, _)| k.to_string()).collect();
                let mut want: Vec<_> = direct.iter().map(|(k, _)| k.to_string()).collect();
                keys.sort();
                want.sort();
                assert_eq!(keys, want, "{emit:?}: the same headers as inject");
                for k in [
                    "x-correlation-id",
                    "tracestate",
                    "x-tenant-id",
                    "tl-field-user.id",
                ] {
                    assert_eq!(get(&h, k), get(&direct, k), "{emit:?} {k}");
                }
                let tp = get(&h, "traceparent").unwrap();
                assert!(
                    tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                    "{tp}"
                );
                let parent = &tp[36..52];
                assert_ne!(parent, "00f067aa0ba902b7");
                assert!(
                    parents.insert(parent.to_owned()),
                    "{emit:?}: a new parent id"
                );
                match emit {
                    B3Emit::Single => {
                        let b3 = get(&h, "b3").unwrap();
                        assert!(b3.contains(parent), "{emit:?}: b3 follows traceparent");
                    }
                    B3Emit::Multi => {
                        assert_eq!(get(&h, "x-b3-spanid"), Some(parent), "{emit:?}");
                    }
                    _ => assert!(get(&h, "b3").is_none()),
                }
            }
        }
        let outside = ContextHeaders::current();
        assert!(outside.is_empty());
        assert!(outside.headers().is_empty());
    }
}
