//! [`MqttProperties`] and [`MqttPropertiesMut`]: the properties of an MQTT 5 publish
//! (user properties, correlation data) as a Threadline carrier.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use threadline::{CarrierKind, CarrierValue, Extractor, Injector};

/// The longest string or binary field MQTT can carry: its length is a two-byte
/// integer (MQTT 5.0, 1.5.4 and 1.5.6).
pub const MAX_FIELD_BYTES: usize = u16::MAX as usize;

/// Reads context from the properties of a received MQTT 5 publish: its user
/// properties and, for the correlation id only, its correlation data when no user
/// property carries the id.
///
/// Names are matched case-insensitively. MQTT allows a user property name to appear
/// more than once: every occurrence is a value, so a repeated single-valued header (the
/// correlation id, `traceparent`, the tenant) is a duplicate, refused as on HTTP. The
/// carrier is of [`CarrierKind::Message`]: local fields (`tl-field-*`) are read as well.
///
/// Correlation data is binary in MQTT: it is read as the correlation id only when it is
/// UTF-8 text; other bytes (a request/response token of another protocol) are not
/// context and are left alone.
#[derive(Clone, Copy, Debug)]
pub struct MqttProperties<'a> {
    user: &'a [(String, String)],
    correlation_data: Option<&'a str>,
    correlation_header: Option<&'a HeaderName>,
}

impl<'a> MqttProperties<'a> {
    /// Reads user properties alone (`PublishProperties::user_properties`).
    pub fn new(user_properties: &'a [(String, String)]) -> Self {
        MqttProperties {
            user: user_properties,
            correlation_data: None,
            correlation_header: None,
        }
    }

    /// Reads the properties of a publish: its user properties, and its correlation
    /// data as the value of `correlation_header` when no user property carries it.
    pub fn from_properties(
        props: &'a PublishProperties,
        correlation_header: &'a HeaderName,
    ) -> Self {
        MqttProperties {
            user: &props.user_properties,
            correlation_data: props
                .correlation_data
                .as_deref()
                .and_then(|d| std::str::from_utf8(d).ok()),
            correlation_header: Some(correlation_header),
        }
    }

    /// Whether the publish carries nothing to read.
    pub fn is_empty(&self) -> bool {
        self.user.is_empty() && self.correlation_data.is_none()
    }
}

impl<'h> Extractor for MqttProperties<'h> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn get_all<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = CarrierValue<'a>> + use<'a, 'h> {
        let fallback = self
            .correlation_data
            .filter(|_| self.correlation_header == Some(name));
        // The name is cloned (a copy of two words for the policy's interned names) so
        // that the values are found lazily, without collecting them.
        let wanted = name.clone();
        let mut found = self
            .user
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(wanted.as_str()))
            .map(|(_, v)| CarrierValue::Text(v.as_str()))
            .peekable();
        let fallback = match found.peek() {
            None => fallback.map(CarrierValue::Text),
            Some(_) => None,
        };
        found.chain(fallback)
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.user.iter().map(|(k, _)| k.as_str())
    }
}

/// Writes context into the user properties of an outgoing MQTT 5 publish.
///
/// Never panics and never writes what MQTT cannot carry: a name or value over
/// [`MAX_FIELD_BYTES`] (rumqttc would write a wrong length prefix), a value that is not
/// text, or one holding a control character such as a tab (brokers refuse those in
/// UTF-8 strings, MQTT 5.0 1.5.4) is skipped. A user property already present (in any
/// casing) is never overwritten.
#[derive(Debug)]
pub struct MqttPropertiesMut<'a>(&'a mut Vec<(String, String)>);

impl<'a> MqttPropertiesMut<'a> {
    /// Wraps the user properties of an outgoing publish
    /// (`PublishProperties::user_properties`).
    pub fn new(user_properties: &'a mut Vec<(String, String)>) -> Self {
        MqttPropertiesMut(user_properties)
    }
}

impl Injector for MqttPropertiesMut<'_> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn contains(&self, name: &HeaderName) -> bool {
        self.0
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name.as_str()))
    }

    fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
        if let Some(value) = carriable(value.as_bytes()) {
            let name = name.as_str();
            if name.len() <= MAX_FIELD_BYTES {
                self.0.push((name.to_owned(), value.to_owned()));
            }
        }
    }
}

/// `value` as an MQTT UTF-8 string, when it can be one that brokers accept: at most
/// [`MAX_FIELD_BYTES`], visible ASCII and spaces only (what a context holds).
fn carriable(value: &[u8]) -> Option<&str> {
    if value.len() > MAX_FIELD_BYTES || !value.iter().all(|b| (b' '..=b'~').contains(b)) {
        return None;
    }
    std::str::from_utf8(value).ok()
}

