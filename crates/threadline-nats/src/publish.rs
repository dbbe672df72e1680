//! Producer side: the current context as headers of outgoing messages.

use std::future::Future;

use async_nats::client::{PublishError, RequestError};
use async_nats::{Client, HeaderMap, Message, ToSubject};
use bytes::Bytes;
use threadline::Context;
use threadline::codec::SpanId;

use crate::carrier::NatsHeadersMut;

/// Writes `ctx` into `headers` (see [`Context::inject`]): correlation id, a child
/// `traceparent` (same trace id, new parent id, which is returned), `tracestate`,
/// `baggage`, the policy's custom headers and the local fields as `tl-field-<name>`.
/// Headers already set are kept.
pub fn inject(ctx: &Context, headers: &mut HeaderMap) -> Option<SpanId> {
    ctx.inject(&mut NatsHeadersMut::new(headers))
}

/// [`inject`] with the current context. Outside any scope it writes nothing.
pub fn inject_current(headers: &mut HeaderMap) -> Option<SpanId> {
    Context::with_current(|ctx| inject(ctx, headers)).flatten()
}

/// The current context as a new `HeaderMap` (empty outside any scope).
pub fn current_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    inject_current(&mut headers);
    headers
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
