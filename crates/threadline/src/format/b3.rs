//! Zipkin B3 as a [`Format`]: a thin adapter over the [`B3`] codec.

use http::HeaderName;

use super::carrier::{Found, ReadCarrier};
use super::parts::{Parts, Rejected, Sampling, TraceParts};
use super::text::{Buf, put};
use super::{Encoded, Format};
use crate::carrier::Injector;
use crate::codec::{B3, B3Sampling, Codec, Error, ErrorKind};

static SINGLE: HeaderName = HeaderName::from_static("b3");
static TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
static SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
static PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
static SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
static FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// Zipkin B3, read from the single `b3` header or the multi-header `X-B3-*` form
/// (single wins), written in the form chosen at construction.
///
/// # Shape
///
/// See [`B3`] for the ABNF. A sampling-only value (`b3: 0`) carries no trace and
/// decodes to nothing.
///
/// Valid: `b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90`.
/// Invalid: `b3: 1-2`, upper-case hex.
///
/// ```
/// use threadline::format::{B3Format, Format, Sampling};
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d".parse().unwrap());
/// let trace = B3Format::single().decode(&headers).unwrap().trace.unwrap();
/// assert_eq!(trace.sampling, Sampling::Debug);
///
/// let mut out = http::HeaderMap::new();
/// B3Format::multi().encode(&threadline::format::Parts::trace(trace), &mut out);
/// assert_eq!(out["x-b3-flags"], "1");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct B3Format {
    multi: bool,
}

impl Default for B3Format {
    /// Writes the single `b3` header.
    fn default() -> Self {
        B3Format::single()
    }
}

fn sampling(s: Option<B3Sampling>) -> Sampling {
    match s {
        None => Sampling::Deferred,
        Some(B3Sampling::Deny) => Sampling::NotSampled,
        Some(B3Sampling::Accept) => Sampling::Sampled,
        Some(B3Sampling::Debug) => Sampling::Debug,
    }
}

fn parts_of(b3: &B3) -> Option<TraceParts<'static>> {
    let (t, s) = b3.ids()?;
    Some(
        TraceParts::new(t, Some(s), sampling(b3.sampling()))
            .with_parent_span_id(b3.parent_span_id()),
    )
}

impl B3Format {
    /// Writes the single `b3` header.
    pub const fn single() -> Self {
        B3Format { multi: false }
    }

    /// Writes the `X-B3-*` headers.
    pub const fn multi() -> Self {
        B3Format { multi: true }
    }

    /// Decodes one single-header `b3` value; `Ok(None)` for a sampling-only value.
    pub fn decode_value(value: &[u8]) -> Result<Option<TraceParts<'static>>, Error> {
        B3::decode_single(value).map(|b3| parts_of(&b3))
    }

    /// The single-header `b3` value for `trace`; `None` without a span id.
    pub fn encode_value(trace: &TraceParts<'_>) -> Option<Encoded> {
        let span = trace.span_id?;
        let mut b = Buf::<68>::new();
        b.push_hex(&trace.trace_id.to_bytes());
        b.push(b"-");
        b.push_hex(&span.to_bytes());
        if let Some(s) = sampling_str(trace.sampling) {
            b.push(b"-");
            b.push(s);
            if let Some(p) = trace.parent_span_id {
                b.push(b"-");
                b.push_hex(&p.to_bytes());
            }
        }
        Some(Encoded::from_slice(b.as_bytes()))
    }
}

fn sampling_str(s: Sampling) -> Option<&'static [u8]> {
    match s {
        Sampling::Deferred => None,
        Sampling::NotSampled => Some(b"0"),
        Sampling::Sampled => Some(b"1"),
        Sampling::Debug => Some(b"d"),
    }
}

impl Format for B3Format {
    fn codec(&self) -> Codec {
        Codec::B3
    }

    fn fields(&self) -> &[HeaderName] {
        static FIELDS: [HeaderName; 6] = [
            HeaderName::from_static("b3"),
            HeaderName::from_static("x-b3-traceid"),
            HeaderName::from_static("x-b3-spanid"),
            HeaderName::from_static("x-b3-parentspanid"),
            HeaderName::from_static("x-b3-sampled"),
            HeaderName::from_static("x-b3-flags"),
        ];
        &FIELDS
    }

    fn decode<'a>(&self, carrier: &'a dyn ReadCarrier) -> Result<Parts<'a>, Rejected> {
        let first = |name: &HeaderName| match carrier.get(name) {
            Found::Absent => Ok(None),
            Found::One(v) => v
                .as_bytes()
                .map(Some)
                .ok_or(Error::new(Codec::B3, ErrorKind::NotText)),
            Found::Many(_) => Err(Error::new(Codec::B3, ErrorKind::Duplicate)),
        };
        // Single wins over multi.
        match first(&SINGLE) {
            Ok(Some(v)) => {
                return B3::decode_single(v)
                    .map(|b3| Parts::new(parts_of(&b3), None))
                    .map_err(|e| Rejected::new(SINGLE.clone(), e));
            }
            Ok(None) => {}
            Err(e) => return Err(Rejected::new(SINGLE.clone(), e)),
        }
        let multi = (|| {
            let trace = first(&TRACE_ID)?;
            let sampled = first(&SAMPLED)?;
            let flags = first(&FLAGS)?;
            if trace.is_none() && sampled.is_none() && flags.is_none() {
                return Ok(None);
            }
            B3::decode_multi(
                trace,
                first(&SPAN_ID)?,
                first(&PARENT_SPAN_ID)?,
                sampled,
                flags,
            )
        })();
        match multi {
            Ok(b3) => Ok(Parts::new(b3.as_ref().and_then(parts_of), None)),
            Err(e) => Err(Rejected::new(TRACE_ID.clone(), e)),
        }
    }

    fn encode(&self, parts: &Parts<'_>, carrier: &mut dyn Injector) {
        let Some(trace) = &parts.trace else { return };
        let Some(span) = trace.span_id else { return };
        if !self.multi {
            if let Some(v) = B3Format::encode_value(trace) {
                put(carrier, &SINGLE, v.as_bytes());
            }
            return;
        }
        put(carrier, &TRACE_ID, &trace.trace_id.to_hex());
        put(carrier, &SPAN_ID, &span.to_hex());
        if let Some(p) = trace.parent_span_id {
            put(carrier, &PARENT_SPAN_ID, &p.to_hex());
        }
        match trace.sampling {
            Sampling::Deferred => {}
            Sampling::Debug => put(carrier, &FLAGS, b"1"),
            Sampling::Sampled => put(carrier, &SAMPLED, b"1"),
            Sampling::NotSampled => put(carrier, &SAMPLED, b"0"),
        }
    }
}
