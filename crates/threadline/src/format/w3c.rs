//! W3C Trace Context and W3C Baggage as [`Format`]s: thin adapters over the
//! [`TraceParent`], [`TraceState`] and [`Baggage`] codecs.

use std::borrow::Cow;

use http::HeaderName;

use super::carrier::{Found, ReadCarrier};
use super::parts::{BaggageParts, Extras, Parts, Rejected, TraceParts};
use super::text::{bytes_of, put, put_value};
use super::{Encoded, Format};
use crate::carrier::{CarrierValue, Injector};
use crate::codec::{
    BAGGAGE_MIN_BYTES, BAGGAGE_MIN_MEMBERS, Baggage, Codec, Error, ErrorKind, TraceParent,
    TraceState,
};

pub(crate) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub(crate) static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
pub(crate) static BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// W3C Trace Context: `traceparent` and `tracestate`.
///
/// # Shape
///
/// See [`TraceParent`] and [`TraceState`] for the ABNF. Two `traceparent` headers make
/// the value invalid; several `tracestate` headers are one list; an invalid
/// `tracestate` is dropped (the trace is kept), as the specification asks.
///
/// Valid: `traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
/// Invalid: upper-case hex, all-zero ids, version `ff`.
///
/// ```
/// use threadline::format::{Format, TraceContextFormat};
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
/// let trace = TraceContextFormat.decode(&headers).unwrap().trace.unwrap();
/// assert_eq!(trace.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(trace.sampling.is_sampled());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceContextFormat;

impl TraceContextFormat {
    /// Decodes one `traceparent` value (see [`TraceParent::decode`]).
    pub fn decode_value(value: &[u8]) -> Result<TraceParts<'static>, Error> {
        TraceParent::decode(value).map(|tp| TraceParts::from_trace_parent(&tp))
    }

    /// The `traceparent` for `trace`; `None` without a span id.
    pub fn encode_value(trace: &TraceParts<'_>) -> Option<Encoded> {
        trace
            .to_trace_parent()
            .map(|tp| Encoded::from_slice(tp.encode().as_bytes()))
    }
}

fn rejected(name: &HeaderName, codec: Codec, kind: ErrorKind) -> Rejected {
    Rejected::new(name.clone(), Error::new(codec, kind))
}

impl Format for TraceContextFormat {
    fn codec(&self) -> Codec {
        Codec::TraceParent
    }

    fn fields(&self) -> &[HeaderName] {
        static FIELDS: [HeaderName; 2] = [
            HeaderName::from_static("traceparent"),
            HeaderName::from_static("tracestate"),
        ];
        &FIELDS
    }

    fn decode<'a>(&self, carrier: &'a dyn ReadCarrier) -> Result<Parts<'a>, Rejected> {
        let v = match carrier.get(&TRACEPARENT) {
            Found::Absent => return Ok(Parts::default()),
            Found::Many(_) => {
                return Err(rejected(
                    &TRACEPARENT,
                    Codec::TraceParent,
                    ErrorKind::Duplicate,
                ));
            }
            Found::One(v) => v,
        };
        let tp = bytes_of(v, Codec::TraceParent)
            .and_then(TraceParent::decode)
            .map_err(|e| Rejected::new(TRACEPARENT.clone(), e))?;
        let state = match carrier.get(&TRACESTATE) {
            Found::Absent => None,
            Found::One(v) => v
                .as_bytes()
                .filter(|b| TraceState::validate(b).is_ok())
                .and_then(|b| std::str::from_utf8(crate::codec::trim_ows(b)).ok())
                .map(Cow::Borrowed),
            Found::Many(_) => {
                let mut all: Vec<&[u8]> = Vec::new();
                carrier.each(&TRACESTATE, &mut |v: CarrierValue<'a>| {
                    all.extend(v.as_bytes());
                });
                TraceState::decode_all(all)
                    .ok()
                    .flatten()
                    .map(|ts| Cow::Owned(ts.as_str().to_owned()))
            }
        };
        let mut trace = TraceParts::from_trace_parent(&tp);
        if let Some(state) = state.filter(|s| !s.is_empty()) {
            trace.extras = Extras::TraceState(state);
        }
        Ok(Parts::trace(trace))
    }

    fn encode(&self, parts: &Parts<'_>, carrier: &mut dyn Injector) {
        let Some(trace) = &parts.trace else { return };
        let Some(tp) = trace.to_trace_parent() else {
            return;
        };
        put(carrier, &TRACEPARENT, tp.encode().as_bytes());
        if let Extras::TraceState(ts) = &trace.extras {
            put(carrier, &TRACESTATE, ts.as_bytes());
        }
    }
}

/// W3C Baggage: every `baggage` header, one list.
///
/// # Shape
///
/// See [`Baggage`] for the ABNF. Invalid members are skipped when the members are
/// read; a header none of whose members is valid is refused with the reason of the
/// first broken rule.
///
/// Valid: `baggage: userId=alice,serverNode=DF%2028`. Invalid: `baggage: k v=1`.
///
/// ```
/// use threadline::format::{BaggageFormat, Format};
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("baggage", "userId=alice,serverNode=DF%2028".parse().unwrap());
/// let parts = BaggageFormat.decode(&headers).unwrap();
/// let mut members = Vec::new();
/// parts.baggage.unwrap().for_each(&mut |k, v| members.push(format!("{k}={v}")));
/// assert_eq!(members, ["userId=alice", "serverNode=DF 28"]);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct BaggageFormat;

impl Format for BaggageFormat {
    fn codec(&self) -> Codec {
        Codec::Baggage
    }

    fn fields(&self) -> &[HeaderName] {
        std::slice::from_ref(&BAGGAGE)
    }

    fn decode<'a>(&self, carrier: &'a dyn ReadCarrier) -> Result<Parts<'a>, Rejected> {
        let mut seen = false;
        let mut first_error = None;
        let mut any_valid = false;
        carrier.each(&BAGGAGE, &mut |v: CarrierValue<'a>| {
            seen = true;
            let Some(b) = v.as_bytes() else {
                first_error.get_or_insert(Error::new(Codec::Baggage, ErrorKind::NotText));
                return;
            };
            match Baggage::validate(b, BAGGAGE_MIN_MEMBERS, BAGGAGE_MIN_BYTES) {
                Ok(n) => any_valid |= n > 0,
                Err(e) => {
                    first_error.get_or_insert(e);
                    if let Ok(s) = std::str::from_utf8(b) {
                        any_valid |= Baggage::members(s).any(|m| m.is_ok());
                    }
                }
            }
        });
        if !seen {
            return Ok(Parts::default());
        }
        match (any_valid, first_error) {
            (true, _) => Ok(Parts::new(
                None,
                Some(BaggageParts::lists(carrier, &BAGGAGE)),
            )),
            (false, Some(e)) => Err(Rejected::new(BAGGAGE.clone(), e)),
            (false, None) => Ok(Parts::default()),
        }
    }

    fn encode(&self, parts: &Parts<'_>, carrier: &mut dyn Injector) {
        if let Some(b) = parts.baggage.as_ref().and_then(BaggageParts::to_w3c) {
            put_value(carrier, &BAGGAGE, b.header_value());
        }
    }
}
