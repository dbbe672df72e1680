//! The [`Context`]: an immutable, cheap-to-clone snapshot of propagated fields.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use http::{HeaderName, HeaderValue};
use smallvec::SmallVec;

use crate::codec::{
    Baggage, CorrelationId, RoutingKey, SpanId, TraceFlags, TraceId, TraceParent, TraceState,
};
use crate::names;
use crate::policy::Policy;

/// Longest field value kept by [`Context::with_field`], in bytes.
pub const MAX_FIELD_BYTES: usize = 4096;

/// Longest local field name, in bytes.
pub const MAX_FIELD_NAME_BYTES: usize = 64;

/// Whether `name` can be a local field: a non-empty RFC 7230 token of at most
/// [`MAX_FIELD_NAME_BYTES`] bytes that is not reserved for log formats.
pub(crate) fn is_valid_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_FIELD_NAME_BYTES
        && name.bytes().all(crate::codec::is_tchar)
        && !names::is_reserved_field(name)
}

/// Where a context's correlation id came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdOrigin {
    /// Sent by the caller (or the message's producer) and accepted by the policy, under
    /// the correlation header or one of the names in `also_accept`.
    Received,
    /// Minted on this hop: none was sent, or the one sent was refused.
    Minted,
}

/// Which header a captured value belongs to: a rule of the context's policy (by index,
/// so that capturing clones no header name), or a name met in "capture all" mode (boxed:
/// rare, and it keeps every captured header, and so the context, small).
#[derive(Clone, Debug)]
pub(crate) enum HeaderKey {
    Rule(u16),
    Other(Box<HeaderName>),
}

/// One captured header value.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    pub(crate) key: HeaderKey,
    pub(crate) value: HeaderValue,
}

/// A local field's value: text, free of control characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FieldValue(Arc<str>);

impl FieldValue {
    /// Makes a field value. Control characters (newlines included) and invisible
    /// format characters (bidirectional overrides, zero-width characters: see
    /// [`is_invisible`](crate::codec::is_invisible)) are replaced by U+FFFD so that a
    /// value can never forge a log line or disguise itself, and values longer than
    /// [`MAX_FIELD_BYTES`] are cut at a character boundary.
    pub fn new(value: &str) -> Self {
        let mut end = value.len().min(MAX_FIELD_BYTES);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        let value = &value[..end];
        if value.chars().any(crate::codec::is_invisible) {
            let clean: String = value
                .chars()
                .map(|c| {
                    if crate::codec::is_invisible(c) {
                        '\u{FFFD}'
                    } else {
                        c
                    }
                })
                .collect();
            FieldValue(clean.into())
        } else {
            FieldValue(value.into())
        }
    }

    /// The value as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::new(v)
    }
}

impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        FieldValue::new(&v)
    }
}

impl From<&String> for FieldValue {
    fn from(v: &String) -> Self {
        FieldValue::new(v)
    }
}

macro_rules! field_from_display {
    ($($t:ty),*) => {$(
        impl From<$t> for FieldValue {
            fn from(v: $t) -> Self {
                FieldValue(v.to_string().into())
            }
        }
    )*};
}
field_from_display!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, bool
);

/// A local field bound in-process (`user.id`, `organisation.id`).
#[derive(Clone, Debug)]
pub(crate) struct Field {
    pub(crate) name: Cow<'static, str>,
    pub(crate) value: FieldValue,
}

/// The W3C trace context of this hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: TraceId,
    parent_id: Option<SpanId>,
    span_id: SpanId,
    flags: TraceFlags,
    tracestate: Option<TraceState>,
}

impl TraceContext {
    /// A new trace: random trace id and span id, no parent.
    pub fn new_root(sampled: bool) -> Self {
        TraceContext {
            trace_id: TraceId::random(),
            parent_id: None,
            span_id: SpanId::random(),
            flags: TraceFlags::RANDOM.with_sampled(sampled),
            tracestate: None,
        }
    }

