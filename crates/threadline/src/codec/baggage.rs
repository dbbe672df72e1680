//! W3C `baggage`.

use std::borrow::Cow;
use std::fmt::Write as _;

use http::HeaderValue;

use super::{Codec, Error, ErrorKind, trim_ows};

/// Members every receiver must accept (W3C): 64.
pub const MIN_MEMBERS: usize = 64;
/// Bytes every receiver must accept across all `baggage` headers (W3C): 8192.
pub const MIN_BYTES: usize = 8192;

/// The W3C `baggage` header: validated, limited, and kept as received so that passing it
/// on costs nothing. Members are parsed on demand, without allocating.
///
/// # ABNF
///
/// ```text
/// baggage-string = list-member 0*179( OWS "," OWS list-member )
/// list-member    = key OWS "=" OWS value *( OWS ";" OWS property )
/// property       = key OWS "=" OWS value / key OWS
/// key            = token                       ; RFC 7230
/// value          = *baggage-octet              ; anything else percent-encoded
/// baggage-octet  = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E
/// ```
///
/// Valid: `userId=alice,serverNode=DF%2028,isProduction=false;ttl=60`.
/// Invalid: `k v=1` (space in key), `k=a b` (space in value), `=1` (empty key),
/// `k=%zz` (bad escape), `a=1,,b=2` and `a=1,` (empty members; capture forwards the
/// cleaned `a=1,b=2` and reports what it left out).
///
/// ```
/// use threadline::codec::Baggage;
///
/// let b = Baggage::decode(b"userId=alice, serverNode=DF%2028;ttl=60").unwrap();
/// assert_eq!(b.get("serverNode").as_deref(), Some("DF 28"));
/// let m = b.iter().nth(1).unwrap();
/// assert_eq!(m.properties().next(), Some(("ttl", Some("60"))));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Baggage {
    value: HeaderValue,
}

/// One `key=value;properties` member, borrowed from the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaggageMember<'a> {
    key: &'a str,
    raw_value: &'a str,
    properties: &'a str,
    raw: &'a str,
}

const fn err(kind: ErrorKind) -> Error {
    Error::new(Codec::Baggage, kind)
}

/// RFC 7230 `tchar`.
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

#[inline]
fn is_baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

