//! The neutral shape every format decodes into and encodes from.

use std::borrow::Cow;
use std::fmt;

use http::HeaderName;

use super::carrier::ReadCarrier;
use crate::carrier::CarrierValue;
use crate::codec::{Baggage, Error, SpanId, TraceFlags, TraceId, TraceParent, percent_decode};

/// A sampling decision, as rich as the richest format: a format that cannot express a
/// state writes the nearest one it has (see the translation table in the
/// [module docs](super)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Sampling {
    /// No decision yet: the receiver decides (B3 without a sampling state, X-Ray
    /// `Sampled=?`, Google Cloud without `o=`, Datadog without a priority).
    #[default]
    Deferred,
    /// Do not record.
    NotSampled,
    /// Record.
    Sampled,
    /// Record, and force it through every sampler on the way (B3 `d`, Jaeger flag
    /// `0x02`); implies sampled.
    Debug,
}

impl Sampling {
    /// Whether the trace is recorded (sampled or debug).
    pub const fn is_sampled(self) -> bool {
        matches!(self, Sampling::Sampled | Sampling::Debug)
    }

    /// From W3C flags (W3C has no deferred or debug state).
    pub const fn from_flags(flags: TraceFlags) -> Self {
        if flags.is_sampled() {
            Sampling::Sampled
        } else {
            Sampling::NotSampled
        }
    }

    /// As W3C flags: sampled or not (deferred is not sampled).
    pub const fn to_flags(self) -> TraceFlags {
        TraceFlags::new(0).with_sampled(self.is_sampled())
    }

    /// From a plain yes/no.
    pub const fn from_bool(sampled: bool) -> Self {
        if sampled {
            Sampling::Sampled
        } else {
            Sampling::NotSampled
        }
    }
}

/// The rest of an X-Ray header (`Self=…`, `Lineage=…`, keys of the user's) to keep
/// when forwarding: borrowed, read on demand.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct XRayExtras<'a> {
    raw: &'a str,
}

impl<'a> XRayExtras<'a> {
    /// Extras from an X-Ray header value (`Root`, `Parent` and `Sampled` are skipped
    /// when iterating, so the whole header can be given). Segments without `=` are
    /// skipped too.
    pub fn new(raw: &'a str) -> Self {
        XRayExtras { raw }
    }

    /// `(key, value)` pairs other than `Root`, `Parent` and `Sampled`, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a> {
        self.raw
            .split(';')
            .map(|s| s.trim_matches([' ', '\t']))
            .filter_map(|s| s.split_once('='))
            .map(|(k, v)| (k.trim_matches([' ', '\t']), v.trim_matches([' ', '\t'])))
            .filter(|(k, _)| !matches!(*k, "Root" | "Parent" | "Sampled"))
    }

    /// Whether there is nothing to forward.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl fmt::Debug for XRayExtras<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Datadog's fields beyond the ids: kept to forward them to a Datadog peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DatadogExtras<'a> {
    /// `x-datadog-origin` (`synthetics`, `rum`, …).
    pub origin: Option<&'a str>,
    /// `x-datadog-tags` as received, `_dd.p.tid` included (it is rewritten from the
    /// trace id on output).
    pub tags: Option<&'a str>,
    /// The exact `x-datadog-sampling-priority` (−1 user reject, 0 auto reject, 1 auto
    /// keep, 2 user keep), written back when it agrees with the sampling decision.
    pub priority: Option<i32>,
}

impl<'a> DatadogExtras<'a> {
    /// Extras from their parts.
    pub fn new(origin: Option<&'a str>, tags: Option<&'a str>, priority: Option<i32>) -> Self {
        DatadogExtras {
            origin,
            tags,
            priority,
        }
    }
}

