//! Capture: from an inbound carrier to a [`Context`], with a [`Report`] of what was
//! dropped on the way.

mod report;
mod routing;

pub(crate) use routing::rewrite as rewrite_routing;

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use smallvec::SmallVec;

use crate::carrier::{CarrierKind, CarrierValue, Extractor};
use crate::codec::{self, B3, Baggage, CorrelationId, TraceParent, TraceState, is_clean};
use crate::codec::{Codec, ErrorKind, SpanId};
use crate::context::{
    Context, Field, FieldValue, Header, HeaderKey, IdOrigin, Inner, Received, TraceContext,
    is_valid_field_name,
};
use crate::format::{CarrierRef, Found as FormatFound, ReadCarrier};
use crate::names;
use crate::policy::{
    CREDENTIALS, DefaultValue, Lookup, Policy, Trust, UntrustedBaggage, is_hop_by_hop,
};

pub use report::{Captured, Reason, Rejection, Report};

/// What a carrier holds under one configured name.
#[derive(Clone, Copy)]
enum Slot<'a> {
    Absent,
    One(CarrierValue<'a>),
    Several,
}

/// What a carrier holds under each configured name, gathered in one pass over its
/// entries when it can give them (an `http::HeaderMap`), by one lookup per name
/// otherwise.
struct Found<'a> {
    slots: SmallVec<[Slot<'a>; 8]>,
}

impl<'a> Found<'a> {
    #[inline(always)]
    fn gather<E: Extractor + ?Sized>(lookup: &Lookup, carrier: &'a E) -> Self {
        let names = &lookup.names;
        let mut slots: SmallVec<[Slot<'a>; 8]> = SmallVec::from_elem(Slot::Absent, names.len());
        match carrier.entries() {
            Some(entries) => {
                // One bounds check per hit, not the inline/spilled test of every index.
                let s = slots.as_mut_slice();
                for (name, v) in entries {
                    if let Some(slot) = lookup.position(name).and_then(|i| s.get_mut(i)) {
                        *slot = match slot {
                            Slot::Absent => Slot::One(v),
                            _ => Slot::Several,
                        };
                    }
                }
            }
            None => {
                for (slot, name) in slots.iter_mut().zip(names) {
                    let mut values = carrier.get_all(name);
                    *slot = match (values.next(), values.next()) {
                        (None, _) => Slot::Absent,
                        (Some(v), None) => Slot::One(v),
                        (Some(_), Some(_)) => Slot::Several,
                    };
                }
            }
        }
        Found { slots }
    }

    fn get(&self, i: Option<usize>) -> Slot<'a> {
        i.and_then(|i| self.slots.get(i).copied())
            .unwrap_or(Slot::Absent)
    }

    /// The single value in slot `i`; more than one is a duplicate.
    fn single(&self, i: usize) -> Result<Option<CarrierValue<'a>>, ()> {
        match self.get(Some(i)) {
            Slot::Absent => Ok(None),
            Slot::One(v) => Ok(Some(v)),
            Slot::Several => Err(()),
        }
    }
}

/// Takes the single value under `name`; more than one is a duplicate.
fn single<'a, E: Extractor + ?Sized>(
    carrier: &'a E,
    name: &HeaderName,
) -> Result<Option<CarrierValue<'a>>, ()> {
    let mut it = carrier.get_all(name);
    let first = it.next();
    if first.is_some() && it.next().is_some() {
        return Err(());
    }
    Ok(first)
}

impl Policy {
    /// A fresh context: new correlation id, new root trace, nothing else. For work that
    /// starts outside any request (a scheduled job, a CLI command).
    pub fn new_root(&self) -> Context {
        let p = &self.inner;
        Context::from_inner(Inner {
            policy: self.clone(),
            correlation_id: Some(p.generator.generate()),
            id_origin: IdOrigin::Minted,
            trace: (p.w3c || p.formats.is_some())
                .then(|| TraceContext::new_root(p.sample_new_traces)),
            received: None,
            baggage: None,
            routing_key: None,
            headers: SmallVec::new(),
            fields: SmallVec::new(),
        })
    }

