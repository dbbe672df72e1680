//! Size limits applied to everything captured from a carrier.

use crate::codec;

/// Size limits applied to everything captured from a carrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct Limits {
    /// Longest accepted value of one header, in bytes (default 4096).
    pub max_value_bytes: usize,
    /// Most custom headers captured (default 32).
    pub max_headers: usize,
    /// Most local fields (`tl-field-*`) captured from one carrier (default 32). Their
    /// names and values also count against `max_total_bytes`.
    pub max_fields: usize,
    /// Most bytes captured across all custom headers, tracestate, baggage and local
    /// fields (names and values; default 16384).
    pub max_total_bytes: usize,
    /// Most baggage members kept (default 64, the W3C minimum).
    pub baggage_max_members: usize,
    /// Most baggage bytes kept (default 8192, the W3C minimum).
    pub baggage_max_bytes: usize,
    /// Most tracestate bytes kept; longer lists are trimmed by whole entries (default 512).
    pub tracestate_max_bytes: usize,
    /// Longest accepted correlation id (default 128).
    pub correlation_id_max_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_value_bytes: 4096,
            max_headers: 32,
            max_fields: 32,
            max_total_bytes: 16384,
            baggage_max_members: codec::BAGGAGE_MIN_MEMBERS,
            baggage_max_bytes: codec::BAGGAGE_MIN_BYTES,
            tracestate_max_bytes: 512,
            correlation_id_max_len: 128,
        }
    }
}

impl Limits {
    /// The same limits with `max_value_bytes` set to `n`.
    pub fn with_max_value_bytes(mut self, n: usize) -> Self {
        self.max_value_bytes = n;
        self
    }

    /// The same limits with `max_headers` set to `n`.
    pub fn with_max_headers(mut self, n: usize) -> Self {
        self.max_headers = n;
        self
    }

    /// The same limits with `max_fields` set to `n`.
    pub fn with_max_fields(mut self, n: usize) -> Self {
        self.max_fields = n;
        self
    }

    /// The same limits with `max_total_bytes` set to `n`.
    pub fn with_max_total_bytes(mut self, n: usize) -> Self {
        self.max_total_bytes = n;
        self
    }

    /// The same limits with `baggage_max_members` set to `n`.
    pub fn with_baggage_max_members(mut self, n: usize) -> Self {
        self.baggage_max_members = n;
        self
    }

    /// The same limits with `baggage_max_bytes` set to `n`.
    pub fn with_baggage_max_bytes(mut self, n: usize) -> Self {
        self.baggage_max_bytes = n;
        self
    }

    /// The same limits with `tracestate_max_bytes` set to `n`.
    pub fn with_tracestate_max_bytes(mut self, n: usize) -> Self {
        self.tracestate_max_bytes = n;
        self
    }

    /// The same limits with `correlation_id_max_len` set to `n`.
    pub fn with_correlation_id_max_len(mut self, n: usize) -> Self {
        self.correlation_id_max_len = n;
        self
    }
}
