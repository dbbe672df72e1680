//! The [`Policy`]: which headers are captured, trusted, validated, limited and forwarded.
//!
//! ```
//! use threadline::{Policy, Trust, HeaderRule};
//!
//! let policy = Policy::builder()
//!     .header_rule(HeaderRule::new("x-tenant-id").trusted_only())
//!     .header_rule(HeaderRule::new("x-client").rename("x-upstream-client"))
//!     .build()
//!     .unwrap();
//!
//! let mut req = http::HeaderMap::new();
//! req.insert("x-tenant-id", "acme".parse().unwrap());
//! req.insert("x-client", "web".parse().unwrap());
//! req.insert("x-correlation-id", "bad id\twith tab".parse().unwrap());
//!
//! let captured = policy.capture(&req, Trust::Untrusted);
//! let ctx = captured.context;
//! assert_eq!(ctx.get("x-tenant-id"), None); // trusted_only, caller untrusted
//! assert_eq!(ctx.get("x-client"), Some("web"));
//! assert_ne!(ctx.correlation_id().unwrap().as_str(), "bad id\twith tab"); // minted anew
//! assert_eq!(captured.report.len(), 2);
//!
//! let mut out = http::HeaderMap::new();
//! ctx.inject(&mut out);
//! assert_eq!(out["x-upstream-client"], "web");
//! ```

use std::fmt;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use smallvec::SmallVec;

use crate::carrier::{CarrierKind, CarrierValue, Extractor};
use crate::codec::{self, B3, Baggage, CorrelationId, IdGenerator, TraceParent, TraceState};
use crate::context::{Context, Field, FieldValue, Header, HeaderKey, Inner, TraceContext};
use crate::names;

/// Size limits applied to everything captured from a carrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Limits {
    /// Longest accepted value of one header, in bytes (default 4096).
    pub max_value_bytes: usize,
    /// Most custom headers captured (default 32).
    pub max_headers: usize,
    /// Most bytes captured across all custom headers, tracestate and baggage (default 16384).
    pub max_total_bytes: usize,
    /// Most baggage members kept (default 64, the W3C minimum).
    pub baggage_max_members: usize,
    /// Most baggage bytes kept (default 8192, the W3C minimum).
    pub baggage_max_bytes: usize,
    /// Most tracestate bytes kept; longer lists are trimmed by whole entries (default 512).
    pub tracestate_max_bytes: usize,
    /// Longest accepted correlation id (default 128).
    pub correlation_id_max_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_value_bytes: 4096,
            max_headers: 32,
            max_total_bytes: 16384,
            baggage_max_members: codec::BAGGAGE_MIN_MEMBERS,
            baggage_max_bytes: codec::BAGGAGE_MIN_BYTES,
            tracestate_max_bytes: 512,
            correlation_id_max_len: 128,
        }
    }
}

/// Whether the caller of this hop is trusted. The server layer decides; the core
/// only applies the consequences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Inside the trust boundary: `trusted_only` headers are accepted.
    Trusted,
    /// Outside it: `trusted_only` headers are dropped, and the policy may force a fresh
    /// trace and correlation id.
    Untrusted,
}

/// How B3 headers are sent on outgoing calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum B3Emit {
    /// Do not send B3 (the default).
    #[default]
    None,
    /// Send the single `b3` header.
    Single,
    /// Send `X-B3-TraceId`, `X-B3-SpanId`, `X-B3-Sampled`/`X-B3-Flags`.
    Multi,
}

/// The default value of a header that is absent.
#[derive(Clone)]
pub enum DefaultValue {
    /// A fixed value.
    Static(HeaderValue),
    /// A closure called on each capture where the header is absent; `None` means no value.
    Computed(Arc<dyn Fn() -> Option<HeaderValue> + Send + Sync>),
}

impl fmt::Debug for DefaultValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultValue::Static(v) => f.debug_tuple("Static").field(v).finish(),
            DefaultValue::Computed(_) => f.write_str("Computed(..)"),
        }
    }
}

/// One custom header to capture and forward.
#[derive(Clone, Debug)]
pub struct HeaderRule {
    name: String,
    rename: Option<String>,
    trusted_only: bool,
    default: Option<DefaultValue>,
}