fn trim_str(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

fn check_key(k: &str) -> Result<(), Error> {
    if !k.is_empty() && k.bytes().all(is_tchar) {
        Ok(())
    } else {
        Err(err(ErrorKind::Key))
    }
}

fn check_value(v: &str) -> Result<(), Error> {
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !is_baggage_octet(c) {
            return Err(err(ErrorKind::Value));
        }
        if c == b'%' {
            let ok =
                i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err(err(ErrorKind::PercentEncoding));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Splits a member of an already validated list, without checking it again: one pass
/// over the bytes for the first `=` and `;`.
fn split_member(raw: &str) -> BaggageMember<'_> {
    let b = raw.as_bytes();
    let mut eq = None;
    let mut semi = b.len();
    for (i, &c) in b.iter().enumerate() {
        if c == b'=' && eq.is_none() {
            eq = Some(i);
        } else if c == b';' {
            semi = i;
            break;
        }
    }
    let eq = eq.unwrap_or(semi).min(semi);
    BaggageMember {
        key: trim_ascii_ows(&raw[..eq]),
        raw_value: trim_ascii_ows(&raw[(eq + 1).min(semi)..semi]),
        properties: raw.get(semi + 1..).unwrap_or(""),
        raw,
    }
}

/// Trims spaces and tabs; only ASCII bytes are skipped, so the ends stay char boundaries.
fn trim_ascii_ows(s: &str) -> &str {
    let b = s.as_bytes();
    let mut start = 0;
    let mut end = b.len();
    while start < end && (b[start] == b' ' || b[start] == b'\t') {
        start += 1;
    }
    while end > start && (b[end - 1] == b' ' || b[end - 1] == b'\t') {
        end -= 1;
    }
    &s[start..end]
}

fn parse_member(raw: &str) -> Result<BaggageMember<'_>, Error> {
    let (kv, properties) = match raw.find(';') {
        Some(i) => (&raw[..i], Some(&raw[i + 1..])),
        None => (raw, None),
    };
    let (k, v) = kv.split_once('=').ok_or(err(ErrorKind::Separator))?;
    let key = trim_str(k);
    let raw_value = trim_str(v);
    check_key(key)?;
    check_value(raw_value)?;
    if let Some(properties) = properties {
        for p in properties.split(';') {
            let p = trim_str(p);
            match p.split_once('=') {
                Some((pk, pv)) => {
                    check_key(trim_str(pk))?;
                    check_value(trim_str(pv))?;
                }
                None => check_key(p)?,
            }
        }
    }
    Ok(BaggageMember {
        key,
        raw_value,
        properties: properties.unwrap_or(""),
        raw,
    })
}

const TCHAR: u8 = 1;
const OCTET: u8 = 2;
/// A `baggage-octet` other than `%`: can be skipped over inside a value.
const PLAIN: u8 = 4;

/// Character classes: RFC 7230 `tchar` and W3C `baggage-octet`.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0usize;
    while c < 256 {
        let b = c as u8;
        let tchar = matches!(b,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
            | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z');
        let octet = matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e);
        t[c] = (if tchar { TCHAR } else { 0 })
            | (if octet { OCTET } else { 0 })
            | (if octet && b != b'%' { PLAIN } else { 0 });
        c += 1;
    }
    t
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum St {
    MemberStart,
    Key,
    AfterKey,
    ValueStart,
    Value,
    AfterValue,
    PropStart,
    PropKey,
    AfterPropKey,
    PropValueStart,
    PropValue,
    AfterPropValue,
}

/// The common shape, checked in one tight pass: `key=value` members joined by single
/// commas, no whitespace, no properties. `None` hands anything else (and every error) to
/// the full state machine, so both paths give the same answer by construction.
#[inline]
fn validate_plain(b: &[u8], max_members: usize) -> Option<usize> {
    let n = b.len();
    let mut members = 0usize;
    let mut i = 0;
    loop {
        // key: one or more tchar, then '='
        let start = i;
        while i < n && CLASS[b[i] as usize] & TCHAR != 0 {
            i += 1;
        }
        if i == start || i == n || b[i] != b'=' {
            return None;
        }
        i += 1;
        // value: baggage-octets, `%` followed by two hex digits
        loop {
            while i < n && CLASS[b[i] as usize] & PLAIN != 0 {
                i += 1;
            }
            if i < n && b[i] == b'%' {
                if i + 2 < n && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() {
                    i += 3;
                    continue;
                }
                return None;
            }
            break;
        }
        members += 1;
        if members > max_members {
            return None;
        }
        if i == n {
            return Some(members);
        }
        if b[i] != b',' || i + 1 == n {
            return None;
        }
        i += 1;
    }
}

/// The single-pass validator behind [`Baggage::validate`]: the ABNF as a state machine.
fn validate_list(b: &[u8], max_members: usize) -> Result<usize, Error> {
    if let Some(members) = validate_plain(b, max_members) {
        return Ok(members);
    }
    use St::*;
    let mut st = MemberStart;
    let mut members = 0usize;
    let mut i = 0;
    let end_member = |members: &mut usize| -> Result<(), Error> {
        *members += 1;
        if *members > max_members {
            Err(err(ErrorKind::TooManyMembers))
        } else {
            Ok(())
        }
    };
    while i < b.len() {
        // Fast skip over the runs of plain key and value characters.
        let skip = match st {
            Key | PropKey => TCHAR,
            Value | PropValue => PLAIN,
            _ => 0,
        };
        if skip != 0 {
            while i < b.len() && CLASS[b[i] as usize] & skip != 0 {
                i += 1;
            }
            if i == b.len() {
                break;
            }
        }
        let c = b[i];
        if (c < 0x20 && c != b'\t') || c >= 0x7f {
            return Err(err(ErrorKind::InvalidChar));
        }
        let ows = c == b' ' || c == b'\t';
        let class = CLASS[c as usize];
        if c == b'%' && matches!(st, ValueStart | Value | PropValueStart | PropValue) {
            let ok =
                i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err(err(ErrorKind::PercentEncoding));
            }
            st = if matches!(st, ValueStart | Value) {
                Value
            } else {
                PropValue
            };
            i += 3;
            continue;
        }
        st = match (st, c) {
            (MemberStart, b',') => return Err(err(ErrorKind::EmptyMember)),
            (MemberStart, _) if ows => MemberStart,
            (MemberStart, _) if class & TCHAR != 0 => Key,
            (MemberStart, _) => return Err(err(ErrorKind::Key)),

            (Key, b'=') | (AfterKey, b'=') => ValueStart,
            (Key, _) if class & TCHAR != 0 => Key,
            (Key | AfterKey, _) if ows => AfterKey,
            (Key | AfterKey, b',' | b';') => return Err(err(ErrorKind::Separator)),
            (Key | AfterKey, _) => return Err(err(ErrorKind::Key)),

            (PropStart, b',' | b';') => return Err(err(ErrorKind::Key)),
            (
                ValueStart | Value | AfterValue | PropKey | AfterPropKey | PropValueStart
                | PropValue | AfterPropValue,
                b',',
            ) => {
                end_member(&mut members)?;
                MemberStart
            }
            (
                ValueStart | Value | AfterValue | PropKey | AfterPropKey | PropValueStart
                | PropValue | AfterPropValue,
                b';',
            ) => PropStart,
            (ValueStart, _) if ows => ValueStart,
            (ValueStart | Value, _) if class & OCTET != 0 => Value,
            (Value | AfterValue, _) if ows => AfterValue,
            (ValueStart | Value | AfterValue, _) => return Err(err(ErrorKind::Value)),

            (PropStart, _) if ows => PropStart,
            (PropStart | PropKey, _) if class & TCHAR != 0 => PropKey,
            (PropKey | AfterPropKey, b'=') => PropValueStart,
            (PropKey | AfterPropKey, _) if ows => AfterPropKey,
            (PropStart | PropKey | AfterPropKey, _) => return Err(err(ErrorKind::Key)),

            (PropValueStart, _) if ows => PropValueStart,
            (PropValueStart | PropValue, _) if class & OCTET != 0 => PropValue,
            (PropValue | AfterPropValue, _) if ows => AfterPropValue,
            (PropValueStart | PropValue | AfterPropValue, _) => return Err(err(ErrorKind::Value)),
        };
        i += 1;
    }
    match st {
        MemberStart if members == 0 => return Err(err(ErrorKind::Empty)),
        MemberStart => return Err(err(ErrorKind::EmptyMember)),
        Key | AfterKey => return Err(err(ErrorKind::Separator)),
        PropStart => return Err(err(ErrorKind::Key)),
        _ => end_member(&mut members)?,
    }
    Ok(members)
}

