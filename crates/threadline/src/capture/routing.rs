//! Capture of the routing key: every form the policy reads, checked against each
//! other, trust applied; and the baggage and tracestate members it owns rewritten to
//! the key that was accepted.

use http::HeaderName;

use super::{Found, Reason, Report, Slot};
use crate::carrier::{CarrierValue, Extractor};
use crate::codec::{self, Baggage, Codec, ErrorKind, RoutingKey, TraceState};
use crate::context::{Inner, TraceContext};
use crate::names;
use crate::policy::{Policy, RoutingRules, RoutingSource};

/// What the forms read so far agree on.
enum Agreed {
    Nothing,
    Key(RoutingKey),
    /// Refused (malformed, conflicting, duplicated or untrusted): no key.
    Refused,
}

const COOKIE: HeaderName = http::header::COOKIE;

impl Policy {
    /// Reads the routing key and rewrites the members it owns in `baggage` and the
    /// trace's tracestate. Called only when the policy has routing rules.
    // Out of line: a policy without routing pays one test in `capture`, not the
    // register pressure of this body.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn capture_routing<E: Extractor + ?Sized>(
        &self,
        r: &RoutingRules,
        carrier: &E,
        found: &Found<'_>,
        untrusted: bool,
        report: &mut Report,
        inner: &mut Inner,
    ) {
        let Inner { baggage, trace, .. } = inner;
        let max = r.config.max_len;
        let mut agreed = Agreed::Nothing;
        let mut offer =
            |agreed: &mut Agreed, name: &HeaderName, value: Result<RoutingKey, Reason>| {
                // A form already refused stays refused; each bad form is still reported.
                match (value, &*agreed) {
                    (Err(reason), _) => {
                        report.push(name, reason);
                        *agreed = Agreed::Refused;
                    }
                    (Ok(_), Agreed::Refused) => {}
                    (Ok(k), Agreed::Nothing) => {
                        if untrusted && !r.config.accept_untrusted {
                            report.push(name, Reason::Untrusted);
                            *agreed = Agreed::Refused;
                        } else {
                            *agreed = Agreed::Key(k);
                        }
                    }
                    (Ok(k), Agreed::Key(first)) => {
                        if k != *first {
                            report.push(name, Reason::RoutingKeyConflict);
                            *agreed = Agreed::Refused;
                        }
                    }
                }
            };
        for source in &r.sources {
            match source {
                RoutingSource::Header { name, slot } | RoutingSource::Uberctx { name, slot } => {
                    let decode = matches!(source, RoutingSource::Uberctx { .. });
                    match found.get(Some(*slot)) {
                        Slot::Absent => {}
                        Slot::Several => offer(&mut agreed, name, Err(Reason::Duplicate)),
                        Slot::One(v) => offer(&mut agreed, name, key_of(v, decode, max)),
                    }
                }
                RoutingSource::Baggage(k) => {
                    let Some(b) = baggage.as_ref() else { continue };
                    for m in b.iter().filter(|m| m.key() == k) {
                        let v = m.value();
                        let key = RoutingKey::decode(v.as_bytes(), max).map_err(Reason::Malformed);
                        offer(&mut agreed, &names::BAGGAGE, key);
                    }
                }
                RoutingSource::Tracestate(k) => {
                    let Some(ts) = trace.as_ref().and_then(TraceContext::tracestate) else {
                        continue;
                    };
                    // Keys are unique in a kept tracestate.
                    if let Some(v) = ts.get(k) {
                        let key = RoutingKey::decode(v.as_bytes(), max).map_err(Reason::Malformed);
                        offer(&mut agreed, &names::TRACESTATE, key);
                    }
                }
                RoutingSource::Cookie(c) => {
                    // HTTP/2 may split cookies over several headers; the same cookie
                    // twice (two paths) counts only when both say the same.
                    for v in carrier.get_all(&COOKIE) {
                        let Some(bytes) = v.as_bytes() else { continue };
                        for value in cookie_values(bytes, c.as_bytes()) {
                            let key = RoutingKey::decode(value, max).map_err(Reason::Malformed);
                            offer(&mut agreed, &COOKIE, key);
                        }
                    }
                }
            }
        }
        let key = match agreed {
            Agreed::Key(k) => Some(k),
            _ => None,
        };
        rewrite(r, self, key.as_ref(), baggage, trace);
        inner.routing_key = key.map(Box::new);
    }
}

