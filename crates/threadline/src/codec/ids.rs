use std::fmt;

use super::hex;

/// A 16-byte W3C trace id. Never all zeros when it comes from a decoder or [`TraceId::random`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

/// An 8-byte span id (the W3C `parent-id`). Never all zeros when it comes from a decoder
/// or [`SpanId::random`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId([u8; 8]);

/// W3C trace flags (`01` = sampled, `02` = random trace id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(u8);

macro_rules! id_common {
    ($ty:ident, $n:literal, $hex:literal, $random:expr) => {
        impl $ty {
            /// Builds an id from its bytes; `None` when all zeros (an invalid id).
            pub const fn from_bytes(bytes: [u8; $n]) -> Option<Self> {
                let mut i = 0;
                while i < $n {
                    if bytes[i] != 0 {
                        return Some($ty(bytes));
                    }
                    i += 1;
                }
                None
            }

            /// The id's bytes.
            pub const fn to_bytes(self) -> [u8; $n] {
                self.0
            }

            /// A fresh random, non-zero id.
            pub fn random() -> Self {
                $ty($random.to_be_bytes())
            }

            /// Lower-case hex, written into a stack buffer.
            pub fn to_hex(self) -> [u8; $hex] {
                let mut out = [0u8; $hex];
                hex::encode_into(&self.0, &mut out);
                out
            }

            /// Parses lower-case hex of exactly the id's length (no allocation).
            pub fn from_hex(s: &str) -> Option<Self> {
                let s = s.as_bytes();
                if s.len() != $hex {
                    return None;
                }
                let mut b = [0u8; $n];
                hex::decode_into(s, &mut b).ok()?;
                Self::from_bytes(b)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let h = self.to_hex();
                // hex output is always ASCII
                f.write_str(std::str::from_utf8(&h).unwrap_or_default())
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($ty), "({})"), self)
            }
        }
    };
}

id_common!(TraceId, 16, 32, fastrand::u128(1..));
id_common!(SpanId, 8, 16, fastrand::u64(1..));

impl TraceId {
    /// Widens a 64-bit (B3) trace id to 128 bits by zero-padding on the left.
    pub fn from_u64_padded(low: [u8; 8]) -> Option<Self> {
        let mut b = [0u8; 16];
        b[8..].copy_from_slice(&low);
        Self::from_bytes(b)
    }
}

impl TraceFlags {
    /// The `sampled` bit.
    pub const SAMPLED: TraceFlags = TraceFlags(0x01);
    /// The level-2 `random` bit: the trace id's right-most 7 bytes are random.
    pub const RANDOM: TraceFlags = TraceFlags(0x02);
    /// Bits this implementation knows and propagates; unknown bits are zeroed on output.
    pub const KNOWN: u8 = 0x03;

    /// Flags from their byte, as received.
    pub const fn new(bits: u8) -> Self {
        TraceFlags(bits)
    }

    /// The raw byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether the sampled bit is set.
    pub const fn is_sampled(self) -> bool {
        self.0 & 0x01 != 0
    }

    /// The same flags with the sampled bit set to `sampled`.
    pub const fn with_sampled(self, sampled: bool) -> Self {
        if sampled {
            TraceFlags(self.0 | 0x01)
        } else {
            TraceFlags(self.0 & !0x01)
        }
    }
}

impl fmt::Debug for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceFlags({:02x})", self.0)
    }
}
