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
pub struct NatsHeadersMut<'a>(&'a mut HeaderMap);

impl<'a> NatsHeadersMut<'a> {
    /// Wraps the headers of an outgoing message.
    pub fn new(headers: &'a mut HeaderMap) -> Self {
        NatsHeadersMut(headers)
    }
}

impl Injector for NatsHeadersMut<'_> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn contains(&self, name: &HeaderName) -> bool {
        let name = name.as_str();
        self.0
            .iter()
            .any(|(k, _)| AsRef::<str>::as_ref(k).eq_ignore_ascii_case(name))
    }

    fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
        let (Ok(name), Some(value)) = (
            nats_name(name),
            value
                .to_str()
                .ok()
                .and_then(|v| NatsValue::from_str(v).ok()),
        ) else {
            return;
        };
        self.0.insert(name, value);
    }
}

/// The NATS name for `name`: the names Threadline itself writes are static (no
/// allocation, no validation); others go through the fallible parser.
fn nats_name(name: &HeaderName) -> Result<NatsName, async_nats::header::ParseHeaderNameError> {
    const STATIC: [&str; 5] = [
        "traceparent",
        "tracestate",
        "baggage",
        "x-correlation-id",
        "x-request-id",
    ];
    match STATIC.iter().find(|s| **s == name.as_str()) {
        Some(s) => Ok(NatsName::from_static(s)),
        None => NatsName::from_str(name.as_str()),
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
}
