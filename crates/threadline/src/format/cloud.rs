//! Google Cloud `X-Cloud-Trace-Context`.

use http::HeaderName;

use super::carrier::{Found, ReadCarrier};
use super::parts::{Parts, Rejected, Sampling, TraceParts};
use super::text::{Buf, Dec, bytes_of, parse_dec_u64, parse_hex_padded, put};
use super::{Encoded, Format};
use crate::carrier::Injector;
use crate::codec::{Codec, Error, ErrorKind, SpanId, TraceId, trim_ows};

static HEADER: HeaderName = HeaderName::from_static("x-cloud-trace-context");

const fn err(kind: ErrorKind) -> Error {
    Error::new(Codec::CloudTrace, kind)
}

/// Google Cloud's `X-Cloud-Trace-Context` (load balancers, Cloud Run, App Engine and
/// Cloud Tasks set or pass it).
///
/// # ABNF
///
/// ```text
/// value    = trace-id "/" span-id [ ";o=" options ]
/// trace-id = 32HEXDIG           ; either case, not all zeros
/// span-id  = 1*20DIGIT          ; decimal unsigned 64-bit, not zero
/// options  = 1*3DIGIT           ; 0..255, bit 0 = sampled; absent = no decision
/// ```
///
/// Valid: `105445aa7843bc8bf206b12000100000/1;o=1`, `105445aa7843bc8bf206b12000100000/123`.
/// Invalid: `105445aa7843bc8bf206b12000100000/0;o=1` (zero span id),
/// `105445aa7843bc8bf206b120001000/1` (short trace id), `…/1;o=x`,
/// `…/18446744073709551616` (over 64 bits).
///
/// ```
/// use threadline::format::CloudTraceFormat;
///
/// let t = CloudTraceFormat::decode_value(b"105445aa7843bc8bf206b12000100000/1;o=1").unwrap();
/// assert_eq!(t.to_trace_parent().unwrap().to_string(),
///            "00-105445aa7843bc8bf206b12000100000-0000000000000001-01");
/// assert_eq!(CloudTraceFormat::encode_value(&t).unwrap().as_str(),
///            "105445aa7843bc8bf206b12000100000/1;o=1");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct CloudTraceFormat;

impl CloudTraceFormat {
    /// Decodes one header value. Surrounding spaces and tabs are ignored.
    pub fn decode_value(value: &[u8]) -> Result<TraceParts<'static>, Error> {
        let v = trim_ows(value);
        if v.is_empty() {
            return Err(err(ErrorKind::Empty));
        }
        // The trace id is always 32 digits: the slash is at 32 in any valid value.
        if v.get(32) != Some(&b'/') {
            return Err(err(if v.contains(&b'/') {
                ErrorKind::HexId
            } else {
                ErrorKind::Separator
            }));
        }
        let (tid, rest) = (&v[..32], &v[33..]);
        let tid = parse_hex_padded(tid, 32).ok_or(err(ErrorKind::HexId))?;
        let trace_id = TraceId::from_bytes(tid).ok_or(err(ErrorKind::ZeroTraceId))?;
        let (span, options) = match rest.iter().position(|&b| b == b';') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let span = parse_dec_u64(span).ok_or(err(ErrorKind::DecimalId))?;
        let span_id = SpanId::from_bytes(span.to_be_bytes()).ok_or(err(ErrorKind::ZeroSpanId))?;
        let sampling = match options {
            None => Sampling::Deferred,
            Some(o) => {
                let digits = o.strip_prefix(b"o=").ok_or(err(ErrorKind::Separator))?;
                match parse_dec_u64(digits) {
                    Some(n) if digits.len() <= 3 && n <= 255 => Sampling::from_bool(n & 1 == 1),
                    _ => return Err(err(ErrorKind::SamplingValue)),
                }
            }
        };
        Ok(TraceParts::new(trace_id, Some(span_id), sampling))
    }

    /// The header value for `trace`; `None` without a span id. A deferred decision
    /// leaves `;o=` out; debug is written as sampled.
    pub fn encode_value(trace: &TraceParts<'_>) -> Option<Encoded> {
        let span = trace.span_id?;
        let mut b = Buf::<60>::new();
        b.push_hex(&trace.trace_id.to_bytes());
        b.push(b"/");
        b.push(Dec::new(u64::from_be_bytes(span.to_bytes())).as_bytes());
        match trace.sampling {
            Sampling::Deferred => {}
            s if s.is_sampled() => {
                b.push(b";o=1");
            }
            _ => {
                b.push(b";o=0");
            }
        }
        Some(Encoded::from_slice(b.as_bytes()))
    }
}

impl Format for CloudTraceFormat {
    fn codec(&self) -> Codec {
        Codec::CloudTrace
    }

    fn fields(&self) -> &[HeaderName] {
        std::slice::from_ref(&HEADER)
    }

    fn decode<'a>(&self, carrier: &'a dyn ReadCarrier) -> Result<Parts<'a>, Rejected> {
        let v = match carrier.get(&HEADER) {
            Found::Absent => return Ok(Parts::default()),
            Found::Many(_) => {
                return Err(Rejected::new(HEADER.clone(), err(ErrorKind::Duplicate)));
            }
            Found::One(v) => v,
        };
        bytes_of(v, Codec::CloudTrace)
            .and_then(Self::decode_value)
            .map(Parts::trace)
            .map_err(|e| Rejected::new(HEADER.clone(), e))
    }

    fn encode(&self, parts: &Parts<'_>, carrier: &mut dyn Injector) {
        if let Some(v) = parts.trace.as_ref().and_then(Self::encode_value) {
            put(carrier, &HEADER, v.as_bytes());
        }
    }
}