/// A header form's value as a key (`uberctx-*` values are percent-encoded).
fn key_of(v: CarrierValue<'_>, decode: bool, max: usize) -> Result<RoutingKey, Reason> {
    let Some(bytes) = v.as_bytes() else {
        return Err(Reason::WrongType);
    };
    let bytes = codec::trim_ows(bytes);
    if decode && bytes.contains(&b'%') {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            Reason::Malformed(codec::Error::new(Codec::RoutingKey, ErrorKind::InvalidChar))
        })?;
        let decoded = codec::percent_decode_strict(text).ok_or(Reason::Malformed(
            codec::Error::new(Codec::RoutingKey, ErrorKind::PercentEncoding),
        ))?;
        return RoutingKey::decode(decoded.as_bytes(), max).map_err(Reason::Malformed);
    }
    RoutingKey::decode(bytes, max).map_err(Reason::Malformed)
}

/// The values of cookie `name` in one `cookie` header (`a=1; name=v; b=2`), quotes
/// around a value removed.
fn cookie_values<'a>(header: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    header.split(|&b| b == b';').filter_map(move |pair| {
        let pair = codec::trim_ows(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (n, v) = (
            codec::trim_ows(&pair[..eq]),
            codec::trim_ows(&pair[eq + 1..]),
        );
        if n != name {
            return None;
        }
        Some(match v {
            [b'"', inner @ .., b'"'] => inner,
            v => v,
        })
    })
}

/// Rewrites the baggage and tracestate members the routing key owns: the members of
/// its names are removed, and the accepted key's member added in each form the policy
/// writes (first, so that a list over its limits loses another member, not this one).
/// Nothing is rebuilt when there is nothing to change.
pub(crate) fn rewrite(
    r: &RoutingRules,
    policy: &Policy,
    key: Option<&RoutingKey>,
    baggage: &mut Option<Baggage>,
    trace: &mut Option<TraceContext>,
) {
    let limits = &policy.inner.limits;
    if !r.baggage_keys.is_empty() {
        let owned = |k: &str| r.baggage_keys.iter().any(|o| o == k);
        let add = r.write_baggage.as_deref().zip(key);
        let holds = baggage
            .as_ref()
            .is_some_and(|b| b.iter().any(|m| owned(m.key())));
        let already = match (add, baggage.as_ref()) {
            (Some((k, v)), Some(b)) => {
                let mut own = b.iter().filter(|m| owned(m.key()));
                matches!((own.next(), own.next()), (Some(m), None) if m.key() == k && m.raw_value() == v.as_str())
            }
            _ => false,
        };
        if !already && (holds || add.is_some()) {
            let mut list = String::new();
            if let Some((k, v)) = add {
                list.push_str(k);
                list.push('=');
                list.push_str(v.as_str());
            }
            if let Some(b) = baggage.as_ref() {
                for m in b.iter().filter(|m| !owned(m.key())) {
                    if !list.is_empty() {
                        list.push(',');
                    }
                    list.push_str(m.as_str());
                }
            }
            *baggage = Baggage::collect(
                [list.as_bytes()],
                limits.baggage_max_members,
                limits.baggage_max_bytes,
            )
            .0;
        }
    }
    if !r.tracestate_keys.is_empty() {
        let Some(t) = trace.as_ref() else { return };
        let owned = |k: &str| r.tracestate_keys.iter().any(|o| o == k);
        let add = r.write_tracestate.as_deref().zip(key);
        let current = t.tracestate();
        let holds = current.is_some_and(|ts| ts.iter().any(|(k, _)| owned(k)));
        let already = match (add, current) {
            (Some((k, v)), Some(ts)) => {
                let mut own = ts.iter().filter(|(k, _)| owned(k));
                matches!((own.next(), own.next()), (Some((ok, ov)), None) if ok == k && ov == v.as_str())
            }
            _ => false,
        };
        if already || !(holds || add.is_some()) {
            return;
        }
        let mut list = String::new();
        let mut members = 0usize;
        if let Some((k, v)) = add {
            list.push_str(k);
            list.push('=');
            list.push_str(v.as_str());
            members += 1;
        }
        if let Some(ts) = current {
            for (k, v) in ts.iter().filter(|(k, _)| !owned(k)) {
                if members == codec::TRACESTATE_MAX_MEMBERS {
                    break;
                }
                if !list.is_empty() {
                    list.push(',');
                }
                list.push_str(k);
                list.push('=');
                list.push_str(v);
                members += 1;
            }
        }
        let state = match TraceState::decode(list.as_bytes()) {
            Ok(ts) if ts.header_value().len() > limits.tracestate_max_bytes => {
                ts.trimmed(limits.tracestate_max_bytes)
            }
            Ok(ts) if !ts.is_empty() => Some(ts),
            _ => None,
        };
        *trace = Some(TraceContext::from_parts(
            t.trace_id(),
            t.parent_id(),
            t.span_id(),
            t.flags(),
            state,
        ));
    }
}
