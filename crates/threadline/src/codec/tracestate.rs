//! W3C `tracestate`.

use http::HeaderValue;

use super::{Codec, Error, ErrorKind, trim_ows};

/// Most list members a valid `tracestate` may hold.
pub const MAX_MEMBERS: usize = 32;
/// Entries longer than this are the first to go when a list is trimmed.
pub const LARGE_ENTRY: usize = 128;

/// The W3C `tracestate` header, validated and kept as received.
///
/// Threadline is not a tracing vendor: it never edits the list, it only validates,
/// limits and forwards it, and only together with a valid `traceparent`.
///
/// # ABNF
///
/// ```text
/// list        = list-member 0*31( OWS "," OWS list-member )
/// list-member = key "=" value / OWS            ; empty members are allowed
/// key         = simple-key / multi-tenant-key
/// simple-key  = lcalpha 0*255( lcalpha / DIGIT / "_" / "-" / "*" / "/" )
/// multi-tenant-key = tenant-id "@" system-id
/// tenant-id   = ( lcalpha / DIGIT ) 0*240( lcalpha / DIGIT / "_" / "-" / "*" / "/" )
/// system-id   = lcalpha 0*13( lcalpha / DIGIT / "_" / "-" / "*" / "/" )
/// value       = 0*255( %x20 / nblk-chr ) nblk-chr
/// nblk-chr    = %x21-2B / %x2D-3C / %x3E-7E
/// ```
///
/// Valid: `rojo=00f067aa0ba902b7,congo=t61rcWkgMzE`, `tenant@vendor=x`.
/// Invalid: `Rojo=1` (upper case key), `a=1,a=2` (duplicate key), `a=b=c`, 33 members.
///
/// ```
/// use threadline::codec::TraceState;
///
/// let ts = TraceState::decode(b"rojo=00f067aa0ba902b7, congo=t61rcWkgMzE").unwrap();
/// assert_eq!(ts.get("congo"), Some("t61rcWkgMzE"));
/// assert!(TraceState::decode(b"a=1,a=2").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceState {
    value: HeaderValue,
}

const fn err(kind: ErrorKind) -> Error {
    Error::new(Codec::TraceState, kind)
}

/// `lcalpha / DIGIT / "_" / "-" / "*" / "/"`.
static KEY_CHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = matches!(c as u8, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/');
        c += 1;
    }
    t
};

/// Whether every byte is a key character (no early exit: keys are short and valid).
#[inline]
fn all_key_chars(k: &[u8]) -> bool {
    k.iter().fold(true, |ok, &b| ok & KEY_CHAR[b as usize])
}

fn validate_key(k: &[u8]) -> Result<(), Error> {
    match k.iter().position(|&b| b == b'@') {
        None => {
            let ok =
                !k.is_empty() && k.len() <= 256 && k[0].is_ascii_lowercase() && all_key_chars(k);
            if ok { Ok(()) } else { Err(err(ErrorKind::Key)) }
        }
        Some(at) => {
            let (tenant, system) = (&k[..at], &k[at + 1..]);
            let ok = !tenant.is_empty()
                && tenant.len() <= 241
                && (tenant[0].is_ascii_lowercase() || tenant[0].is_ascii_digit())
                && all_key_chars(tenant)
                && !system.is_empty()
                && system.len() <= 14
                && system[0].is_ascii_lowercase()
                && all_key_chars(system);
            if ok { Ok(()) } else { Err(err(ErrorKind::Key)) }
        }
    }
}

fn validate_value(v: &[u8]) -> Result<(), Error> {
    let nblk = |b: u8| matches!(b, 0x21..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e);
    // chr = %x20 / nblk-chr: printable ASCII but "," and "="; branch-free so it vectorises.
    let bad = v.iter().fold(0u8, |acc, &b| {
        acc | u8::from(b.wrapping_sub(0x20) > 0x7e - 0x20)
            | u8::from(b == b',')
            | u8::from(b == b'=')
    });
    let ok = !v.is_empty() && v.len() <= 256 && bad == 0 && nblk(v[v.len() - 1]);
    if ok {
        Ok(())
    } else {
        Err(err(ErrorKind::Value))
    }
}

/// `nblk-chr`: a value character other than the space.
static VALUE_CHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = matches!(c as u8, 0x21..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e);
        c += 1;
    }
    t
};

