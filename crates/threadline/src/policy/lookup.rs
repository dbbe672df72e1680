//! The table capture looks configured header names up in.

use http::HeaderName;

/// The names capture reads, bucketed by length: most of a request's other headers are
/// turned away by one table read, and a configured name of up to 16 bytes is
/// recognised by comparing two words (no call to `memcmp`).
#[derive(Debug)]
pub(crate) struct Lookup {
    pub(crate) names: Vec<HeaderName>,
    /// Each name's first sixteen bytes as two words (zero-padded).
    words: Vec<[u64; 2]>,
    /// `first[n]`: 1 + the index of the first name `n` bytes long, 0 for none. Names of
    /// 63 bytes or more share the last bucket.
    first: [u16; 64],
    /// `next[i]`: 1 + the index of the next name in name `i`'s bucket, 0 for none.
    next: Vec<u16>,
}

/// Eight bytes of `s` from `at` (zero-padded) as one word, without a call to `memcpy`.
#[inline]
fn word(s: &[u8], at: usize) -> u64 {
    let s = s.get(at..).unwrap_or_default();
    match s.first_chunk::<8>() {
        Some(w) => u64::from_le_bytes(*w),
        None => s.iter().rev().fold(0, |w, &b| (w << 8) | u64::from(b)),
    }
}

#[inline]
fn words(s: &[u8]) -> [u64; 2] {
    [word(s, 0), word(s, 8)]
}

impl Lookup {
    /// At most `u16::MAX - 1` names: the builder refuses more.
    pub(crate) fn new(names: Vec<HeaderName>) -> Self {
        let mut first = [0u16; 64];
        let mut next = vec![0u16; names.len()];
        let mut last: [Option<usize>; 64] = [None; 64];
        for (i, n) in names.iter().enumerate() {
            let Ok(tag) = u16::try_from(i + 1) else { break };
            let bucket = n.as_str().len().min(63);
            match last[bucket] {
                None => first[bucket] = tag,
                Some(prev) => next[prev] = tag,
            }
            last[bucket] = Some(i);
        }
        let words = names.iter().map(|n| words(n.as_str().as_bytes())).collect();
        Lookup {
            names,
            words,
            first,
            next,
        }
    }

    #[inline]
    pub(crate) fn position(&self, name: &HeaderName) -> Option<usize> {
        let name = name.as_str().as_bytes();
        let mut tag = self.first[name.len().min(63)];
        if tag == 0 {
            return None;
        }
        let w = words(name);
        while tag != 0 {
            let i = usize::from(tag - 1);
            // Same bucket: same length below 63 bytes, so two equal words settle it
            // for names of up to 16 bytes; longer ones compare in full.
            if self.words.get(i) == Some(&w)
                && (name.len() <= 16
                    || self.names.get(i).map(|n| n.as_str().as_bytes()) == Some(name))
            {
                return Some(i);
            }
            tag = self.next.get(i).copied().unwrap_or(0);
        }
        None
    }
}

/// Where each name sits in [`PolicyInner::lookup`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotIndex {
    pub(crate) traceparent: Option<usize>,
    pub(crate) tracestate: Option<usize>,
    pub(crate) baggage: Option<usize>,
    pub(crate) rules: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_each_configured_name_and_nothing_else() {
        let long_a = format!("x-{}", "a".repeat(70));
        let long_b = format!("x-{}", "a".repeat(61)); // 63 bytes: the same last bucket
        let configured = [
            "x-correlation-id",
            "traceparent",
            "x-tenant-id", // 11 bytes, like traceparent: one bucket, chained
            "x-correlation-id-long",
            long_a.as_str(),
            long_b.as_str(),
            "a",
        ];
        let names: Vec<HeaderName> = configured
            .iter()
            .map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap())
            .collect();
        let lookup = Lookup::new(names.clone());
        for (i, n) in names.iter().enumerate() {
            assert_eq!(lookup.position(n), Some(i), "{n}");
        }
        let long_c = format!("x-{}", "a".repeat(69));
        let long_d = format!("x-{}b", "a".repeat(69));
        let others = [
            "x-correlation-ie",
            "y-correlation-id",
            "x-tenant-ie",
            "tracestate",
            "x-correlation-id-lonh",
            long_c.as_str(),
            long_d.as_str(),
            "b",
            "host",
        ];
        for o in others {
            let n = HeaderName::from_bytes(o.as_bytes()).unwrap();
            assert_eq!(lookup.position(&n), None, "{o}");
        }
    }

    #[test]
    fn lookup_gives_the_first_of_repeated_names() {
        let n = HeaderName::from_static("x-request-id");
        let lookup = Lookup::new(vec![
            n.clone(),
            HeaderName::from_static("baggage"),
            n.clone(),
        ]);
        assert_eq!(lookup.position(&n), Some(0));
    }
}
