//! AWS X-Ray `X-Amzn-Trace-Id`.

use http::HeaderName;

use super::carrier::{Found, ReadCarrier};
use super::parts::{Extras, Parts, Rejected, Sampling, TraceParts, XRayExtras};
use super::text::{bytes_of, parse_hex_padded, put};
use super::{Encoded, Format};
use crate::carrier::Injector;
use crate::codec::{Codec, Error, ErrorKind, SpanId, TraceId, no_byte, trim_ows};

static HEADER: HeaderName = HeaderName::from_static("x-amzn-trace-id");

const fn err(kind: ErrorKind) -> Error {
    Error::new(Codec::XRay, kind)
}

/// AWS X-Ray's `X-Amzn-Trace-Id` (ALB, API Gateway, Lambda, App Runner).
///
/// # ABNF
///
/// ```text
/// value   = field *( ";" field ) [ ";" ]     ; OWS around fields is ignored
/// field   = key "=" *( %x20-3A / %x3C-7E )   ; keys are case-sensitive
/// Root    = "1-" 8HEXDIG "-" 24HEXDIG        ; required; not all zeros
/// Parent  = 16HEXDIG                         ; optional; not zero
/// Sampled = "0" / "1" / "?"                  ; optional; "?" and absent: no decision
/// ; any other key (Self, Lineage, keys of the user's) is kept and forwarded
/// ```
///
/// The trace id is the 8 epoch digits followed by the 24 random ones. A repeated
/// `Root`, `Parent` or `Sampled` makes the value invalid.
///
/// Valid: `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`,
/// `Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=a87bd80c:1|68fd508a:5`.
/// Invalid: `Parent=53995c3f42cd8ad8` (no `Root`), `Root=2-…` (unknown version),
/// `Root=1-5759e988-bd86` (short), `…;Sampled=yes`.
///
/// ```
/// use threadline::format::XRayFormat;
///
/// let v = b"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1";
/// let t = XRayFormat::decode_value(v).unwrap();
/// assert_eq!(t.to_trace_parent().unwrap().to_string(),
///            "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01");
/// assert_eq!(XRayFormat::encode_value(&t).unwrap().as_str(), std::str::from_utf8(v).unwrap());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct XRayFormat;

fn root(v: &[u8]) -> Result<TraceId, Error> {
    if v.len() >= 2 && v[1] == b'-' && v[0] != b'1' {
        return Err(err(ErrorKind::UnsupportedVersion));
    }
    if v.len() != 35 || &v[..2] != b"1-" || v[10] != b'-' {
        return Err(err(ErrorKind::HexId));
    }
    let mut digits = [0u8; 32];
    digits[..8].copy_from_slice(&v[2..10]);
    digits[8..].copy_from_slice(&v[11..]);
    let id = parse_hex_padded(&digits, 32).ok_or(err(ErrorKind::HexId))?;
    TraceId::from_bytes(id).ok_or(err(ErrorKind::ZeroTraceId))
}

fn parent(v: &[u8]) -> Result<SpanId, Error> {
    let id = (v.len() == 16)
        .then(|| parse_hex_padded(v, 16))
        .flatten()
        .ok_or(err(ErrorKind::HexId))?;
    let mut b = [0u8; 8];
    b.copy_from_slice(&id[8..]);
    SpanId::from_bytes(b).ok_or(err(ErrorKind::ZeroSpanId))
}

/// The shape AWS services send, `Root=…;Parent=…;Sampled=…` (or without `Sampled`),
/// read by position; `None` hands anything else, errors included, to the general
/// parser, so both give the same answer.
#[inline]
fn canonical(v: &[u8]) -> Option<TraceParts<'static>> {
    if !(v.len() == 74 || v.len() == 64) || &v[..5] != b"Root=" || &v[40..48] != b";Parent=" {
        return None;
    }
    let sampling = match v.get(64..) {
        Some(b"") => Sampling::Deferred,
        Some(b";Sampled=1") => Sampling::Sampled,
        Some(b";Sampled=0") => Sampling::NotSampled,
        Some(b";Sampled=?") => Sampling::Deferred,
        _ => return None,
    };
    let trace_id = root(&v[5..40]).ok()?;
    let span_id = parent(&v[48..64]).ok()?;
    Some(TraceParts::new(trace_id, Some(span_id), sampling))
}