    /// Captures context from an inbound carrier (an HTTP request's headers, say):
    /// the allow-list, trust, validation and limits apply; whatever breaks a rule is
    /// dropped, counted in the [`Report`] and never copied into the context.
    ///
    /// The correlation id is always set afterwards (accepted or minted), and so is the
    /// trace (continued or a new root) when W3C is on.
    pub fn capture<E: Extractor + ?Sized>(&self, carrier: &E, trust: Trust) -> Captured {
        let p = &*self.inner;
        let mut report = Report::default();
        let untrusted = trust == Trust::Untrusted;
        if carrier.is_malformed() {
            report.push(&names::ENVELOPE, Reason::WrongType);
        }
        let found = Found::gather(&p.lookup, carrier);

        // Correlation id.
        let mut correlation_id = None;
        let correlation_names = std::iter::once(&p.correlation_header).chain(&p.also_accept);
        for (slot, name) in correlation_names.enumerate() {
            let v = match found.single(slot) {
                Ok(None) => continue,
                Ok(Some(v)) => v,
                Err(()) => {
                    report.push(name, Reason::Duplicate);
                    break;
                }
            };
            if !p.accept_upstream_id || (untrusted && p.untrusted_fresh_id) {
                report.push(name, Reason::ReplacedAtEdge);
                break;
            }
            let Some(bytes) = v.as_bytes() else {
                report.push(name, Reason::WrongType);
                break;
            };
            // What is validated is what is kept: surrounding whitespace (a string map
            // or JSON value can carry it; HTTP parsers strip it) is not part of the id.
            let trimmed = codec::trim_ows(bytes);
            match p.validator.check(trimmed, p.limits.correlation_id_max_len) {
                Ok(()) if trimmed.len() == bytes.len() => {
                    correlation_id = v.to_header_value().map(CorrelationId::from_validated);
                }
                Ok(()) => {
                    correlation_id = HeaderValue::from_bytes(trimmed)
                        .ok()
                        .map(CorrelationId::from_validated);
                }
                Err(e) => report.push(name, Reason::Malformed(e)),
            }
            break;
        }
        let id_origin = match correlation_id {
            Some(_) => IdOrigin::Received,
            None => IdOrigin::Minted,
        };
        let correlation_id = correlation_id.unwrap_or_else(|| p.generator.generate());

        let mut total = 0usize;
        // Trace context.
        let mut received = None;
        let mut format_baggage = None;
        let trace = if p.formats.is_some() {
            Some(self.capture_with_formats(
                carrier,
                &found,
                untrusted,
                &mut report,
                &mut total,
                &mut received,
                &mut format_baggage,
            ))
        } else if p.w3c {
            Some(
                self.capture_trace(carrier, &found, untrusted, &mut report, &mut total)
                    .unwrap_or_else(|| TraceContext::new_root(p.sample_new_traces)),
            )
        } else {
            None
        };

        // Baggage: W3C's, else a trace format's own form (`uberctx-*`, `ot-baggage-*`).
        let mut baggage = if p.baggage {
            self.capture_baggage(carrier, &found, untrusted, &mut report, &mut total)
        } else {
            None
        };
        if baggage.is_none() {
            if let Some(b) = format_baggage {
                baggage = self.limit_format_baggage(b, untrusted, &mut report, &mut total);
            }
        }

        // The context is assembled where it will live: captured headers and fields are
        // pushed straight into the shared allocation, never moved into it afterwards.
        let mut shared = Arc::new(Inner {
            policy: self.clone(),
            correlation_id: Some(correlation_id),
            id_origin,
            trace,
            received,
            baggage,
            routing_key: None,
            headers: SmallVec::new(),
            fields: SmallVec::new(),
        });
        let Some(inner) = Arc::get_mut(&mut shared) else {
            unreachable!("an Arc made on the line above has a single owner")
        };

        // The routing key, when the policy has one (it owns members of baggage and
        // tracestate, so it comes after them).
        if let Some(r) = &p.routing {
            self.capture_routing(r, carrier, &found, untrusted, &mut report, inner);
        }

        // Custom headers.
        let headers = &mut inner.headers;
        for (index, rule) in p.rules.iter().enumerate() {
            let key = HeaderKey::Rule(index as u16);
            let value = match found.single(p.slots.rules + index) {
                Err(()) => {
                    report.push(&rule.name, Reason::Duplicate);
                    continue;
                }
                Ok(Some(_)) if rule.trusted_only && untrusted => {
                    report.push(&rule.name, Reason::Untrusted);
                    continue;
                }
                Ok(Some(v)) => v,
                Ok(None) => match &rule.default {
                    None => continue,
                    Some(DefaultValue::Static(v)) => CarrierValue::Header(v),
                    Some(DefaultValue::Computed(f)) => {
                        let Some(v) = f() else { continue };
                        if let Some(h) = self.accept_value(
                            &rule.name,
                            CarrierValue::Header(&v),
                            &mut total,
                            headers.len(),
                            &mut report,
                        ) {
                            headers.push(Header { key, value: h });
                        }
                        continue;
                    }
                },
            };
            if let Some(h) =
                self.accept_value(&rule.name, value, &mut total, headers.len(), &mut report)
            {
                headers.push(Header { key, value: h });
            }
        }
        if let Some(except) = &p.capture_all {
            self.capture_all(carrier, except, headers, &mut total, &mut report);
        }

        // Local fields: only from trusted sources, whatever the carrier (a string map
        // or JSON object is how HTTP headers reach serverless and push handlers).
        let fields = &mut inner.fields;
        let fields_travel = carrier.kind() == CarrierKind::Message || p.fields_over_http;
        if fields_travel {
            self.capture_fields(carrier, untrusted, fields, &mut total, &mut report);
        }

        Captured {
            context: Context::from_arc(shared),
            report,
        }
    }

