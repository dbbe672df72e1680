//! [`PolicyBuilder`]: checks a configuration and builds a [`Policy`].

use std::sync::Arc;

use http::HeaderName;

use super::rules::DefaultSpec;
use super::{
    B3Emit, Formats, Lookup, Policy, PolicyError, PolicyErrorKind, PolicyInner, Rule, SlotIndex,
    is_hop_by_hop,
};
use super::{DefaultValue, HeaderRule, Limits, Routing, RoutingRules, UntrustedBaggage, Validator};
use crate::codec::IdGenerator;
use crate::format::Format;
use crate::names;

/// Builds a [`Policy`].
#[derive(Clone, Debug)]
pub struct PolicyBuilder {
    rules: Vec<HeaderRule>,
    capture_all: Option<Vec<String>>,
    correlation_header: String,
    also_accept: Vec<String>,
    accept_upstream_id: bool,
    validator: Validator,
    generator: IdGenerator,
    limits: Limits,
    w3c: bool,
    baggage: bool,
    accept_b3: bool,
    emit_b3: B3Emit,
    sample_new_traces: bool,
    untrusted_fresh_trace: bool,
    untrusted_fresh_id: bool,
    untrusted_baggage: Option<UntrustedBaggage>,
    field_prefix: String,
    fields_over_http: bool,
    read_formats: Vec<Arc<dyn Format>>,
    write_formats: Vec<Arc<dyn Format>>,
    formats_first: bool,
    routing: Option<Routing>,
}

impl Default for PolicyBuilder {
    fn default() -> Self {
        PolicyBuilder {
            rules: Vec::new(),
            capture_all: None,
            correlation_header: "x-correlation-id".into(),
            also_accept: Vec::new(),
            accept_upstream_id: true,
            validator: Validator::default(),
            generator: IdGenerator::default(),
            limits: Limits::default(),
            w3c: true,
            baggage: true,
            accept_b3: false,
            emit_b3: B3Emit::None,
            sample_new_traces: true,
            untrusted_fresh_trace: false,
            untrusted_fresh_id: false,
            untrusted_baggage: None,
            field_prefix: "tl-field-".into(),
            fields_over_http: false,
            read_formats: Vec::new(),
            write_formats: Vec::new(),
            formats_first: false,
            routing: None,
        }
    }
}

impl PolicyBuilder {
    /// Capture and forward a custom header under its own name.
    pub fn header(self, name: impl Into<String>) -> Self {
        self.header_rule(HeaderRule::new(name))
    }

