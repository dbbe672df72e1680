//! Producer side: the current context in the properties of outgoing publishes.

use std::future::Future;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use rumqttc::v5::{AsyncClient, ClientError};
use threadline::Context;
use threadline::codec::SpanId;
use threadline::inject::Outgoing;

use crate::Mqtt;
use crate::carrier::{MqttPropertiesMut, correlation_data};

/// rumqttc's v5 `PublishProperties` as an outgoing message: `ctx.inject_into(&mut
/// props)` and `threadline::inject_current(&mut props)` write the correlation id, a
/// child `traceparent` (same trace id, new parent id, which is returned),
/// `tracestate`, `baggage`, the policy's custom headers and the local fields
/// (`tl-field-user.id`) as user properties, and the correlation id also as the
/// correlation data when that is unset.
///
/// User properties and correlation data you set yourself are kept; the correlation
/// data then mirrors the correlation user property the publish carries (yours or the
/// context's). What MQTT cannot carry (a string over 65,535 bytes, a control
/// character) is skipped, never a panic.
impl Outgoing<Mqtt> for PublishProperties {
    fn inject_context(&mut self, ctx: &Context) -> Option<SpanId> {
        let sent = ctx.inject(&mut MqttPropertiesMut::new(&mut self.user_properties));
        if self.correlation_data.is_none() {
            let header = ctx.policy().correlation_header().as_str();
            self.correlation_data = self
                .user_properties
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(header))
                .and_then(|(_, v)| correlation_data(v));
        }
        sent
    }
}

/// Publishing on a rumqttc v5 [`AsyncClient`] with the current context in the
/// publish properties.
///
/// Each method takes the context current when it is called (the returned future does
/// not need to run in the scope). Outside any scope nothing is added.
pub trait AsyncClientExt {
    /// `publish_with_properties` with the current context as the properties (see
    /// [`Outgoing`] for `PublishProperties`).
    fn publish_in_context<S, P>(
        &self,
        topic: S,
        qos: QoS,
        retain: bool,
        payload: P,
    ) -> impl Future<Output = Result<(), ClientError>> + Send
    where
        S: Into<String> + Send,
        P: Into<Bytes> + Send;

    /// `publish_with_properties`, adding the current context to `properties` (user
    /// properties, correlation data and a response topic you set yourself are kept).
    fn publish_with_properties_in_context<S, P>(
        &self,
        topic: S,
        qos: QoS,
        retain: bool,
        payload: P,
        properties: PublishProperties,
    ) -> impl Future<Output = Result<(), ClientError>> + Send
    where
        S: Into<String> + Send,
        P: Into<Bytes> + Send;
}

impl AsyncClientExt for AsyncClient {
    fn publish_in_context<S, P>(
        &self,
        topic: S,
        qos: QoS,
        retain: bool,
        payload: P,
    ) -> impl Future<Output = Result<(), ClientError>> + Send
    where
        S: Into<String> + Send,
        P: Into<Bytes> + Send,
    {
        self.publish_with_properties_in_context(
            topic,
            qos,
            retain,
            payload,
            PublishProperties::default(),
        )
    }

    fn publish_with_properties_in_context<S, P>(
        &self,
        topic: S,
        qos: QoS,
        retain: bool,
        payload: P,
        mut properties: PublishProperties,
    ) -> impl Future<Output = Result<(), ClientError>> + Send
    where
        S: Into<String> + Send,
        P: Into<Bytes> + Send,
    {
        threadline::inject_current(&mut properties);
        self.publish_with_properties(topic, qos, retain, payload, properties)
    }
}

#[cfg(test)]
mod tests {
    use threadline::{Policy, Trust};

    use super::*;
    use crate::carrier::MAX_FIELD_BYTES;

    fn user<'a>(p: &'a PublishProperties, name: &str) -> Vec<&'a str> {
        p.user_properties
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn context(id: &str) -> Context {
        let policy = Policy::builder()
            .header("x-tenant-id")
            .limits(
                threadline::Limits::default()
                    .with_correlation_id_max_len(100_000)
                    .with_max_value_bytes(100_000)
                    .with_max_total_bytes(400_000),
            )
            .build()
            .unwrap();
        let mut inbound = http::HeaderMap::new();
        inbound.insert("x-correlation-id", id.parse().unwrap());
        inbound.insert("x-tenant-id", "acme".parse().unwrap());
        let captured = policy.capture(&inbound, Trust::Trusted);
        assert!(captured.report.is_empty(), "{:?}", captured.report);
        captured.context.with_field("user.id", "alice")
    }

    #[test]
    fn writes_user_properties_and_correlation_data() {
        let ctx = context("order-42");
        let mut p = PublishProperties::default();
        let sent = ctx.inject_into(&mut p);
        assert!(sent.is_some(), "a child traceparent");
        assert_eq!(user(&p, "x-correlation-id"), ["order-42"]);
        assert_eq!(user(&p, "x-tenant-id"), ["acme"]);
        assert_eq!(user(&p, "tl-field-user.id"), ["alice"]);
        assert_eq!(user(&p, "traceparent").len(), 1);
        assert_eq!(p.correlation_data.as_deref(), Some(b"order-42".as_slice()));
    }

    #[test]
    fn keeps_what_the_producer_set() {
        let ctx = context("order-42");
        let mut p = PublishProperties {
            correlation_data: Some(Bytes::from_static(b"\x01rpc-token")),
            response_topic: Some("replies/1".into()),
            user_properties: vec![("X-Tenant-Id".into(), "mine".into())],
            ..Default::default()
        };
        ctx.inject_into(&mut p);
        assert_eq!(
            p.correlation_data.as_deref(),
            Some(b"\x01rpc-token".as_slice())
        );
        assert_eq!(p.response_topic.as_deref(), Some("replies/1"));
        assert_eq!(user(&p, "X-Tenant-Id"), ["mine"]);
        assert!(user(&p, "x-tenant-id").is_empty(), "never a second tenant");

        let mut p = PublishProperties {
            user_properties: vec![("x-correlation-id".into(), "set-by-hand".into())],
            ..Default::default()
        };
        ctx.inject_into(&mut p);
        assert_eq!(user(&p, "x-correlation-id"), ["set-by-hand"]);
        assert_eq!(
            p.correlation_data.as_deref(),
            Some(b"set-by-hand".as_slice()),
            "the data mirrors the header the publish carries"
        );
    }

    #[test]
    fn an_id_too_long_for_mqtt_is_skipped_not_a_panic() {
        let id = "c".repeat(MAX_FIELD_BYTES + 10);
        let ctx = context(&id);
        assert_eq!(ctx.correlation_id().unwrap().as_str().len(), id.len());
        let mut p = PublishProperties::default();
        ctx.inject_into(&mut p);
        assert!(user(&p, "x-correlation-id").is_empty());
        assert_eq!(p.correlation_data, None);
        assert_eq!(user(&p, "x-tenant-id"), ["acme"], "the rest still goes");
    }

    #[test]
    fn nothing_outside_a_scope() {
        let mut p = PublishProperties::default();
        assert_eq!(threadline::inject_current(&mut p), None);
        assert_eq!(p, PublishProperties::default());
    }
}