impl HeaderRule {
    /// Capture `name` (case-insensitive) and forward it under the same name.
    pub fn new(name: impl Into<String>) -> Self {
        HeaderRule {
            name: name.into(),
            rename: None,
            trusted_only: false,
            default: None,
        }
    }

    /// Forward under another name (inbound `x-client` → outbound `x-upstream-client`).
    pub fn rename(mut self, outbound: impl Into<String>) -> Self {
        self.rename = Some(outbound.into());
        self
    }

    /// Accept this header only from trusted callers (tenant and user ids, say).
    pub fn trusted_only(mut self) -> Self {
        self.trusted_only = true;
        self
    }

    /// A fixed value when the header is absent (it must be a valid header value).
    pub fn default_value(mut self, value: &'static str) -> Self {
        self.default = Some(DefaultValue::Static(HeaderValue::from_static(value)));
        self
    }

    /// A value computed when the header is absent. A value that breaks the capture
    /// rules (control characters, too long) is dropped like an inbound one.
    pub fn default_with(
        mut self,
        f: impl Fn() -> Option<HeaderValue> + Send + Sync + 'static,
    ) -> Self {
        self.default = Some(DefaultValue::Computed(Arc::new(f)));
        self
    }
}

type ValidatorFn = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Validates correlation ids.
#[derive(Clone, Default)]
pub struct Validator {
    custom: Option<ValidatorFn>,
}

impl Validator {
    /// Adds a check of your own. It can only narrow the default rules (visible ASCII
    /// without quotes, commas, semicolons or backslashes, at most the configured length),
    /// never widen them: those keep ids safe in headers and logs.
    pub fn custom(f: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Validator {
            custom: Some(Arc::new(f)),
        }
    }

    fn check(&self, value: &[u8], max_len: usize) -> Result<(), codec::Error> {
        CorrelationId::validate(value, max_len)?;
        match &self.custom {
            Some(f) if !f(std::str::from_utf8(value).unwrap_or_default()) => {
                Err(codec::Error::rejected_by_validator())
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.custom.is_some() {
            "Validator(custom)"
        } else {
            "Validator(default)"
        })
    }
}

/// Why something was not captured. Never holds the rejected value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The value breaks its wire format.
    Malformed(codec::Error),
    /// Control characters, non-ASCII or non-UTF-8 bytes.
    InvalidChars,
    /// Longer than [`Limits::max_value_bytes`].
    TooLong,
    /// Over [`Limits::max_headers`].
    TooManyHeaders,
    /// Over [`Limits::max_total_bytes`].
    TotalBytes,
    /// Sent more than once where once is allowed.
    Duplicate,
    /// A `trusted_only` header from an untrusted caller.
    Untrusted,
    /// Ignored because the caller is untrusted and the policy starts fresh (edge mode).
    ReplacedAtEdge,
    /// Not text (a JSON number, say), or a broken envelope.
    WrongType,
    /// Baggage members dropped whole (invalid, or over the member/byte limits).
    BaggageMembersDropped(usize),
    /// Tracestate entries dropped whole to fit the limit.
    TraceStateTrimmed,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Malformed(e) => write!(f, "{e}"),
            Reason::InvalidChars => f.write_str("control, non-ASCII or non-UTF-8 characters"),
            Reason::TooLong => f.write_str("value longer than the limit"),
            Reason::TooManyHeaders => f.write_str("more headers than the limit"),
            Reason::TotalBytes => f.write_str("total captured bytes over the limit"),
            Reason::Duplicate => f.write_str("header sent more than once"),
            Reason::Untrusted => f.write_str("trusted-only header from an untrusted caller"),
            Reason::ReplacedAtEdge => f.write_str("replaced at the trust boundary"),
            Reason::WrongType => f.write_str("value is not text"),
            Reason::BaggageMembersDropped(n) => write!(f, "{n} baggage member(s) dropped"),
            Reason::TraceStateTrimmed => f.write_str("tracestate trimmed to the limit"),
        }
    }
}

/// One thing dropped during capture: the header name and the reason, never the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The header (or carrier key) concerned.
    pub name: HeaderName,
    /// Why.
    pub reason: Reason,
}

/// What capture dropped. Empty on the happy path (and then it costs no allocation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    rejections: Vec<Rejection>,
}

