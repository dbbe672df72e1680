//! W3C `tracestate`.

use http::HeaderValue;

use super::{Codec, Error, ErrorKind, trim_ows};

/// Most list members a valid `tracestate` may hold.
pub(crate) const MAX_MEMBERS: usize = 32;
/// Entries longer than this are the first to go when a list is trimmed.
pub(super) const LARGE_ENTRY: usize = 128;

/// The W3C `tracestate` header, validated and kept as received.
///
/// Threadline is not a tracing vendor: it never edits the list, it only validates,
/// limits and forwards it, and only together with a valid `traceparent`.
///
/// # ABNF (W3C Trace Context, current text)
///
/// ```text
/// list        = list-member 0*31( OWS "," OWS list-member )
/// list-member = key "=" value / OWS            ; empty members are allowed
/// key         = ( lcalpha / DIGIT ) 0*255( keychar )
/// keychar     = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"
/// value       = 0*255( %x20 / nblk-chr ) nblk-chr
/// nblk-chr    = %x21-2B / %x2D-3C / %x3E-7E
/// ```
///
/// `@` is an ordinary key character (the older `tenant@system` split is gone): any
/// number of them, anywhere after the first character.
///
/// Valid: `rojo=00f067aa0ba902b7,congo=t61rcWkgMzE`, `tenant@vendor=x`, `foo@@bar=1`,
/// `1abc=1`. Invalid: `Rojo=1` (upper case key), `@a=1` (key starts with `@`),
/// `a=b=c`, 33 members. A list that repeats a key is kept without the later
/// duplicates (capture reports it).
///
/// ```
/// use threadline::codec::TraceState;
///
/// let ts = TraceState::decode(b"rojo=00f067aa0ba902b7, congo=t61rcWkgMzE").unwrap();
/// assert_eq!(ts.get("congo"), Some("t61rcWkgMzE"));
/// assert_eq!(TraceState::decode(b"a=1,b=2,a=3").unwrap().as_str(), "a=1,b=2");
/// assert!(TraceState::decode(b"a=b=c").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceState {
    value: HeaderValue,
}

const fn err(kind: ErrorKind) -> Error {
    Error::new(Codec::TraceState, kind)
}

/// `keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"`.
static KEY_CHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = matches!(
            c as u8,
            b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@'
        );
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
    let ok = match k.first() {
        Some(&first) => {
            (first.is_ascii_lowercase() || first.is_ascii_digit())
                && k.len() <= 256
                && all_key_chars(k)
        }
        None => false,
    };
    if ok { Ok(()) } else { Err(err(ErrorKind::Key)) }
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

/// The common shape in one pass: `key=value` members joined by single commas, no
/// whitespace, no repeated key. `None` hands anything else, every error and every
/// duplicate included, to the member-by-member check, so both paths give the same
/// answer.
#[inline]
fn validate_plain(b: &[u8]) -> Option<usize> {
    let n = b.len();
    let mut keys: smallvec::SmallVec<[&[u8]; 8]> = smallvec::SmallVec::new();
    let mut i = 0;
    loop {
        let start = i;
        let first = *b.get(i)?;
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
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

/// What checking a list found.
struct Checked {
    members: usize,
    duplicates: bool,
}

fn check(list: &[u8]) -> Result<Checked, Error> {
    if let Some(members) = validate_plain(list) {
        return Ok(Checked {
            members,
            duplicates: false,
        });
    }
    // Keys seen so far, for the duplicate check (inline up to 8: no allocation and
    // nothing to zero for the usual one to three members).
    let mut keys: smallvec::SmallVec<[&[u8]; 8]> = smallvec::SmallVec::new();
    let mut duplicates = false;
    for m in members(list) {
        let (k, v) = split_member(m)?;
        validate_key(k)?;
        validate_value(v)?;
        if keys.contains(&k) {
            duplicates = true;
            continue;
        }
        if keys.len() == MAX_MEMBERS {
            return Err(err(ErrorKind::TooManyMembers));
        }
        keys.push(k);
    }
    Ok(Checked {
        members: keys.len(),
        duplicates,
    })
}

/// The list's members in order, each key's first occurrence only (the list was
/// checked).
fn without_duplicates(list: &[u8]) -> Vec<u8> {
    let mut keys: smallvec::SmallVec<[&[u8]; 8]> = smallvec::SmallVec::new();
    let mut out = Vec::with_capacity(list.len());
    for m in members(list) {
        let key = m.split(|&b| b == b'=').next().unwrap_or_default();
        if keys.contains(&key) {
            continue;
        }
        keys.push(key);
        if !out.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(m);
    }
    out
}

impl TraceState {
    /// The header name.
    pub const HEADER: &'static str = "tracestate";

    /// Checks a list (one header value or several joined by `,`) against every rule.
    /// Returns the number of members (a repeated key counts once: the later duplicate
    /// is not a member of the list that is kept).
    pub fn validate(list: &[u8]) -> Result<usize, Error> {
        check(list).map(|c| c.members)
    }

    /// Decodes one value (allocates the stored copy). A repeated key is not an error:
    /// the later duplicates are left out.
    pub fn decode(value: &[u8]) -> Result<Self, Error> {
        Self::decode_checked(value).map(|(ts, _)| ts)
    }

    /// [`TraceState::decode`], also saying whether duplicates were left out.
    pub(crate) fn decode_checked(value: &[u8]) -> Result<(Self, bool), Error> {
        let c = check(value)?;
        let value = if c.duplicates {
            without_duplicates(value)
        } else {
            trim_ows(value).to_vec()
        };
        let value = HeaderValue::from_bytes(&value).map_err(|_| err(ErrorKind::InvalidChar))?;
        Ok((TraceState { value }, c.duplicates))
    }

    /// Validates an existing header value and keeps it without copying (a copy only
    /// when a repeated key has to be left out).
    pub fn from_header(value: &HeaderValue) -> Result<Self, Error> {
        match Self::from_header_checked(value)? {
            Some((ts, _)) => Ok(ts),
            None => Ok(TraceState {
                value: value.clone(),
            }),
        }
    }

    /// [`TraceState::from_header`], also saying whether duplicates were left out;
    /// `None` for a list without members (an empty header, only commas and spaces).
    pub(crate) fn from_header_checked(value: &HeaderValue) -> Result<Option<(Self, bool)>, Error> {
        let c = check(value.as_bytes())?;
        if c.members == 0 {
            return Ok(None);
        }
        if c.duplicates {
            return Self::decode_checked(value.as_bytes()).map(Some);
        }
        Ok(Some((
            TraceState {
                value: value.clone(),
            },
            false,
        )))
    }

    /// Joins several `tracestate` header values into one list (they are one list
    /// on the wire) and validates it. `None` when every value is empty.
    pub fn decode_all<'a, I>(values: I) -> Result<Option<Self>, Error>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        Self::decode_all_checked(values).map(|d| d.map(|(ts, _)| ts))
    }

    /// [`TraceState::decode_all`], also saying whether duplicates were left out.
    pub(crate) fn decode_all_checked<'a, I>(values: I) -> Result<Option<(Self, bool)>, Error>
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
        let (ts, duplicates) = Self::decode_checked(&joined)?;
        Ok((!ts.is_empty()).then_some((ts, duplicates)))
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

    /// Whether the list is empty. Every member holds a `=`, so this is one byte search,
    /// not a count.
    pub fn is_empty(&self) -> bool {
        !self.value.as_bytes().contains(&b'=')
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
