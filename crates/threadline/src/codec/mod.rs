//! Wire formats: one type per format, each with `decode` and `encode`.
//!
//! | format | type | header(s) |
//! |---|---|---|
//! | W3C Trace Context | [`TraceParent`], [`TraceState`] | `traceparent`, `tracestate` |
//! | W3C Baggage | [`Baggage`] | `baggage` |
//! | Zipkin B3 | [`B3`] | `b3`, `x-b3-*` |
//! | correlation id | [`CorrelationId`] | `x-correlation-id`, `x-request-id` |
//! | routing key | [`RoutingKey`] | the forms a policy's [`Routing`](crate::Routing) names |
//!
//! Decoders take raw bytes (header values are bytes on the wire), never panic and
//! answer a typed [`Error`] whose [`ErrorKind`] names the rule the value broke.
//! Encoders write into fixed-size buffers or borrow: none of the hot paths allocate.
//!
//! ## What is public here, and why
//!
//! The codecs are public on purpose and follow the crate's semver: a user writing a
//! [`Format`](crate::format::Format) of their own, checking ids in a test, or
//! decoding a header outside any policy (a log pipeline, an `inspect`-like tool)
//! needs the same strict parsers the policy uses, not a second, laxer copy. Public:
//! the format types and their `decode`/`encode`, the id types ([`TraceId`],
//! [`SpanId`], [`TraceFlags`]), the stack buffers encoders write into
//! ([`TraceParentBuf`], [`B3SingleBuf`]), the error types ([`Error`], [`ErrorKind`],
//! [`Codec`]), the W3C baggage minimums a policy may not go below
//! ([`BAGGAGE_MIN_MEMBERS`], [`BAGGAGE_MIN_BYTES`]), the percent-encoding pair of the
//! baggage spec ([`percent_decode`], [`encode_baggage_value`]) and [`is_invisible`],
//! the character class every decoder refuses in values that reach logs. Everything
//! else (hex tables, byte classes, the strict percent decoder capture uses) is private
//! and may change in any release. [`ErrorKind`] and [`Codec`] are `#[non_exhaustive]`:
//! new rules and formats are added without a major release.

mod b3;
mod baggage;
mod correlation;
pub(crate) mod hex;
mod ids;
mod routing_key;
mod traceparent;
mod tracestate;

pub use b3::{B3, B3Sampling, B3SingleBuf};
pub use baggage::{
    Baggage, BaggageMember, BaggageMembers, MIN_BYTES as BAGGAGE_MIN_BYTES,
    MIN_MEMBERS as BAGGAGE_MIN_MEMBERS, encode_baggage_value, percent_decode,
};
pub(crate) use baggage::{is_tchar, percent_decode_strict};
pub use correlation::{CorrelationId, IdGenerator};
pub use ids::{SpanId, TraceFlags, TraceId};
pub use routing_key::{ROUTING_KEY_DEFAULT_MAX_BYTES, ROUTING_KEY_MAX_BYTES, RoutingKey};
pub use traceparent::{TraceParent, TraceParentBuf};
pub(crate) use tracestate::MAX_MEMBERS as TRACESTATE_MAX_MEMBERS;
pub use tracestate::TraceState;

use std::fmt;

/// Which wire format a decode error belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// W3C `traceparent`.
    TraceParent,
    /// W3C `tracestate`.
    TraceState,
    /// W3C `baggage`.
    Baggage,
    /// Zipkin B3 (single or multi header).
    B3,
    /// Correlation id.
    CorrelationId,
    /// Google Cloud `X-Cloud-Trace-Context`.
    CloudTrace,
    /// AWS X-Ray `X-Amzn-Trace-Id`.
    XRay,
    /// Jaeger `uber-trace-id` and `uberctx-*`.
    Jaeger,
    /// Datadog `x-datadog-*`.
    Datadog,
    /// OpenTracing `ot-tracer-*` and `ot-baggage-*`.
    OtTrace,
    /// A format of the user's (see [`crate::format::Format`]), by its name.
    Custom(&'static str),
    /// A routing key ([`RoutingKey`]), in whichever form it came.
    RoutingKey,
}

impl Codec {
    /// The format's name as used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::TraceParent => "traceparent",
            Codec::TraceState => "tracestate",
            Codec::Baggage => "baggage",
            Codec::B3 => "b3",
            Codec::CorrelationId => "correlation id",
            Codec::CloudTrace => "x-cloud-trace-context",
            Codec::XRay => "x-amzn-trace-id",
            Codec::Jaeger => "uber-trace-id",
            Codec::Datadog => "datadog",
            Codec::OtTrace => "ot-tracer",
            Codec::Custom(name) => name,
            Codec::RoutingKey => "routing key",
        }
    }
}