impl Report {
    fn push(&mut self, name: &HeaderName, reason: Reason) {
        self.rejections.push(Rejection {
            name: name.clone(),
            reason,
        });
    }

    /// Number of rejections.
    pub fn len(&self) -> usize {
        self.rejections.len()
    }

    /// `true` when nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.rejections.is_empty()
    }

    /// The rejections, in the order they happened.
    pub fn iter(&self) -> impl Iterator<Item = &Rejection> {
        self.rejections.iter()
    }
}

/// The result of a capture: the context, and what was dropped on the way.
#[derive(Clone, Debug)]
pub struct Captured {
    /// The captured context.
    pub context: Context,
    /// What was dropped, and why.
    pub report: Report,
}

/// An error in a policy's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    message: String,
}

impl PolicyError {
    fn new(message: impl Into<String>) -> Self {
        PolicyError {
            message: message.into(),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid threadline policy: {}", self.message)
    }
}

impl std::error::Error for PolicyError {}

#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) name: HeaderName,
    pub(crate) wire: HeaderName,
    pub(crate) trusted_only: bool,
    pub(crate) default: Option<DefaultValue>,
}

#[derive(Debug)]
pub(crate) struct PolicyInner {
    /// Every name capture reads, in slot order: the correlation header, the names in
    /// `also_accept`, then `traceparent` and `tracestate` (W3C on), `baggage` (baggage
    /// on), then each rule's inbound name.
    pub(crate) lookup: Lookup,
    pub(crate) slots: SlotIndex,
    pub(crate) rules: Vec<Rule>,
    pub(crate) capture_all: Option<Vec<HeaderName>>,
    pub(crate) correlation_header: HeaderName,
    pub(crate) also_accept: Vec<HeaderName>,
    pub(crate) accept_upstream_id: bool,
    pub(crate) validator: Validator,
    pub(crate) generator: IdGenerator,
    pub(crate) limits: Limits,
    pub(crate) w3c: bool,
    pub(crate) baggage: bool,
    pub(crate) accept_b3: bool,
    pub(crate) emit_b3: B3Emit,
    pub(crate) sample_new_traces: bool,
    pub(crate) untrusted_fresh_trace: bool,
    pub(crate) untrusted_fresh_id: bool,
    pub(crate) field_prefix: String,
    pub(crate) fields_over_http: bool,
}

/// The names capture reads, bucketed by length: most of a request's other headers are
/// turned away by one table read, and a configured name of up to 16 bytes is
/// recognised by comparing two words (no call to `memcmp`).
#[derive(Debug)]
pub(crate) struct Lookup {
    names: Vec<HeaderName>,
    /// Each name's first sixteen bytes as two words (zero-padded).
    words: Vec<[u64; 2]>,
    /// `first[n]`: 1 + the index of the first name `n` bytes long, 0 for none. Names of
    /// 63 bytes or more share the last bucket.
    first: [u16; 64],
    /// `next[i]`: 1 + the index of the next name in name `i`'s bucket, 0 for none.
    next: Vec<u16>,
}

/// Eight bytes of `s` from `at` (zero-padded) as one word, without a call to `memcpy`.
#[inline]
fn word(s: &[u8], at: usize) -> u64 {
    let s = s.get(at..).unwrap_or_default();
    match s.first_chunk::<8>() {
        Some(w) => u64::from_le_bytes(*w),
        None => s.iter().rev().fold(0, |w, &b| (w << 8) | u64::from(b)),
    }
}

#[inline]
fn words(s: &[u8]) -> [u64; 2] {
    [word(s, 0), word(s, 8)]
}

impl Lookup {
    /// At most `u16::MAX - 1` names: the builder refuses more.
    fn new(names: Vec<HeaderName>) -> Self {
        let mut first = [0u16; 64];
        let mut next = vec![0u16; names.len()];
        let mut last: [Option<usize>; 64] = [None; 64];
        for (i, n) in names.iter().enumerate() {
            let Ok(tag) = u16::try_from(i + 1) else { break };
            let bucket = n.as_str().len().min(63);
            match last[bucket] {
                None => first[bucket] = tag,
                Some(prev) => next[prev] = tag,
            }
            last[bucket] = Some(i);
        }
        let words = names.iter().map(|n| words(n.as_str().as_bytes())).collect();
        Lookup {
            names,
            words,
            first,
            next,
        }
    }