    /// Continues the trace of an inbound `traceparent`: same trace id, the caller's
    /// parent id as this hop's parent, a fresh span id for this hop.
    pub fn continue_from(tp: TraceParent, tracestate: Option<TraceState>) -> Self {
        TraceContext {
            trace_id: tp.trace_id(),
            parent_id: Some(tp.parent_id()),
            span_id: SpanId::random(),
            flags: TraceFlags::new(tp.flags().bits() & TraceFlags::KNOWN),
            tracestate,
        }
    }

    /// Assembles a trace context from its parts, for tracers that own the ids of this
    /// hop (OpenTelemetry's span, say): `span_id` becomes this hop's span id, the one
    /// logs show; outgoing calls still get a fresh parent id each.
    pub fn from_parts(
        trace_id: TraceId,
        parent_id: Option<SpanId>,
        span_id: SpanId,
        flags: TraceFlags,
        tracestate: Option<TraceState>,
    ) -> Self {
        TraceContext {
            trace_id,
            parent_id,
            span_id,
            flags: TraceFlags::new(flags.bits() & TraceFlags::KNOWN),
            tracestate,
        }
    }

    /// The trace id, shared by every hop of the trace.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The caller's span (the inbound `parent-id`); `None` for a root.
    pub fn parent_id(&self) -> Option<SpanId> {
        self.parent_id
    }

    /// This hop's own span id (for logs).
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The trace flags.
    pub fn flags(&self) -> TraceFlags {
        self.flags
    }

    /// Whether the trace is sampled.
    pub fn is_sampled(&self) -> bool {
        self.flags.is_sampled()
    }

    /// The `tracestate` received with the trace, unchanged.
    pub fn tracestate(&self) -> Option<&TraceState> {
        self.tracestate.as_ref()
    }

    /// This hop as a `traceparent` (parent id = this hop's span id).
    pub fn traceparent(&self) -> TraceParent {
        TraceParent::new(self.trace_id, self.span_id, self.flags)
    }

    /// The `traceparent` for one outgoing call: same trace id, fresh parent id.
    pub fn child(&self) -> TraceParent {
        TraceParent::new(self.trace_id, SpanId::random(), self.flags)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Inner {
    pub(crate) policy: Policy,
    pub(crate) correlation_id: Option<CorrelationId>,
    pub(crate) id_origin: IdOrigin,
    pub(crate) trace: Option<TraceContext>,
    /// The raw headers of the trace format (other than W3C and B3) the trace was read
    /// from, kept so that a writer of the same format can forward what only it carries
    /// (X-Ray's other keys, Datadog's origin and tags).
    pub(crate) received: Option<Arc<Received>>,
    pub(crate) baggage: Option<Baggage>,
    /// The routing key, when the policy reads one and the carrier held an acceptable one.
    /// Boxed: rare, and it keeps the context (moved into its allocation at every
    /// capture) small.
    pub(crate) routing_key: Option<Box<RoutingKey>>,
    pub(crate) headers: SmallVec<[Header; 4]>,
    pub(crate) fields: SmallVec<[Field; 2]>,
}

/// The headers of the format a trace was read from (see `Inner::received`).
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) codec: crate::codec::Codec,
    pub(crate) headers: SmallVec<[(HeaderName, HeaderValue); 2]>,
}

/// An immutable snapshot of the propagated context of one unit of work.
///
/// Cloning is one `Arc` clone. Binding a field ([`Context::with_field`],
/// [`bind`](crate::bind)) makes a new snapshot (copy-on-write); holders of the old one
/// are not affected.
///
/// ```
/// use threadline::{Context, Policy, Trust};
///
/// let mut req = http::HeaderMap::new();
/// req.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
/// let ctx = Policy::default().capture(&req, Trust::Trusted).context;
///
/// let mut out = http::HeaderMap::new();
/// ctx.inject(&mut out);
/// let sent = out["traceparent"].to_str().unwrap();
/// assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
/// assert!(!sent.contains("00f067aa0ba902b7")); // a new parent id for the call
/// assert_eq!(out["x-correlation-id"], ctx.correlation_id().unwrap().as_str());
/// ```
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<Inner>,
}