/// Fields of one format that no other format carries, kept for forwarding to a peer
/// of the same format. Encoders of other formats ignore them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Extras<'a> {
    /// Nothing beyond ids and sampling.
    #[default]
    None,
    /// W3C `tracestate`, validated (borrowed unless several headers had to be joined).
    TraceState(Cow<'a, str>),
    /// The other keys of an X-Ray header.
    XRay(XRayExtras<'a>),
    /// Datadog origin, tags and exact priority.
    Datadog(DatadogExtras<'a>),
}

/// The trace part of a decoded carrier: ids and sampling in one neutral shape.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraceParts<'a> {
    /// The trace id (128 bits; 64-bit formats are padded with zeros on the left).
    pub trace_id: TraceId,
    /// The sender's span: W3C `parent-id`, B3 `SpanId`, X-Ray `Parent`, Datadog
    /// `parent-id`. `None` where the format allows it to be absent (X-Ray without
    /// `Parent`, Datadog without `x-datadog-parent-id`).
    pub span_id: Option<SpanId>,
    /// The sender's own parent, for the two formats that carry it (B3
    /// `ParentSpanId`, Jaeger's deprecated third field); never needed to continue a
    /// trace.
    pub parent_span_id: Option<SpanId>,
    /// The sampling decision.
    pub sampling: Sampling,
    /// Fields only this format carries.
    pub extras: Extras<'a>,
}

impl<'a> TraceParts<'a> {
    /// Trace parts without a grandparent or extras.
    pub fn new(trace_id: TraceId, span_id: Option<SpanId>, sampling: Sampling) -> Self {
        TraceParts {
            trace_id,
            span_id,
            parent_span_id: None,
            sampling,
            extras: Extras::None,
        }
    }

    /// The same parts with `extras`.
    pub fn with_extras(mut self, extras: Extras<'a>) -> Self {
        self.extras = extras;
        self
    }

    /// The same parts with a grandparent span id.
    pub fn with_parent_span_id(mut self, parent: Option<SpanId>) -> Self {
        self.parent_span_id = parent;
        self
    }

    /// From a W3C `traceparent` (no extras).
    pub fn from_trace_parent(tp: &TraceParent) -> Self {
        TraceParts::new(
            tp.trace_id(),
            Some(tp.parent_id()),
            Sampling::from_flags(tp.flags()),
        )
    }

    /// The W3C `traceparent` these parts map to: `None` without a span id (W3C
    /// requires a parent id).
    pub fn to_trace_parent(&self) -> Option<TraceParent> {
        Some(TraceParent::new(
            self.trace_id,
            self.span_id?,
            self.sampling.to_flags(),
        ))
    }

    /// The same parts without borrowed extras (for keeping past the carrier).
    pub fn without_extras(&self) -> TraceParts<'static> {
        TraceParts {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: self.parent_span_id,
            sampling: self.sampling,
            extras: Extras::None,
        }
    }
}

#[derive(Clone)]
enum BaggageSource<'a> {
    /// Every value of a W3C list header (`baggage`), read on demand.
    Lists {
        carrier: &'a dyn ReadCarrier,
        name: &'a HeaderName,
    },
    /// One W3C list given as text.
    List(&'a str),
    /// One header per member, named `<prefix><key>`; values percent-encoded or raw.
    Prefixed {
        carrier: &'a dyn ReadCarrier,
        prefix: &'static str,
        percent_encoded: bool,
    },
    /// Pairs given by the caller (decoded values).
    Pairs(&'a [(&'a str, &'a str)]),
    /// Pairs owned by the parts (from a reader that could not borrow them).
    Owned(std::sync::Arc<[(String, String)]>),
}

/// The baggage part of a decoded carrier, read from the carrier on demand (decoding
/// copies nothing). Members that break their format are skipped.
#[derive(Clone)]
pub struct BaggageParts<'a> {
    source: BaggageSource<'a>,
}

impl<'a> BaggageParts<'a> {
    /// Every value of a W3C list header in `carrier` (normally `baggage`).
    pub fn lists(carrier: &'a dyn ReadCarrier, name: &'a HeaderName) -> Self {
        BaggageParts {
            source: BaggageSource::Lists { carrier, name },
        }
    }

    /// One W3C baggage list.
    pub fn list(list: &'a str) -> Self {
        BaggageParts {
            source: BaggageSource::List(list),
        }
    }

    /// Members in headers named `<prefix><key>` (`uberctx-`, `ot-baggage-`), values
    /// percent-encoded (Jaeger) or raw (OpenTracing).
    pub fn prefixed(
        carrier: &'a dyn ReadCarrier,
        prefix: &'static str,
        percent_encoded: bool,
    ) -> Self {
        BaggageParts {
            source: BaggageSource::Prefixed {
                carrier,
                prefix,
                percent_encoded,
            },
        }
    }

    /// Members given as `(key, decoded value)` pairs (to encode baggage of one's own).
    pub fn pairs(pairs: &'a [(&'a str, &'a str)]) -> Self {
        BaggageParts {
            source: BaggageSource::Pairs(pairs),
        }
    }

