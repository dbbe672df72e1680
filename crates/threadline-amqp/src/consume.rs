//! Consumer side: lapin's message types as [`threadline::restore::Message`], so one
//! [`threadline::Restorer`] restores their context around the handler.

use lapin::BasicProperties;
use lapin::message::{BasicGetMessage, Delivery};
use threadline::Policy;
use threadline::restore::Message;

use crate::carrier::AmqpHeaders;

/// The marker of this crate's [`Message`] implementations: [`Delivery`],
/// [`BasicGetMessage`] and bare [`BasicProperties`]. It is inferred; callers never name
/// it.
#[derive(Clone, Copy, Debug)]
pub enum Amqp {}

/// The message's headers, with the `correlation_id` property standing in for a missing
/// correlation header; `None` when it has neither.
fn carrier<'a>(props: &'a BasicProperties, policy: &'a Policy) -> Option<AmqpHeaders<'a>> {
    let carrier = AmqpHeaders::from_properties(props, policy.correlation_header());
    (!carrier.is_empty()).then_some(carrier)
}

impl Message<Amqp> for Delivery {
    type Carrier<'a> = AmqpHeaders<'a>;

    fn carrier<'a>(&'a self, policy: &'a Policy) -> Option<AmqpHeaders<'a>> {
        carrier(&self.properties, policy)
    }
}

impl Message<Amqp> for BasicGetMessage {
    type Carrier<'a> = AmqpHeaders<'a>;

    fn carrier<'a>(&'a self, policy: &'a Policy) -> Option<AmqpHeaders<'a>> {
        carrier(&self.delivery.properties, policy)
    }
}

impl Message<Amqp> for BasicProperties {
    type Carrier<'a> = AmqpHeaders<'a>;

    fn carrier<'a>(&'a self, policy: &'a Policy) -> Option<AmqpHeaders<'a>> {
        carrier(self, policy)
    }
}
