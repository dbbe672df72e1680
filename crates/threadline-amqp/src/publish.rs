//! Producer side: the current context in the properties of outgoing messages.

use std::future::Future;

use lapin::options::BasicPublishOptions;
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, PublisherConfirm};
use threadline::Context;
use threadline::codec::SpanId;

use threadline::inject::Outgoing;

use crate::Amqp;
use crate::carrier::AmqpHeadersMut;

/// lapin's `BasicProperties` as an outgoing message: `ctx.inject_into(&mut props)` and
/// `threadline::inject_current(&mut props)` write the correlation id, a child
/// `traceparent` (same trace id, new parent id, which is returned), `tracestate`,
/// `baggage`, the policy's custom headers and the local fields (`tl-field-user.id`)
/// into the `headers` table, all as long strings, and the correlation id into the
/// `correlation_id` property when it is unset and fits a short string (255 bytes).
///
/// Headers and a `correlation_id` you set yourself are kept.
impl Outgoing<Amqp> for BasicProperties {
    fn inject_context(&mut self, ctx: &Context) -> Option<SpanId> {
        let mut headers = self.headers().clone().unwrap_or_default();
        let sent = ctx.inject(&mut AmqpHeadersMut::new(&mut headers));
        let mut props = std::mem::take(self);
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
        *self = props;
        sent
    }
}

/// lapin's `FieldTable` (a message's `headers` alone) as an outgoing message.
impl Outgoing<Amqp> for FieldTable {
    fn inject_context(&mut self, ctx: &Context) -> Option<SpanId> {
        ctx.inject(&mut AmqpHeadersMut::new(self))
    }
}

/// Publishing on a lapin [`Channel`] with the current context in the properties.
pub trait ChannelExt {
    /// `basic_publish`, adding the current context to `properties` (see `Context::inject_into`).
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
        let mut properties = properties;
        threadline::inject_current(&mut properties);
        self.basic_publish(exchange, routing_key, options, payload, properties)
    }
}