/// Iterator over the members of a baggage list; each item is a member or the reason it
/// is invalid. Empty members (stray commas) are skipped.
#[derive(Clone, Debug)]
pub struct BaggageMembers<'a> {
    rest: Option<&'a str>,
    checked: bool,
}

impl<'a> Iterator for BaggageMembers<'a> {
    type Item = Result<BaggageMember<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest?;
            let (m, tail) = match rest.bytes().position(|c| c == b',') {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            self.rest = tail;
            let m = trim_ascii_ows(m);
            if m.is_empty() {
                continue;
            }
            if self.checked {
                return Some(Ok(split_member(m)));
            }
            return Some(parse_member(m));
        }
    }
}

impl<'a> BaggageMember<'a> {
    /// The key.
    pub fn key(&self) -> &'a str {
        self.key
    }

    /// The value as on the wire (still percent-encoded).
    pub fn raw_value(&self) -> &'a str {
        self.raw_value
    }

    /// The percent-decoded value (borrowed when there is nothing to decode; invalid
    /// UTF-8 after decoding becomes U+FFFD).
    pub fn value(&self) -> Cow<'a, str> {
        percent_decode(self.raw_value)
    }

    /// The member exactly as on the wire (OWS trimmed).
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// Properties as `(key, value)` pairs (`value` is `None` for a bare key).
    pub fn properties(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + use<'a> {
        let props = self.properties;
        props
            .split(';')
            .filter(move |_| !props.is_empty())
            .map(trim_str)
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (trim_str(k), Some(trim_str(v))),
                None => (p, None),
            })
    }
}

