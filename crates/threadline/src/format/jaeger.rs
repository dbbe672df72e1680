//! Jaeger `uber-trace-id` and `uberctx-*` baggage.

use std::fmt::Write as _;

use http::{HeaderName, HeaderValue};

use super::carrier::{Found, ReadCarrier};
use super::parts::{BaggageParts, Parts, Rejected, Sampling, TraceParts};
use super::text::{Buf, bytes_of, parse_hex_padded, put, put_value};
use super::{Encoded, Format};
use crate::carrier::{CarrierValue, Injector};
use crate::codec::{Codec, Error, ErrorKind, SpanId, TraceId, trim_ows};

static HEADER: HeaderName = HeaderName::from_static("uber-trace-id");
/// The prefix of Jaeger's baggage headers.
pub const JAEGER_BAGGAGE_PREFIX: &str = "uberctx-";

const fn err(kind: ErrorKind) -> Error {
    Error::new(Codec::Jaeger, kind)
}

/// Jaeger's `uber-trace-id`, with baggage in `uberctx-{key}` headers.
///
/// # ABNF
///
/// ```text
/// value     = trace-id sep span-id sep parent-id sep flags
/// sep       = ":" / "%3A" / "%3a"        ; some clients URL-encode the whole value
/// trace-id  = 1*32HEXDIG                 ; leading zeros may be omitted; not zero
/// span-id   = 1*16HEXDIG                 ; not zero
/// parent-id = 1*16HEXDIG                 ; deprecated; "0" when none
/// flags     = 1*2HEXDIG                  ; 0x01 sampled, 0x02 debug (with sampled)
/// uberctx-{key}: URL-encoded value       ; one header per baggage member
/// ```
///
/// Valid: `4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1`, `abc:def:0:3`,
/// `4bf92f3577b34da6%3A00f067aa0ba902b7%3A0%3A1`.
/// Invalid: `abc:def:0` (three fields), `0:def:0:1` (zero trace id), `abc:def:0:100`.
///
/// ```
/// use threadline::format::{JaegerFormat, Sampling};
///
/// let t = JaegerFormat::decode_value(b"abc:def:0:3").unwrap();
/// assert_eq!(t.trace_id.to_string(), "00000000000000000000000000000abc");
/// assert_eq!(t.sampling, Sampling::Debug);
/// assert_eq!(JaegerFormat::encode_value(&t).unwrap().as_str(),
///            "00000000000000000000000000000abc:0000000000000def:0:3");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct JaegerFormat;

/// Splits on `:`, or on `%3A` when the value has no `:` (URL-encoded); exactly four
/// fields.
fn fields(v: &[u8]) -> Option<[&[u8]; 4]> {
    let encoded = !v.contains(&b':');
    let mut out: [&[u8]; 4] = [&[]; 4];
    let mut n = 0;
    let mut rest = v;
    loop {
        let at = if encoded {
            rest.windows(3)
                .position(|w| w[0] == b'%' && w[1] == b'3' && (w[2] | 0x20) == b'a')
                .map(|i| (i, 3))
        } else {
            rest.iter().position(|&b| b == b':').map(|i| (i, 1))
        };
        let slot = out.get_mut(n)?;
        n += 1;
        match at {
            Some((i, len)) => {
                *slot = &rest[..i];
                rest = &rest[i + len..];
            }
            None => {
                *slot = rest;
                break;
            }
        }
    }
    (n == 4).then_some(out)
}

fn span(v: &[u8]) -> Option<Option<SpanId>> {
    let b = parse_hex_padded(v, 16)?;
    let mut s = [0u8; 8];
    s.copy_from_slice(&b[8..]);
    Some(SpanId::from_bytes(s))
}

/// The shape clients send, a 32- or 16-digit trace id, a 16-digit span id, parent `0`
/// and one flags digit, read by position; `None` hands anything else, errors included,
/// to the general parser, so both give the same answer.
#[inline]
fn canonical(v: &[u8]) -> Option<TraceParts<'static>> {
    let t = match v.len() {
        53 => 32,
        37 => 16,
        _ => return None,
    };
    if v[t] != b':' || v[t + 17] != b':' || &v[t + 18..t + 20] != b"0:" {
        return None;
    }
    let trace_id = TraceId::from_bytes(parse_hex_padded(&v[..t], 32)?)?;
    let span_id = span(&v[t + 1..t + 17])??;
    let sampling = match v[t + 20] {
        b'0' | b'2' => Sampling::NotSampled,
        b'1' => Sampling::Sampled,
        b'3' => Sampling::Debug,
        _ => return None,
    };
    Some(TraceParts::new(trace_id, Some(span_id), sampling))
}

