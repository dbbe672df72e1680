//! Header rules, the correlation id validator, and the names never captured.

use std::fmt;
use std::sync::Arc;

use http::HeaderValue;

use crate::codec;
use crate::codec::CorrelationId;

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

/// A default as written in a rule: text is checked when the policy is built.
#[derive(Clone, Debug)]
pub(crate) enum DefaultSpec {
    Text(String),
    Value(DefaultValue),
}

/// One custom header to capture and forward.
#[derive(Clone, Debug)]
pub struct HeaderRule {
    pub(crate) name: String,
    pub(crate) rename: Option<String>,
    pub(crate) trusted_only: bool,
    pub(crate) default: Option<DefaultSpec>,
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

    /// A fixed value when the header is absent. It must pass the capture rules
    /// (visible ASCII and spaces, at most `max_value_bytes`): [`PolicyBuilder::build`]
    /// answers an error otherwise.
    ///
    /// [`PolicyBuilder::build`]: crate::PolicyBuilder::build
    pub fn default_value(mut self, value: impl Into<String>) -> Self {
        self.default = Some(DefaultSpec::Text(value.into()));
        self
    }

    /// A value computed when the header is absent. A value that breaks the capture
    /// rules (control characters, too long) is dropped like an inbound one.
    pub fn default_with(
        mut self,
        f: impl Fn() -> Option<HeaderValue> + Send + Sync + 'static,
    ) -> Self {
        self.default = Some(DefaultSpec::Value(DefaultValue::Computed(Arc::new(f))));
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

    pub(crate) fn check(&self, value: &[u8], max_len: usize) -> Result<(), codec::Error> {
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

pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name) || name.starts_with("proxy-") && name != "proxy-authorization"
}
