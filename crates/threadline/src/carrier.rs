//! Carriers: anything context is written to or read from.
//!
//! [`Extractor`] and [`Injector`] are shaped like OpenTelemetry's `Extractor::get` /
//! `Injector::set`, but they borrow instead of allocating: a value read from an
//! `http::HeaderMap` stays a `&HeaderValue`, so capturing it is a reference-count bump.
//!
//! Implemented here for [`http::HeaderMap`] (HTTP), [`MessageHeaders`] (a `HeaderMap`
//! that travels with a message or job), `HashMap<String, String>` and
//! `BTreeMap<String, String>` (message headers of brokers), and, with the `json`
//! feature, [`JsonCarrier`](crate::json::JsonCarrier) (a key inside a JSON payload).

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use http::{HeaderMap, HeaderName, HeaderValue};

/// What kind of hop a carrier stands for. Local fields (`user.id`, ...) travel on
/// [`CarrierKind::Message`] carriers; on [`CarrierKind::Http`] ones only when the
/// policy says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CarrierKind {
    /// An HTTP or gRPC request.
    Http,
    /// A message, job or task handed to background work.
    Message,
}

/// One value read from a carrier.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum CarrierValue<'a> {
    /// A header value that can be kept without copying.
    Header(&'a HeaderValue),
    /// Text from a map or JSON object.
    Text(&'a str),
    /// Something that is not text (a JSON number or object, say): always rejected.
    Invalid,
}

impl<'a> CarrierValue<'a> {
    /// The raw bytes, unless the value is of the wrong type.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match *self {
            CarrierValue::Header(v) => Some(v.as_bytes()),
            CarrierValue::Text(s) => Some(s.as_bytes()),
            CarrierValue::Invalid => None,
        }
    }

    /// The value as a `HeaderValue`: a cheap clone for [`CarrierValue::Header`], a copy
    /// otherwise. `None` when it cannot be a header value.
    pub fn to_header_value(&self) -> Option<HeaderValue> {
        match *self {
            CarrierValue::Header(v) => Some(v.clone()),
            CarrierValue::Text(s) => HeaderValue::from_str(s).ok(),
            CarrierValue::Invalid => None,
        }
    }
}

/// Reads context from a carrier. Names are matched case-insensitively.
///
/// `Extractor` is not object-safe, on purpose: [`Extractor::get_all`] and
/// [`Extractor::keys`] return `impl Iterator`s that borrow the carrier, which is what
/// keeps capture free of allocations and dynamic calls. Where a `dyn` carrier is
/// needed (a list of carriers of different types, a plugin boundary), use
/// [`format::ReadCarrier`](crate::format::ReadCarrier): every `Extractor` is one, it
/// is object-safe, and values read through it are still borrowed, not copied.
///
/// ```
/// use threadline::format::{Found, ReadCarrier};
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-tenant-id", "acme".parse().unwrap());
/// let mut map = std::collections::HashMap::new();
/// map.insert("X-Tenant-Id".to_owned(), "globex".to_owned());
///
/// let carriers: [&dyn ReadCarrier; 2] = [&headers, &map];
/// let tenant = http::HeaderName::from_static("x-tenant-id");
/// let found: Vec<String> = carriers
///     .iter()
///     .filter_map(|c| match c.get(&tenant) {
///         Found::One(v) => v.as_bytes().map(|b| String::from_utf8_lossy(b).into_owned()),
///         _ => None,
///     })
///     .collect();
/// assert_eq!(found, ["acme", "globex"]);
/// ```
pub trait Extractor {
    /// What kind of hop this carrier stands for.
    fn kind(&self) -> CarrierKind;

    /// Every value stored under `name`, in order.
    fn get_all<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = CarrierValue<'a>> + use<'a, Self>;

    /// Every key (used by the opt-in "capture all" mode and for local fields).
    fn keys(&self) -> impl Iterator<Item = &str>;

    /// Every `(name, value)` entry once, a name appearing once per value, for carriers
    /// that walk their entries more cheaply than they look names up one by one (an
    /// `http::HeaderMap`: one pass over a vector instead of hashing each configured
    /// name). `None`, the default, makes capture look each configured name up with
    /// [`Extractor::get_all`] instead.
    fn entries(&self) -> Option<impl Iterator<Item = (&HeaderName, CarrierValue<'_>)>> {
        None::<std::iter::Empty<_>>
    }

    /// `true` when the carrier itself is broken (a JSON envelope key holding something
    /// other than an object, say). Its context is then treated as absent and counted.
    fn is_malformed(&self) -> bool {
        false
    }
}

/// Writes context into a carrier.
pub trait Injector {
    /// What kind of hop this carrier stands for.
    fn kind(&self) -> CarrierKind;

    /// Whether `name` is already set (case-insensitively). Injection never overwrites.
    fn contains(&self, name: &HeaderName) -> bool;

    /// Sets `name` to `value` (only called when [`Injector::contains`] said no).
    fn set(&mut self, name: &HeaderName, value: &HeaderValue);

