//! Small, allocation-free text helpers shared by the formats: decimal and hex ids,
//! stack buffers, header values.

use http::{HeaderName, HeaderValue};

use crate::carrier::{CarrierValue, Injector};
use crate::codec::{Codec, Error, ErrorKind, hex, shared_header_value};

/// Parses 1 to 20 decimal digits into a `u64` (no sign, no spaces, no overflow).
///
/// Eight digits at a time in one 64-bit word (check and combine without a loop, the
/// leading `len % 8` digits one by one): a 19-digit id costs about a third of a
/// digit-by-digit loop.
#[inline]
pub(crate) fn parse_dec_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 {
        return None;
    }
    let head = v.len() % 8;
    let mut n: u64 = 0;
    let mut bad = 0u8;
    for &b in &v[..head] {
        let d = b.wrapping_sub(b'0');
        bad |= u8::from(d > 9);
        n = n.wrapping_mul(10).wrapping_add(u64::from(d));
    }
    if bad != 0 {
        return None;
    }
    for chunk in v[head..].chunks_exact(8) {
        let word = <[u8; 8]>::try_from(chunk).ok()?;
        n = n.checked_mul(100_000_000)?.checked_add(parse8(word)?)?;
    }
    Some(n)
}

/// Eight ASCII digits (first digit first) as their value; `None` if any is not a digit.
#[inline]
fn parse8(chunk: [u8; 8]) -> Option<u64> {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    const HIGH: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    let v = u64::from_le_bytes(chunk);
    let d = v.wrapping_sub(ZEROS);
    // Every byte 0x30..=0x39: high nibble 3, and adding 6 to the digit stays below 16.
    if ((v & HIGH) ^ ZEROS) | (d.wrapping_add(0x0606_0606_0606_0606) & HIGH) != 0 {
        return None;
    }
    // Pairs, then quadruples, then the whole: the first byte is the highest digit.
    let d = d.wrapping_mul(10).wrapping_add(d >> 8);
    let lo = (d & 0x0000_00ff_0000_00ff).wrapping_mul(100 + (1_000_000 << 32));
    let hi = ((d >> 16) & 0x0000_00ff_0000_00ff).wrapping_mul(1 + (10_000 << 32));
    Some(lo.wrapping_add(hi) >> 32)
}

/// A `u64` as decimal digits on the stack.
#[derive(Clone, Copy)]
pub(crate) struct Dec {
    bytes: [u8; 20],
    start: usize,
}