/// The rule a value broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The value is empty.
    Empty,
    /// The value is shorter or longer than the format allows.
    Length,
    /// A byte outside the allowed alphabet (control character, non-ASCII, space...).
    InvalidChar,
    /// Hex digits in upper case where the format demands lower case.
    UpperCaseHex,
    /// A separator (`-`, `=`, `,`) is missing or misplaced.
    Separator,
    /// The version field is not two hex digits.
    Version,
    /// Version `ff` is forbidden.
    ForbiddenVersion,
    /// Extra characters after a version-00 value.
    TrailingData,
    /// The trace id is not 32 (or for B3 16/32) lower-case hex digits.
    TraceId,
    /// The trace id is all zeros.
    ZeroTraceId,
    /// The parent / span id is not 16 lower-case hex digits.
    SpanId,
    /// The parent / span id is all zeros.
    ZeroSpanId,
    /// The flags field is not two hex digits.
    Flags,
    /// The header appears more than once where it must appear once.
    Duplicate,
    /// A list key is not of the allowed form.
    Key,
    /// A list value is not of the allowed form.
    Value,
    /// A list has more members than allowed.
    TooManyMembers,
    /// A list holds an empty member (`a=1,,b=2`, a leading or trailing comma).
    EmptyMember,
    /// A list holds the same key twice.
    DuplicateKey,
    /// A percent-escape is malformed or decodes to invalid UTF-8.
    PercentEncoding,
    /// A B3 sampling state other than `0`, `1` or `d`.
    Sampling,
    /// Rejected by a validator of the user's.
    Validator,
    /// Not text (a JSON number or object where a string belongs).
    NotText,
    /// An id is not hex digits of a length the format allows.
    HexId,
    /// An id is not a decimal unsigned 64-bit integer.
    DecimalId,
    /// A field or header the format requires is missing.
    Missing,
    /// A version the format does not define.
    UnsupportedVersion,
    /// A sampling value the format does not define.
    SamplingValue,
    /// The value names another trace than the format that was read first.
    Conflict,
    /// A reader that gives no reason refused the value (an OpenTelemetry propagator).
    Refused,
}

impl ErrorKind {
    /// A short, human-readable statement of the rule.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::Empty => "value is empty",
            ErrorKind::Length => "value has the wrong length",
            ErrorKind::InvalidChar => "value contains a character outside the allowed set",
            ErrorKind::UpperCaseHex => "hex digits must be lower case",
            ErrorKind::Separator => "separator missing or misplaced",
            ErrorKind::Version => "version is not two hex digits",
            ErrorKind::ForbiddenVersion => "version ff is forbidden",
            ErrorKind::TrailingData => "version 00 must be exactly 55 characters",
            ErrorKind::TraceId => "trace id is not lower-case hex of the right length",
            ErrorKind::ZeroTraceId => "trace id is all zeros",
            ErrorKind::SpanId => "span/parent id is not 16 lower-case hex digits",
            ErrorKind::ZeroSpanId => "span/parent id is all zeros",
            ErrorKind::Flags => "flags are not two hex digits",
            ErrorKind::Duplicate => "header appears more than once",
            ErrorKind::Key => "list key is malformed",
            ErrorKind::Value => "list value is malformed",
            ErrorKind::TooManyMembers => "list has too many members",
            ErrorKind::EmptyMember => "list has an empty member",
            ErrorKind::DuplicateKey => "duplicate key",
            ErrorKind::PercentEncoding => "malformed percent-encoding",
            ErrorKind::Sampling => "sampling state must be 0, 1 or d",
            ErrorKind::Validator => "rejected by the configured validator",
            ErrorKind::NotText => "value is not text",
            ErrorKind::HexId => "id is not hex digits of an allowed length",
            ErrorKind::DecimalId => "id is not a decimal unsigned 64-bit integer",
            ErrorKind::Missing => "a required field is missing",
            ErrorKind::UnsupportedVersion => "version is not one the format defines",
            ErrorKind::SamplingValue => "sampling value is not one the format defines",
            ErrorKind::Conflict => "names another trace than the format read first",
            ErrorKind::Refused => "refused by the format's reader",
        }
    }
}

/// A value that does not follow its wire format.
///
/// It never carries the offending value itself, so it is safe to log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    codec: Codec,
    kind: ErrorKind,
}

impl Error {
    /// An error of `codec` for breaking `kind`: for formats of the user's
    /// ([`Codec::Custom`]) as much as for Threadline's own.
    pub const fn new(codec: Codec, kind: ErrorKind) -> Self {
        Error { codec, kind }
    }

    pub(crate) const fn rejected_by_validator() -> Self {
        Error::new(Codec::CorrelationId, ErrorKind::Validator)
    }

    pub(crate) const fn wrong_type(codec: Codec) -> Self {
        Error::new(codec, ErrorKind::NotText)
    }