    /// Capture and forward a custom header with options (rename, trust, default).
    pub fn header_rule(mut self, rule: HeaderRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Opt-in: capture every header except hop-by-hop ones ([`HOP_BY_HOP`](crate::HOP_BY_HOP), `proxy-*`),
    /// credentials ([`CREDENTIALS`](crate::CREDENTIALS), unless named by a rule) and the names in `except`.
    pub fn capture_all_except<I, S>(mut self, except: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.capture_all = Some(except.into_iter().map(Into::into).collect());
        self
    }

    /// The correlation id header (default `x-correlation-id`).
    pub fn correlation_header(mut self, name: impl Into<String>) -> Self {
        self.correlation_header = name.into();
        self
    }

    /// Also accept the correlation id from this header (`x-request-id`, say) when the
    /// main one is absent. It is forwarded under the main name.
    pub fn also_accept(mut self, name: impl Into<String>) -> Self {
        self.also_accept.push(name.into());
        self
    }

    /// Accept correlation ids from upstream (default `true`); `false` always mints.
    pub fn accept_upstream_correlation_id(mut self, yes: bool) -> Self {
        self.accept_upstream_id = yes;
        self
    }

    /// The correlation id validator.
    pub fn validator(mut self, validator: Validator) -> Self {
        self.validator = validator;
        self
    }

    /// How new correlation ids are minted (default UUIDv4).
    pub fn id_generator(mut self, generator: IdGenerator) -> Self {
        self.generator = generator;
        self
    }

    /// Size limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Capture and forward W3C trace context (default `true`).
    pub fn w3c(mut self, yes: bool) -> Self {
        self.w3c = yes;
        self
    }

    /// Capture and forward W3C baggage (default `true`).
    pub fn baggage(mut self, yes: bool) -> Self {
        self.baggage = yes;
        self
    }

    /// Accept B3 (single or multi) when no valid `traceparent` came (default `false`).
    pub fn accept_b3(mut self, yes: bool) -> Self {
        self.accept_b3 = yes;
        self
    }

    /// Send B3 on outgoing calls too (default [`B3Emit::None`]).
    pub fn emit_b3(mut self, emit: B3Emit) -> Self {
        self.emit_b3 = emit;
        self
    }

    /// Whether new root traces are marked sampled (default `true`).
    pub fn sample_new_traces(mut self, yes: bool) -> Self {
        self.sample_new_traces = yes;
        self
    }

    /// Edge mode: for untrusted callers, ignore their trace context and correlation id
    /// and start fresh ones (both default `false`).
    pub fn untrusted_start_fresh(mut self, trace: bool, correlation_id: bool) -> Self {
        self.untrusted_fresh_trace = trace;
        self.untrusted_fresh_id = correlation_id;
        self
    }

    /// What happens to `baggage` from untrusted callers (and untrusted message sources).
    /// Baggage follows the trust rules like any header: by default it is dropped
    /// ([`UntrustedBaggage::Drop`]) when edge mode is on (either flag of
    /// [`PolicyBuilder::untrusted_start_fresh`]), and kept otherwise, as the caller's
    /// trace context is. Set it to keep all of it, or only some keys, at the edge.
    pub fn untrusted_baggage(mut self, rule: UntrustedBaggage) -> Self {
        self.untrusted_baggage = Some(rule);
        self
    }

    /// The key prefix under which local fields travel with messages (default `tl-field-`).
    pub fn field_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.field_prefix = prefix.into();
        self
    }

    /// Send local fields on outgoing HTTP calls too, and accept them from trusted HTTP
    /// callers (default `false`: they go to logs and background jobs only).
    pub fn fields_over_http(mut self, yes: bool) -> Self {
        self.fields_over_http = yes;
        self
    }

    /// Also read this trace format (Google Cloud's `X-Cloud-Trace-Context`, AWS X-Ray,
    /// Jaeger, Datadog, OpenTracing, an OpenTelemetry propagator, one of your own: see
    /// [`format`](crate::format)). Readers are tried in the order given, after W3C
    /// `traceparent` (and B3, with [`PolicyBuilder::accept_b3`]) unless
    /// [`PolicyBuilder::formats_first`]; the first valid one continues the trace, and a
    /// later one naming another trace is reported
    /// ([`ErrorKind::Conflict`](crate::codec::ErrorKind::Conflict)). A format's
    /// per-member baggage (`uberctx-*`, `ot-baggage-*`) is taken when no W3C `baggage`
    /// came. Its header names can no longer be custom header rules.
    ///
    /// ```
    /// use threadline::format::{JaegerFormat, XRayFormat};
    /// use threadline::{Policy, Trust};
    ///
    /// // Behind an AWS load balancer, talking to Jaeger-instrumented services.
    /// let policy = Policy::builder()
    ///     .read_format(XRayFormat)
    ///     .write_format(JaegerFormat)
    ///     .build()
    ///     .unwrap();
    /// let mut req = http::HeaderMap::new();
    /// req.insert("x-amzn-trace-id",
    ///     "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".parse().unwrap());
    /// let ctx = policy.capture(&req, Trust::Trusted).context;
    /// assert_eq!(ctx.trace_id().unwrap().to_string(), "5759e988bd862e3fe1be46a994272793");
    ///
    /// let mut out = http::HeaderMap::new();
    /// ctx.inject(&mut out);
    /// assert!(out["traceparent"].to_str().unwrap().starts_with("00-5759e988bd862e3fe1be46a994272793-"));
    /// assert!(out["uber-trace-id"].to_str().unwrap().starts_with("5759e988bd862e3fe1be46a994272793:"));
    /// ```
    pub fn read_format(mut self, format: impl Format + 'static) -> Self {
        self.read_formats.push(Arc::new(format));
        self
    }

