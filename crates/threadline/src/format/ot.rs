//! OpenTracing `ot-tracer-*` and `ot-baggage-*`.

use http::HeaderName;

use super::Format;
use super::carrier::{Found, ReadCarrier};
use super::jaeger::{encode_prefixed, has_prefixed};
use super::parts::{BaggageParts, Parts, Rejected, Sampling, TraceParts};
use super::text::{bytes_of, parse_hex_padded, put};
use crate::carrier::Injector;
use crate::codec::{Codec, Error, ErrorKind, SpanId, TraceId, trim_ows};

static TRACE_ID: HeaderName = HeaderName::from_static("ot-tracer-traceid");
static SPAN_ID: HeaderName = HeaderName::from_static("ot-tracer-spanid");
static SAMPLED: HeaderName = HeaderName::from_static("ot-tracer-sampled");
/// The prefix of OpenTracing's baggage headers.
pub const OT_BAGGAGE_PREFIX: &str = "ot-baggage-";

const fn err(kind: ErrorKind) -> Error {
    Error::new(Codec::OtTrace, kind)
}

/// The OpenTracing basic tracer's headers (Lightstep, `opentracing-*` clients), with
/// baggage in `ot-baggage-{key}` headers (raw values).
///
/// # Shape
///
/// ```text
/// ot-tracer-traceid = 1*32HEXDIG       ; 64 or 128 bit, leading zeros may be omitted; not zero
/// ot-tracer-spanid  = 1*16HEXDIG       ; required with a trace id; not zero
/// ot-tracer-sampled = "true" / "false" ; also 1/0/t/f/True/False/TRUE/FALSE; absent: no decision
/// ot-baggage-{key}  = visible text     ; one header per member
/// ```
///
/// Valid: `ot-tracer-traceid: 4bf92f3577b34da6`, `ot-tracer-spanid: 00f067aa0ba902b7`,
/// `ot-tracer-sampled: true`. Invalid: a trace id without a span id, `… : yes`,
/// 33 hex digits.
///
/// ```
/// use threadline::format::{Format, OtFormat};
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("ot-tracer-traceid", "4bf92f3577b34da6".parse().unwrap());
/// headers.insert("ot-tracer-spanid", "00f067aa0ba902b7".parse().unwrap());
/// headers.insert("ot-tracer-sampled", "true".parse().unwrap());
/// let t = OtFormat.decode(&headers).unwrap().trace.unwrap();
/// assert_eq!(t.to_trace_parent().unwrap().to_string(),
///            "00-00000000000000004bf92f3577b34da6-00f067aa0ba902b7-01");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct OtFormat;

impl OtFormat {
    /// Decodes the values of the three trace headers (each `None` when absent);
    /// `Ok(None)` without a trace id.
    pub fn decode_values(
        trace_id: Option<&[u8]>,
        span_id: Option<&[u8]>,
        sampled: Option<&[u8]>,
    ) -> Result<Option<TraceParts<'static>>, Rejected> {
        let at = |name: &HeaderName, kind| Rejected::new(name.clone(), err(kind));
        let Some(t) = trace_id else { return Ok(None) };
        let t = parse_hex_padded(trim_ows(t), 32).ok_or_else(|| at(&TRACE_ID, ErrorKind::HexId))?;
        let trace_id =
            TraceId::from_bytes(t).ok_or_else(|| at(&TRACE_ID, ErrorKind::ZeroTraceId))?;
        let s = span_id.ok_or_else(|| at(&SPAN_ID, ErrorKind::Missing))?;
        let s = parse_hex_padded(trim_ows(s), 16).ok_or_else(|| at(&SPAN_ID, ErrorKind::HexId))?;
        let mut b = [0u8; 8];
        b.copy_from_slice(&s[8..]);
        let span_id = SpanId::from_bytes(b).ok_or_else(|| at(&SPAN_ID, ErrorKind::ZeroSpanId))?;
        let sampling = match sampled.map(trim_ows) {
            None => Sampling::Deferred,
            Some(b"true" | b"True" | b"TRUE" | b"t" | b"T" | b"1") => Sampling::Sampled,
            Some(b"false" | b"False" | b"FALSE" | b"f" | b"F" | b"0") => Sampling::NotSampled,
            Some(_) => return Err(at(&SAMPLED, ErrorKind::SamplingValue)),
        };
        Ok(Some(TraceParts::new(trace_id, Some(span_id), sampling)))
    }
}