    #[inline]
    fn position(&self, name: &HeaderName) -> Option<usize> {
        let name = name.as_str().as_bytes();
        let mut tag = self.first[name.len().min(63)];
        if tag == 0 {
            return None;
        }
        let w = words(name);
        while tag != 0 {
            let i = usize::from(tag - 1);
            // Same bucket: same length below 63 bytes, so two equal words settle it
            // for names of up to 16 bytes; longer ones compare in full.
            if self.words.get(i) == Some(&w)
                && (name.len() <= 16
                    || self.names.get(i).map(|n| n.as_str().as_bytes()) == Some(name))
            {
                return Some(i);
            }
            tag = self.next.get(i).copied().unwrap_or(0);
        }
        None
    }
}

/// Where each name sits in [`PolicyInner::lookup`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotIndex {
    traceparent: Option<usize>,
    tracestate: Option<usize>,
    baggage: Option<usize>,
    rules: usize,
}

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

/// What to capture, trust, validate, limit and forward. Cheap to clone (one `Arc`).
///
/// Build one with [`Policy::builder`], load one from TOML with [`Policy::from_toml`],
/// or take [`Policy::default`]: W3C `traceparent`/`tracestate`, `baggage` and
/// `x-correlation-id` (accepted when valid, else a UUIDv4), nothing else.
#[derive(Clone, Debug)]
pub struct Policy {
    pub(crate) inner: Arc<PolicyInner>,
}

impl Default for Policy {
    fn default() -> Self {
        static DEFAULT: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                PolicyBuilder::default()
                    .build()
                    .unwrap_or_else(|e| unreachable!("the default policy is valid: {e}"))
            })
            .clone()
    }
}

/// Headers that are never captured in "capture all" mode: hop-by-hop and
/// connection-specific ones. Naming one in an allow-list is a configuration error.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "accept-encoding",
];

/// Credentials: never captured in "capture all" mode unless named in an allow-list rule.
pub const CREDENTIALS: &[&str] = &[
    "authorization",
    "cookie",
    "set-cookie",
    "proxy-authorization",
];

fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name) || name.starts_with("proxy-") && name != "proxy-authorization"
}

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
    field_prefix: String,
    fields_over_http: bool,
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
            field_prefix: "tl-field-".into(),
            fields_over_http: false,
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

    /// Opt-in: capture every header except hop-by-hop ones ([`HOP_BY_HOP`], `proxy-*`),
    /// credentials ([`CREDENTIALS`], unless named by a rule) and the names in `except`.
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

    /// Checks the configuration and builds the policy.
    pub fn build(self) -> Result<Policy, PolicyError> {
        let parse = |what: &str, n: &str| {
            HeaderName::from_bytes(n.as_bytes())
                .map(names::interned)
                .map_err(|_| PolicyError::new(format!("{what} {n:?} is not a valid header name")))
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
                    return Err(PolicyError::new(format!(
                        "{n} is a hop-by-hop header and cannot be propagated"
                    )));
                }
                if names::is_reserved(n) || *n == correlation_header || also_accept.contains(n) {
                    return Err(PolicyError::new(format!(
                        "{n} is handled by the trace/baggage/correlation settings, not as a custom header"
                    )));
                }
            }
            if rules.iter().any(|x| x.name == name) {
                return Err(PolicyError::new(format!("header {name} is listed twice")));
            }
            rules.push(Rule {
                name,
                wire,
                trusted_only: r.trusted_only,
                default: r.default,
            });
        }
        if rules.len() > self.limits.max_headers || rules.len() > usize::from(u16::MAX) {
            return Err(PolicyError::new(
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
                "field prefix must be a non-empty header-name prefix",
            ));
        }
        let l = &self.limits;
        if l.max_value_bytes == 0 || l.correlation_id_max_len == 0 {
            return Err(PolicyError::new("limits must be positive"));
        }
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
        if lookup.len() >= usize::from(u16::MAX) {
            return Err(PolicyError::new("too many header names to capture"));
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
                field_prefix: self.field_prefix.to_ascii_lowercase(),
                fields_over_http: self.fields_over_http,
            }),
        })
    }
}