    /// Also write this trace format on every outgoing call and message, beside W3C
    /// (each with the call's own parent id; see [`PolicyBuilder::read_format`]).
    pub fn write_format(mut self, format: impl Format + 'static) -> Self {
        self.write_formats.push(Arc::new(format));
        self
    }

    /// Try the formats of [`PolicyBuilder::read_format`] before W3C `traceparent` (and
    /// B3) instead of after (default `false`: W3C first).
    pub fn formats_first(mut self, yes: bool) -> Self {
        self.formats_first = yes;
        self
    }

    /// Read and write a routing key (see [`Routing`]): the value that sends a request
    /// to a developer's copy of a service. Off by default.
    pub fn routing(mut self, routing: Routing) -> Self {
        self.routing = Some(routing);
        self
    }

    /// Checks the configuration and builds the policy.
    pub fn build(self) -> Result<Policy, PolicyError> {
        let parse = |what: &str, n: &str| {
            HeaderName::from_bytes(n.as_bytes())
                .map(names::interned)
                .map_err(|_| {
                    PolicyError::new(
                        PolicyErrorKind::InvalidHeaderName,
                        format!("{what} {n:?} is not a valid header name"),
                    )
                })
        };
        let correlation_header = parse("correlation header", &self.correlation_header)?;
        let also_accept = self
            .also_accept
            .iter()
            .map(|n| parse("correlation header", n))
            .collect::<Result<Vec<_>, _>>()?;
        let mut rules: Vec<Rule> = Vec::with_capacity(self.rules.len());
        for r in self.rules {
            let name = parse("header", &r.name)?;
            let wire = match &r.rename {
                Some(n) => parse("renamed header", n)?,
                None => name.clone(),
            };
            for n in [&name, &wire] {
                if is_hop_by_hop(n.as_str()) {
                    return Err(PolicyError::new(
                        PolicyErrorKind::HopByHop,
                        format!("{n} is a hop-by-hop header and cannot be propagated"),
                    ));
                }
                let format_field = self
                    .read_formats
                    .iter()
                    .chain(&self.write_formats)
                    .any(|f| {
                        f.fields().contains(n)
                            || f.prefix().is_some_and(|p| n.as_str().starts_with(p))
                    });
                if names::is_reserved(n)
                    || *n == correlation_header
                    || also_accept.contains(n)
                    || format_field
                {
                    return Err(PolicyError::new(
                        PolicyErrorKind::Reserved,
                        format!(
                            "{n} is handled by the trace/baggage/correlation/format settings, not as a custom header"
                        ),
                    ));
                }
            }
            if rules.iter().any(|x| x.name == name) {
                return Err(PolicyError::new(
                    PolicyErrorKind::DuplicateRule,
                    format!("header {name} is listed twice"),
                ));
            }
            let default = match r.default {
                None => None,
                Some(DefaultSpec::Value(v)) => Some(v),
                Some(DefaultSpec::Text(t)) => {
                    if !crate::codec::is_clean(t.as_bytes())
                        || t.len() > self.limits.max_value_bytes
                    {
                        return Err(PolicyError::new(
                            PolicyErrorKind::InvalidDefault,
                            format!(
                                "the default of header {name} must be visible ASCII of at most \
                             limits.max_value_bytes bytes"
                            ),
                        ));
                    }
                    let v = http::HeaderValue::from_str(&t).map_err(|_| {
                        PolicyError::new(
                            PolicyErrorKind::InvalidDefault,
                            format!("the default of header {name} is not a valid header value"),
                        )
                    })?;
                    Some(DefaultValue::Static(v))
                }
            };
            rules.push(Rule {
                name,
                wire,
                trusted_only: r.trusted_only,
                default,
            });
        }
        if rules.len() > self.limits.max_headers || rules.len() > usize::from(u16::MAX) {
            return Err(PolicyError::new(
                PolicyErrorKind::TooManyHeaders,
                "more header rules than limits.max_headers",
            ));
        }
        let capture_all = self
            .capture_all
            .map(|v| {
                v.iter()
                    .map(|n| parse("excluded header", n))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        if self.field_prefix.is_empty()
            || HeaderName::from_bytes(format!("{}x", self.field_prefix).as_bytes()).is_err()
        {
            return Err(PolicyError::new(
                PolicyErrorKind::InvalidFieldPrefix,
                "field prefix must be a non-empty header-name prefix",
            ));
        }
        let l = &self.limits;
        if l.max_value_bytes == 0 || l.correlation_id_max_len == 0 {
            return Err(PolicyError::new(
                PolicyErrorKind::InvalidLimit,
                "limits must be positive",
            ));
        }
        let untrusted_baggage = match self.untrusted_baggage {
            Some(UntrustedBaggage::Keys(keys)) => {
                if let Some(k) = keys
                    .iter()
                    .find(|k| k.is_empty() || !k.bytes().all(crate::codec::is_tchar))
                {
                    return Err(PolicyError::new(
                        PolicyErrorKind::InvalidBaggageKey,
                        format!(
                            "untrusted baggage key {k:?} is not a baggage key (an RFC 7230 token)"
                        ),
                    ));
                }
                UntrustedBaggage::Keys(keys)
            }
            Some(rule) => rule,
            None if self.untrusted_fresh_trace || self.untrusted_fresh_id => UntrustedBaggage::Drop,
            None => UntrustedBaggage::Keep,
        };
        let mut lookup: Vec<HeaderName> = std::iter::once(correlation_header.clone())
            .chain(also_accept.iter().cloned())
            .collect();
        let mut slot_of = |name: HeaderName, on: bool| {
            on.then(|| {
                lookup.push(name);
                lookup.len() - 1
            })
        };
        let traceparent = slot_of(names::TRACEPARENT, self.w3c);
        let tracestate = slot_of(names::TRACESTATE, self.w3c);
        let baggage = slot_of(names::BAGGAGE, self.baggage);
        let slots = SlotIndex {
            traceparent,
            tracestate,
            baggage,
            rules: lookup.len(),
        };
        lookup.extend(rules.iter().map(|r| r.name.clone()));
        let routing = match self.routing {
            None => None,
            Some(config) => {
                let (routing, names) = RoutingRules::compile(config, lookup.len())?;
                if let Some(n) = routing.header_names.iter().find(|n| {
                    **n == correlation_header
                        || also_accept.contains(n)
                        || rules.iter().any(|r| r.name == **n || r.wire == **n)
                }) {
                    return Err(PolicyError::new(
                        PolicyErrorKind::Reserved,
                        format!("{n} is a routing key form and also another header's name"),
                    ));
                }
                lookup.extend(names);
                Some(Box::new(routing))
            }
        };
        if lookup.len() >= usize::from(u16::MAX) {
            return Err(PolicyError::new(
                PolicyErrorKind::TooManyHeaders,
                "too many header names to capture",
            ));
        }
        let lookup = Lookup::new(lookup);
        Ok(Policy {
            inner: Arc::new(PolicyInner {
                lookup,
                slots,
                rules,
                capture_all,
                correlation_header,
                also_accept,
                accept_upstream_id: self.accept_upstream_id,
                validator: self.validator,
                generator: self.generator,
                limits: self.limits,
                w3c: self.w3c,
                baggage: self.baggage,
                accept_b3: self.accept_b3,
                emit_b3: self.emit_b3,
                sample_new_traces: self.sample_new_traces,
                untrusted_fresh_trace: self.untrusted_fresh_trace,
                untrusted_fresh_id: self.untrusted_fresh_id,
                untrusted_baggage,
                field_prefix: self.field_prefix.to_ascii_lowercase(),
                fields_over_http: self.fields_over_http,
                formats: (!self.read_formats.is_empty() || !self.write_formats.is_empty()).then(
                    || Formats {
                        readers: self.read_formats,
                        writers: self.write_formats,
                        first: self.formats_first,
                    },
                ),
                routing,
            }),
        })
    }
}
