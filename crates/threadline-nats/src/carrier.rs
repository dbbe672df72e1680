//! [`NatsHeaders`] and [`NatsHeadersMut`]: `async_nats::HeaderMap` as a Threadline carrier.

use std::str::FromStr;

use async_nats::{HeaderMap, HeaderName as NatsName, HeaderValue as NatsValue};
use http::{HeaderName, HeaderValue};
use smallvec::SmallVec;
use threadline::{CarrierKind, CarrierValue, Extractor, Injector};

/// Reads context from the headers of a received NATS message.
///
/// Names are matched case-insensitively (NATS keeps the sender's casing). The carrier
/// is of [`CarrierKind::Message`]: local fields (`tl-field-*`) are read as well.
#[derive(Clone, Copy, Debug)]
pub struct NatsHeaders<'a>(&'a HeaderMap);

impl<'a> NatsHeaders<'a> {
    /// Wraps the headers of a message.
    pub fn new(headers: &'a HeaderMap) -> Self {
        NatsHeaders(headers)
    }
}

impl<'h> Extractor for NatsHeaders<'h> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn get_all<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = CarrierValue<'a>> + use<'a, 'h> {
        let name = name.as_str();
        let mut out: SmallVec<[CarrierValue<'a>; 2]> = SmallVec::new();
        for (k, values) in self.0.iter() {
            if AsRef::<str>::as_ref(k).eq_ignore_ascii_case(name) {
                out.extend(values.iter().map(|v| CarrierValue::Text(v.as_str())));
            }
        }
        out.into_iter()
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| AsRef::<str>::as_ref(k))
    }
}

/// Writes context into the headers of a NATS message about to be published.
///
/// Goes through the fallible constructors of `async_nats::HeaderName` / `HeaderValue`
/// (their `&str` conversions panic on bad input): a name or value NATS cannot carry is
/// skipped, never a panic. A header already present (in any casing) is never
/// overwritten.
#[derive(Debug)]
pub struct NatsHeadersMut<'a> {
    map: &'a mut HeaderMap,
    /// The map was empty when wrapped: every key in it was written by [`Injector::set`],
    /// in lower case, so `contains` can compare exactly.
    fresh: bool,
}

impl<'a> NatsHeadersMut<'a> {
    /// Wraps the headers of an outgoing message.
    pub fn new(headers: &'a mut HeaderMap) -> Self {
        let fresh = headers.is_empty();
        NatsHeadersMut {
            map: headers,
            fresh,
        }
    }
}

impl Injector for NatsHeadersMut<'_> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn contains(&self, name: &HeaderName) -> bool {
        let name = name.as_str();
        if self.fresh {
            return self
                .map
                .iter()
                .any(|(k, _)| AsRef::<str>::as_ref(k) == name);
        }
        self.map
            .iter()
            .any(|(k, _)| AsRef::<str>::as_ref(k).eq_ignore_ascii_case(name))
    }

    fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
        // Values the context holds are visible ASCII; anything else (obs-text) is skipped.
        let (Ok(name), Some(value)) = (
            nats_name(name),
            value
                .to_str()
                .ok()
                .and_then(|v| NatsValue::from_str(v).ok()),
        ) else {
            return;
        };
        self.map.insert(name, value);
    }
}

/// How many names the per-thread memo of [`nats_name`] keeps.
const MEMO_NAMES: usize = 64;

