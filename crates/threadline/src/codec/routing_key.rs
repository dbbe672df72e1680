//! The routing key: the value that sends a request to a developer's copy of a service
//! instead of the baseline (see [`Routing`](crate::Routing)).

use std::fmt;

use http::HeaderValue;

use super::{Codec, Error, ErrorKind, shared_header_value};

/// Longest routing key any policy accepts, in bytes.
pub const ROUTING_KEY_MAX_BYTES: usize = 128;

/// Longest routing key by default, in bytes ([`Routing::max_len`](crate::Routing::max_len)).
pub const ROUTING_KEY_DEFAULT_MAX_BYTES: usize = 64;

/// A routing key: 1 to [`ROUTING_KEY_DEFAULT_MAX_BYTES`] bytes (at most
/// [`ROUTING_KEY_MAX_BYTES`] when the policy allows longer) of `A-Z a-z 0-9 . _ -`.
///
/// The alphabet needs no escaping in any form the key travels in (a header, a baggage
/// or tracestate member, a query parameter, a cookie, a NATS subject token or a Redis
/// key), and cannot forge a log line.
///
/// # ABNF
///
/// ```text
/// routing-key = 1*128( ALPHA / DIGIT / "." / "_" / "-" )
/// ```
///
/// ```
/// use threadline::RoutingKey;
///
/// assert_eq!(RoutingKey::new("alice-42").unwrap().as_str(), "alice-42");
/// assert!(RoutingKey::new("").is_err());
/// assert!(RoutingKey::new("alice bob").is_err());
/// assert!(RoutingKey::new("alice,x=1").is_err());
/// assert!(RoutingKey::new(&"a".repeat(65)).is_err()); // over the default 64 bytes
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RoutingKey(HeaderValue);

impl RoutingKey {
    /// Checks `key` against the alphabet and the default length limit.
    pub fn new(key: &str) -> Result<Self, Error> {
        Self::decode(key.as_bytes(), ROUTING_KEY_DEFAULT_MAX_BYTES)
    }

    /// Checks raw bytes against the alphabet and `max_len` (capped at
    /// [`ROUTING_KEY_MAX_BYTES`]).
    pub fn decode(value: &[u8], max_len: usize) -> Result<Self, Error> {
        Self::validate(value, max_len)?;
        shared_header_value(value)
            .map(RoutingKey)
            .ok_or(Error::new(Codec::RoutingKey, ErrorKind::InvalidChar))
    }

    /// Checks raw bytes without keeping them.
    pub fn validate(value: &[u8], max_len: usize) -> Result<(), Error> {
        if value.is_empty() {
            return Err(Error::new(Codec::RoutingKey, ErrorKind::Empty));
        }
        if value.len() > max_len.min(ROUTING_KEY_MAX_BYTES) {
            return Err(Error::new(Codec::RoutingKey, ErrorKind::Length));
        }
        if !value.iter().all(|&b| is_key_byte(b)) {
            return Err(Error::new(Codec::RoutingKey, ErrorKind::InvalidChar));
        }
        Ok(())
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        // Checked against the alphabet when made.
        self.0.to_str().unwrap_or_default()
    }

    /// The key as a header value (a cheap clone).
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

/// `ALPHA / DIGIT / "." / "_" / "-"`.
#[inline]
fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

impl fmt::Debug for RoutingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RoutingKey").field(&self.as_str()).finish()
    }
}

impl fmt::Display for RoutingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RoutingKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        RoutingKey::new(s)
    }
}

impl AsRef<str> for RoutingKey {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&[u8], Result<(), ErrorKind>, &str)] = &[
            (b"alice", Ok(()), "letters"),
            (b"A.b_c-9", Ok(()), "every allowed class"),
            (b"", Err(ErrorKind::Empty), "empty"),
            (b"a b", Err(ErrorKind::InvalidChar), "space"),
            (b"a,b", Err(ErrorKind::InvalidChar), "list separator"),
            (b"a=b", Err(ErrorKind::InvalidChar), "member separator"),
            (b"a;b", Err(ErrorKind::InvalidChar), "cookie separator"),
            (b"a%20", Err(ErrorKind::InvalidChar), "percent"),
            (b"caf\xc3\xa9", Err(ErrorKind::InvalidChar), "non-ASCII"),
            (b"a\nb", Err(ErrorKind::InvalidChar), "newline"),
            (b"a*", Err(ErrorKind::InvalidChar), "NATS wildcard"),
            (b"a>", Err(ErrorKind::InvalidChar), "NATS wildcard"),
            (b"a:b", Err(ErrorKind::InvalidChar), "Redis key separator"),
        ];
        for (input, expected, reason) in cases {
            let got = RoutingKey::decode(input, 64)
                .map(|_| ())
                .map_err(|e| e.kind());
            assert_eq!(&got, expected, "{reason}");
        }
        assert!(RoutingKey::decode(&[b'a'; 64], 64).is_ok());
        assert_eq!(
            RoutingKey::decode(&[b'a'; 65], 64).unwrap_err().kind(),
            ErrorKind::Length
        );
        // The hard cap holds whatever the caller asks for.
        assert!(RoutingKey::decode(&[b'a'; 128], usize::MAX).is_ok());
        assert_eq!(
            RoutingKey::decode(&[b'a'; 129], usize::MAX)
                .unwrap_err()
                .kind(),
            ErrorKind::Length
        );
        assert_eq!(
            RoutingKey::decode(b"x y", 64).unwrap_err().codec(),
            Codec::RoutingKey
        );
    }
}