    /// Sets `name` unless it is already set; answers whether it did. The default asks
    /// [`Injector::contains`] then calls [`Injector::set`]; carriers that can do both in
    /// one lookup override it.
    fn set_if_absent(&mut self, name: &HeaderName, value: &HeaderValue) -> bool {
        if self.contains(name) {
            return false;
        }
        self.set(name, value);
        true
    }
}

impl<'b, E: Extractor + ?Sized> Extractor for &'b E {
    fn kind(&self) -> CarrierKind {
        (**self).kind()
    }

    fn get_all<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = CarrierValue<'a>> + use<'a, 'b, E> {
        (**self).get_all(name)
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        (**self).keys()
    }

    fn entries(&self) -> Option<impl Iterator<Item = (&HeaderName, CarrierValue<'_>)>> {
        (**self).entries()
    }

    fn is_malformed(&self) -> bool {
        (**self).is_malformed()
    }
}

impl Extractor for HeaderMap {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Http
    }

    fn get_all<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = CarrierValue<'a>> + use<'a> {
        HeaderMap::get_all(self, name)
            .into_iter()
            .map(CarrierValue::Header)
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        HeaderMap::keys(self).map(HeaderName::as_str)
    }

    fn entries(&self) -> Option<impl Iterator<Item = (&HeaderName, CarrierValue<'_>)>> {
        Some(self.iter().map(|(k, v)| (k, CarrierValue::Header(v))))
    }
}

impl Injector for HeaderMap {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Http
    }

    fn contains(&self, name: &HeaderName) -> bool {
        self.contains_key(name)
    }

    fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.insert(name.clone(), value.clone());
    }

    fn set_if_absent(&mut self, name: &HeaderName, value: &HeaderValue) -> bool {
        match self.entry(name) {
            http::header::Entry::Vacant(slot) => {
                slot.insert(value.clone());
                true
            }
            http::header::Entry::Occupied(_) => false,
        }
    }
}

/// A `HeaderMap` that travels with a message or job (NATS headers, HTTP-pushed tasks):
/// the same as a `HeaderMap`, but of [`CarrierKind::Message`], so local fields go along.
#[derive(Debug)]
pub struct MessageHeaders<M>(pub M);

impl<M: std::ops::Deref<Target = HeaderMap>> Extractor for MessageHeaders<M> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn get_all<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = CarrierValue<'a>> + use<'a, M> {
        self.0.get_all(name).into_iter().map(CarrierValue::Header)
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(HeaderName::as_str)
    }

    fn entries(&self) -> Option<impl Iterator<Item = (&HeaderName, CarrierValue<'_>)>> {
        Some(self.0.iter().map(|(k, v)| (k, CarrierValue::Header(v))))
    }
}

impl<M: std::ops::DerefMut<Target = HeaderMap>> Injector for MessageHeaders<M> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn contains(&self, name: &HeaderName) -> bool {
        self.0.contains_key(name)
    }

    fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.0.insert(name.clone(), value.clone());
    }
}

/// Every value under `name` in a string map: the exact (lower-case) key first, then any
/// other key equal to it ignoring case. Two keys that differ only in case are two
/// values (a duplicate), never one picked silently.
fn lookup<'a, I>(
    exact: Option<&'a String>,
    all: I,
    name: &str,
) -> smallvec::SmallVec<[CarrierValue<'a>; 1]>
where
    I: IntoIterator<Item = (&'a String, &'a String)>,
{
    let mut out: smallvec::SmallVec<[CarrierValue<'a>; 1]> = smallvec::SmallVec::new();
    out.extend(exact.map(|v| CarrierValue::Text(v.as_str())));
    out.extend(
        all.into_iter()
            .filter(|(k, _)| k.len() == name.len() && k.as_str() != name)
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| CarrierValue::Text(v.as_str())),
    );
    out
}

impl<S: BuildHasher> Extractor for HashMap<String, String, S> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn get_all<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = CarrierValue<'a>> + use<'a, S> {
        lookup(self.get(name.as_str()), self, name.as_str()).into_iter()
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        HashMap::keys(self).map(String::as_str)
    }
}

impl<S: BuildHasher> Injector for HashMap<String, String, S> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn contains(&self, name: &HeaderName) -> bool {
        self.contains_key(name.as_str())
            || self.keys().any(|k| k.eq_ignore_ascii_case(name.as_str()))
    }

    fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
        if let Ok(v) = value.to_str() {
            self.insert(name.as_str().to_owned(), v.to_owned());
        }
    }
}

impl Extractor for BTreeMap<String, String> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn get_all<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = CarrierValue<'a>> + use<'a> {
        lookup(self.get(name.as_str()), self, name.as_str()).into_iter()
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        BTreeMap::keys(self).map(String::as_str)
    }
}

impl Injector for BTreeMap<String, String> {
    fn kind(&self) -> CarrierKind {
        CarrierKind::Message
    }

    fn contains(&self, name: &HeaderName) -> bool {
        self.contains_key(name.as_str())
            || self.keys().any(|k| k.eq_ignore_ascii_case(name.as_str()))
    }

    fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
        if let Ok(v) = value.to_str() {
            self.insert(name.as_str().to_owned(), v.to_owned());
        }
    }
}