/// The correlation data to send for a correlation id, when MQTT can carry it.
pub(crate) fn correlation_data(id: &str) -> Option<Bytes> {
    carriable(id.as_bytes()).map(|id| Bytes::copy_from_slice(id.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn values<'a>(c: &'a MqttProperties<'_>, name: &'static str) -> Vec<Option<&'a [u8]>> {
        c.get_all(&HeaderName::from_static(name))
            .map(|v| v.as_bytes())
            .collect()
    }

    #[test]
    fn reads_any_casing_and_every_repeat() {
        let user = props(&[
            ("X-Tenant-Id", "acme"),
            ("baggage", "a=1"),
            ("content-kind", "order"),
            ("BAGGAGE", "b=2"),
        ]);
        let c = MqttProperties::new(&user);
        assert_eq!(values(&c, "x-tenant-id"), [Some(b"acme".as_slice())]);
        assert_eq!(
            values(&c, "baggage"),
            [Some(b"a=1".as_slice()), Some(b"b=2".as_slice())],
            "a repeated name is every value, in order"
        );
        assert!(values(&c, "absent").is_empty());
        assert_eq!(
            c.keys().collect::<Vec<_>>(),
            ["X-Tenant-Id", "baggage", "content-kind", "BAGGAGE"]
        );
    }

    #[test]
    fn correlation_data_stands_in_only_for_a_missing_header() {
        let name = HeaderName::from_static("x-correlation-id");
        let mut p = PublishProperties {
            correlation_data: Some(Bytes::from_static(b"from-data")),
            ..Default::default()
        };
        let c = MqttProperties::from_properties(&p, &name);
        assert!(!c.is_empty());
        assert_eq!(
            values(&c, "x-correlation-id"),
            [Some(b"from-data".as_slice())]
        );
        assert!(
            values(&c, "x-request-id").is_empty(),
            "only the policy's header"
        );

        p.user_properties = props(&[("X-Correlation-Id", "from-property")]);
        let c = MqttProperties::from_properties(&p, &name);
        assert_eq!(
            values(&c, "x-correlation-id"),
            [Some(b"from-property".as_slice())],
            "the user property is authoritative"
        );

        p.user_properties.clear();
        p.correlation_data = Some(Bytes::from_static(b"\x00\xff\x10binary"));
        let c = MqttProperties::from_properties(&p, &name);
        assert!(c.is_empty(), "binary correlation data is not context");
        assert!(values(&c, "x-correlation-id").is_empty());
    }

    #[test]
    fn never_overwrites_and_skips_what_mqtt_cannot_carry() {
        let mut user = props(&[("X-Correlation-Id", "mine")]);
        let mut c = MqttPropertiesMut::new(&mut user);
        assert!(c.contains(&HeaderName::from_static("x-correlation-id")));
        assert!(!c.contains(&HeaderName::from_static("traceparent")));
        assert!(!c.set_if_absent(
            &HeaderName::from_static("x-correlation-id"),
            &HeaderValue::from_static("theirs")
        ));
        let cases: [(&str, Vec<u8>, bool, &str); 6] = [
            ("x-ok", b"fine".to_vec(), true, "visible ASCII"),
            (
                "x-max",
                vec![b'v'; MAX_FIELD_BYTES],
                true,
                "65,535 bytes fit",
            ),
            (
                "x-over",
                vec![b'v'; MAX_FIELD_BYTES + 1],
                false,
                "one byte too many",
            ),
            (
                "x-tab",
                b"a\tb".to_vec(),
                false,
                "brokers refuse control characters",
            ),
            ("x-latin1", b"caf\xe9".to_vec(), false, "not UTF-8 text"),
            ("x-empty", Vec::new(), true, "an empty value is a value"),
        ];
        for (name, value, kept, why) in &cases {
            let value = HeaderValue::from_bytes(value).unwrap();
            c.set(&HeaderName::from_static(name), &value);
            assert_eq!(
                c.contains(&HeaderName::from_static(name)),
                *kept,
                "{name}: {why}"
            );
        }
        // `http` refuses names over 65,535 bytes itself; should it ever accept one,
        // the carrier still skips it.
        if let Ok(long_name) = HeaderName::from_bytes(&vec![b'n'; MAX_FIELD_BYTES + 1]) {
            c.set(&long_name, &HeaderValue::from_static("v"));
            assert!(!c.contains(&long_name), "a name over 65,535 bytes");
        }
        assert_eq!(
            user.len(),
            4,
            "{:?}",
            user.iter().map(|(k, _)| k).collect::<Vec<_>>()
        );
        assert_eq!(user[0], ("X-Correlation-Id".into(), "mine".into()));
    }

    #[test]
    fn correlation_data_only_for_carriable_ids() {
        assert_eq!(
            correlation_data("order-42").as_deref(),
            Some(b"order-42".as_slice())
        );
        assert_eq!(correlation_data(&"c".repeat(MAX_FIELD_BYTES + 1)), None);
        assert_eq!(correlation_data("a\tb"), None);
    }
}
