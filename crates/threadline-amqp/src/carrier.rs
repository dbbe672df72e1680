//! AMQP `FieldTable` headers (and the `correlation_id` property) as a Threadline carrier.

use http::{HeaderName, HeaderValue};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use smallvec::SmallVec;
use threadline::{CarrierKind, CarrierValue, Extractor, Injector};

/// Reads context from a received message: its `headers` table and, for the correlation
/// id only, its `correlation_id` property when the header is absent.
///
/// Header names are matched case-insensitively. Long strings, short strings and byte
/// arrays holding UTF-8 text are read as text; an array of those as several values;
/// anything else (numbers, tables, timestamps...) is handed to the policy as a value
/// of the wrong type, which drops and reports it.
#[derive(Clone, Copy, Debug)]
pub struct AmqpHeaders<'a> {
    headers: Option<&'a FieldTable>,
    correlation_id: Option<&'a str>,
    correlation_header: Option<&'a HeaderName>,
}

impl<'a> AmqpHeaders<'a> {
    /// Reads a `headers` table alone.
    pub fn new(headers: &'a FieldTable) -> Self {
        AmqpHeaders {
            headers: Some(headers),
            correlation_id: None,
            correlation_header: None,
        }
    }

    /// Reads the properties of a message: `headers`, and `correlation_id` as the value
    /// of `correlation_header` when the headers do not carry it.
    pub fn from_properties(props: &'a BasicProperties, correlation_header: &'a HeaderName) -> Self {
        AmqpHeaders {
            headers: props.headers().as_ref(),
            correlation_id: props.correlation_id().as_ref().map(ShortString::as_str),
            correlation_header: Some(correlation_header),
        }
    }

    /// Whether the message carries nothing to read.
    pub fn is_empty(&self) -> bool {
        self.headers.is_none_or(|h| h.inner().is_empty()) && self.correlation_id.is_none()
    }
}

fn push<'a>(out: &mut SmallVec<[CarrierValue<'a>; 1]>, v: &'a AMQPValue) {
    let text = |b: &'a [u8]| match std::str::from_utf8(b) {
        Ok(s) => CarrierValue::Text(s),
        Err(_) => CarrierValue::Invalid,
    };
    match v {
        AMQPValue::LongString(s) => out.push(text(s.as_bytes())),
        AMQPValue::ShortString(s) => out.push(CarrierValue::Text(s.as_str())),
        AMQPValue::ByteArray(b) => out.push(text(b.as_slice())),
        AMQPValue::FieldArray(items) => {
            for item in items.as_slice() {
                match item {
                    AMQPValue::FieldArray(_) => out.push(CarrierValue::Invalid),
                    other => push(out, other),
                }
            }
        }
        _ => out.push(CarrierValue::Invalid),
    }
}

impl<'h> Extractor for AmqpHeaders<'h> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn get_all<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = CarrierValue<'a>> + use<'a, 'h> {
        let mut out: SmallVec<[CarrierValue<'a>; 1]> = SmallVec::new();
        if let Some(h) = self.headers {
            for (k, v) in h {
                if k.as_str().eq_ignore_ascii_case(name.as_str()) {
                    push(&mut out, v);
                }
            }
        }
        if out.is_empty()
            && self.correlation_header == Some(name)
            && let Some(id) = self.correlation_id
        {
            out.push(CarrierValue::Text(id));
        }
        out.into_iter()
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.headers
            .into_iter()
            .flat_map(|h| h.inner().keys().map(ShortString::as_str))
    }
}

/// Writes context into the `headers` table of an outgoing message, every value as a
/// long string (`S`), the type every AMQP client reads as text.
///
/// Never panics: a name longer than a short string allows (255 bytes) is skipped, and
/// values go into long strings, which have no such limit. A header already present (in
/// any casing) is never overwritten.
#[derive(Debug)]
pub struct AmqpHeadersMut<'a>(&'a mut FieldTable);