    /// The format that rejected the value.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The rule the value broke.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.codec.as_str(), self.kind.reason())
    }
}

impl std::error::Error for Error {}

/// Whether `c` would be invisible or would change how the text around it reads in a log
/// line or a page: control characters (`\n`, `\r`, `\t`, ESC, DEL, C1), Unicode format
/// characters (category Cf: the bidirectional overrides and isolates such as U+202E,
/// zero-width spaces and joiners, the soft hyphen, the byte-order mark, tag
/// characters), and the line and paragraph separators U+2028 and U+2029.
///
/// Text that passes this check shows what it is: `Kettle\u{202e}gpj.exe` does not
/// pass (it would render as "Kettleexe.jpg").
///
/// ```
/// use threadline::codec::is_invisible;
///
/// assert!(is_invisible('\u{202e}')); // right-to-left override
/// assert!(is_invisible('\u{200b}')); // zero-width space
/// assert!(is_invisible('\n'));
/// assert!(!is_invisible('é'));
/// assert!(!is_invisible(' '));
/// ```
pub fn is_invisible(c: char) -> bool {
    if c.is_control() {
        return true;
    }
    matches!(
        u32::from(c),
        0xAD
            | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x890..=0x891
            | 0x8E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// Only visible ASCII and spaces: no control characters, no non-ASCII, no tabs.
#[inline]
pub(crate) fn is_clean(v: &[u8]) -> bool {
    no_byte(v, |b| b.wrapping_sub(0x20) > 0x7e - 0x20)
}

/// Whether `bad` holds for no byte of `v`, for short header values.
///
/// In whole 16- and 8-byte blocks, branch-free, so that each block compiles to a few
/// vector instructions. The last block overlaps the one before it instead of leaving a
/// tail: a plain loop over 36 bytes (a UUID) spent more on its 4-byte scalar tail than
/// on the 32 bytes before it.
#[inline(always)]
pub(crate) fn no_byte(v: &[u8], bad: impl Fn(u8) -> bool + Copy) -> bool {
    #[inline(always)]
    fn block<const N: usize>(acc: &mut [u8; N], b: &[u8; N], bad: impl Fn(u8) -> bool) {
        for (a, &x) in acc.iter_mut().zip(b) {
            *a |= u8::from(bad(x));
        }
    }
    #[inline(always)]
    fn blocks<const N: usize>(v: &[u8], bad: impl Fn(u8) -> bool + Copy) -> bool {
        let mut acc = [0u8; N];
        for b in v.chunks_exact(N) {
            if let Ok(b) = <&[u8; N]>::try_from(b) {
                block(&mut acc, b, bad);
            }
        }
        if let Some(last) = v.last_chunk::<N>() {
            block(&mut acc, last, bad);
        }
        acc.iter().all(|&x| x == 0)
    }
    match v.len() {
        16.. => blocks::<16>(v, bad),
        8.. => blocks::<8>(v, bad),
        _ => !v.iter().fold(false, |a, &x| a | bad(x)),
    }
}

/// Trims HTTP optional white space (spaces and tabs) from both ends.
pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Up to `N` bytes on the stack, turned into a `HeaderValue` with one allocation whose
/// clones are reference-count bumps (a `HeaderValue` made from a `Vec` allocates again on
/// its first clone).
#[derive(Clone, Copy)]
pub(crate) struct InlineBytes<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> InlineBytes<N> {
    pub(crate) fn new(src: &[u8]) -> Option<Self> {
        let mut bytes = [0u8; N];
        bytes.get_mut(..src.len())?.copy_from_slice(src);
        Some(InlineBytes {
            bytes,
            len: src.len(),
        })
    }

    pub(crate) fn into_header_value(self) -> Option<http::HeaderValue> {
        http::HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(self)).ok()
    }
}

impl<const N: usize> AsRef<[u8]> for InlineBytes<N> {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A header value for `src` that clones without allocating.
pub(crate) fn shared_header_value(src: &[u8]) -> Option<http::HeaderValue> {
    match InlineBytes::<128>::new(src) {
        Some(b) => b.into_header_value(),
        None => http::HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(src.to_vec())).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::no_byte;

    /// Every length up to three 16-byte blocks, one odd byte at every position: the
    /// blocks and their overlapping last block see every byte, as a plain loop does.
    #[test]
    fn block_check_agrees_with_a_plain_loop() {
        for len in 0..=48 {
            assert!(no_byte(&vec![b'a'; len], |b| b == b'!'), "len {len}");
            for odd in 0..len {
                let mut v = vec![b'a'; len];
                v[odd] = b'!';
                assert!(!no_byte(&v, |b| b == b'!'), "len {len}, at {odd}");
            }
        }
    }
}