impl JaegerFormat {
    /// Decodes one `uber-trace-id` value.
    pub fn decode_value(value: &[u8]) -> Result<TraceParts<'static>, Error> {
        let v = trim_ows(value);
        if v.is_empty() {
            return Err(err(ErrorKind::Empty));
        }
        if let Some(t) = canonical(v) {
            return Ok(t);
        }
        let [t, s, p, f] = fields(v).ok_or(err(ErrorKind::Separator))?;
        let t = parse_hex_padded(t, 32).ok_or(err(ErrorKind::HexId))?;
        let trace_id = TraceId::from_bytes(t).ok_or(err(ErrorKind::ZeroTraceId))?;
        let span_id = span(s)
            .ok_or(err(ErrorKind::HexId))?
            .ok_or(err(ErrorKind::ZeroSpanId))?;
        let parent = span(p).ok_or(err(ErrorKind::HexId))?;
        let flags = parse_hex_padded(f, 2).ok_or(err(ErrorKind::Flags))?[15];
        let sampling = match (flags & 0x01 != 0, flags & 0x02 != 0) {
            (true, true) => Sampling::Debug,
            (true, false) => Sampling::Sampled,
            // Debug without sampled is not a decision to record (as Jaeger's clients).
            (false, _) => Sampling::NotSampled,
        };
        Ok(TraceParts::new(trace_id, Some(span_id), sampling).with_parent_span_id(parent))
    }

    /// The `uber-trace-id` for `trace` (128-bit trace id, `0` for no parent, flags
    /// `0`, `1` or `3`); `None` without a span id. Deferred is written as not sampled.
    pub fn encode_value(trace: &TraceParts<'_>) -> Option<Encoded> {
        let span = trace.span_id?;
        let mut b = Buf::<72>::new();
        b.push_hex(&trace.trace_id.to_bytes());
        b.push(b":");
        b.push_hex(&span.to_bytes());
        b.push(b":");
        match trace.parent_span_id {
            Some(p) => b.push_hex(&p.to_bytes()),
            None => b.push(b"0"),
        };
        b.push(match trace.sampling {
            Sampling::Debug => b":3",
            Sampling::Sampled => b":1",
            Sampling::NotSampled | Sampling::Deferred => b":0",
        });
        Some(Encoded::from_slice(b.as_bytes()))
    }
}

/// Percent-encodes a baggage value for a `uberctx-`/`tl-field-` style header: every
/// byte but unreserved URL characters becomes `%XX`.
fn url_encode(value: &str, out: &mut String) {
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Writes each member as `<prefix><key>: <value>`, the value URL-encoded or raw.
pub(crate) fn encode_prefixed(
    baggage: &BaggageParts<'_>,
    prefix: &str,
    percent_encode: bool,
    carrier: &mut dyn Injector,
) {
    let mut name = String::with_capacity(prefix.len() + 16);
    let mut value = String::new();
    baggage.for_each(&mut |k, v| {
        name.clear();
        name.push_str(prefix);
        name.extend(k.chars().map(|c| c.to_ascii_lowercase()));
        value.clear();
        if percent_encode {
            url_encode(v, &mut value);
        } else {
            value.push_str(v);
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            put_value(carrier, &n, &v);
        }
    });
}

/// Whether the carrier has any header starting with `prefix`.
pub(crate) fn has_prefixed(carrier: &dyn ReadCarrier, prefix: &str) -> bool {
    let mut any = false;
    carrier.each_prefixed(prefix, &mut |_, _: CarrierValue<'_>| any = true);
    any
}

impl Format for JaegerFormat {
    fn codec(&self) -> Codec {
        Codec::Jaeger
    }

    fn fields(&self) -> &[HeaderName] {
        std::slice::from_ref(&HEADER)
    }

    fn prefix(&self) -> Option<&'static str> {
        Some(JAEGER_BAGGAGE_PREFIX)
    }

    fn decode<'a>(&self, carrier: &'a dyn ReadCarrier) -> Result<Parts<'a>, Rejected> {
        let trace = match carrier.get(&HEADER) {
            Found::Absent => None,
            Found::Many(_) => {
                return Err(Rejected::new(HEADER.clone(), err(ErrorKind::Duplicate)));
            }
            Found::One(v) => Some(
                bytes_of(v, Codec::Jaeger)
                    .and_then(Self::decode_value)
                    .map_err(|e| Rejected::new(HEADER.clone(), e))?,
            ),
        };
        let baggage = has_prefixed(carrier, JAEGER_BAGGAGE_PREFIX)
            .then(|| BaggageParts::prefixed(carrier, JAEGER_BAGGAGE_PREFIX, true));
        Ok(Parts::new(trace, baggage))
    }

    fn encode(&self, parts: &Parts<'_>, carrier: &mut dyn Injector) {
        if let Some(v) = parts.trace.as_ref().and_then(Self::encode_value) {
            put(carrier, &HEADER, v.as_bytes());
        }
        if let Some(b) = &parts.baggage {
            encode_prefixed(b, JAEGER_BAGGAGE_PREFIX, true, carrier);
        }
    }
}