thread_local! {
    /// Names already converted on this thread (the policy's custom headers and
    /// `tl-field-*` keys: a small, fixed set per service). Converting a name allocates,
    /// a memoised one is a reference-count bump. Holds names only, never values, and
    /// stops growing at [`MEMO_NAMES`].
    static NAMES: std::cell::RefCell<Vec<(HeaderName, NatsName)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The NATS name for `name`: the names Threadline itself writes are static (no
/// allocation, no validation); others go through the fallible parser once per thread.
fn nats_name(name: &HeaderName) -> Result<NatsName, async_nats::header::ParseHeaderNameError> {
    let s = name.as_str();
    let known = match s {
        "traceparent" => Some("traceparent"),
        "tracestate" => Some("tracestate"),
        "baggage" => Some("baggage"),
        "x-correlation-id" => Some("x-correlation-id"),
        "x-request-id" => Some("x-request-id"),
        "b3" => Some("b3"),
        "x-b3-traceid" => Some("x-b3-traceid"),
        "x-b3-spanid" => Some("x-b3-spanid"),
        "x-b3-parentspanid" => Some("x-b3-parentspanid"),
        "x-b3-sampled" => Some("x-b3-sampled"),
        "x-b3-flags" => Some("x-b3-flags"),
        _ => None,
    };
    if let Some(known) = known {
        return Ok(NatsName::from_static(known));
    }
    let memo = NAMES.try_with(|memo| {
        let mut memo = memo.try_borrow_mut().ok()?;
        if let Some((_, n)) = memo.iter().find(|(k, _)| k == name) {
            return Some(Ok(n.clone()));
        }
        let parsed = NatsName::from_str(s);
        if let Ok(n) = &parsed
            && memo.len() < MEMO_NAMES
        {
            memo.push((name.clone(), n.clone()));
        }
        Some(parsed)
    });
    match memo {
        Ok(Some(n)) => n,
        _ => NatsName::from_str(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_any_casing_and_all_values() {
        let mut h = HeaderMap::new();
        h.insert(
            NatsName::from_str("X-Tenant-Id").unwrap(),
            NatsValue::from_str("acme").unwrap(),
        );
        h.append(
            NatsName::from_str("baggage").unwrap(),
            NatsValue::from_str("a=1").unwrap(),
        );
        h.append(
            NatsName::from_str("baggage").unwrap(),
            NatsValue::from_str("b=2").unwrap(),
        );
        let c = NatsHeaders::new(&h);
        let tenant: Vec<_> = c
            .get_all(&HeaderName::from_static("x-tenant-id"))
            .filter_map(|v| v.as_bytes())
            .collect();
        assert_eq!(tenant, vec![b"acme".as_slice()]);
        assert_eq!(c.get_all(&HeaderName::from_static("baggage")).count(), 2);
        assert_eq!(c.get_all(&HeaderName::from_static("absent")).count(), 0);
        let mut keys: Vec<_> = c.keys().collect();
        keys.sort_unstable();
        assert_eq!(keys, ["X-Tenant-Id", "baggage"]);
    }

    #[test]
    fn never_overwrites_and_never_panics() {
        let mut h = HeaderMap::new();
        h.insert(
            NatsName::from_str("X-Correlation-Id").unwrap(),
            NatsValue::from_str("mine").unwrap(),
        );
        let mut c = NatsHeadersMut::new(&mut h);
        assert!(!c.fresh, "a map with headers of the caller's");
        assert!(c.contains(&HeaderName::from_static("x-correlation-id")));
        assert!(!c.contains(&HeaderName::from_static("traceparent")));
        // Non-UTF-8 (obs-text) value: http accepts it, NATS cannot carry it: skipped.
        let odd = HeaderValue::from_bytes(b"caf\xe9").unwrap();
        c.set(&HeaderName::from_static("x-odd"), &odd);
        c.set(
            &HeaderName::from_static("x-ok"),
            &HeaderValue::from_static("fine"),
        );
        assert!(h.get(NatsName::from_str("x-odd").unwrap()).is_none());
        assert_eq!(
            h.get(NatsName::from_str("x-ok").unwrap()).unwrap().as_str(),
            "fine"
        );
    }

    #[test]
    fn memoised_names_are_the_same_names_and_the_memo_is_bounded() {
        for round in 0..2 {
            for i in 0..(MEMO_NAMES + 10) {
                let name = HeaderName::from_bytes(format!("x-custom-{i}").as_bytes()).unwrap();
                let mut h = HeaderMap::new();
                NatsHeadersMut::new(&mut h).set(&name, &HeaderValue::from_static("v"));
                assert_eq!(
                    h.get(NatsName::from_str(name.as_str()).unwrap())
                        .map(NatsValue::as_str),
                    Some("v"),
                    "round {round}, {name}"
                );
            }
        }
        let kept = NAMES.with(|m| m.borrow().len());
        assert!(kept <= MEMO_NAMES, "{kept}");
        assert!(kept > 0);
        // Names Threadline writes itself are never memoised.
        let mut h = HeaderMap::new();
        NatsHeadersMut::new(&mut h).set(
            &HeaderName::from_static("traceparent"),
            &HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert!(NAMES.with(|m| m.borrow().iter().all(|(k, _)| k != "traceparent")));
    }
}
