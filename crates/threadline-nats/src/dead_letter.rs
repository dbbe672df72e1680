//! JetStream messages a consumer could not take: a bound on their redeliveries
//! ([`recommended_pull_config`]) and a second way to them, [`DeadLetters`], that reads
//! each from the stream as JSON (so async-nats never parses its header block) and hands
//! it to the handler with its context restored leniently.
//!
//! See the crate docs, "Malformed header blocks", for why this is needed.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::{self, response::Response, stream::RawMessage};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures_util::StreamExt as _;
use threadline::Policy;
use threadline::restore::Message;

use crate::consume::Nats;
use crate::malformed::{Malformation, RawHeaders};

/// Deliveries a consumer made with [`recommended_pull_config`] attempts per message.
pub const MAX_DELIVER: i64 = 5;

/// The waits before redeliveries 2, 3, 4 and 5 in [`recommended_pull_config`] (the
/// server's `backoff`: its first entry also replaces `ack_wait`).
pub const BACKOFF: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(60),
];

/// The subject prefix of the advisory the server publishes when a message has used up
/// its deliveries: `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`.
pub const MAX_DELIVERIES_ADVISORY: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES";

/// A durable pull consumer whose redeliveries are bounded: explicit acks,
/// [`MAX_DELIVER`] deliveries at most, redelivered after [`BACKOFF`]. Without a bound, a
/// message async-nats cannot parse is redelivered forever, and each delivery drops the
/// consumer's connection. Messages that use up their deliveries are announced by the
/// server and taken by [`DeadLetters`].
///
/// Adjust the other fields with struct update syntax:
///
/// ```
/// use async_nats::jetstream::consumer::pull;
/// use threadline_nats::dead_letter::recommended_pull_config;
///
/// let config = pull::Config {
///     filter_subject: "orders.>".into(),
///     ..recommended_pull_config("orders")
/// };
/// assert_eq!(config.max_deliver, 5);
/// ```
pub fn recommended_pull_config(durable_name: impl Into<String>) -> pull::Config {
    pull::Config {
        durable_name: Some(durable_name.into()),
        ack_policy: AckPolicy::Explicit,
        ack_wait: BACKOFF[0],
        max_deliver: MAX_DELIVER,
        backoff: BACKOFF.to_vec(),
        ..Default::default()
    }
}

/// A message JetStream stopped delivering to a consumer, read from the stream as JSON:
/// its headers as Threadline reads them ([`RawHeaders`]), whatever async-nats makes of
/// them. Restores through [`threadline::Restorer`] like a received message.
#[derive(Clone, Debug)]
pub struct Undeliverable {
    stream: String,
    consumer: String,
    sequence: u64,
    deliveries: u64,
    subject: String,
    headers: Option<RawHeaders>,
    payload: Bytes,
}

impl Undeliverable {
    /// The stream it is stored in.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The consumer that gave up on it.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Its sequence in the stream.
    pub fn stream_sequence(&self) -> u64 {
        self.sequence
    }

    /// How many times it was delivered.
    pub fn deliveries(&self) -> u64 {
        self.deliveries
    }

    /// The subject it was published to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Its payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Its header block, read leniently; `None` when it had none.
    pub fn headers(&self) -> Option<&RawHeaders> {
        self.headers.as_ref()
    }

    /// Why no async-nats client can receive it, or `None` when its header block is
    /// fine (then its deliveries ran out for another reason: the handler failed, did
    /// not acknowledge in time, or it was in flight when a connection dropped).
    pub fn malformation(&self) -> Option<Malformation> {
        self.headers.as_ref().and_then(RawHeaders::malformation)
    }
}

impl Message<Nats> for Undeliverable {
    type Carrier<'a> = <RawHeaders as Message<Nats>>::Carrier<'a>;

    fn carrier<'a>(&'a self, policy: &'a Policy) -> Option<Self::Carrier<'a>> {
        self.headers.as_ref().and_then(|h| h.carrier(policy))
    }
}

/// The fields of a `MAX_DELIVERIES` advisory.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MaxDeliveries {
    /// The stream.
    pub stream: String,
    /// The consumer.
    pub consumer: String,
    /// The message's sequence in the stream.
    pub stream_sequence: u64,
    /// How many times it was delivered.
    pub deliveries: u64,
}

impl MaxDeliveries {
    /// Reads the JSON payload of an advisory published on
    /// [`MAX_DELIVERIES_ADVISORY`]`.<stream>.<consumer>` (for advisories received
    /// otherwise than through [`DeadLetters::next`], say captured into a stream).
    pub fn parse(payload: &[u8]) -> Option<MaxDeliveries> {
        let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
        Some(MaxDeliveries {
            stream: v.get("stream")?.as_str()?.to_owned(),
            consumer: v.get("consumer")?.as_str()?.to_owned(),
            stream_sequence: v.get("stream_seq")?.as_u64()?,
            deliveries: v.get("deliveries")?.as_u64()?,
        })
    }
}