    fn accept_value(
        &self,
        name: &HeaderName,
        v: CarrierValue<'_>,
        total: &mut usize,
        count: usize,
        report: &mut Report,
    ) -> Option<HeaderValue> {
        let l = &self.inner.limits;
        let Some(bytes) = v.as_bytes() else {
            report.push(name, Reason::WrongType);
            return None;
        };
        let reason = if !is_clean(bytes) {
            Reason::InvalidChars
        } else if bytes.len() > l.max_value_bytes {
            Reason::TooLong
        } else if count >= l.max_headers {
            Reason::TooManyHeaders
        } else if *total + bytes.len() > l.max_total_bytes {
            Reason::TotalBytes
        } else {
            let h = v.to_header_value()?;
            *total += bytes.len();
            return Some(h);
        };
        report.push(name, reason);
        None
    }

    #[inline(always)]
    fn capture_trace<E: Extractor + ?Sized>(
        &self,
        carrier: &E,
        found: &Found<'_>,
        untrusted: bool,
        report: &mut Report,
        total: &mut usize,
    ) -> Option<TraceContext> {
        let p = &*self.inner;
        let fresh = || None;
        let tp_slot = found.get(p.slots.traceparent);
        if let Slot::Absent = tp_slot {
            return self
                .capture_b3(carrier, untrusted, report)
                .map(|tp| TraceContext::continue_from(tp, None));
        }
        if untrusted && p.untrusted_fresh_trace {
            report.push(&names::TRACEPARENT, Reason::ReplacedAtEdge);
            return fresh();
        }
        let decoded = match tp_slot {
            Slot::One(v) => TraceParent::decode_all([v.as_bytes().unwrap_or(b"")]),
            _ => TraceParent::decode_all(
                carrier
                    .get_all(&names::TRACEPARENT)
                    .map(|v| v.as_bytes().unwrap_or(b"")),
            ),
        };
        let tp = match decoded {
            Ok(Some(tp)) => tp,
            Ok(None) => return fresh(),
            Err(e) => {
                report.push(&names::TRACEPARENT, Reason::Malformed(e));
                // W3C: an invalid traceparent also invalidates tracestate.
                return self
                    .capture_b3(carrier, untrusted, report)
                    .map(|tp| TraceContext::continue_from(tp, None));
            }
        };
        // tracestate, only with a valid traceparent
        let state = match found.get(p.slots.tracestate) {
            Slot::Absent => Ok(None),
            Slot::One(CarrierValue::Header(h)) => TraceState::from_header_checked(h),
            _ => {
                let mut bytes: SmallVec<[&[u8]; 4]> = SmallVec::new();
                let mut wrong = false;
                for v in carrier.get_all(&names::TRACESTATE) {
                    match v.as_bytes() {
                        Some(b) => bytes.push(b),
                        None => wrong = true,
                    }
                }
                if wrong {
                    Err(codec::Error::wrong_type(codec::Codec::TraceState))
                } else {
                    TraceState::decode_all_checked(bytes)
                }
            }
        };
        let state = match state {
            // An empty list (an empty header, or only commas and spaces) came as `None`:
            // nothing to keep, nothing to forward.
            Ok(Some((ts, duplicates))) => {
                if duplicates {
                    report.push(&names::TRACESTATE, Reason::DuplicateKey);
                }
                let max = p
                    .limits
                    .tracestate_max_bytes
                    .min(p.limits.max_total_bytes - (*total).min(p.limits.max_total_bytes));
                let kept = if ts.header_value().len() > max {
                    report.push(&names::TRACESTATE, Reason::TraceStateTrimmed);
                    ts.trimmed(max)
                } else {
                    Some(ts)
                };
                if let Some(ts) = &kept {
                    *total += ts.header_value().len();
                }
                kept
            }
            Ok(None) => None,
            Err(e) => {
                report.push(&names::TRACESTATE, Reason::Malformed(e));
                None
            }
        };
        Some(TraceContext::continue_from(tp, state))
    }

