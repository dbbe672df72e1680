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

mod builder;
mod limits;
pub(crate) mod lookup;
mod routing;
mod rules;

use std::fmt;
use std::sync::Arc;

use http::HeaderName;

use crate::codec::IdGenerator;

pub use builder::PolicyBuilder;
pub use limits::Limits;
pub(crate) use lookup::{Lookup, SlotIndex};
pub use routing::{Routing, RoutingForm};
pub(crate) use routing::{RoutingRules, Source as RoutingSource};
pub(crate) use rules::is_hop_by_hop;
pub use rules::{CREDENTIALS, DefaultValue, HOP_BY_HOP, HeaderRule, Validator};

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

/// What happens to `baggage` sent by an untrusted caller; see
/// [`PolicyBuilder::untrusted_baggage`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UntrustedBaggage {
    /// Dropped whole, and reported ([`Reason::Untrusted`](crate::Reason::Untrusted)).
    Drop,
    /// Kept, like a trusted caller's (still validated and limited).
    Keep,
    /// Only the members with these keys are kept; the rest are dropped whole and
    /// reported.
    Keys(Vec<String>),
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

/// An error in a policy's configuration: what kind of mistake ([`PolicyError::kind`]),
/// and a message naming the header or setting concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    kind: PolicyErrorKind,
    message: String,
}

/// The kinds of [`PolicyError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// A name that is not a valid header name.
    InvalidHeaderName,
    /// A hop-by-hop header ([`HOP_BY_HOP`]) named for propagation.
    HopByHop,
    /// A header the trace, baggage, correlation or format settings handle, named as a
    /// custom header.
    Reserved,
    /// The same header in two rules.
    DuplicateRule,
    /// More header rules or names than the limits allow.
    TooManyHeaders,
    /// A default value that breaks the capture rules.
    InvalidDefault,
    /// A field prefix that cannot start a header name.
    InvalidFieldPrefix,
    /// A limit that must be positive is zero.
    InvalidLimit,
    /// A baggage key that is not a token.
    InvalidBaggageKey,
    /// A [`Routing`] form that cannot be read or written (a bad name, a form listed
    /// twice, a query parameter or cookie to write, a length limit out of range).
    InvalidRouting,
}

impl PolicyError {
    pub(crate) fn new(kind: PolicyErrorKind, message: impl Into<String>) -> Self {
        PolicyError {
            kind,
            message: message.into(),
        }
    }

    /// What kind of mistake it is.
    pub fn kind(&self) -> PolicyErrorKind {
        self.kind
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
    pub(crate) untrusted_baggage: UntrustedBaggage,
    pub(crate) field_prefix: String,
    pub(crate) fields_over_http: bool,
    /// Trace formats beyond the built-in W3C and B3 ones; `None` costs nothing.
    pub(crate) formats: Option<Formats>,
    /// The routing key's forms; `None` (the default) costs one test per capture.
    pub(crate) routing: Option<Box<RoutingRules>>,
}

/// The trace formats a policy reads and writes beyond the built-in W3C Trace Context,
/// W3C Baggage and B3 ([`PolicyBuilder::read_format`], [`PolicyBuilder::write_format`]).
#[derive(Debug, Clone)]
pub(crate) struct Formats {
    pub(crate) readers: Vec<Arc<dyn crate::format::Format>>,
    pub(crate) writers: Vec<Arc<dyn crate::format::Format>>,
    /// Readers are tried before W3C (and B3) rather than after.
    pub(crate) first: bool,
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

    /// The other headers the correlation id is accepted from
    /// ([`PolicyBuilder::also_accept`]).
    pub fn also_accepted(&self) -> &[HeaderName] {
        &self.inner.also_accept
    }

    /// The prefix of local-field keys on message carriers.
    pub fn field_prefix(&self) -> &str {
        &self.inner.field_prefix
    }

    /// Where the routing key is read from and written to, when the policy has one
    /// ([`PolicyBuilder::routing`]).
    pub fn routing(&self) -> Option<&Routing> {
        self.inner.routing.as_deref().map(|r| &r.config)
    }

    /// `(inbound name, outbound name, trusted_only)` for each custom header rule.
    pub fn rules(&self) -> impl Iterator<Item = (&HeaderName, &HeaderName, bool)> {
        self.inner
            .rules
            .iter()
            .map(|r| (&r.name, &r.wire, r.trusted_only))
    }
}
