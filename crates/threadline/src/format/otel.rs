//! Any OpenTelemetry `TextMapPropagator` as a Threadline [`Format`] (feature
//! `opentelemetry`).

use std::borrow::Cow;

use http::{HeaderName, HeaderValue};
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::propagation::{self as otel, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, TraceContextExt as _, TraceFlags as OtelFlags, TraceState as OtelTraceState,
};

use super::Format;
use super::carrier::{Found, ReadCarrier};
use super::parts::{BaggageParts, Extras, Parts, Rejected, Sampling, TraceParts};
use crate::carrier::{CarrierValue, Injector};
use crate::codec::{Codec, Error, ErrorKind, SpanId, TraceId};

/// An OpenTelemetry propagator used as a Threadline [`Format`]: the propagator reads
/// and writes its headers, Threadline carries the result.
///
/// The propagator sees the carrier through OpenTelemetry's `Extractor`/`Injector`, so
/// this costs what the propagator costs (allocations included): prefer Threadline's
/// own formats where one exists. Errors carry [`Codec::Custom`] with the name given;
/// as OpenTelemetry propagators give no reason, a value the propagator could not read
/// while its headers were present is refused as [`ErrorKind::Refused`].
///
/// ```
/// use opentelemetry_sdk::propagation::TraceContextPropagator;
/// use threadline::format::{Format, OtelFormat};
///
/// let format = OtelFormat::new("otel-w3c", TraceContextPropagator::new());
/// let mut headers = http::HeaderMap::new();
/// headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
/// let parts = format.decode(&headers).unwrap();
/// assert_eq!(parts.trace.as_ref().unwrap().trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
///
/// let mut out = http::HeaderMap::new();
/// format.encode(&parts, &mut out);
/// assert_eq!(out["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// ```
#[derive(Debug)]
pub struct OtelFormat<P> {
    name: &'static str,
    propagator: P,
    fields: Vec<HeaderName>,
}

impl<P: TextMapPropagator> OtelFormat<P> {
    /// Wraps `propagator`, naming it `name` in errors and reports.
    pub fn new(name: &'static str, propagator: P) -> Self {
        let fields = propagator
            .fields()
            .filter_map(|f| HeaderName::from_bytes(f.to_ascii_lowercase().as_bytes()).ok())
            .collect();
        OtelFormat {
            name,
            propagator,
            fields,
        }
    }

    /// The wrapped propagator.
    pub fn propagator(&self) -> &P {
        &self.propagator
    }
}

/// The carrier as OpenTelemetry's `Extractor`.
struct Reader<'a> {
    carrier: &'a dyn ReadCarrier,
}

fn text(v: CarrierValue<'_>) -> Option<&str> {
    v.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
}

impl otel::Extractor for Reader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let name = HeaderName::from_bytes(key.as_bytes()).ok()?;
        match self.carrier.get(&name) {
            Found::Absent => None,
            Found::One(v) | Found::Many(v) => text(v),
        }
    }

    fn keys(&self) -> Vec<&str> {
        let mut keys = Vec::new();
        self.carrier.each_prefixed("", &mut |k, _| keys.push(k));
        keys.dedup();
        keys
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let name = HeaderName::from_bytes(key.as_bytes()).ok()?;
        let mut all = Vec::new();
        self.carrier.each(&name, &mut |v| all.extend(text(v)));
        (!all.is_empty()).then_some(all)
    }
}

/// The carrier as OpenTelemetry's `Injector`.
struct Writer<'a> {
    carrier: &'a mut dyn Injector,
}

impl otel::Injector for Writer<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.to_ascii_lowercase().as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.carrier.set_if_absent(&name, &value);
        }
    }
}

impl<P: TextMapPropagator + Send + Sync> Format for OtelFormat<P> {
    fn codec(&self) -> Codec {
        Codec::Custom(self.name)
    }

    fn fields(&self) -> &[HeaderName] {
        &self.fields
    }

    fn decode<'a>(&self, carrier: &'a dyn ReadCarrier) -> Result<Parts<'a>, Rejected> {
        let present = self
            .fields
            .iter()
            .find(|f| !matches!(carrier.get(f), Found::Absent));
        let cx = self
            .propagator
            .extract_with_context(&opentelemetry::Context::new(), &Reader { carrier });
        let span = cx.span();
        let sc = span.span_context();
        let trace = sc.is_valid().then(|| {
            let mut t = TraceParts::new(
                TraceId::from_bytes(sc.trace_id().to_bytes()).unwrap_or_else(TraceId::random),
                SpanId::from_bytes(sc.span_id().to_bytes()),
                Sampling::from_bool(sc.is_sampled()),
            );
            let state = sc.trace_state().header();
            if !state.is_empty() {
                t.extras = Extras::TraceState(Cow::Owned(state));
            }
            t
        });
        let pairs: Vec<(String, String)> = cx
            .baggage()
            .iter()
            .map(|(k, (v, _))| (k.as_str().to_owned(), v.as_str().to_owned()))
            .collect();
        let baggage = (!pairs.is_empty()).then(|| BaggageParts::owned(pairs));
        if trace.is_none() && baggage.is_none() {
            if let Some(name) = present {
                return Err(Rejected::new(
                    name.clone(),
                    Error::new(Codec::Custom(self.name), ErrorKind::Refused),
                ));
            }
        }
        Ok(Parts::new(trace, baggage))
    }

    fn encode(&self, parts: &Parts<'_>, carrier: &mut dyn Injector) {
        let mut cx = opentelemetry::Context::new();
        if let Some(t) = &parts.trace {
            if let Some(span) = t.span_id {
                let state = match &t.extras {
                    Extras::TraceState(s) => s.parse().unwrap_or_default(),
                    _ => OtelTraceState::default(),
                };
                let flags = if t.sampling.is_sampled() {
                    OtelFlags::SAMPLED
                } else {
                    OtelFlags::default()
                };
                cx = cx.with_remote_span_context(SpanContext::new(
                    opentelemetry::trace::TraceId::from_bytes(t.trace_id.to_bytes()),
                    opentelemetry::trace::SpanId::from_bytes(span.to_bytes()),
                    flags,
                    true,
                    state,
                ));
            }
        }
        if let Some(b) = &parts.baggage {
            let mut kv = Vec::new();
            b.for_each(&mut |k, v| {
                kv.push(opentelemetry::KeyValue::new(k.to_owned(), v.to_owned()));
            });
            if !kv.is_empty() {
                cx = cx.with_baggage(kv);
            }
        }
        self.propagator.inject_context(&cx, &mut Writer { carrier });
    }
}
