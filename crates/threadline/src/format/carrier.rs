//! The carrier views formats read from and write to.
//!
//! [`Extractor`] returns `impl Iterator`s, which makes it fast and borrowing but not
//! usable as a trait object; a [`Format`](super::Format) is one (the composite holds
//! a list of them), so it reads through [`ReadCarrier`], a small object-safe view that
//! every `Extractor` has, and writes through `&mut dyn Injector`.

use http::{HeaderName, HeaderValue};

use crate::carrier::{CarrierKind, CarrierValue, Extractor, Injector};

/// What a carrier holds under one name, for single-valued headers.
#[derive(Clone, Copy, Debug)]
pub enum Found<'a> {
    /// Nothing under the name.
    Absent,
    /// Exactly one value.
    One(CarrierValue<'a>),
    /// More than one value (the first is given); single-valued headers treat this as
    /// invalid.
    Many(CarrierValue<'a>),
}

/// An object-safe view of a carrier, implemented for every [`Extractor`].
///
/// Values are borrowed from the carrier: decoding through this view copies nothing.
pub trait ReadCarrier {
    /// What kind of hop the carrier stands for.
    fn kind(&self) -> CarrierKind;

    /// The value under `name`, and whether there are more than one.
    fn get(&self, name: &HeaderName) -> Found<'_>;

    /// Calls `f` with every value under `name`, in order.
    fn each<'s>(&'s self, name: &HeaderName, f: &mut dyn FnMut(CarrierValue<'s>));

    /// Calls `f` with every `(key, value)` whose key starts with `prefix` (ASCII
    /// case-insensitively; `prefix` is lower case). The key is given as the carrier
    /// spells it.
    fn each_prefixed<'s>(&'s self, prefix: &str, f: &mut dyn FnMut(&'s str, CarrierValue<'s>));

    /// Whether [`ReadCarrier::each_prefixed`] is one pass over the entries without
    /// allocating (an `http::HeaderMap`): then a format reading several headers of one
    /// prefix walks them once instead of looking each name up.
    fn walks_entries(&self) -> bool {
        false
    }
}

/// Whether `key` starts with the lower-case `prefix`, ignoring ASCII case. Most keys
/// differ from the prefix in their first byte, which is compared first.
#[inline]
pub(crate) fn has_prefix(key: &str, prefix: &str) -> bool {
    let (k, p) = (key.as_bytes(), prefix.as_bytes());
    match (k.first(), p.first()) {
        (_, None) => true,
        (Some(a), Some(b)) if a.to_ascii_lowercase() == *b && k.len() >= p.len() => {
            k.starts_with(p) || k.iter().zip(p).all(|(a, b)| a.to_ascii_lowercase() == *b)
        }
        _ => false,
    }
}

impl<E: Extractor> ReadCarrier for E {
    fn kind(&self) -> CarrierKind {
        Extractor::kind(self)
    }

    #[inline]
    fn get(&self, name: &HeaderName) -> Found<'_> {
        let mut all = self.get_all(name);
        match (all.next(), all.next()) {
            (None, _) => Found::Absent,
            (Some(v), None) => Found::One(v),
            (Some(v), Some(_)) => Found::Many(v),
        }
    }

    fn each<'s>(&'s self, name: &HeaderName, f: &mut dyn FnMut(CarrierValue<'s>)) {
        for v in self.get_all(name) {
            f(v);
        }
    }

    fn walks_entries(&self) -> bool {
        self.entries().is_some()
    }

    fn each_prefixed<'s>(&'s self, prefix: &str, f: &mut dyn FnMut(&'s str, CarrierValue<'s>)) {
        if let Some(entries) = self.entries() {
            for (k, v) in entries {
                if has_prefix(k.as_str(), prefix) {
                    f(k.as_str(), v);
                }
            }
            return;
        }
        for key in self.keys() {
            if !has_prefix(key, prefix) {
                continue;
            }
            // Only carriers without `entries` (string maps) come here; a prefixed
            // name is rare, so building its `HeaderName` is acceptable.
            if let Ok(name) = HeaderName::from_bytes(key.as_bytes()) {
                for v in self.get_all(&name) {
                    f(key, v);
                }
            }
        }
    }
}

/// An [`Extractor`] behind a reference, for generic code whose carrier type may be
/// unsized (`E: Extractor + ?Sized`): `&CarrierRef(carrier)` is a `&dyn ReadCarrier`.
#[derive(Debug)]
pub struct CarrierRef<'a, E: ?Sized>(pub &'a E);

impl<'b, E: Extractor + ?Sized> Extractor for CarrierRef<'b, E> {
    fn kind(&self) -> CarrierKind {
        self.0.kind()
    }

    fn get_all<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = CarrierValue<'a>> + use<'a, 'b, E> {
        self.0.get_all(name)
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys()
    }

    fn entries(&self) -> Option<impl Iterator<Item = (&HeaderName, CarrierValue<'_>)>> {
        self.0.entries()
    }

    fn is_malformed(&self) -> bool {
        self.0.is_malformed()
    }
}

/// An [`Injector`] behind a mutable reference, for generic code whose carrier type may
/// be unsized: `&mut InjectorRef(carrier)` is a `&mut dyn Injector`.
#[derive(Debug)]
pub struct InjectorRef<'a, I: ?Sized>(pub &'a mut I);

impl<I: Injector + ?Sized> Injector for InjectorRef<'_, I> {
    fn kind(&self) -> CarrierKind {
        self.0.kind()
    }

    fn contains(&self, name: &HeaderName) -> bool {
        self.0.contains(name)
    }

    fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.0.set(name, value);
    }

    fn set_if_absent(&mut self, name: &HeaderName, value: &HeaderValue) -> bool {
        self.0.set_if_absent(name, value)
    }
}