    /// The trace with the policy's extra formats: those readers before or after the
    /// W3C/B3 fast path, the first valid trace wins, later ones naming another trace
    /// are reported. In edge mode an untrusted caller's trace, in any format, is
    /// replaced.
    #[allow(clippy::too_many_arguments)]
    fn capture_with_formats<E: Extractor + ?Sized>(
        &self,
        carrier: &E,
        found: &Found<'_>,
        untrusted: bool,
        report: &mut Report,
        total: &mut usize,
        received: &mut Option<Arc<Received>>,
        format_baggage: &mut Option<Baggage>,
    ) -> TraceContext {
        let p = &*self.inner;
        let Some(formats) = &p.formats else {
            unreachable!("called only with formats")
        };
        let view = CarrierRef(carrier);
        let edge = untrusted && p.untrusted_fresh_trace;
        let mut kept: Option<(TraceContext, Option<Codec>)> = None;
        let mut from_formats = |kept: &mut Option<(TraceContext, Option<Codec>)>,
                                report: &mut Report| {
            for f in &formats.readers {
                if edge {
                    let present = f
                        .fields()
                        .iter()
                        .any(|n| !matches!(view.get(n), FormatFound::Absent));
                    if present {
                        report.push(&f.fields()[0], Reason::ReplacedAtEdge);
                    }
                    continue;
                }
                let parts = match f.decode(&view) {
                    Ok(parts) => parts,
                    Err(r) => {
                        report.push(r.header(), Reason::Malformed(r.error()));
                        continue;
                    }
                };
                if format_baggage.is_none() {
                    *format_baggage = parts.baggage.and_then(|b| b.to_w3c());
                }
                let Some(t) = parts.trace else { continue };
                match kept {
                    None => {
                        *received = Some(Arc::new(Received {
                            codec: f.codec(),
                            headers: f
                                .fields()
                                .iter()
                                .filter_map(|n| {
                                    let v = carrier.get_all(n).next()?.to_header_value()?;
                                    Some((n.clone(), v))
                                })
                                .collect(),
                        }));
                        let parent = t.span_id.unwrap_or_else(SpanId::random);
                        *kept = Some((
                            TraceContext::from_parts(
                                t.trace_id,
                                Some(parent),
                                SpanId::random(),
                                t.sampling.to_flags(),
                                None,
                            ),
                            Some(f.codec()),
                        ));
                    }
                    Some((k, _)) if k.trace_id() != t.trace_id => {
                        report.push(
                            &f.fields()[0],
                            Reason::Malformed(codec::Error::new(f.codec(), ErrorKind::Conflict)),
                        );
                    }
                    Some(_) => {}
                }
            }
        };
        if formats.first {
            from_formats(&mut kept, report);
        }
        // The W3C/B3 fast path: kept when it is first, or when the formats found nothing;
        // otherwise only compared.
        let w3c = if p.w3c {
            self.capture_trace(carrier, found, untrusted, report, total)
        } else {
            None
        };
        match (&kept, w3c) {
            (None, Some(t)) => kept = Some((t, None)),
            (Some((k, _)), Some(t)) if k.trace_id() != t.trace_id() => {
                report.push(
                    &names::TRACEPARENT,
                    Reason::Malformed(codec::Error::new(Codec::TraceParent, ErrorKind::Conflict)),
                );
            }
            _ => {}
        }
        if !formats.first {
            from_formats(&mut kept, report);
        }
        match kept {
            Some((t, _)) => t,
            None => TraceContext::new_root(p.sample_new_traces),
        }
    }

