//! Correlation ids (`x-correlation-id`, `x-request-id`).

use std::fmt;
use std::sync::Arc;

use http::HeaderValue;

use super::{Codec, Error, ErrorKind, trim_ows};

/// Default longest accepted correlation id.
pub(super) const DEFAULT_MAX_LEN: usize = 128;

/// An opaque correlation id, validated so that it is safe in headers and logs.
///
/// # ABNF (default validator)
///
/// ```text
/// correlation-id = 1*128id-char
/// id-char        = %x21 / %x23-26 / %x28-2B / %x2D-3A / %x3C-5B / %x5D-5F / %x61-7E
///                ; visible ASCII without  "  '  ,  ;  \  `
/// ```
///
/// Valid: UUIDs of any version (`0190b6a8-5c0e-7cc1-9f6e-6b7c2ad1f0a3`), ULIDs
/// (`01J2Z3Q4R5S6T7V8W9X0Y1Z2A3`), nginx `$request_id` (`a1b2c3d4e5f60718293a4b5c6d7e8f90`),
/// `req_42`, base64 (`dGhyZWFk+/=`). Invalid: empty, longer than 128, spaces, quotes,
/// control characters (`\r\n` log forging), non-ASCII.
///
/// ```
/// use threadline::codec::{CorrelationId, IdGenerator};
///
/// assert!(CorrelationId::decode(b"01J2Z3Q4R5S6T7V8W9X0Y1Z2A3").is_ok());
/// assert!(CorrelationId::decode(b"abc\r\nlevel=ERROR").is_err());
/// let minted = CorrelationId::generate(&IdGenerator::UuidV7);
/// assert_eq!(minted.as_str().len(), 36);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CorrelationId {
    value: HeaderValue,
}

const fn err(kind: ErrorKind) -> Error {
    Error::new(Codec::CorrelationId, kind)
}

/// Whether every byte is allowed; branch-free, in vector-sized blocks (ids are short
/// and almost always valid).
#[inline]
fn all_id_chars(v: &[u8]) -> bool {
    super::no_byte(v, |b| {
        (b.wrapping_sub(0x21) > 0x7e - 0x21)
            | (b == b'"')
            | (b == b'\'')
            | (b == b',')
            | (b == b';')
            | (b == b'\\')
            | (b == b'`')
    })
}

impl CorrelationId {
    /// Checks a value against the default rules with a custom maximum length.
    pub fn validate(value: &[u8], max_len: usize) -> Result<(), Error> {
        let v = trim_ows(value);
        if v.is_empty() {
            return Err(err(ErrorKind::Empty));
        }
        if v.len() > max_len {
            return Err(err(ErrorKind::Length));
        }
        if !all_id_chars(v) {
            return Err(err(ErrorKind::InvalidChar));
        }
        Ok(())
    }

    /// Decodes with the default rules (allocates the stored copy).
    pub fn decode(value: &[u8]) -> Result<Self, Error> {
        Self::validate(value, DEFAULT_MAX_LEN)?;
        let value =
            HeaderValue::from_bytes(trim_ows(value)).map_err(|_| err(ErrorKind::InvalidChar))?;
        Ok(CorrelationId { value })
    }

    /// Wraps a header value that has already been validated (no copy).
    pub(crate) fn from_validated(value: HeaderValue) -> Self {
        CorrelationId { value }
    }

    /// Validates a header value with the default rules and keeps it without copying.
    pub fn from_header(value: &HeaderValue) -> Result<Self, Error> {
        Self::validate(value.as_bytes(), DEFAULT_MAX_LEN)?;
        Ok(CorrelationId {
            value: value.clone(),
        })
    }

    /// Mints a new id.
    pub fn generate(generator: &IdGenerator) -> Self {
        generator.generate()
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // validated as visible ASCII
        self.value.to_str().unwrap_or_default()
    }

    /// The id as a header value (cheap clone).
    pub fn header_value(&self) -> &HeaderValue {
        &self.value
    }
}

impl fmt::Debug for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CorrelationId({})", self.as_str())
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How new correlation ids are minted.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum IdGenerator {
    /// Random UUID, version 4 (the default): `f47ac10b-58cc-4372-a567-0e02b2c3d479`.
    #[default]
    UuidV4,
    /// Time-ordered UUID, version 7.
    UuidV7,
    /// ULID: 26 Crockford base-32 characters, time-ordered.
    Ulid,
    /// A closure of yours. A value it returns that fails the default rules is replaced by
    /// a UUIDv4, so a generator can never put an unsafe id into headers or logs.
    Custom(Arc<dyn Fn() -> String + Send + Sync>),
}

impl IdGenerator {
    /// A generator from a closure.
    pub fn custom(f: impl Fn() -> String + Send + Sync + 'static) -> Self {
        IdGenerator::Custom(Arc::new(f))
    }

    /// Mints one id.
    pub fn generate(&self) -> CorrelationId {
        let mut buf = [0u8; 36];
        let text: &[u8] = match self {
            IdGenerator::UuidV4 => uuid::Uuid::new_v4()
                .hyphenated()
                .encode_lower(&mut buf)
                .as_bytes(),
            IdGenerator::UuidV7 => uuid::Uuid::now_v7()
                .hyphenated()
                .encode_lower(&mut buf)
                .as_bytes(),
            IdGenerator::Ulid => {
                let mut ulid_buf = [0u8; 26];
                let s = ulid::Ulid::new().array_to_str(&mut ulid_buf);
                buf[..26].copy_from_slice(s.as_bytes());
                &buf[..26]
            }
            IdGenerator::Custom(f) => {
                let s = f();
                if let Ok(id) = CorrelationId::decode(s.as_bytes()) {
                    return id;
                }
                return IdGenerator::UuidV4.generate();
            }
        };
        // generated ids are ASCII alphanumerics and '-'
        match super::shared_header_value(text) {
            Some(value) => CorrelationId { value },
            None => CorrelationId {
                value: HeaderValue::from_static("invalid-generator-output"),
            },
        }
    }
}

impl fmt::Debug for IdGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdGenerator::UuidV4 => f.write_str("UuidV4"),
            IdGenerator::UuidV7 => f.write_str("UuidV7"),
            IdGenerator::Ulid => f.write_str("Ulid"),
            IdGenerator::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}