/// The messages a consumer gave up on, as the server announces them: each is read from
/// the stream with the JetStream API's `STREAM.MSG.GET` (a JSON reply with the header
/// block base64-encoded, which async-nats does not parse) and returned as an
/// [`Undeliverable`] for the handler to run on.
///
/// Give it a JetStream context over **a connection of its own**, not the consumer's: a
/// malformed message drops the consumer's connection, and an advisory arriving during
/// the drop would be lost (advisories are core NATS messages, at most once).
///
/// ```no_run
/// use threadline::{Policy, Restorer, Trust};
/// use threadline_nats::dead_letter::DeadLetters;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), async_nats::Error> {
/// let restorer = Restorer::new(Policy::builder().build()?).trust(Trust::Trusted);
/// let js = async_nats::jetstream::new(async_nats::connect("127.0.0.1:4222").await?);
/// let mut dead = DeadLetters::watch(js, "ORDERS", "orders").await?;
/// while let Some(msg) = dead.next().await {
///     let msg = msg?;
///     restorer.handle(&msg, |msg| async move {
///         // The handler, in the producer's context as far as it could be read;
///         // `msg.malformation()` says why the consumer could not receive it.
///         let _ = msg.payload();
///     }).await;
///     dead.remove(&msg).await?; // or leave it in the stream
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct DeadLetters {
    js: jetstream::Context,
    stream: String,
    consumer: String,
    advisories: async_nats::Subscriber,
}

impl DeadLetters {
    /// Subscribes to the `MAX_DELIVERIES` advisories of `consumer` on `stream`. Only
    /// messages given up on from then on are seen.
    pub async fn watch(
        js: jetstream::Context,
        stream: &str,
        consumer: &str,
    ) -> Result<DeadLetters, async_nats::Error> {
        let client = js.client();
        let advisories = client
            .subscribe(format!("{MAX_DELIVERIES_ADVISORY}.{stream}.{consumer}"))
            .await?;
        // The subscription is in place once the server has answered a request sent
        // after it on the same connection.
        let _: Response<serde_json::Value> = js.request("INFO", &()).await?;
        Ok(DeadLetters {
            js,
            stream: stream.to_owned(),
            consumer: consumer.to_owned(),
            advisories,
        })
    }

    /// The next message the consumer gave up on; `None` when the subscription ended.
    /// An error when the message could not be read (deleted from the stream
    /// meanwhile, say); the watch goes on.
    pub async fn next(&mut self) -> Option<Result<Undeliverable, async_nats::Error>> {
        loop {
            let advisory = self.advisories.next().await?;
            let Some(max) = MaxDeliveries::parse(&advisory.payload) else {
                continue;
            };
            return Some(self.fetch(&max).await);
        }
    }

    /// Reads the message an advisory names from its stream.
    pub async fn fetch(
        &self,
        advisory: &MaxDeliveries,
    ) -> Result<Undeliverable, async_nats::Error> {
        let raw = get_raw(&self.js, &advisory.stream, advisory.stream_sequence).await?;
        let headers = match raw.headers {
            Some(h) if !h.is_empty() => Some(RawHeaders::parse(&STANDARD.decode(h)?)),
            _ => None,
        };
        Ok(Undeliverable {
            stream: advisory.stream.clone(),
            consumer: advisory.consumer.clone(),
            sequence: raw.sequence,
            deliveries: advisory.deliveries,
            subject: raw.subject,
            headers,
            payload: STANDARD.decode(raw.payload)?.into(),
        })
    }

    /// Deletes the message from its stream (for every consumer of the stream). On a
    /// work-queue stream a message given up on otherwise stays forever.
    pub async fn remove(&self, msg: &Undeliverable) -> Result<(), async_nats::Error> {
        let stream = self.js.get_stream_no_info(&msg.stream).await?;
        stream.delete_message(msg.sequence).await?;
        Ok(())
    }

    /// The stream watched.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The consumer watched.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }
}

/// `STREAM.MSG.GET`, the reply kept as JSON: the header block stays base64 for
/// [`RawHeaders`] to read (async-nats's own `get_raw_message` parses it and fails on the
/// same blocks its connection does; its `direct_get` receives it as a message and drops
/// the connection).
async fn get_raw(
    js: &jetstream::Context,
    stream: &str,
    sequence: u64,
) -> Result<RawMessage, async_nats::Error> {
    let reply: Response<serde_json::Value> = js
        .request(
            format!("STREAM.MSG.GET.{stream}"),
            &serde_json::json!({ "seq": sequence }),
        )
        .await?;
    match reply {
        Response::Ok(mut v) => Ok(serde_json::from_value(v["message"].take())?),
        Response::Err { error } => Err(error.into()),
    }
}