fn single<'a>(
    carrier: &'a dyn ReadCarrier,
    name: &HeaderName,
) -> Result<Option<&'a [u8]>, Rejected> {
    value(name, carrier.get(name))
}

fn has_prefix_bytes(k: &[u8], p: &[u8]) -> bool {
    k.len() >= p.len() && k[..p.len()].eq_ignore_ascii_case(p)
}

fn value<'a>(name: &HeaderName, found: Found<'a>) -> Result<Option<&'a [u8]>, Rejected> {
    match found {
        Found::Absent => Ok(None),
        Found::Many(_) => Err(Rejected::new(name.clone(), err(ErrorKind::Duplicate))),
        Found::One(v) => bytes_of(v, Codec::OtTrace)
            .map(Some)
            .map_err(|e| Rejected::new(name.clone(), e)),
    }
}

impl Format for OtFormat {
    fn codec(&self) -> Codec {
        Codec::OtTrace
    }

    fn fields(&self) -> &[HeaderName] {
        static FIELDS: [HeaderName; 3] = [
            HeaderName::from_static("ot-tracer-traceid"),
            HeaderName::from_static("ot-tracer-spanid"),
            HeaderName::from_static("ot-tracer-sampled"),
        ];
        &FIELDS
    }

    fn prefix(&self) -> Option<&'static str> {
        Some(OT_BAGGAGE_PREFIX)
    }

    fn decode<'a>(&self, carrier: &'a dyn ReadCarrier) -> Result<Parts<'a>, Rejected> {
        let trace_id = single(carrier, &TRACE_ID)?;
        // The span id, the sampled flag and any baggage: one walk over the entries
        // where that is cheap (a `HeaderMap`), instead of a lookup per name.
        let (span, sampled, baggage) = if carrier.walks_entries() {
            let mut slots = [Found::Absent; 2];
            let mut baggage = false;
            carrier.each_prefixed("ot-", &mut |k, v| {
                let k = k.as_bytes();
                if has_prefix_bytes(k, OT_BAGGAGE_PREFIX.as_bytes()) {
                    baggage = true;
                    return;
                }
                let Some(i) = [&SPAN_ID, &SAMPLED]
                    .iter()
                    .position(|n| n.as_str().as_bytes().eq_ignore_ascii_case(k))
                else {
                    return;
                };
                slots[i] = match slots[i] {
                    Found::Absent => Found::One(v),
                    Found::One(first) | Found::Many(first) => Found::Many(first),
                };
            });
            let [span, sampled] = slots;
            (span, sampled, baggage)
        } else {
            (
                carrier.get(&SPAN_ID),
                carrier.get(&SAMPLED),
                has_prefixed(carrier, OT_BAGGAGE_PREFIX),
            )
        };
        let trace = match trace_id {
            None => None,
            Some(t) => {
                Self::decode_values(Some(t), value(&SPAN_ID, span)?, value(&SAMPLED, sampled)?)?
            }
        };
        let baggage = baggage.then(|| BaggageParts::prefixed(carrier, OT_BAGGAGE_PREFIX, false));
        Ok(Parts::new(trace, baggage))
    }

    fn encode(&self, parts: &Parts<'_>, carrier: &mut dyn Injector) {
        if let Some(trace) = &parts.trace {
            if let Some(span) = trace.span_id {
                let t = trace.trace_id.to_hex();
                // 64-bit ids as 16 digits, as OpenTracing tracers write them.
                let t = if t[..16] == [b'0'; 16] {
                    &t[16..]
                } else {
                    &t[..]
                };
                put(carrier, &TRACE_ID, t);
                put(carrier, &SPAN_ID, &span.to_hex());
                match trace.sampling {
                    Sampling::Deferred => {}
                    s if s.is_sampled() => put(carrier, &SAMPLED, b"true"),
                    _ => put(carrier, &SAMPLED, b"false"),
                }
            }
        }
        if let Some(b) = &parts.baggage {
            encode_prefixed(b, OT_BAGGAGE_PREFIX, false, carrier);
        }
    }
}