    /// Members owned by the parts, as `(key, decoded value)` pairs (for readers that
    /// cannot borrow from the carrier, such as an OpenTelemetry propagator's).
    pub fn owned(pairs: Vec<(String, String)>) -> BaggageParts<'static> {
        BaggageParts {
            source: BaggageSource::Owned(pairs.into()),
        }
    }

    /// Calls `f` with every valid member's key and decoded value, in order.
    pub fn for_each(&self, f: &mut dyn FnMut(&str, &str)) {
        match &self.source {
            &BaggageSource::Lists { carrier, name } => {
                carrier.each(name, &mut |v: CarrierValue<'_>| {
                    if let Some(list) = v.as_bytes().and_then(|b| std::str::from_utf8(b).ok()) {
                        list_members(list, f);
                    }
                });
            }
            BaggageSource::List(list) => list_members(list, f),
            &BaggageSource::Prefixed {
                carrier,
                prefix,
                percent_encoded,
            } => carrier.each_prefixed(prefix, &mut |key: &str, v: CarrierValue<'_>| {
                let key = &key[prefix.len()..];
                let Some(value) = v.as_bytes().and_then(|b| std::str::from_utf8(b).ok()) else {
                    return;
                };
                if !valid_member(key, value) {
                    return;
                }
                let value = value.trim_matches([' ', '\t']);
                if percent_encoded {
                    f(key, &percent_decode(value));
                } else {
                    f(key, value);
                }
            }),
            BaggageSource::Pairs(pairs) => {
                for (k, v) in pairs.iter() {
                    f(k, v);
                }
            }
            BaggageSource::Owned(pairs) => {
                for (k, v) in pairs.iter() {
                    f(k, v);
                }
            }
        }
    }

    /// How many valid members there are.
    pub fn count(&self) -> usize {
        let mut n = 0;
        self.for_each(&mut |_, _| n += 1);
        n
    }

    /// The members as a W3C `baggage` value (values percent-encoded; a member whose key
    /// is not a token is left out).
    pub fn to_w3c(&self) -> Option<Baggage> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        self.for_each(&mut |k, v| {
            if !k.is_empty() && k.bytes().all(crate::codec::is_tchar) {
                pairs.push((k.to_owned(), v.to_owned()));
            }
        });
        if pairs.is_empty() {
            return None;
        }
        Baggage::encode(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).ok()
    }
}

/// A member carried as its own header: the key is a header token, the value visible
/// ASCII (spaces allowed inside), no longer than the W3C per-list minimum.
fn valid_member(key: &str, value: &str) -> bool {
    !key.is_empty()
        && key.bytes().all(crate::codec::is_tchar)
        && value.len() <= crate::codec::BAGGAGE_MIN_BYTES
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

fn list_members(list: &str, f: &mut dyn FnMut(&str, &str)) {
    for m in Baggage::members(list).flatten() {
        f(m.key(), &m.value());
    }
}

impl fmt::Debug for BaggageParts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut members: Vec<(String, String)> = Vec::new();
        self.for_each(&mut |k, v| members.push((k.to_owned(), v.to_owned())));
        f.debug_struct("BaggageParts")
            .field("members", &members)
            .finish()
    }
}

/// What a format decoded from a carrier: the trace part, the baggage part, either or
/// both (`Parts::default()` when the format's headers are absent).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Parts<'a> {
    /// Trace ids and sampling.
    pub trace: Option<TraceParts<'a>>,
    /// Baggage members.
    pub baggage: Option<BaggageParts<'a>>,
}

impl<'a> Parts<'a> {
    /// Parts with a trace and no baggage.
    pub fn trace(trace: TraceParts<'a>) -> Self {
        Parts {
            trace: Some(trace),
            baggage: None,
        }
    }

    /// Parts from both halves.
    pub fn new(trace: Option<TraceParts<'a>>, baggage: Option<BaggageParts<'a>>) -> Self {
        Parts { trace, baggage }
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.trace.is_none() && self.baggage.is_none()
    }
}

/// A value a format refused: the header it was read from and the rule it broke (never
/// the value itself, so it is safe to log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    header: HeaderName,
    error: Error,
}

impl Rejected {
    /// A refusal of the value under `header`.
    pub fn new(header: HeaderName, error: Error) -> Self {
        Rejected { header, error }
    }

    /// The header concerned.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The format and the rule.
    pub fn error(&self) -> Error {
        self.error
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.header, self.error)
    }
}

impl std::error::Error for Rejected {}
