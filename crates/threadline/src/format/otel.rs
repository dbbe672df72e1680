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

/// A Threadline [`Policy`](crate::Policy) as an OpenTelemetry `TextMapPropagator`: an
/// OpenTelemetry-instrumented app keeps its tracing and gains Threadline's validation,
/// limits, trust rules and custom headers (correlation id, tenant) on the way in and
/// out.
///
/// - **extract**: the carrier is captured through the policy (with the trust given at
///   construction: [`Trust::Untrusted`](crate::Trust::Untrusted) at an edge); the
///   resulting trace becomes the remote span context of the returned OpenTelemetry
///   context (only when it continued the caller's trace: a malformed, refused or absent
///   `traceparent` gives none, so a new trace starts), its W3C baggage the OpenTelemetry
///   baggage, and the whole Threadline [`Context`](crate::Context) is attached to it
///   (read it back with [`PolicyPropagator::threadline_context`]).
/// - **inject**: the OpenTelemetry context's span writes `traceparent` and `tracestate`
///   (so the downstream's parent is the span that makes the call), then the Threadline
///   context attached to it — or, when none is, the current one ([`Context::current`](crate::Context::current))
///   — writes the rest: correlation id, custom headers, baggage, never overwriting.
///
/// ```
/// use opentelemetry::propagation::TextMapPropagator;
/// use opentelemetry::trace::TraceContextExt;
/// use std::collections::HashMap;
/// use threadline::format::PolicyPropagator;
/// use threadline::{Policy, Trust};
///
/// let propagator = PolicyPropagator::new(
///     Policy::builder().header("x-tenant-id").build().unwrap(),
///     Trust::Trusted,
/// );
/// let mut inbound = HashMap::new();
/// inbound.insert("traceparent".to_owned(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned());
/// inbound.insert("x-tenant-id".to_owned(), "acme".to_owned());
/// let cx = propagator.extract(&inbound);
/// assert_eq!(cx.span().span_context().trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// let ctx = PolicyPropagator::threadline_context(&cx).unwrap();
/// assert_eq!(ctx.get("x-tenant-id"), Some("acme"));
///
/// let mut outbound: HashMap<String, String> = HashMap::new();
/// propagator.inject_context(&cx, &mut outbound);
/// assert_eq!(outbound["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// assert_eq!(outbound["x-tenant-id"], "acme");
/// assert!(outbound.contains_key("x-correlation-id"));
/// ```
#[derive(Clone, Debug)]
pub struct PolicyPropagator {
    policy: crate::Policy,
    trust: crate::Trust,
    fields: Vec<String>,
}

impl PolicyPropagator {
    /// A propagator capturing with `policy` from callers of the given trust.
    pub fn new(policy: crate::Policy, trust: crate::Trust) -> Self {
        let mut fields: Vec<String> = vec![
            "traceparent".into(),
            "tracestate".into(),
            "baggage".into(),
            policy.correlation_header().as_str().to_owned(),
        ];
        fields.extend(policy.also_accepted().iter().map(|n| n.as_str().to_owned()));
        fields.extend(policy.rules().map(|(_, out, _)| out.as_str().to_owned()));
        PolicyPropagator {
            policy,
            trust,
            fields,
        }
    }

    /// The Threadline context an [`extract`](TextMapPropagator::extract) attached to an
    /// OpenTelemetry context.
    pub fn threadline_context(cx: &opentelemetry::Context) -> Option<crate::Context> {
        cx.get::<crate::Context>().cloned()
    }
}

/// OpenTelemetry's `Extractor` as a Threadline carrier (an HTTP request's headers).
struct FromOtel<'a>(&'a dyn otel::Extractor);

impl<'o> crate::Extractor for FromOtel<'o> {
    fn kind(&self) -> crate::CarrierKind {
        crate::CarrierKind::Http
    }

    fn get_all<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = CarrierValue<'a>> + use<'a, 'o> {
        // OpenTelemetry carriers give one value per key (joined by the carrier when the
        // protocol repeats it).
        self.0
            .get(name.as_str())
            .map(CarrierValue::Text)
            .into_iter()
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().into_iter()
    }
}

/// OpenTelemetry's `Injector` as a Threadline carrier.
struct IntoOtel<'a> {
    inner: &'a mut dyn otel::Injector,
    set: Vec<HeaderName>,
}

impl Injector for IntoOtel<'_> {
    fn kind(&self) -> crate::CarrierKind {
        crate::CarrierKind::Http
    }

    fn contains(&self, name: &HeaderName) -> bool {
        self.set.contains(name)
    }

    fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
        if let Ok(v) = value.to_str() {
            self.inner.set(name.as_str(), v.to_owned());
            self.set.push(name.clone());
        }
    }
}

impl TextMapPropagator for PolicyPropagator {
    fn inject_context(&self, cx: &opentelemetry::Context, injector: &mut dyn otel::Injector) {
        let mut out = IntoOtel {
            inner: injector,
            set: Vec::new(),
        };
        let span = cx.span();
        let sc = span.span_context();
        let ids = TraceId::from_bytes(sc.trace_id().to_bytes())
            .zip(SpanId::from_bytes(sc.span_id().to_bytes()));
        if let (true, Some((trace_id, span_id))) = (sc.is_valid(), ids) {
            let flags = crate::codec::TraceFlags::new(sc.trace_flags().to_u8());
            let tp = crate::codec::TraceParent::new(trace_id, span_id, flags);
            if let Ok(v) = HeaderValue::from_str(tp.encode().as_str()) {
                out.set(&HeaderName::from_static("traceparent"), &v);
            }
            let ts = sc.trace_state().header();
            if !ts.is_empty() {
                if let Ok(v) = HeaderValue::from_str(&ts) {
                    out.set(&HeaderName::from_static("tracestate"), &v);
                }
            }
        }
        let write = |ctx: &crate::Context, out: &mut IntoOtel<'_>| {
            ctx.inject(out);
        };
        match cx.get::<crate::Context>() {
            Some(ctx) => write(ctx, &mut out),
            None => {
                crate::Context::with_current(|ctx| write(ctx, &mut out));
            }
        }
    }

    fn extract_with_context(
        &self,
        cx: &opentelemetry::Context,
        extractor: &dyn otel::Extractor,
    ) -> opentelemetry::Context {
        let captured = self.policy.capture(&FromOtel(extractor), self.trust);
        let ctx = captured.context;
        let mut out = cx.clone();
        if let Some((t, parent)) = ctx
            .trace()
            .and_then(|t| t.parent_id().map(|parent| (t, parent)))
        {
            let state = t
                .tracestate()
                .and_then(|ts| ts.as_str().parse::<OtelTraceState>().ok())
                .unwrap_or_default();
            let sc = SpanContext::new(
                opentelemetry::trace::TraceId::from_bytes(t.trace_id().to_bytes()),
                opentelemetry::trace::SpanId::from_bytes(parent.to_bytes()),
                OtelFlags::new(t.flags().bits()),
                true,
                state,
            );
            out = out.with_remote_span_context(sc);
        }
        if let Some(b) = ctx.baggage() {
            let members: Vec<opentelemetry::KeyValue> = b
                .iter()
                .map(|m| opentelemetry::KeyValue::new(m.key().to_owned(), m.value().into_owned()))
                .collect();
            if !members.is_empty() {
                out = out.with_baggage(members);
            }
        }
        out.with_value(ctx)
    }

    fn fields(&self) -> otel::text_map_propagator::FieldIter<'_> {
        otel::text_map_propagator::FieldIter::new(&self.fields)
    }
}
