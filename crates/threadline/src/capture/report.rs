//! What capture dropped, and why: never the value.

use std::fmt;

use http::HeaderName;

use crate::codec;
use crate::context::Context;

/// Why something was not captured. Never holds the rejected value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The value breaks its wire format.
    Malformed(codec::Error),
    /// Control characters, non-ASCII or non-UTF-8 bytes.
    InvalidChars,
    /// Longer than [`Limits::max_value_bytes`](crate::Limits::max_value_bytes).
    TooLong,
    /// Over [`Limits::max_headers`](crate::Limits::max_headers).
    TooManyHeaders,
    /// Over [`Limits::max_total_bytes`](crate::Limits::max_total_bytes).
    TotalBytes,
    /// Sent more than once where once is allowed.
    Duplicate,
    /// A `trusted_only` header, a local field or baggage (see
    /// [`UntrustedBaggage`](crate::UntrustedBaggage)) from an untrusted caller.
    Untrusted,
    /// Ignored because the caller is untrusted and the policy starts fresh (edge mode).
    ReplacedAtEdge,
    /// Not text (a JSON number, say), or a broken envelope.
    WrongType,
    /// Baggage members dropped whole (invalid, or over the member/byte limits).
    BaggageMembersDropped(usize),
    /// Tracestate entries dropped whole to fit the limit.
    TraceStateTrimmed,
    /// Baggage members dropped because an untrusted caller sent them and the policy
    /// keeps only some keys from such callers
    /// ([`UntrustedBaggage::Keys`](crate::UntrustedBaggage::Keys)).
    BaggageMembersUntrusted(usize),
    /// A local field name that is not a token of at most 64 bytes, or one that log
    /// formats own ([`RESERVED_FIELDS`](crate::names::RESERVED_FIELDS)).
    FieldName,
    /// Over [`Limits::max_fields`](crate::Limits::max_fields)(crate::Limits::max_fields).
    TooManyFields,
    /// A list (tracestate) repeats a key; the list is kept without the later duplicate.
    DuplicateKey,
    /// Two forms of the routing key (see [`Routing`](crate::Routing)) name different
    /// keys: the request has no routing key.
    RoutingKeyConflict,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Malformed(e) => write!(f, "{e}"),
            Reason::InvalidChars => f.write_str("control, non-ASCII or non-UTF-8 characters"),
            Reason::TooLong => f.write_str("value longer than the limit"),
            Reason::TooManyHeaders => f.write_str("more headers than the limit"),
            Reason::TotalBytes => f.write_str("total captured bytes over the limit"),
            Reason::Duplicate => f.write_str("header sent more than once"),
            Reason::Untrusted => f.write_str("not accepted from an untrusted caller"),
            Reason::ReplacedAtEdge => f.write_str("replaced at the trust boundary"),
            Reason::WrongType => f.write_str("value is not text"),
            Reason::BaggageMembersDropped(n) => write!(
                f,
                "{n} baggage member(s) dropped (invalid, empty or over the limits)"
            ),
            Reason::TraceStateTrimmed => f.write_str("tracestate trimmed to the limit"),
            Reason::BaggageMembersUntrusted(n) => {
                write!(f, "{n} baggage member(s) from an untrusted caller dropped")
            }
            Reason::FieldName => f.write_str("local field name not allowed"),
            Reason::TooManyFields => f.write_str("more local fields than the limit"),
            Reason::DuplicateKey => f.write_str("duplicate key"),
            Reason::RoutingKeyConflict => {
                f.write_str("routing key differs from another form's: no routing key")
            }
        }
    }
}

/// One thing dropped during capture: the header name and the reason, never the value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejection {
    /// The header (or carrier key) concerned.
    pub name: HeaderName,
    /// Why.
    pub reason: Reason,
}

impl Rejection {
    /// A rejection of the value under `name`.
    pub fn new(name: HeaderName, reason: Reason) -> Self {
        Rejection { name, reason }
    }
}

/// What capture dropped. Empty on the happy path (and then it costs no allocation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    rejections: Vec<Rejection>,
}

impl Report {
    pub(crate) fn push(&mut self, name: &HeaderName, reason: Reason) {
        self.rejections.push(Rejection {
            name: name.clone(),
            reason,
        });
    }

    /// Number of rejections.
    pub fn len(&self) -> usize {
        self.rejections.len()
    }

    /// `true` when nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.rejections.is_empty()
    }

    /// The rejections, in the order they happened.
    pub fn iter(&self) -> impl Iterator<Item = &Rejection> {
        self.rejections.iter()
    }
}

/// The result of a capture: the context, and what was dropped on the way.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Captured {
    /// The captured context.
    pub context: Context,
    /// What was dropped, and why.
    pub report: Report,
}
