//! Lower-case hex helpers shared by the trace-context codecs (table-driven).

const DIGITS: &[u8; 16] = b"0123456789abcdef";
const BAD: u8 = 0xff;
const UPPER: u8 = 0xfe;

/// Byte → nibble value, `UPPER` for `A-F`, `BAD` for anything else.
static TABLE: [u8; 256] = {
    let mut t = [BAD; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = UPPER;
        i += 1;
    }
    t
};

/// Decodes lower-case hex into `out` (`src.len() == 2 * out.len()`).
/// `Err(true)` means an upper-case digit was seen, `Err(false)` any other bad byte.
#[inline]
pub(crate) fn decode_into(src: &[u8], out: &mut [u8]) -> Result<(), bool> {
    debug_assert_eq!(src.len(), out.len() * 2);
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(src.chunks_exact(2)) {
        let hi = TABLE[pair[0] as usize];
        let lo = TABLE[pair[1] as usize];
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    if bad & 0xf0 == 0 {
        return Ok(());
    }
    // Slow path, only on error: is it upper case, or something else?
    let any_bad = src.iter().any(|&b| TABLE[b as usize] == BAD);
    Err(!any_bad)
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
