//! Trace and baggage wire formats as pluggable [`Format`]s, and a [`Composite`] that
//! reads the first valid one and writes several.
//!
//! Each format decodes a carrier into one neutral shape, [`Parts`] (trace ids,
//! sampling, format-specific extras, baggage members), and encodes that shape into a
//! carrier; so any format can be read and any other written in the same hop.
//!
//! | format | type | header(s) |
//! |---|---|---|
//! | W3C Trace Context | [`TraceContextFormat`] | `traceparent`, `tracestate` |
//! | W3C Baggage | [`BaggageFormat`] | `baggage` |
//! | Zipkin B3 | [`B3Format`] | `b3`, `x-b3-*` |
//! | Google Cloud | [`CloudTraceFormat`] | `x-cloud-trace-context` |
//! | AWS X-Ray | [`XRayFormat`] | `x-amzn-trace-id` |
//! | Jaeger | [`JaegerFormat`] | `uber-trace-id`, `uberctx-*` |
//! | Datadog | [`DatadogFormat`] | `x-datadog-trace-id`, `-parent-id`, `-sampling-priority`, `-origin`, `-tags` |
//! | OpenTracing | [`OtFormat`] | `ot-tracer-traceid`, `-spanid`, `-sampled`, `ot-baggage-*` |
//! | any OpenTelemetry propagator | `OtelFormat` (feature `opentelemetry`) | the propagator's |
//!
//! Decoding borrows from the carrier and never allocates (baggage members are read from
//! the carrier when asked for); it never panics, and a refused value is a [`Rejected`]:
//! the header and a typed [`codec::Error`](crate::codec::Error) with a fixed reason,
//! never the value. Encoding never overwrites a header the carrier already has.
//!
//! ```
//! use threadline::format::{Composite, Format, JaegerFormat, XRayFormat};
//!
//! // Accept X-Ray (from an AWS load balancer) or W3C; send W3C and Jaeger onwards.
//! let formats = Composite::new()
//!     .read(threadline::format::TraceContextFormat)
//!     .read(XRayFormat)
//!     .write(threadline::format::TraceContextFormat)
//!     .write(JaegerFormat);
//!
//! let mut inbound = http::HeaderMap::new();
//! inbound.insert("x-amzn-trace-id",
//!     "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".parse().unwrap());
//! let decoded = formats.decode(&inbound);
//! assert_eq!(decoded.trace_from, Some(threadline::codec::Codec::XRay));
//! assert!(decoded.report.is_empty());
//!
//! let mut outgoing = http::HeaderMap::new();
//! formats.encode(&decoded.parts, &mut outgoing);
//! assert_eq!(outgoing["traceparent"], "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01");
//! assert_eq!(outgoing["uber-trace-id"], "5759e988bd862e3fe1be46a994272793:53995c3f42cd8ad8:0:1");
//! ```
//!
//! # Translation
//!
//! Every format carries a trace id, the sender's span id and a sampled/not sampled
//! decision, and those survive any translation (a 64-bit format pads the trace id with
//! zeros on the left; Datadog splits it into a decimal lower half and `_dd.p.tid`).
//! What the format of a row carries and the format of a column cannot express:
//!
//! | from \ to | W3C | B3 | GCP | X-Ray | Jaeger | Datadog | OT |
//! |---|---|---|---|---|---|---|---|
//! | **W3C** | — | ts, bag, props | ts, bag, props | ts, bag, props | ts, props | ts, low0, bag, props | ts, props |
//! | **B3** | def, dbg, gp | — | dbg, gp | dbg, gp | def | dbg, gp, low0 | dbg, gp |
//! | **GCP** | def | nothing | — | nothing | def | low0 | nothing |
//! | **X-Ray** | def, nospan, xr | nospan, xr | nospan, xr | — | def, nospan, xr | xr, low0 | nospan, xr |
//! | **Jaeger** | dbg, gp | bag | dbg, gp, bag | dbg, gp, bag | — | dbg, gp, low0, bag | dbg, gp |
//! | **Datadog** | def, nospan, dd | nospan, dd | nospan, dd | dd | def, nospan, dd | — | nospan, dd |
//! | **OT** | def | bag | bag | bag | def | low0, bag | — |
//!
//! (W3C here is [`TraceContextFormat`] with [`BaggageFormat`].)
//!
//! - **ts**: `tracestate` (only W3C has it).
//! - **def**: a deferred decision (B3 without sampling, GCP without `o=`, X-Ray
//!   `Sampled=?` or none, Datadog without priority, OT without `ot-tracer-sampled`):
//!   W3C and Jaeger have no such state and write *not sampled*.
//! - **dbg**: debug (B3 `d` / `X-B3-Flags: 1`, Jaeger flag `0x02`): written as
//!   *sampled* elsewhere (as priority 2, user keep, for Datadog).
//! - **gp**: the sender's parent span id (B3 `ParentSpanId`, Jaeger's deprecated third
//!   field).
//! - **nospan**: a trace without a span id (X-Ray without `Parent`, Datadog without
//!   `x-datadog-parent-id`): formats that require one write nothing for such a trace.
//!   Continuing a trace always gives the outgoing call its own span id, so this only
//!   matters when translating a received value as it is.
//! - **xr**: X-Ray's other keys (`Self`, `Lineage`, …).
//! - **dd**: Datadog's origin, tags other than `_dd.p.tid`, and the exact priority
//!   (−1 and 2 become not sampled / sampled).
//! - **low0**: a trace id whose lower 64 bits are all zero: Datadog sends the lower
//!   half as a non-zero decimal and cannot express it (nothing is written).
//! - **bag**: baggage (W3C `baggage`, Jaeger `uberctx-*`, OT `ot-baggage-*`); **props**:
//!   W3C baggage properties (`;ttl=60`), which the per-header forms have no place for.
//!   Keys travelling as header names are lower-cased by HTTP.
//!
//! Beyond the syntax: X-Ray's backend expects the first 8 hex digits of a trace id to
//! be a recent Unix time (its own ids are made so); a random W3C trace id forwarded as
//! X-Ray is valid on the wire, but AWS may refuse to record it. Datadog peers that do
//! not read `_dd.p.tid` see only the lower 64 bits.
//!
//! # Precedence (the [`Composite`])
//!
//! Readers are tried in the order given ([`Composite::default`]: W3C Trace Context,
//! then W3C Baggage). The first reader that yields a trace supplies the trace; the first
//! that yields baggage supplies the baggage. A reader that refuses its value is
//! reported and the next one is tried. Every reader is consulted, so that a later one
//! naming a different trace id than the one kept is reported too (`Conflict`, under
//! that format's header); a later one naming the same trace is not reported.
//!
//! # Your own format
//!
//! Implement [`Format`]: read through [`ReadCarrier`] (borrowed values), refuse with a
//! [`Rejected`] built from [`Codec::Custom`], write with
//! [`Injector::set_if_absent`].

