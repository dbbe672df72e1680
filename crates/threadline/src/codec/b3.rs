//! Zipkin B3, single and multi header.

use std::fmt;

use super::{Codec, Error, ErrorKind, SpanId, TraceFlags, TraceId, TraceParent, hex, trim_ows};

/// A B3 sampling decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum B3Sampling {
    /// `0`: do not sample.
    Deny,
    /// `1`: sample.
    Accept,
    /// `d` / `X-B3-Flags: 1`: debug (implies sampled).
    Debug,
}

impl B3Sampling {
    fn as_str(self) -> &'static str {
        match self {
            B3Sampling::Deny => "0",
            B3Sampling::Accept => "1",
            B3Sampling::Debug => "d",
        }
    }
}

/// Zipkin B3 propagation, single header (`b3`) or multi header (`X-B3-*`).
///
/// # ABNF
///
/// ```text
/// b3        = traceid "-" spanid [ "-" sampling [ "-" parentspanid ] ] / sampling
/// traceid   = 16HEXDIGLC / 32HEXDIGLC     ; not all zeros
/// spanid    = 16HEXDIGLC                  ; not all zeros
/// sampling  = "0" / "1" / "d"
/// ; multi: X-B3-TraceId, X-B3-SpanId, X-B3-ParentSpanId,
/// ;        X-B3-Sampled ("0" / "1", or "false" / "true" from older clients),
/// ;        X-B3-Flags ("1" = debug; any other value is ignored)
/// ```
///
/// # Sampling and `traceparent` flags
///
/// | B3 | W3C `traceparent` flags |
/// |---|---|
/// | `1`, `true`, `d`, `X-B3-Flags: 1` | `01` (sampled) |
/// | `0`, `false` | `00` |
/// | no sampling state (`{trace}-{span}`: the decision is deferred) | `00`: W3C has no "deferred", and an unsampled parent lets this hop's tracer decide |
///
/// Written from a `traceparent`, B3 always carries `1` or `0`.
///
/// Valid: `80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90`,
/// `e457b5a2e4d86bd1-e457b5a2e4d86bd1`, `0`. Invalid: `1-2`, upper-case hex, `x`.
///
/// A 64-bit trace id becomes a 128-bit W3C trace id padded with zeros on the left.
///
/// ```
/// use threadline::codec::B3;
///
/// let b3 = B3::decode_single(b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1").unwrap();
/// let tp = b3.to_trace_parent().unwrap();
/// assert_eq!(tp.trace_id().to_string(), "80f198ee56343ba864fe8b2a57d3eff7");
/// assert!(tp.flags().is_sampled());
/// assert_eq!(B3::from_trace_parent(&tp).encode_single().as_str(),
///            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct B3 {
    ids: Option<(TraceId, SpanId)>,
    parent_span_id: Option<SpanId>,
    sampling: Option<B3Sampling>,
}

const fn err(kind: ErrorKind) -> Error {
    Error::new(Codec::B3, kind)
}

fn trace_id(v: &[u8]) -> Result<TraceId, Error> {
    let map = |upper: bool| {
        err(if upper {
            ErrorKind::UpperCaseHex
        } else {
            ErrorKind::TraceId
        })
    };
    match v.len() {
        16 => {
            let mut b = [0u8; 8];
            hex::decode_into(v, &mut b).map_err(map)?;
            TraceId::from_u64_padded(b).ok_or(err(ErrorKind::ZeroTraceId))
        }
        32 => {
            let mut b = [0u8; 16];
            hex::decode_into(v, &mut b).map_err(map)?;
            TraceId::from_bytes(b).ok_or(err(ErrorKind::ZeroTraceId))
        }
        _ => Err(err(ErrorKind::TraceId)),
    }
}

fn span_id(v: &[u8]) -> Result<SpanId, Error> {
    if v.len() != 16 {
        return Err(err(ErrorKind::SpanId));
    }
    let mut b = [0u8; 8];
    hex::decode_into(v, &mut b).map_err(|upper| {
        err(if upper {
            ErrorKind::UpperCaseHex
        } else {
            ErrorKind::SpanId
        })
    })?;
    SpanId::from_bytes(b).ok_or(err(ErrorKind::ZeroSpanId))
}