impl<'a> AmqpHeadersMut<'a> {
    /// Wraps the headers of an outgoing message.
    pub fn new(headers: &'a mut FieldTable) -> Self {
        AmqpHeadersMut(headers)
    }
}

impl Injector for AmqpHeadersMut<'_> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn contains(&self, name: &HeaderName) -> bool {
        self.0.contains_key(name.as_str())
            || self
                .0
                .inner()
                .keys()
                .any(|k| k.as_str().eq_ignore_ascii_case(name.as_str()))
    }

    fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
        if let Ok(k) = ShortString::try_new(name.as_str()) {
            self.0
                .insert(k, AMQPValue::LongString(LongString::from(value.as_bytes())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::FieldArray;

    fn table(pairs: Vec<(&str, AMQPValue)>) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(ShortString::try_new(k).unwrap(), v);
        }
        t
    }

    fn long(s: &[u8]) -> AMQPValue {
        AMQPValue::LongString(LongString::from(s))
    }

    #[test]
    fn reads_text_types_and_rejects_others() {
        let t = table(vec![
            ("X-Tenant-Id", long(b"acme")),
            (
                "x-short",
                AMQPValue::ShortString(ShortString::try_new("s").unwrap()),
            ),
            ("x-bytes", AMQPValue::ByteArray(b"b".as_slice().into())),
            ("x-int", AMQPValue::LongInt(7)),
            ("x-bin", long(b"\xff")),
            (
                "baggage",
                AMQPValue::FieldArray(FieldArray::from(vec![long(b"a=1"), long(b"b=2")])),
            ),
        ]);
        let c = AmqpHeaders::new(&t);
        let get = |n: &'static str| -> Vec<Option<&[u8]>> {
            c.get_all(&HeaderName::from_static(n))
                .map(|v| v.as_bytes())
                .collect()
        };
        assert_eq!(get("x-tenant-id"), vec![Some(b"acme".as_slice())]);
        assert_eq!(get("x-short"), vec![Some(b"s".as_slice())]);
        assert_eq!(get("x-bytes"), vec![Some(b"b".as_slice())]);
        assert_eq!(get("x-int"), vec![None]);
        assert_eq!(get("x-bin"), vec![None]);
        assert_eq!(get("baggage").len(), 2);
    }

    #[test]
    fn correlation_property_is_a_fallback() {
        let name = HeaderName::from_static("x-correlation-id");
        let props = BasicProperties::default()
            .with_correlation_id(ShortString::try_new("from-property").unwrap());
        let c = AmqpHeaders::from_properties(&props, &name);
        let got: Vec<_> = c.get_all(&name).map(|v| v.as_bytes()).collect();
        assert_eq!(got, vec![Some(b"from-property".as_slice())]);

        let props = props.with_headers(table(vec![("x-correlation-id", long(b"from-header"))]));
        let c = AmqpHeaders::from_properties(&props, &name);
        let got: Vec<_> = c.get_all(&name).map(|v| v.as_bytes()).collect();
        assert_eq!(got, vec![Some(b"from-header".as_slice())]);
    }

    #[test]
    fn long_values_and_names_never_panic() {
        let mut t = table(vec![("X-Correlation-Id", long(b"mine"))]);
        let mut c = AmqpHeadersMut::new(&mut t);
        assert!(c.contains(&HeaderName::from_static("x-correlation-id")));
        let long_value = HeaderValue::from_str(&"v".repeat(5000)).unwrap();
        c.set(&HeaderName::from_static("x-big"), &long_value);
        let long_name = HeaderName::from_bytes("n".repeat(300).as_bytes()).unwrap();
        c.set(&long_name, &HeaderValue::from_static("skipped"));
        assert!(matches!(
            t.inner().get("x-big"),
            Some(AMQPValue::LongString(s)) if s.len() == 5000
        ));
        assert_eq!(t.inner().len(), 2);
    }
}