/// Decodes `%XX` escapes (borrowing when there are none); invalid UTF-8 becomes U+FFFD.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hi = (b[i + 1] as char).to_digit(16);
            let lo = (b[i + 2] as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// Decodes `%XX` escapes strictly: `None` for a malformed escape or bytes that are not
/// UTF-8 once decoded (where [`percent_decode`] would guess).
pub(crate) fn percent_decode_strict(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains('%') {
        return Some(Cow::Borrowed(s));
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let digit = |c: u8| (c as char).to_digit(16);
            let (hi, lo) = (digit(hex[0])?, digit(hex[1])?);
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// Percent-encodes `value` for a baggage value (or any Threadline field on the wire):
/// every byte outside `baggage-octet`, and `%` itself, becomes `%XX`.
pub fn encode_baggage_value(value: &str, out: &mut String) {
    for &b in value.as_bytes() {
        if is_baggage_octet(b) && b != b'%' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

impl Baggage {
    /// The header name.
    pub const HEADER: &'static str = "baggage";

    /// Iterates the members of any list text, valid or not.
    pub fn members(list: &str) -> BaggageMembers<'_> {
        BaggageMembers {
            rest: Some(list),
            checked: false,
        }
    }

    /// Checks a list strictly: every member valid, at most `max_members` members and
    /// `max_bytes` bytes. Returns the member count. One pass over the bytes.
    pub fn validate(list: &[u8], max_members: usize, max_bytes: usize) -> Result<usize, Error> {
        if trim_ows(list).len() > max_bytes {
            return Err(err(ErrorKind::Length));
        }
        validate_list(list, max_members)
    }

    /// Decodes one value strictly, with the W3C minimum limits (64 members, 8192 bytes).
    pub fn decode(value: &[u8]) -> Result<Self, Error> {
        Self::validate(value, MIN_MEMBERS, MIN_BYTES)?;
        let value =
            HeaderValue::from_bytes(trim_ows(value)).map_err(|_| err(ErrorKind::InvalidChar))?;
        Ok(Baggage { value })
    }

    /// Validates an existing header value strictly and keeps it without copying.
    pub fn from_header(
        value: &HeaderValue,
        max_members: usize,
        max_bytes: usize,
    ) -> Result<Self, Error> {
        Self::validate(value.as_bytes(), max_members, max_bytes)?;
        Ok(Baggage {
            value: value.clone(),
        })
    }

    /// The lenient path for untrusted input: joins every `baggage` header value, keeps
    /// valid members in order while they fit in `max_members` / `max_bytes`, drops
    /// invalid or overflowing members whole (never a partial member). Returns the
    /// kept list (if any member survived) and how many members were dropped.
    pub fn collect<'a, I>(values: I, max_members: usize, max_bytes: usize) -> (Option<Self>, usize)
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut out = String::new();
        let mut kept = 0usize;
        let mut dropped = 0usize;
        for v in values {
            let Ok(v) = std::str::from_utf8(v) else {
                dropped += 1;
                continue;
            };
            // Empty members (stray commas) are not members: the grammar has none. They
            // are left out of the list and counted with the dropped ones.
            if v.split(',').count() > 1 {
                dropped += v
                    .split(',')
                    .filter(|m| trim_ascii_ows(m).is_empty())
                    .count();
            }
            for m in Self::members(v) {
                let Ok(m) = m else {
                    dropped += 1;
                    continue;
                };
                let raw = m.as_str();
                let extra = raw.len() + usize::from(!out.is_empty());
                if kept == max_members || out.len() + extra > max_bytes {
                    dropped += 1;
                    continue;
                }
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(raw);
                kept += 1;
            }
        }
        let value = HeaderValue::from_str(&out).ok().filter(|_| kept > 0);
        (value.map(|value| Baggage { value }), dropped)
    }

    /// Builds a list from `(key, value)` pairs, percent-encoding the values.
    pub fn encode<'a, I>(members: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut out = String::new();
        for (k, v) in members {
            check_key(k)?;
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(k);
            out.push('=');
            encode_baggage_value(v, &mut out);
        }
        let value = HeaderValue::from_str(&out).map_err(|_| err(ErrorKind::InvalidChar))?;
        Ok(Baggage { value })
    }

    /// The valid members, in order.
    pub fn iter(&self) -> impl Iterator<Item = BaggageMember<'_>> {
        // Every `Baggage` was validated when it was made: split without checking again.
        BaggageMembers {
            rest: Some(self.as_str()),
            checked: true,
        }
        .filter_map(Result::ok)
    }

    /// The decoded value of the first member named `key`.
    pub fn get(&self, key: &str) -> Option<Cow<'_, str>> {
        self.iter().find(|m| m.key() == key).map(|m| m.value())
    }

    /// The list as text.
    pub fn as_str(&self) -> &str {
        // validated as visible ASCII
        self.value.to_str().unwrap_or_default()
    }

    /// The list as a header value (cheap clone).
    pub fn header_value(&self) -> &HeaderValue {
        &self.value
    }
}