fn sampling(v: &[u8]) -> Result<B3Sampling, Error> {
    match v {
        b"0" => Ok(B3Sampling::Deny),
        b"1" => Ok(B3Sampling::Accept),
        b"d" => Ok(B3Sampling::Debug),
        _ => Err(err(ErrorKind::Sampling)),
    }
}

impl B3 {
    /// The single-header name.
    pub const HEADER: &'static str = "b3";
    /// Multi-header names (lower case, as `http` stores them).
    pub const TRACE_ID: &'static str = "x-b3-traceid";
    /// See [`B3::TRACE_ID`].
    pub const SPAN_ID: &'static str = "x-b3-spanid";
    /// See [`B3::TRACE_ID`].
    pub const PARENT_SPAN_ID: &'static str = "x-b3-parentspanid";
    /// See [`B3::TRACE_ID`].
    pub const SAMPLED: &'static str = "x-b3-sampled";
    /// See [`B3::TRACE_ID`].
    pub const FLAGS: &'static str = "x-b3-flags";

    /// The trace and span id, unless this is a sampling-only value (`b3: 0`).
    pub fn ids(&self) -> Option<(TraceId, SpanId)> {
        self.ids
    }

    /// The parent span id, if sent.
    pub fn parent_span_id(&self) -> Option<SpanId> {
        self.parent_span_id
    }

    /// The sampling decision, if sent.
    pub fn sampling(&self) -> Option<B3Sampling> {
        self.sampling
    }

    /// Decodes the single `b3` header.
    pub fn decode_single(value: &[u8]) -> Result<Self, Error> {
        let v = trim_ows(value);
        if v.is_empty() {
            return Err(err(ErrorKind::Empty));
        }
        if v.len() == 1 {
            return Ok(B3 {
                ids: None,
                parent_span_id: None,
                sampling: Some(sampling(v)?),
            });
        }
        let mut parts = v.split(|&b| b == b'-');
        let (Some(t), Some(s)) = (parts.next(), parts.next()) else {
            return Err(err(ErrorKind::Separator));
        };
        let ids = Some((trace_id(t)?, span_id(s)?));
        let sampling = parts.next().map(sampling).transpose()?;
        let parent_span_id = parts.next().map(span_id).transpose()?;
        if parts.next().is_some() {
            return Err(err(ErrorKind::TrailingData));
        }
        Ok(B3 {
            ids,
            parent_span_id,
            sampling,
        })
    }

    /// Decodes the multi-header form from the values of `X-B3-TraceId`, `X-B3-SpanId`,
    /// `X-B3-ParentSpanId`, `X-B3-Sampled` and `X-B3-Flags`. `Ok(None)` when none is set.
    pub fn decode_multi(
        trace: Option<&[u8]>,
        span: Option<&[u8]>,
        parent: Option<&[u8]>,
        sampled: Option<&[u8]>,
        flags: Option<&[u8]>,
    ) -> Result<Option<Self>, Error> {
        // `X-B3-Flags: 1` is debug; the spec lets a receiver ignore any other value.
        // `true` / `false` are what older Zipkin clients send for `X-B3-Sampled`.
        let debug = flags.map(trim_ows) == Some(b"1");
        let sampling = match (debug, sampled.map(trim_ows)) {
            (true, _) => Some(B3Sampling::Debug),
            (false, Some(b"1" | b"true")) => Some(B3Sampling::Accept),
            (false, Some(b"0" | b"false")) => Some(B3Sampling::Deny),
            (false, Some(_)) => return Err(err(ErrorKind::Sampling)),
            (false, None) => None,
        };
        let ids = match (trace.map(trim_ows), span.map(trim_ows)) {
            (Some(t), Some(s)) => Some((trace_id(t)?, span_id(s)?)),
            (None, None) => None,
            _ => return Err(err(ErrorKind::SpanId)),
        };
        let parent_span_id = parent.map(trim_ows).map(span_id).transpose()?;
        if ids.is_none() && sampling.is_none() {
            return Ok(None);
        }
        Ok(Some(B3 {
            ids,
            parent_span_id,
            sampling,
        }))
    }