mod b3;
mod carrier;
mod cloud;
mod composite;
mod datadog;
mod jaeger;
mod ot;
#[cfg(feature = "opentelemetry")]
mod otel;
mod parts;
mod text;
mod w3c;
mod xray;

use std::fmt;

use http::HeaderName;
use smallvec::SmallVec;

pub use b3::B3Format;
pub use carrier::{CarrierRef, Found, InjectorRef, ReadCarrier};
pub use cloud::CloudTraceFormat;
pub use composite::{Composite, Decoded};
pub use datadog::{DATADOG_TAGS_MAX_BYTES, DatadogFormat};
pub use jaeger::{JAEGER_BAGGAGE_PREFIX, JaegerFormat};
pub use ot::{OT_BAGGAGE_PREFIX, OtFormat};
#[cfg(feature = "opentelemetry")]
pub use otel::{OtelFormat, PolicyPropagator};
pub use parts::{
    BaggageParts, DatadogExtras, Extras, Parts, Rejected, Sampling, TraceParts, XRayExtras,
};
pub use w3c::{BaggageFormat, TraceContextFormat};
pub use xray::XRayFormat;

use crate::carrier::Injector;
use crate::codec::Codec;

/// One wire format: decodes a carrier into [`Parts`], encodes [`Parts`] into a carrier.
///
/// Object-safe, so that a [`Composite`] can hold any mix of them; `Send + Sync` so that
/// a policy holding one can be shared.
///
/// A format of one's own, `x-trace: <32 hex trace id>.<16 hex span id>`:
///
/// ```
/// use http::HeaderName;
/// use threadline::Injector;
/// use threadline::codec::{Codec, Error, ErrorKind, SpanId, TraceId};
/// use threadline::format::{Format, Found, Parts, ReadCarrier, Rejected, Sampling, TraceParts};
///
/// #[derive(Debug)]
/// struct XTrace;
///
/// static NAME: HeaderName = HeaderName::from_static("x-trace");
///
/// impl Format for XTrace {
///     fn codec(&self) -> Codec {
///         Codec::Custom("x-trace")
///     }
///     fn fields(&self) -> &[HeaderName] {
///         std::slice::from_ref(&NAME)
///     }
///     fn decode<'a>(&self, carrier: &'a dyn ReadCarrier) -> Result<Parts<'a>, Rejected> {
///         let refuse = |kind| Rejected::new(NAME.clone(), Error::new(self.codec(), kind));
///         let v = match carrier.get(&NAME) {
///             Found::Absent => return Ok(Parts::default()),
///             Found::Many(_) => return Err(refuse(ErrorKind::Duplicate)),
///             Found::One(v) => v.as_bytes().ok_or(refuse(ErrorKind::NotText))?,
///         };
///         let text = std::str::from_utf8(v).map_err(|_| refuse(ErrorKind::InvalidChar))?;
///         let (t, s) = text.split_once('.').ok_or(refuse(ErrorKind::Separator))?;
///         let trace_id = TraceId::from_hex(t).ok_or(refuse(ErrorKind::TraceId))?;
///         let span_id = SpanId::from_hex(s).ok_or(refuse(ErrorKind::SpanId))?;
///         Ok(Parts::trace(TraceParts::new(trace_id, Some(span_id), Sampling::Deferred)))
///     }
///     fn encode(&self, parts: &Parts<'_>, carrier: &mut dyn Injector) {
///         let Some(t) = &parts.trace else { return };
///         let Some(s) = t.span_id else { return };
///         if let Ok(v) = format!("{}.{s}", t.trace_id).parse() {
///             carrier.set_if_absent(&NAME, &v);
///         }
///     }
/// }
///
/// // Read x-trace, write W3C.
/// let formats = threadline::format::Composite::new()
///     .read(XTrace)
///     .write(threadline::format::TraceContextFormat);
/// let mut inbound = http::HeaderMap::new();
/// inbound.insert("x-trace", "4bf92f3577b34da6a3ce929d0e0e4736.00f067aa0ba902b7".parse().unwrap());
/// let decoded = formats.decode(&inbound);
/// let mut outgoing = http::HeaderMap::new();
/// formats.encode(&decoded.parts, &mut outgoing);
/// assert_eq!(outgoing["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
/// ```
pub trait Format: fmt::Debug + Send + Sync {
    /// The format, as named in errors and reports.
    fn codec(&self) -> Codec;

