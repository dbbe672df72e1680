//! Producer side: the current context in the properties of outgoing messages.

use std::future::Future;

use lapin::options::BasicPublishOptions;
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, PublisherConfirm};
use threadline::Context;
use threadline::codec::SpanId;

use crate::carrier::AmqpHeadersMut;

/// Writes `ctx` into `props` and returns them: the `headers` table gets the correlation
/// id, a child `traceparent` (same trace id, new parent id, which is returned as well),
/// `tracestate`, `baggage`, the policy's custom headers and the local fields
/// (`tl-field-user.id`), all as long strings; the `correlation_id` property gets the
/// correlation id when it is unset and fits a short string (255 bytes).
///
/// Headers and a `correlation_id` you set yourself are kept.
pub fn inject(ctx: &Context, props: BasicProperties) -> (BasicProperties, Option<SpanId>) {
    let mut headers = props.headers().clone().unwrap_or_default();
    let sent = ctx.inject(&mut AmqpHeadersMut::new(&mut headers));
    let mut props = props;
    if props.correlation_id().is_none()
        && let Some(id) = ctx
            .correlation_id()
            .and_then(|id| ShortString::try_new(id.as_str()).ok())
    {
        props = props.with_correlation_id(id);
    }
    if !headers.inner().is_empty() {
        props = props.with_headers(headers);
    }
    (props, sent)
}

/// [`inject`] with the current context. Outside any scope `props` come back unchanged.
pub fn inject_current(props: BasicProperties) -> BasicProperties {
    match Context::try_current() {
        Ok(ctx) => inject(&ctx, props).0,
        Err(_) => props,
    }
}

/// The current context as a headers table alone (empty outside any scope).
pub fn current_headers() -> FieldTable {
    let mut headers = FieldTable::default();
    Context::with_current(|ctx| ctx.inject(&mut AmqpHeadersMut::new(&mut headers)));
    headers
}

/// Publishing on a lapin [`Channel`] with the current context in the properties.
pub trait ChannelExt {
    /// `basic_publish`, adding the current context to `properties` (see [`inject`]).
    /// The context is taken when this is called.
    fn basic_publish_in_context(
        &self,
        exchange: ShortString,
        routing_key: ShortString,
        options: BasicPublishOptions,
        payload: &[u8],
        properties: BasicProperties,
    ) -> impl Future<Output = lapin::Result<PublisherConfirm>> + Send;
}

impl ChannelExt for Channel {
    fn basic_publish_in_context(
        &self,
        exchange: ShortString,
        routing_key: ShortString,
        options: BasicPublishOptions,
        payload: &[u8],
        properties: BasicProperties,
    ) -> impl Future<Output = lapin::Result<PublisherConfirm>> + Send {
        let properties = inject_current(properties);
        self.basic_publish(exchange, routing_key, options, payload, properties)
    }
}
