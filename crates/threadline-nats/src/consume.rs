//! Consumer side: NATS message types as [`threadline::restore::Message`], so one
//! [`threadline::Restorer`] restores their context around the handler.

use async_nats::HeaderMap;
use threadline::Policy;
use threadline::restore::Message;

use crate::carrier::NatsHeaders;

/// The marker of this crate's [`Message`] implementations: `async_nats::Message`,
/// `jetstream::Message` (feature `jetstream`) and a bare `async_nats::HeaderMap`. It is
/// inferred; callers never name it.
#[derive(Clone, Copy, Debug)]
pub enum Nats {}

/// A message without headers (or with an empty header map) carries no context.
fn carrier(headers: Option<&HeaderMap>) -> Option<NatsHeaders<'_>> {
    headers.filter(|h| !h.is_empty()).map(NatsHeaders::new)
}

impl Message<Nats> for async_nats::Message {
    type Carrier<'a> = NatsHeaders<'a>;

    fn carrier<'a>(&'a self, _: &'a Policy) -> Option<NatsHeaders<'a>> {
        carrier(self.headers.as_ref())
    }
}

#[cfg(feature = "jetstream")]
impl Message<Nats> for async_nats::jetstream::Message {
    type Carrier<'a> = NatsHeaders<'a>;

    fn carrier<'a>(&'a self, _: &'a Policy) -> Option<NatsHeaders<'a>> {
        carrier(self.message.headers.as_ref())
    }
}

impl Message<Nats> for HeaderMap {
    type Carrier<'a> = NatsHeaders<'a>;

    fn carrier<'a>(&'a self, _: &'a Policy) -> Option<NatsHeaders<'a>> {
        carrier(Some(self))
    }
}