impl XRayFormat {
    /// Decodes one header value; the extras borrow from it.
    pub fn decode_value(value: &[u8]) -> Result<TraceParts<'_>, Error> {
        let v = trim_ows(value);
        if v.is_empty() {
            return Err(err(ErrorKind::Empty));
        }
        if !no_byte(v, |b| !(0x20..0x7f).contains(&b)) {
            return Err(err(ErrorKind::InvalidChar));
        }
        if let Some(t) = canonical(v) {
            return Ok(t);
        }
        let mut trace_id = None;
        let mut span_id = None;
        let mut sampling = None;
        let mut others = false;
        let mut rest = v;
        while !rest.is_empty() {
            let end = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
            let field = trim_ows(&rest[..end]);
            rest = rest.get(end + 1..).unwrap_or_default();
            if field.is_empty() {
                continue;
            }
            let eq = field
                .iter()
                .position(|&b| b == b'=')
                .ok_or(err(ErrorKind::Separator))?;
            let (k, val) = (trim_ows(&field[..eq]), trim_ows(&field[eq + 1..]));
            match k {
                b"Root" => {
                    if trace_id.replace(root(val)?).is_some() {
                        return Err(err(ErrorKind::Duplicate));
                    }
                }
                b"Parent" => {
                    if span_id.replace(parent(val)?).is_some() {
                        return Err(err(ErrorKind::Duplicate));
                    }
                }
                b"Sampled" => {
                    let s = match val {
                        b"1" => Sampling::Sampled,
                        b"0" => Sampling::NotSampled,
                        b"?" => Sampling::Deferred,
                        _ => return Err(err(ErrorKind::SamplingValue)),
                    };
                    if sampling.replace(s).is_some() {
                        return Err(err(ErrorKind::Duplicate));
                    }
                }
                b"" => return Err(err(ErrorKind::Key)),
                _ => others = true,
            }
        }
        let trace_id = trace_id.ok_or(err(ErrorKind::Missing))?;
        let mut t = TraceParts::new(trace_id, span_id, sampling.unwrap_or_default());
        if others {
            // Visible ASCII, checked above: always UTF-8.
            let text = std::str::from_utf8(v).map_err(|_| err(ErrorKind::InvalidChar))?;
            t.extras = Extras::XRay(XRayExtras::new(text));
        }
        Ok(t)
    }

    /// The header value for `trace`: `Root`, then `Parent` when there is a span id,
    /// then `Sampled` unless the decision is deferred (left out rather than `?`, which
    /// some readers refuse; absent means the same), then the extras of an X-Ray
    /// header in their order.
    pub fn encode_value(trace: &TraceParts<'_>) -> Option<Encoded> {
        let mut out = Encoded::new();
        let t = trace.trace_id.to_hex();
        out.push(b"Root=1-");
        out.push(&t[..8]);
        out.push(b"-");
        out.push(&t[8..]);
        if let Some(p) = trace.span_id {
            out.push(b";Parent=");
            out.push(&p.to_hex());
        }
        match trace.sampling {
            Sampling::Deferred => {}
            s if s.is_sampled() => out.push(b";Sampled=1"),
            _ => out.push(b";Sampled=0"),
        }
        if let Extras::XRay(x) = &trace.extras {
            for (k, v) in x.iter() {
                out.push(b";");
                out.push(k.as_bytes());
                out.push(b"=");
                out.push(v.as_bytes());
            }
        }
        Some(out)
    }
}

impl Format for XRayFormat {
    fn codec(&self) -> Codec {
        Codec::XRay
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
        bytes_of(v, Codec::XRay)
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