    /// The header names this format reads and writes (lower case).
    fn fields(&self) -> &[HeaderName];

    /// The prefix of per-member baggage headers (`uberctx-`), if the format has them.
    fn prefix(&self) -> Option<&'static str> {
        None
    }

    /// Reads the format's headers. `Ok` with empty [`Parts`] when they are absent;
    /// `Err` when they are present and break the format (the header and the rule).
    fn decode<'a>(&self, carrier: &'a dyn ReadCarrier) -> Result<Parts<'a>, Rejected>;

    /// Writes `parts` in this format. What the format cannot express is left out (see
    /// the translation table in the [module docs](self)); headers the carrier already
    /// has are not overwritten.
    fn encode(&self, parts: &Parts<'_>, carrier: &mut dyn Injector);
}

impl<F: Format + ?Sized> Format for std::sync::Arc<F> {
    fn codec(&self) -> Codec {
        (**self).codec()
    }

    fn fields(&self) -> &[HeaderName] {
        (**self).fields()
    }

    fn prefix(&self) -> Option<&'static str> {
        (**self).prefix()
    }

    fn decode<'a>(&self, carrier: &'a dyn ReadCarrier) -> Result<Parts<'a>, Rejected> {
        (**self).decode(carrier)
    }

    fn encode(&self, parts: &Parts<'_>, carrier: &mut dyn Injector) {
        (**self).encode(parts, carrier);
    }
}

/// An encoded header value: on the stack up to 96 bytes (every trace header without
/// extras), on the heap beyond.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Encoded(SmallVec<[u8; 96]>);

impl Encoded {
    pub(crate) fn new() -> Self {
        Encoded(SmallVec::new())
    }

    pub(crate) fn from_slice(b: &[u8]) -> Self {
        Encoded(SmallVec::from_slice(b))
    }

    pub(crate) fn push(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The encoded text.
    pub fn as_str(&self) -> &str {
        // Encoders write ASCII, and extras that were checked as visible ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
