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
///
/// Trace and span ids (32 and 16 digits, on every request) go through a fixed-size,
/// branch-free path that the compiler turns into vector code; other lengths use a table.
#[inline]
pub(crate) fn decode_into(src: &[u8], out: &mut [u8]) -> Result<(), bool> {
    debug_assert_eq!(src.len(), out.len() * 2);
    let ok = match (
        <&[u8; 32]>::try_from(src),
        <&mut [u8; 16]>::try_from(&mut *out),
    ) {
        (Ok(s), Ok(o)) => decode_fixed(s, o),
        _ => match (
            <&[u8; 16]>::try_from(src),
            <&mut [u8; 8]>::try_from(&mut *out),
        ) {
            (Ok(s), Ok(o)) => decode_fixed(s, o),
            _ => decode_table(src, out),
        },
    };
    if ok {
        return Ok(());
    }
    // Slow path, only on error: is it upper case, or something else?
    let any_bad = src.iter().any(|&b| TABLE[b as usize] == BAD);
    Err(!any_bad)
}

/// `N` digits into `M = N / 2` bytes; `false` if any byte is not a lower-case digit.
#[inline(always)]
fn decode_fixed<const N: usize, const M: usize>(src: &[u8; N], out: &mut [u8; M]) -> bool {
    let mut nibbles = [0u8; N];
    let mut bad = 0u8;
    for (n, &c) in nibbles.iter_mut().zip(src) {
        let digit = c.wrapping_sub(b'0');
        let letter = c.wrapping_sub(b'a');
        let is_digit = digit < 10;
        bad |= u8::from(!is_digit & (letter >= 6));
        *n = if is_digit {
            digit
        } else {
            letter.wrapping_add(10)
        };
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibbles[2 * i] << 4) | nibbles[2 * i + 1];
    }
    bad == 0
}

fn decode_table(src: &[u8], out: &mut [u8]) -> bool {
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(src.chunks_exact(2)) {
        let hi = TABLE[pair[0] as usize];
        let lo = TABLE[pair[1] as usize];
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    bad & 0xf0 == 0
}

/// Byte → its two lower-case hex digits.
static PAIRS: [[u8; 2]; 256] = {
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [DIGITS[i >> 4], DIGITS[i & 0x0f]];
        i += 1;
    }
    t
};

/// Encodes `src` as lower-case hex into `out` (`out.len() == 2 * src.len()`): one
/// two-byte table load and store per byte.
#[inline]
pub(crate) fn encode_into(src: &[u8], out: &mut [u8]) {
    debug_assert_eq!(out.len(), src.len() * 2);
    for (b, pair) in src.iter().zip(out.chunks_exact_mut(2)) {
        pair.copy_from_slice(&PAIRS[usize::from(*b)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_in_every_position_decodes_like_the_table() {
        // 32 and 16 digits take the fixed-size path, the others the table.
        let digits = b"0a1b2c3d4e5f67890a1b2c3d4e5f6789";
        for len in [2, 4, 16, 32] {
            for pos in 0..len {
                for b in 0..=255u8 {
                    check(&digits[..len], pos, b);
                }
            }
        }
    }

    /// Replaces the digit at `pos` with `b` and compares with the per-byte table.
    fn check(digits: &[u8], pos: usize, b: u8) {
        let mut src = digits.to_vec();
        src[pos] = b;
        let mut got = vec![0u8; src.len() / 2];
        let result = decode_into(&src, &mut got);
        let nibbles: Vec<u8> = src.iter().map(|&c| TABLE[c as usize]).collect();
        if nibbles.iter().all(|&n| n < 16) {
            assert_eq!(result, Ok(()), "{b:#04x} at {pos}");
            let want: Vec<u8> = nibbles.chunks(2).map(|p| (p[0] << 4) | p[1]).collect();
            assert_eq!(got, want, "{b:#04x} at {pos}");
        } else {
            let upper = !nibbles.contains(&BAD);
            assert_eq!(result, Err(upper), "{b:#04x} at {pos}");
        }
    }

    #[test]
    fn encodes_ids_like_the_table() {
        for len in [1, 8, 16, 20] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let mut got = vec![0u8; len * 2];
            encode_into(&bytes, &mut got);
            let want: Vec<u8> = bytes
                .iter()
                .flat_map(|b| [DIGITS[(b >> 4) as usize], DIGITS[(b & 0x0f) as usize]])
                .collect();
            assert_eq!(got, want, "{len} bytes");
        }
    }

    #[test]
    fn round_trips_every_byte_and_long_inputs() {
        let bytes: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
        let mut hex = vec![0u8; bytes.len() * 2];
        encode_into(&bytes, &mut hex);
        let mut back = vec![0u8; bytes.len()];
        decode_into(&hex, &mut back).unwrap();
        assert_eq!(back, bytes);
    }
}