impl Context {
    pub(crate) fn from_inner(inner: Inner) -> Self {
        Context {
            inner: Arc::new(inner),
        }
    }

    /// A context around an `Inner` that was built in place.
    pub(crate) fn from_arc(inner: Arc<Inner>) -> Self {
        Context { inner }
    }

    /// The inbound and outbound names of a captured header.
    pub(crate) fn names_of<'a>(&'a self, h: &'a Header) -> (&'a HeaderName, &'a HeaderName) {
        match &h.key {
            HeaderKey::Rule(i) => {
                let rule = &self.inner.policy.inner.rules[usize::from(*i)];
                (&rule.name, &rule.wire)
            }
            HeaderKey::Other(name) => (&**name, &**name),
        }
    }

    /// The empty context: no correlation id, no trace, no fields, the default policy.
    /// What [`Context::current`] answers outside any scope. Does not allocate after the
    /// first call.
    pub fn empty() -> Context {
        static EMPTY: OnceLock<Context> = OnceLock::new();
        EMPTY
            .get_or_init(|| {
                Context::from_inner(Inner {
                    policy: Policy::default(),
                    correlation_id: None,
                    id_origin: IdOrigin::Minted,
                    trace: None,
                    received: None,
                    baggage: None,
                    routing_key: None,
                    headers: SmallVec::new(),
                    fields: SmallVec::new(),
                })
            })
            .clone()
    }

    /// `true` when nothing at all is set.
    pub fn is_empty(&self) -> bool {
        let i = &*self.inner;
        i.correlation_id.is_none()
            && i.trace.is_none()
            && i.baggage.is_none()
            && i.routing_key.is_none()
            && i.headers.is_empty()
            && i.fields.is_empty()
    }

    /// The policy this context was captured with; it decides how it is injected.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The correlation id.
    pub fn correlation_id(&self) -> Option<&CorrelationId> {
        self.inner.correlation_id.as_ref()
    }

    /// Whether the correlation id was received from upstream (and accepted) or minted
    /// on this hop; `None` when the context has none.
    ///
    /// ```
    /// use threadline::{IdOrigin, Policy, Trust};
    ///
    /// let policy = Policy::builder().also_accept("x-request-id").build().unwrap();
    /// let mut req = http::HeaderMap::new();
    /// req.insert("x-request-id", "req-7".parse().unwrap());
    /// let ctx = policy.capture(&req, Trust::Trusted).context;
    /// assert_eq!(ctx.correlation_id_origin(), Some(IdOrigin::Received));
    /// let fresh = policy.capture(&http::HeaderMap::new(), Trust::Trusted).context;
    /// assert_eq!(fresh.correlation_id_origin(), Some(IdOrigin::Minted));
    /// ```
    pub fn correlation_id_origin(&self) -> Option<IdOrigin> {
        self.inner
            .correlation_id
            .as_ref()
            .map(|_| self.inner.id_origin)
    }

    /// The trace context of this hop.
    pub fn trace(&self) -> Option<&TraceContext> {
        self.inner.trace.as_ref()
    }

    /// The trace id, if any.
    pub fn trace_id(&self) -> Option<TraceId> {
        self.inner.trace.as_ref().map(TraceContext::trace_id)
    }

    /// This hop's span id, if any.
    pub fn span_id(&self) -> Option<SpanId> {
        self.inner.trace.as_ref().map(TraceContext::span_id)
    }

    /// The baggage, kept as received (parse it on demand with [`Baggage::iter`]).
    pub fn baggage(&self) -> Option<&Baggage> {
        self.inner.baggage.as_ref()
    }

    /// The routing key: the value that sends this work to a developer's copy of a
    /// service rather than the baseline (see [`Routing`](crate::Routing)). `None` when
    /// the policy reads none, none came, or the one that came was refused.
    pub fn routing_key(&self) -> Option<&RoutingKey> {
        self.inner.routing_key.as_deref()
    }

    /// A new snapshot with the routing key `key` (replacing any): for a key decided
    /// after capture (a preview link, a test harness). The members of baggage and
    /// tracestate the policy's [`Routing`](crate::Routing) owns are rewritten to it,
    /// and outgoing calls carry it in every form the policy writes (none when the
    /// policy has no routing).
    ///
    /// ```
    /// use threadline::{Policy, Routing, RoutingKey};
    ///
    /// let policy = Policy::builder().routing(Routing::header("x-routing-key")).build().unwrap();
    /// let ctx = policy.new_root().with_routing_key(RoutingKey::new("alice").unwrap());
    /// let mut out = http::HeaderMap::new();
    /// ctx.inject(&mut out);
    /// assert_eq!(out["x-routing-key"], "alice");
    /// assert!(ctx.without_routing_key().routing_key().is_none());
    /// ```
    pub fn with_routing_key(&self, key: RoutingKey) -> Context {
        self.set_routing_key(Some(key))
    }

    /// A new snapshot without a routing key (its baggage and tracestate members removed).
    pub fn without_routing_key(&self) -> Context {
        self.set_routing_key(None)
    }

    fn set_routing_key(&self, key: Option<RoutingKey>) -> Context {
        let mut inner = (*self.inner).clone();
        if let Some(r) = &inner.policy.inner.routing {
            let policy = inner.policy.clone();
            crate::capture::rewrite_routing(
                r,
                &policy,
                key.as_ref(),
                &mut inner.baggage,
                &mut inner.trace,
            );
        }
        inner.routing_key = key.map(Box::new);
        Context::from_inner(inner)
    }

    /// A captured custom header by its inbound name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.inner
            .headers
            .iter()
            .find(|h| self.names_of(h).0.as_str().eq_ignore_ascii_case(name))
            .and_then(|h| h.value.to_str().ok())
    }

    /// The captured custom headers as `(inbound name, value)`, in capture order.
    pub fn headers(&self) -> impl Iterator<Item = (&HeaderName, &str)> {
        self.inner
            .headers
            .iter()
            .map(|h| (self.names_of(h).0, h.value.to_str().unwrap_or_default()))
    }

    /// A local field by name.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.inner
            .fields
            .iter()
            .rev()
            .find(|f| f.name == name)
            .map(|f| f.value.as_str())
    }

    /// The local fields as `(name, value)`, in the order they were bound.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.inner
            .fields
            .iter()
            .map(|f| (&*f.name, f.value.as_str()))
    }

    /// A new snapshot with `name` set to `value` (replacing an earlier value).
    ///
    /// Names must be non-empty RFC 7230 tokens of at most [`MAX_FIELD_NAME_BYTES`]
    /// bytes (`user.id`, `organisation_id`): they travel as message keys. Names that log
    /// formats own ([`RESERVED_FIELDS`](crate::names::RESERVED_FIELDS): `level`,
    /// `message`, `correlation_id`, `service`, …) are refused from every source. An
    /// invalid name leaves the context unchanged and answers `Err`.
    pub fn try_with_field(
        &self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<FieldValue>,
    ) -> Result<Context, InvalidFieldName> {
        let name = name.into();
        if !is_valid_field_name(&name) {
            return Err(InvalidFieldName(()));
        }
        let mut inner = (*self.inner).clone();
        let value = value.into();
        match inner.fields.iter_mut().find(|f| f.name == name) {
            Some(f) => f.value = value,
            None => inner.fields.push(Field { name, value }),
        }
        Ok(Context::from_inner(inner))
    }

    /// A new snapshot with the propagated header `name` set to `value` (replacing a
    /// captured one): for values known only after capture, such as the tenant of the
    /// authenticated user. A header the policy lists is forwarded under its outbound
    /// name; any other under `name`. The value must pass the capture rules (visible ASCII
    /// and spaces, at most [`Limits::max_value_bytes`](crate::Limits)); trace context,
    /// baggage, B3 and the correlation id are not set this way.
    pub fn try_with_header(&self, name: &str, value: &str) -> Result<Context, InvalidHeader> {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| InvalidHeader(()))?;
        let p = &*self.inner.policy.inner;
        if names::is_reserved(&name)
            || name == p.correlation_header
            || p.also_accept.contains(&name)
        {
            return Err(InvalidHeader(()));
        }
        if !crate::codec::is_clean(value.as_bytes()) || value.len() > p.limits.max_value_bytes {
            return Err(InvalidHeader(()));
        }
        let value = HeaderValue::from_str(value).map_err(|_| InvalidHeader(()))?;
        let key = match p.rules.iter().position(|r| r.name == name) {
            Some(i) => HeaderKey::Rule(i as u16),
            None => HeaderKey::Other(Box::new(name.clone())),
        };
        let mut inner = (*self.inner).clone();
        let slot = inner
            .headers
            .iter()
            .position(|h| self.names_of(h).0 == name);
        match slot {
            Some(i) => inner.headers[i] = Header { key, value },
            None => inner.headers.push(Header { key, value }),
        }
        Ok(Context::from_inner(inner))
    }

    /// Like [`Context::try_with_field`], returning the context unchanged for an invalid name.
    pub fn with_field(
        &self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<FieldValue>,
    ) -> Context {
        self.try_with_field(name, value)
            .unwrap_or_else(|_| self.clone())
    }

    /// A new snapshot whose trace context is `trace` (copy-on-write, like
    /// [`Context::with_field`]): for handing this hop's ids over to a tracer that owns
    /// them. The correlation id, baggage, headers and fields are kept.
    ///
    /// ```
    /// use threadline::{Policy, TraceContext};
    /// use threadline::codec::{SpanId, TraceFlags, TraceId};
    ///
    /// let ctx = Policy::default().new_root();
    /// let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    /// let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
    /// let adopted = ctx.with_trace(TraceContext::from_parts(
    ///     trace_id, None, span_id, TraceFlags::SAMPLED, None,
    /// ));
    /// assert_eq!(adopted.trace_id(), Some(trace_id));
    /// assert_eq!(adopted.span_id(), Some(span_id));
    /// assert_eq!(adopted.correlation_id(), ctx.correlation_id());
    /// ```
    pub fn with_trace(&self, trace: TraceContext) -> Context {
        let mut inner = (*self.inner).clone();
        inner.trace = Some(trace);
        Context::from_inner(inner)
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        f.debug_struct("Context")
            .field("correlation_id", &i.correlation_id)
            .field("trace", &i.trace)
            .field("baggage", &i.baggage)
            .field("routing_key", &i.routing_key)
            .field("headers", &i.headers)
            .field("fields", &i.fields)
            .finish()
    }
}

/// A header that cannot be set on a context: an invalid name, a name handled by the
/// trace/baggage/correlation settings, or a value the capture rules would refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidHeader(());

impl InvalidHeader {
    pub(crate) const fn new() -> Self {
        InvalidHeader(())
    }
}

impl fmt::Display for InvalidHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "not a header a context can carry (invalid or reserved name, or a value with \
             control characters, non-ASCII or over the size limit)",
        )
    }
}

impl std::error::Error for InvalidHeader {}

/// A field name that is not a non-empty RFC 7230 token of at most 64 bytes, or one
/// reserved for log formats ([`RESERVED_FIELDS`](crate::names::RESERVED_FIELDS)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidFieldName(());

impl InvalidFieldName {
    pub(crate) const fn new() -> Self {
        InvalidFieldName(())
    }
}

impl fmt::Display for InvalidFieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "field names must be RFC 7230 tokens of 1 to 64 bytes (like `user.id`), and not \
             a name log formats own (level, message, correlation_id, service, ...)",
        )
    }
}

impl std::error::Error for InvalidFieldName {}