/// The common shape in one pass: `key=value` members joined by single commas, simple
/// keys (no `@`), no whitespace. `None` hands anything else, every error included, to
/// the member-by-member check, so both paths give the same answer.
#[inline]
fn validate_plain(b: &[u8]) -> Option<usize> {
    let n = b.len();
    let mut keys: smallvec::SmallVec<[&[u8]; 8]> = smallvec::SmallVec::new();
    let mut i = 0;
    loop {
        let start = i;
        if !b.get(i)?.is_ascii_lowercase() {
            return None;
        }
        i += b[i..]
            .iter()
            .position(|&c| !KEY_CHAR[c as usize])
            .unwrap_or(n - i);
        let key = &b[start..i];
        if i == n || b[i] != b'=' || key.len() > 256 {
            return None;
        }
        i += 1;
        let value_start = i;
        let rest = b.get(i..).unwrap_or_default();
        i += rest
            .iter()
            .position(|&c| !VALUE_CHAR[c as usize])
            .unwrap_or(rest.len());
        if i == value_start || i - value_start > 256 {
            return None;
        }
        if keys.len() == MAX_MEMBERS || keys.contains(&key) {
            return None;
        }
        keys.push(key);
        if i == n {
            return Some(keys.len());
        }
        if b[i] != b',' || i + 1 == n {
            return None;
        }
        i += 1;
    }
}

fn members(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|m| !m.is_empty())
}

fn split_member(m: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    let eq = m
        .iter()
        .position(|&b| b == b'=')
        .ok_or(err(ErrorKind::Separator))?;
    Ok((&m[..eq], &m[eq + 1..]))
}

impl TraceState {
    /// The header name.
    pub const HEADER: &'static str = "tracestate";

    /// Checks a list (one header value or several joined by `,`) against every rule.
    /// Returns the number of members.
    pub fn validate(list: &[u8]) -> Result<usize, Error> {
        if let Some(members) = validate_plain(list) {
            return Ok(members);
        }
        // Keys seen so far, for the duplicate check (inline up to 8: no allocation and
        // nothing to zero for the usual one to three members).
        let mut keys: smallvec::SmallVec<[&[u8]; 8]> = smallvec::SmallVec::new();
        for m in members(list) {
            if keys.len() == MAX_MEMBERS {
                return Err(err(ErrorKind::TooManyMembers));
            }
            let (k, v) = split_member(m)?;
            validate_key(k)?;
            validate_value(v)?;
            if keys.contains(&k) {
                return Err(err(ErrorKind::Duplicate));
            }
            keys.push(k);
        }
        Ok(keys.len())
    }

    /// Decodes one value (allocates the stored copy).
    pub fn decode(value: &[u8]) -> Result<Self, Error> {
        Self::validate(value)?;
        let value =
            HeaderValue::from_bytes(trim_ows(value)).map_err(|_| err(ErrorKind::InvalidChar))?;
        Ok(TraceState { value })
    }

    /// Validates an existing header value and keeps it without copying.
    pub fn from_header(value: &HeaderValue) -> Result<Self, Error> {
        Self::validate(value.as_bytes())?;
        Ok(TraceState {
            value: value.clone(),
        })
    }

    /// Joins several `tracestate` header values into one list (they are one list
    /// on the wire) and validates it.
    pub fn decode_all<'a, I>(values: I) -> Result<Option<Self>, Error>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut joined: Vec<u8> = Vec::new();
        for v in values {
            let v = trim_ows(v);
            if v.is_empty() {
                continue;
            }
            if !joined.is_empty() {
                joined.push(b',');
            }
            joined.extend_from_slice(v);
        }
        if joined.is_empty() {
            return Ok(None);
        }
        Self::decode(&joined).map(Some)
    }

    /// The list as text.
    pub fn as_str(&self) -> &str {
        // validated: printable ASCII only
        self.value.to_str().unwrap_or_default()
    }

    /// The list as a header value (cheap clone).
    pub fn header_value(&self) -> &HeaderValue {
        &self.value
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        members(self.value.as_bytes()).count()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(key, value)` pairs, left (newest) to right.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.as_str()
            .split(',')
            .map(|m| m.trim_matches([' ', '\t']))
            .filter(|m| !m.is_empty())
            .filter_map(|m| m.split_once('='))
    }

    /// The value for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Trims the list to at most `max_bytes` by dropping whole entries: first entries
    /// longer than 128 bytes, largest first, then from the right (the oldest).
    /// Returns `None` when nothing is left.
    pub fn trimmed(&self, max_bytes: usize) -> Option<Self> {
        let bytes = self.value.as_bytes();
        if bytes.len() <= max_bytes {
            return Some(self.clone());
        }
        let mut kept: Vec<&[u8]> = members(bytes).collect();
        let size = |kept: &[&[u8]]| -> usize {
            kept.iter().map(|m| m.len()).sum::<usize>() + kept.len().saturating_sub(1)
        };
        while size(&kept) > max_bytes {
            let largest = kept
                .iter()
                .enumerate()
                .filter(|(_, m)| m.len() > LARGE_ENTRY)
                .max_by_key(|(i, m)| (m.len(), std::cmp::Reverse(*i)))
                .map(|(i, _)| i);
            match largest {
                Some(i) => {
                    kept.remove(i);
                }
                None => {
                    kept.pop();
                }
            }
        }
        if kept.is_empty() {
            return None;
        }
        let joined = kept.join(&b","[..]);
        HeaderValue::from_bytes(&joined)
            .ok()
            .map(|value| TraceState { value })
    }
}
