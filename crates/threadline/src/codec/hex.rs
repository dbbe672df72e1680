//! Lower-case hex helpers shared by the trace-context codecs.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Result of decoding one hex digit.
pub(crate) enum Digit {
    Ok(u8),
    Upper,
    Bad,
}

#[inline]
pub(crate) fn digit(b: u8) -> Digit {
    match b {
        b'0'..=b'9' => Digit::Ok(b - b'0'),
        b'a'..=b'f' => Digit::Ok(b - b'a' + 10),
        b'A'..=b'F' => Digit::Upper,
        _ => Digit::Bad,
    }
}

/// Decodes lower-case hex into `out` (`src.len() == 2 * out.len()`).
/// `Err(true)` means an upper-case digit was seen, `Err(false)` any other bad byte.
#[inline]
pub(crate) fn decode_into(src: &[u8], out: &mut [u8]) -> Result<(), bool> {
    debug_assert_eq!(src.len(), out.len() * 2);
    for (o, pair) in out.iter_mut().zip(src.chunks_exact(2)) {
        let hi = match digit(pair[0]) {
            Digit::Ok(v) => v,
            Digit::Upper => return Err(true),
            Digit::Bad => return Err(false),
        };
        let lo = match digit(pair[1]) {
            Digit::Ok(v) => v,
            Digit::Upper => return Err(true),
            Digit::Bad => return Err(false),
        };
        *o = (hi << 4) | lo;
    }
    Ok(())
}

/// Encodes `src` as lower-case hex into `out` (`out.len() == 2 * src.len()`).
#[inline]
pub(crate) fn encode_into(src: &[u8], out: &mut [u8]) {
    debug_assert_eq!(out.len(), src.len() * 2);
    for (b, pair) in src.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[(b >> 4) as usize];
        pair[1] = DIGITS[(b & 0x0f) as usize];
    }
}