/// Only visible ASCII and spaces: no control characters, no non-ASCII, no tabs.
#[inline]
pub(crate) fn is_clean(v: &[u8]) -> bool {
    crate::codec::no_byte(v, |b| b.wrapping_sub(0x20) > 0x7e - 0x20)
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
    /// A builder with the defaults.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::default()
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The correlation id header name.
    pub fn correlation_header(&self) -> &HeaderName {
        &self.inner.correlation_header
    }

    /// The prefix of local-field keys on message carriers.
    pub fn field_prefix(&self) -> &str {
        &self.inner.field_prefix
    }

    /// `(inbound name, outbound name, trusted_only)` for each custom header rule.
    pub fn rules(&self) -> impl Iterator<Item = (&HeaderName, &HeaderName, bool)> {
        self.inner
            .rules
            .iter()
            .map(|r| (&r.name, &r.wire, r.trusted_only))
    }

    /// A fresh context: new correlation id, new root trace, nothing else. For work that
    /// starts outside any request (a scheduled job, a CLI command).
    pub fn new_root(&self) -> Context {
        let p = &self.inner;
        Context::from_inner(Inner {
            policy: self.clone(),
            correlation_id: Some(p.generator.generate()),
            trace: p.w3c.then(|| TraceContext::new_root(p.sample_new_traces)),
            baggage: None,
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
            match p.validator.check(bytes, p.limits.correlation_id_max_len) {
                Ok(()) => {
                    correlation_id = v.to_header_value().map(CorrelationId::from_validated);
                }
                Err(e) => report.push(name, Reason::Malformed(e)),
            }
            break;
        }
        let correlation_id = correlation_id.unwrap_or_else(|| p.generator.generate());

        let mut total = 0usize;
        // Trace context.
        let trace = if p.w3c {
            Some(self.capture_trace(carrier, &found, untrusted, &mut report, &mut total))
        } else {
            None
        };

        // Baggage.
        let baggage = if p.baggage {
            self.capture_baggage(carrier, &found, &mut report, &mut total)
        } else {
            None
        };

        // The context is assembled where it will live: captured headers and fields are
        // pushed straight into the shared allocation, never moved into it afterwards.
        let mut shared = Arc::new(Inner {
            policy: self.clone(),
            correlation_id: Some(correlation_id),
            trace,
            baggage,
            headers: SmallVec::new(),
            fields: SmallVec::new(),
        });
        let Some(inner) = Arc::get_mut(&mut shared) else {
            unreachable!("an Arc made on the line above has a single owner")
        };

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

        // Local fields.
        let fields = &mut inner.fields;
        let fields_allowed = match carrier.kind() {
            CarrierKind::Message => true,
            _ => p.fields_over_http && !untrusted,
        };
        if fields_allowed {
            self.capture_fields(carrier, fields, &mut total, &mut report);
        }

        Captured {
            context: Context::from_arc(shared),
            report,
        }
    }

    /// Restores context from a message, job or envelope: like [`Policy::capture`] with
    /// a trusted caller (messages come from inside the system), so `trusted_only`
    /// headers and local fields are accepted — but still validated and limited, since
    /// a message is untrusted input.
    pub fn extract<E: Extractor + ?Sized>(&self, carrier: &E) -> Captured {
        self.capture(carrier, Trust::Trusted)
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

    fn capture_trace<E: Extractor + ?Sized>(
        &self,
        carrier: &E,
        found: &Found<'_>,
        untrusted: bool,
        report: &mut Report,
        total: &mut usize,
    ) -> TraceContext {
        let p = &*self.inner;
        let fresh = || TraceContext::new_root(p.sample_new_traces);
        let tp_slot = found.get(p.slots.traceparent);
        if let Slot::Absent = tp_slot {
            return match self.capture_b3(carrier, untrusted, report) {
                Some(tp) => TraceContext::continue_from(tp, None),
                None => fresh(),
            };
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
                return match self.capture_b3(carrier, untrusted, report) {
                    Some(tp) => TraceContext::continue_from(tp, None),
                    None => fresh(),
                };
            }
        };
        // tracestate, only with a valid traceparent
        let state = match found.get(p.slots.tracestate) {
            Slot::Absent => Ok(None),
            Slot::One(CarrierValue::Header(h)) => TraceState::from_header(h).map(Some),
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
                    TraceState::decode_all(bytes)
                }
            }
        };
        let state = match state {
            Ok(Some(ts)) => {
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
        TraceContext::continue_from(tp, state)
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
        report: &mut Report,
        total: &mut usize,
    ) -> Option<Baggage> {
        let l = &self.inner.limits;
        let max_bytes = l
            .baggage_max_bytes
            .min(l.max_total_bytes - (*total).min(l.max_total_bytes));
        let slot = found.get(self.inner.slots.baggage);
        if let Slot::Absent = slot {
            return None;
        }
        // Fast path: one header, entirely valid and within limits: kept without copying.
        if let Slot::One(CarrierValue::Header(h)) = slot {
            if let Ok(b) = Baggage::from_header(h, l.baggage_max_members, max_bytes) {
                *total += b.header_value().len();
                return Some(b);
            }
        }
        let mut wrong = 0usize;
        let all = carrier.get_all(&names::BAGGAGE).filter_map(|v| {
            let b = v.as_bytes();
            if b.is_none() {
                wrong += 1;
            }
            b
        });
        let (b, dropped) = Baggage::collect(all, l.baggage_max_members, max_bytes);
        if dropped + wrong > 0 {
            report.push(
                &names::BAGGAGE,
                Reason::BaggageMembersDropped(dropped + wrong),
            );
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

    fn capture_fields<E: Extractor + ?Sized>(
        &self,
        carrier: &E,
        fields: &mut SmallVec<[Field; 2]>,
        total: &mut usize,
        report: &mut Report,
    ) {
        let p = &*self.inner;
        let prefix = p.field_prefix.as_str();
        for key in carrier.keys() {
            if key.len() <= prefix.len()
                || !key.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            {
                continue;
            }
            let Ok(name) = HeaderName::from_bytes(key.as_bytes()) else {
                continue;
            };
            let field_name = &name.as_str()[prefix.len()..];
            if fields.iter().any(|f| f.name == field_name) {
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
            let l = &p.limits;
            if !is_clean(raw) {
                report.push(&name, Reason::InvalidChars);
            } else if raw.len() > l.max_value_bytes {
                report.push(&name, Reason::TooLong);
            } else if *total + raw.len() > l.max_total_bytes {
                report.push(&name, Reason::TotalBytes);
            } else {
                *total += raw.len();
                let text = std::str::from_utf8(raw).unwrap_or_default();
                let decoded = codec::percent_decode(text);
                fields.push(Field {
                    name: field_name.to_owned().into(),
                    value: FieldValue::new(&decoded),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_each_configured_name_and_nothing_else() {
        let long_a = format!("x-{}", "a".repeat(70));
        let long_b = format!("x-{}", "a".repeat(61)); // 63 bytes: the same last bucket
        let configured = [
            "x-correlation-id",
            "traceparent",
            "x-tenant-id", // 11 bytes, like traceparent: one bucket, chained
            "x-correlation-id-long",
            long_a.as_str(),
            long_b.as_str(),
            "a",
        ];
        let names: Vec<HeaderName> = configured
            .iter()
            .map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap())
            .collect();
        let lookup = Lookup::new(names.clone());
        for (i, n) in names.iter().enumerate() {
            assert_eq!(lookup.position(n), Some(i), "{n}");
        }
        let long_c = format!("x-{}", "a".repeat(69));
        let long_d = format!("x-{}b", "a".repeat(69));
        let others = [
            "x-correlation-ie",
            "y-correlation-id",
            "x-tenant-ie",
            "tracestate",
            "x-correlation-id-lonh",
            long_c.as_str(),
            long_d.as_str(),
            "b",
            "host",
        ];
        for o in others {
            let n = HeaderName::from_bytes(o.as_bytes()).unwrap();
            assert_eq!(lookup.position(&n), None, "{o}");
        }
    }

    #[test]
    fn lookup_gives_the_first_of_repeated_names() {
        let n = HeaderName::from_static("x-request-id");
        let lookup = Lookup::new(vec![
            n.clone(),
            HeaderName::from_static("baggage"),
            n.clone(),
        ]);
        assert_eq!(lookup.position(&n), Some(0));
    }
}
