//! W3C `traceparent`.

use std::fmt;

use super::{Codec, Error, ErrorKind, SpanId, TraceFlags, TraceId, hex, trim_ows};

/// The W3C `traceparent` header: version, trace id, parent id, flags.
///
/// # ABNF
///
/// ```text
/// traceparent = version "-" trace-id "-" parent-id "-" trace-flags   ; version 00
/// version     = 2HEXDIGLC        ; "ff" is forbidden
/// trace-id    = 32HEXDIGLC       ; not all zeros
/// parent-id   = 16HEXDIGLC       ; not all zeros
/// trace-flags = 2HEXDIGLC
/// ; a higher version may append "-" and more data after the four fields
/// ```
///
/// Valid: `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
/// Invalid: upper-case hex, all-zero ids, version `ff`, version `00` with extra data,
/// anything shorter than 55 characters.
///
/// ```
/// use threadline::codec::TraceParent;
///
/// let tp = TraceParent::decode(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert!(tp.flags().is_sampled());
/// let child = tp.child();
/// assert_eq!(child.trace_id(), tp.trace_id());
/// assert_ne!(child.parent_id(), tp.parent_id());
/// assert_eq!(&child.encode().as_str()[..36], "00-4bf92f3577b34da6a3ce929d0e0e4736-");
/// assert!(TraceParent::decode(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    version: u8,
    trace_id: TraceId,
    parent_id: SpanId,
    flags: TraceFlags,
}

/// Length of a version-00 `traceparent`.
pub(super) const TRACEPARENT_LEN: usize = 55;

const fn err(kind: ErrorKind) -> Error {
    Error::new(Codec::TraceParent, kind)
}

impl TraceParent {
    /// The header name.
    pub const HEADER: &'static str = "traceparent";

    /// A trace parent from its parts (version 00).
    pub const fn new(trace_id: TraceId, parent_id: SpanId, flags: TraceFlags) -> Self {
        TraceParent {
            version: 0,
            trace_id,
            parent_id,
            flags,
        }
    }

    /// A new root: fresh random trace id and parent id.
    pub fn new_root(sampled: bool) -> Self {
        TraceParent::new(
            TraceId::random(),
            SpanId::random(),
            TraceFlags::RANDOM.with_sampled(sampled),
        )
    }

    /// The value to send on an outgoing call: same trace id and flags, a fresh random
    /// parent id, version 00.
    pub fn child(&self) -> Self {
        self.with_parent_id(SpanId::random())
    }

    /// The same trace with another parent id (version 00, unknown flag bits cleared).
    pub fn with_parent_id(&self, parent_id: SpanId) -> Self {
        TraceParent::new(
            self.trace_id,
            parent_id,
            TraceFlags::new(self.flags.bits() & TraceFlags::KNOWN),
        )
    }

    /// The version received (always 0 for values built here).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The trace id.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The parent id: the caller's span.
    pub fn parent_id(&self) -> SpanId {
        self.parent_id
    }

    /// The trace flags as received.
    pub fn flags(&self) -> TraceFlags {
        self.flags
    }

    /// Decodes one header value. Surrounding spaces/tabs (HTTP OWS) are ignored.
    pub fn decode(value: &[u8]) -> Result<Self, Error> {
        let v = trim_ows(value);
        if v.is_empty() {
            return Err(err(ErrorKind::Empty));
        }
        if v.len() < TRACEPARENT_LEN {
            return Err(err(ErrorKind::Length));
        }
        let mut version = [0u8; 1];
        hex::decode_into(&v[0..2], &mut version).map_err(|upper| {
            err(if upper {
                ErrorKind::UpperCaseHex
            } else {
                ErrorKind::Version
            })
        })?;
        let version = version[0];
        if version == 0xff {
            return Err(err(ErrorKind::ForbiddenVersion));
        }
        if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return Err(err(ErrorKind::Separator));
        }
        if version == 0 && v.len() != TRACEPARENT_LEN {
            return Err(err(ErrorKind::TrailingData));
        }
        if v.len() > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != b'-' {
            return Err(err(ErrorKind::Separator));
        }
        let mut tid = [0u8; 16];
        hex::decode_into(&v[3..35], &mut tid).map_err(|upper| {
            err(if upper {
                ErrorKind::UpperCaseHex
            } else {
                ErrorKind::TraceId
            })
        })?;
        let mut pid = [0u8; 8];
        hex::decode_into(&v[36..52], &mut pid).map_err(|upper| {
            err(if upper {
                ErrorKind::UpperCaseHex
            } else {
                ErrorKind::SpanId
            })
        })?;
        let mut flags = [0u8; 1];
        hex::decode_into(&v[53..55], &mut flags).map_err(|upper| {
            err(if upper {
                ErrorKind::UpperCaseHex
            } else {
                ErrorKind::Flags
            })
        })?;
        let trace_id = TraceId::from_bytes(tid).ok_or(err(ErrorKind::ZeroTraceId))?;
        let parent_id = SpanId::from_bytes(pid).ok_or(err(ErrorKind::ZeroSpanId))?;
        Ok(TraceParent {
            version,
            trace_id,
            parent_id,
            flags: TraceFlags::new(flags[0]),
        })
    }

    /// Decodes the values of every `traceparent` header of a message: exactly one must
    /// be present; two or more make the whole thing invalid ([`ErrorKind::Duplicate`]).
    /// `Ok(None)` when there is none.
    pub fn decode_all<'a, I>(values: I) -> Result<Option<Self>, Error>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut it = values.into_iter();
        let Some(first) = it.next() else {
            return Ok(None);
        };
        if it.next().is_some() {
            return Err(err(ErrorKind::Duplicate));
        }
        Self::decode(first).map(Some)
    }

    /// Encodes as version 00 into a stack buffer (unknown flag bits cleared).
    pub fn encode(&self) -> TraceParentBuf {
        let mut b = [0u8; TRACEPARENT_LEN];
        b[0] = b'0';
        b[1] = b'0';
        b[2] = b'-';
        hex::encode_into(&self.trace_id.to_bytes(), &mut b[3..35]);
        b[35] = b'-';
        hex::encode_into(&self.parent_id.to_bytes(), &mut b[36..52]);
        b[52] = b'-';
        hex::encode_into(&[self.flags.bits() & TraceFlags::KNOWN], &mut b[53..55]);
        TraceParentBuf(b)
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceParent")
            .field("version", &self.version)
            .field("trace_id", &self.trace_id)
            .field("parent_id", &self.parent_id)
            .field("flags", &self.flags)
            .finish()
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encode().as_str())
    }
}

/// An encoded `traceparent`, 55 ASCII bytes on the stack.
#[derive(Clone, Copy)]
pub struct TraceParentBuf([u8; TRACEPARENT_LEN]);

impl TraceParentBuf {
    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The encoded text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and '-' are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for TraceParentBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