    /// The W3C equivalent: same trace id, the B3 span id as parent id, sampled when the
    /// B3 decision is accept or debug (a deferred decision maps to not sampled; see the
    /// table above). `None` for a sampling-only value.
    pub fn to_trace_parent(&self) -> Option<TraceParent> {
        let (t, s) = self.ids?;
        let sampled = matches!(self.sampling, Some(B3Sampling::Accept | B3Sampling::Debug));
        Some(TraceParent::new(
            t,
            s,
            TraceFlags::default().with_sampled(sampled),
        ))
    }

    /// The B3 equivalent of a W3C trace parent (span id = parent id, sampling from the
    /// sampled flag).
    pub fn from_trace_parent(tp: &TraceParent) -> Self {
        B3 {
            ids: Some((tp.trace_id(), tp.parent_id())),
            parent_span_id: None,
            sampling: Some(if tp.flags().is_sampled() {
                B3Sampling::Accept
            } else {
                B3Sampling::Deny
            }),
        }
    }

    /// Encodes the single `b3` header into a stack buffer.
    pub fn encode_single(&self) -> B3SingleBuf {
        let mut buf = B3SingleBuf {
            bytes: [0; 68],
            len: 0,
        };
        let Some((t, s)) = self.ids else {
            buf.push(
                self.sampling
                    .unwrap_or(B3Sampling::Deny)
                    .as_str()
                    .as_bytes(),
            );
            return buf;
        };
        buf.push(&t.to_hex());
        buf.push(b"-");
        buf.push(&s.to_hex());
        if let Some(sampling) = self.sampling {
            buf.push(b"-");
            buf.push(sampling.as_str().as_bytes());
            if let Some(p) = self.parent_span_id {
                buf.push(b"-");
                buf.push(&p.to_hex());
            }
        }
        buf
    }

    /// The multi-header form as `(header name, value)` pairs, in a fixed-size array
    /// (unused slots are `None`). Debug sampling is sent as `X-B3-Flags: 1`.
    pub fn encode_multi(&self) -> [Option<(&'static str, B3SingleBuf)>; 4] {
        let mut out: [Option<(&'static str, B3SingleBuf)>; 4] = [None, None, None, None];
        if let Some((t, s)) = self.ids {
            out[0] = Some((Self::TRACE_ID, B3SingleBuf::from_slice(&t.to_hex())));
            out[1] = Some((Self::SPAN_ID, B3SingleBuf::from_slice(&s.to_hex())));
        }
        if let Some(p) = self.parent_span_id {
            out[2] = Some((Self::PARENT_SPAN_ID, B3SingleBuf::from_slice(&p.to_hex())));
        }
        out[3] = match self.sampling {
            Some(B3Sampling::Debug) => Some((Self::FLAGS, B3SingleBuf::from_slice(b"1"))),
            Some(B3Sampling::Accept) => Some((Self::SAMPLED, B3SingleBuf::from_slice(b"1"))),
            Some(B3Sampling::Deny) => Some((Self::SAMPLED, B3SingleBuf::from_slice(b"0"))),
            None => None,
        };
        out
    }
}

/// An encoded B3 value on the stack (at most 68 bytes).
#[derive(Clone, Copy)]
pub struct B3SingleBuf {
    bytes: [u8; 68],
    len: usize,
}

impl B3SingleBuf {
    fn from_slice(s: &[u8]) -> Self {
        let mut b = B3SingleBuf {
            bytes: [0; 68],
            len: 0,
        };
        b.push(s);
        b
    }

    fn push(&mut self, s: &[u8]) {
        self.bytes[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The encoded text.
    pub fn as_str(&self) -> &str {
        // only ASCII hex, '-', '0', '1', 'd' are written
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl fmt::Debug for B3SingleBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