    /// A trace format's baggage (`uberctx-*`, `ot-baggage-*`) as W3C baggage, under the
    /// same trust rules and limits as a `baggage` header.
    fn limit_format_baggage(
        &self,
        w3c: Baggage,
        untrusted: bool,
        report: &mut Report,
        total: &mut usize,
    ) -> Option<Baggage> {
        let p = &*self.inner;
        if untrusted && p.untrusted_baggage == UntrustedBaggage::Drop {
            report.push(&names::BAGGAGE, Reason::Untrusted);
            return None;
        }
        let l = &p.limits;
        let max_bytes = l
            .baggage_max_bytes
            .min(l.max_total_bytes - (*total).min(l.max_total_bytes));
        let (b, dropped) = Baggage::collect(
            [w3c.header_value().as_bytes()],
            l.baggage_max_members,
            max_bytes,
        );
        let b = match (untrusted, &p.untrusted_baggage, b) {
            (true, UntrustedBaggage::Keys(keys), Some(b)) => {
                let kept = b.iter().filter(|m| keys.iter().any(|k| k == m.key()));
                Baggage::collect(
                    kept.map(|m| m.as_str().as_bytes()),
                    l.baggage_max_members,
                    max_bytes,
                )
                .0
            }
            (_, _, b) => b,
        };
        if dropped > 0 {
            report.push(&names::BAGGAGE, Reason::BaggageMembersDropped(dropped));
        }
        if let Some(b) = &b {
            *total += b.header_value().len();
        }
        b
    }

    fn capture_b3<E: Extractor + ?Sized>(
        &self,
        carrier: &E,
        untrusted: bool,
        report: &mut Report,
    ) -> Option<TraceParent> {
        let p = &*self.inner;
        if !p.accept_b3 {
            return None;
        }
        let first = |name: &HeaderName| carrier.get_all(name).next().and_then(|v| v.as_bytes());
        let single = first(&names::B3);
        let trace = first(&names::B3_TRACE_ID);
        if single.is_none() && trace.is_none() {
            return None;
        }
        if untrusted && p.untrusted_fresh_trace {
            report.push(&names::B3, Reason::ReplacedAtEdge);
            return None;
        }
        // Single wins over multi.
        if let Some(v) = single {
            match B3::decode_single(v) {
                Ok(b3) => return b3.to_trace_parent(),
                Err(e) => report.push(&names::B3, Reason::Malformed(e)),
            }
            return None;
        }
        match B3::decode_multi(
            trace,
            first(&names::B3_SPAN_ID),
            first(&names::B3_PARENT_SPAN_ID),
            first(&names::B3_SAMPLED),
            first(&names::B3_FLAGS),
        ) {
            Ok(b3) => b3.and_then(|b| b.to_trace_parent()),
            Err(e) => {
                report.push(&names::B3_TRACE_ID, Reason::Malformed(e));
                None
            }
        }
    }

    fn capture_baggage<E: Extractor + ?Sized>(
        &self,
        carrier: &E,
        found: &Found<'_>,
        untrusted: bool,
        report: &mut Report,
        total: &mut usize,
    ) -> Option<Baggage> {
        let p = &*self.inner;
        let slot = found.get(p.slots.baggage);
        if let Slot::Absent = slot {
            return None;
        }
        let only = match (untrusted, &p.untrusted_baggage) {
            (true, UntrustedBaggage::Drop) => {
                report.push(&names::BAGGAGE, Reason::Untrusted);
                return None;
            }
            (true, UntrustedBaggage::Keys(keys)) => Some(keys.as_slice()),
            _ => None,
        };
        let l = &p.limits;
        let max_bytes = l
            .baggage_max_bytes
            .min(l.max_total_bytes - (*total).min(l.max_total_bytes));
        let mut b = None;
        // Fast path: one header, entirely valid and within limits: kept without copying.
        if let Slot::One(CarrierValue::Header(h)) = slot {
            b = Baggage::from_header(h, l.baggage_max_members, max_bytes).ok();
        }
        if b.is_none() {
            let mut wrong = 0usize;
            let all = carrier.get_all(&names::BAGGAGE).filter_map(|v| {
                let b = v.as_bytes();
                if b.is_none() {
                    wrong += 1;
                }
                b
            });
            let (collected, dropped) = Baggage::collect(all, l.baggage_max_members, max_bytes);
            if dropped + wrong > 0 {
                report.push(
                    &names::BAGGAGE,
                    Reason::BaggageMembersDropped(dropped + wrong),
                );
            }
            b = collected;
        }
        if let (Some(keys), Some(list)) = (only, &b) {
            let mut left_out = 0usize;
            let kept = list.iter().filter(|m| {
                let keep = keys.iter().any(|k| k == m.key());
                left_out += usize::from(!keep);
                keep
            });
            let (filtered, _) = Baggage::collect(
                kept.map(|m| m.as_str().as_bytes()),
                l.baggage_max_members,
                max_bytes,
            );
            if left_out > 0 {
                report.push(&names::BAGGAGE, Reason::BaggageMembersUntrusted(left_out));
            }
            b = filtered;
        }
        if let Some(b) = &b {
            *total += b.header_value().len();
        }
        b
    }

