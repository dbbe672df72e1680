//! Consumer side: rumqttc's v5 publish types as [`threadline::restore::Message`], so one
//! [`threadline::Restorer`] restores their context around the handler.

use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use threadline::Policy;
use threadline::restore::Message;

use crate::carrier::MqttProperties;

/// The marker of this crate's [`Message`] and
/// [`Outgoing`](threadline::inject::Outgoing) implementations: a received [`Publish`]
/// and bare [`PublishProperties`]. It is inferred; callers never name it.
#[derive(Clone, Copy, Debug)]
pub enum Mqtt {}

/// The publish's user properties, with its correlation data standing in for a missing
/// correlation header; `None` when it carries neither.
fn carrier<'a>(
    props: Option<&'a PublishProperties>,
    policy: &'a Policy,
) -> Option<MqttProperties<'a>> {
    let carrier = MqttProperties::from_properties(props?, policy.correlation_header());
    (!carrier.is_empty()).then_some(carrier)
}

impl Message<Mqtt> for Publish {
    type Carrier<'a> = MqttProperties<'a>;

    fn carrier<'a>(&'a self, policy: &'a Policy) -> Option<MqttProperties<'a>> {
        carrier(self.properties.as_ref(), policy)
    }
}

impl Message<Mqtt> for PublishProperties {
    type Carrier<'a> = MqttProperties<'a>;

    fn carrier<'a>(&'a self, policy: &'a Policy) -> Option<MqttProperties<'a>> {
        carrier(Some(self), policy)
    }
}