impl Dec {
    #[inline]
    pub(crate) fn new(mut n: u64) -> Self {
        let mut bytes = [b'0'; 20];
        let mut i = 20;
        loop {
            i -= 1;
            bytes[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Dec { bytes, start: i }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

/// Nibble of a hex digit of either case; `0xff` for anything else.
static NIBBLE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Parses 1 to `max` (≤ 32) hex digits of either case, right-aligned into 16 bytes
/// (leading zeros may be omitted on the wire). `None` when empty, too long or not hex.
#[inline]
pub(crate) fn parse_hex_padded(v: &[u8], max: usize) -> Option<[u8; 16]> {
    if v.is_empty() || v.len() > max || v.len() > 32 {
        return None;
    }
    let mut out = [0u8; 16];
    // The usual shapes (32 or 16 lower-case digits) take the vectorised decoder.
    if v.len() == 32 {
        if hex::decode_into(v, &mut out).is_ok() {
            return Some(out);
        }
    } else if v.len() == 16 && hex::decode_into(v, &mut out[8..]).is_ok() {
        return Some(out);
    }
    let mut acc: u128 = 0;
    let mut bad = 0u8;
    for &b in v {
        let n = NIBBLE[b as usize];
        bad |= n;
        acc = (acc << 4) | u128::from(n & 0x0f);
    }
    if bad == 0xff {
        return None;
    }
    Some(acc.to_be_bytes())
}

/// Up to `N` bytes on the stack.
#[derive(Clone, Copy)]
pub(crate) struct Buf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Buf<N> {
    pub(crate) const fn new() -> Self {
        Buf {
            bytes: [0; N],
            len: 0,
        }
    }

    /// Appends `s`; drops it (and answers `false`) when it does not fit.
    #[inline]
    pub(crate) fn push(&mut self, s: &[u8]) -> bool {
        match self.bytes.get_mut(self.len..self.len + s.len()) {
            Some(dst) => {
                dst.copy_from_slice(s);
                self.len += s.len();
                true
            }
            None => false,
        }
    }

    pub(crate) fn push_hex(&mut self, bytes: &[u8]) -> bool {
        let n = bytes.len() * 2;
        match self.bytes.get_mut(self.len..self.len + n) {
            Some(dst) => {
                hex::encode_into(bytes, dst);
                self.len += n;
                true
            }
            None => false,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Writes `value` under `name` unless the carrier already has the name.
#[inline]
pub(crate) fn put(carrier: &mut dyn Injector, name: &HeaderName, value: &[u8]) {
    if let Some(v) = shared_header_value(value) {
        carrier.set_if_absent(name, &v);
    }
}

/// Writes an already made header value unless the carrier already has the name.
pub(crate) fn put_value(carrier: &mut dyn Injector, name: &HeaderName, value: &HeaderValue) {
    carrier.set_if_absent(name, value);
}

/// The bytes of a carrier value, or a `NotText` error of `codec`.
#[inline]
pub(crate) fn bytes_of(v: CarrierValue<'_>, codec: Codec) -> Result<&[u8], Error> {
    v.as_bytes().ok_or(Error::new(codec, ErrorKind::NotText))
}

/// Visible ASCII and spaces only (what Threadline lets into a context), as text.
#[inline]
pub(crate) fn visible_text(v: &[u8], codec: Codec) -> Result<&str, Error> {
    if !crate::codec::no_byte(v, |b| !(0x20..0x7f).contains(&b)) {
        return Err(Error::new(codec, ErrorKind::InvalidChar));
    }
    std::str::from_utf8(v).map_err(|_| Error::new(codec, ErrorKind::InvalidChar))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_edges() {
        assert_eq!(parse_dec_u64(b"0"), Some(0));
        assert_eq!(parse_dec_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_dec_u64(b"18446744073709551616"), None, "u64::MAX + 1");
        assert_eq!(parse_dec_u64(b"000000000000000000001"), None, "21 digits");
        assert_eq!(parse_dec_u64(b""), None);
        assert_eq!(parse_dec_u64(b"+1"), None);
        assert_eq!(parse_dec_u64(b"1 "), None);
        for n in [0, 1, 9, 10, 12345, u64::MAX / 3, u64::MAX] {
            assert_eq!(Dec::new(n).as_bytes(), n.to_string().as_bytes());
        }
    }

    #[test]
    fn decimal_agrees_with_the_standard_parser() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for n in [x, x >> (i % 64), i] {
                let s = n.to_string();
                assert_eq!(parse_dec_u64(s.as_bytes()), Some(n), "{s}");
                let padded = format!("{n:020}");
                assert_eq!(parse_dec_u64(padded.as_bytes()), Some(n), "{padded}");
            }
            // Every position of a 16-digit value, every non-digit byte near the digits.
            let s = format!("{:016}", x % 10_000_000_000_000_000);
            let pos = (i % 16) as usize;
            for bad in [b'/', b':', b' ', b'a', 0x30 + 10, 0x20, 0xb0, 0x39 + 0x10] {
                let mut b = s.clone().into_bytes();
                b[pos] = bad;
                assert_eq!(parse_dec_u64(&b), None, "{b:?}");
            }
        }
        assert_eq!(
            parse_dec_u64(b"99999999999999999999"),
            None,
            "20 nines overflow"
        );
        assert_eq!(parse_dec_u64(b"18446744073709551615"), Some(u64::MAX));
    }

    #[test]
    fn hex_padded_edges() {
        let one = parse_hex_padded(b"1", 32).unwrap();
        assert_eq!(u128::from_be_bytes(one), 1);
        let up = parse_hex_padded(b"ABCDEF0123456789", 16).unwrap();
        assert_eq!(u128::from_be_bytes(up), 0xabcdef0123456789);
        let full = parse_hex_padded(b"4bf92f3577b34da6a3ce929d0e0e4736", 32).unwrap();
        assert_eq!(
            u128::from_be_bytes(full),
            0x4bf92f3577b34da6a3ce929d0e0e4736
        );
        assert!(parse_hex_padded(b"", 32).is_none());
        assert!(parse_hex_padded(b"1g", 32).is_none());
        assert!(parse_hex_padded(&[b'1'; 17], 16).is_none());
        assert!(parse_hex_padded(&[b'1'; 33], 40).is_none());
    }
}