    fn capture_all<E: Extractor + ?Sized>(
        &self,
        carrier: &E,
        except: &[HeaderName],
        headers: &mut SmallVec<[Header; 4]>,
        total: &mut usize,
        report: &mut Report,
    ) {
        let p = &*self.inner;
        for key in carrier.keys() {
            let lower = key.to_ascii_lowercase();
            if is_hop_by_hop(&lower)
                || CREDENTIALS.contains(&lower.as_str())
                || lower.starts_with(p.field_prefix.as_str())
                || lower.starts_with("x-b3-")
            {
                continue;
            }
            let Ok(name) = HeaderName::from_bytes(lower.as_bytes()) else {
                continue;
            };
            if names::is_reserved(&name)
                || p.routing.as_ref().is_some_and(|r| r.owns(&name))
                || name == p.correlation_header
                || p.also_accept.contains(&name)
                || except.contains(&name)
                || p.rules.iter().any(|r| r.name == name)
                || headers
                    .iter()
                    .any(|h| matches!(&h.key, HeaderKey::Other(n) if **n == name))
            {
                continue;
            }
            let v = match single(carrier, &name) {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(()) => {
                    report.push(&name, Reason::Duplicate);
                    continue;
                }
            };
            if let Some(h) = self.accept_value(&name, v, total, headers.len(), report) {
                headers.push(Header {
                    key: HeaderKey::Other(Box::new(name)),
                    value: h,
                });
            }
        }
    }

    /// Local fields (`<prefix><name>` keys): refused from untrusted sources (each key
    /// reported, up to `max_fields` of them); from trusted ones, names follow the rules
    /// of [`Context::try_with_field`] (tokens of at most 64 bytes, never a name log
    /// formats own), values are percent-decoded and then checked (no control or
    /// invisible characters, valid UTF-8), and names and values count against the
    /// policy's limits.
    fn capture_fields<E: Extractor + ?Sized>(
        &self,
        carrier: &E,
        untrusted: bool,
        fields: &mut SmallVec<[Field; 2]>,
        total: &mut usize,
        report: &mut Report,
    ) {
        let p = &*self.inner;
        let l = &p.limits;
        let prefix = p.field_prefix.as_str();
        let mut seen = 0usize;
        for key in carrier.keys() {
            if key.len() <= prefix.len()
                || !key.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            {
                continue;
            }
            seen += 1;
            if seen > l.max_fields.max(1) * 4 {
                // A flood of keys: stop looking (the count limit has long been reached).
                break;
            }
            let Ok(name) = HeaderName::from_bytes(key.as_bytes()) else {
                continue;
            };
            if untrusted {
                if seen <= l.max_fields {
                    report.push(&name, Reason::Untrusted);
                }
                continue;
            }
            let field_name = &name.as_str()[prefix.len()..];
            if fields.iter().any(|f| f.name == field_name) || report.iter().any(|r| r.name == name)
            {
                continue;
            }
            if !is_valid_field_name(field_name) {
                report.push(&name, Reason::FieldName);
                continue;
            }
            let v = match single(carrier, &name) {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(()) => {
                    report.push(&name, Reason::Duplicate);
                    continue;
                }
            };
            let Some(raw) = v.as_bytes() else {
                report.push(&name, Reason::WrongType);
                continue;
            };
            let cost = field_name.len() + raw.len();
            let reason = if !is_clean(raw) {
                Reason::InvalidChars
            } else if raw.len() > l.max_value_bytes {
                Reason::TooLong
            } else if fields.len() >= l.max_fields {
                Reason::TooManyFields
            } else if *total + cost > l.max_total_bytes {
                Reason::TotalBytes
            } else {
                let text = std::str::from_utf8(raw).unwrap_or_default();
                match codec::percent_decode_strict(text) {
                    Some(decoded) if !decoded.chars().any(codec::is_invisible) => {
                        *total += cost;
                        fields.push(Field {
                            name: field_name.to_owned().into(),
                            value: FieldValue::new(&decoded),
                        });
                        continue;
                    }
                    _ => Reason::InvalidChars,
                }
            };
            report.push(&name, reason);
        }
    }
}
