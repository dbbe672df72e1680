//! Loading a [`Policy`] from TOML (or any serde format).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::codec::IdGenerator;
use crate::policy::{B3Emit, HeaderRule, Limits, Policy, PolicyBuilder, PolicyError, Routing};

/// A policy as configuration data. Every section and key is optional; omitted ones
/// take the builder's defaults. Closures (computed defaults, custom validators and
/// generators) can only be set in code, on the [`PolicyBuilder`] this turns into.
///
/// ```
/// let policy = threadline::Policy::from_toml(r#"
///     [correlation]
///     header = "x-request-id"
///     generator = "ulid"
///
///     [[headers]]
///     name = "x-tenant-id"
///     trusted_only = true
///
///     [[headers]]
///     name = "x-client"
///     rename = "x-upstream-client"
///     default = "unknown"
///
///     [limits]
///     max_value_bytes = 1024
/// "#).unwrap();
/// assert_eq!(policy.correlation_header(), "x-request-id");
/// assert_eq!(policy.limits().max_value_bytes, 1024);
/// ```
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// Correlation id settings.
    pub correlation: CorrelationConfig,
    /// Custom headers to capture and forward.
    pub headers: Vec<HeaderConfig>,
    /// Opt-in "capture all except" mode.
    pub capture_all: Option<CaptureAllConfig>,
    /// Size limits.
    pub limits: Limits,
    /// Trace context, baggage and B3.
    pub trace: TraceConfig,
    /// Edge behaviour for untrusted callers.
    pub untrusted: UntrustedConfig,
    /// Local fields.
    pub fields: FieldsConfig,
    /// The routing key, when the policy reads one (see [`Routing`]):
    ///
    /// ```toml
    /// [routing]
    /// read = [{ header = "x-routing-key" }, { baggage = "sd-routing-key" }, { query = "preview" }, { cookie = "preview" }]
    /// write = [{ header = "x-routing-key" }, { baggage = "sd-routing-key" }]
    /// accept_untrusted = false
    /// max_len = 64
    /// ```
    pub routing: Option<Routing>,
}

/// `[correlation]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CorrelationConfig {
    /// Header name (default `x-correlation-id`).
    pub header: String,
    /// Other headers accepted as the id (e.g. `["x-request-id"]`).
    pub also_accept: Vec<String>,
    /// Accept ids from upstream (default true).
    pub accept_from_upstream: bool,
    /// `uuid-v4` (default), `uuid-v7` or `ulid`.
    pub generator: GeneratorConfig,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        CorrelationConfig {
            header: "x-correlation-id".into(),
            also_accept: Vec::new(),
            accept_from_upstream: true,
            generator: GeneratorConfig::UuidV4,
        }
    }
}

/// The correlation id generator by name.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum GeneratorConfig {
    /// UUID version 4.
    #[default]
    UuidV4,
    /// UUID version 7.
    UuidV7,
    /// ULID.
    Ulid,
}

/// One `[[headers]]` entry.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HeaderConfig {
    /// Inbound name.
    pub name: String,
    /// Outbound name, when different.
    pub rename: Option<String>,
    /// Accept only from trusted callers.
    pub trusted_only: bool,
    /// A fixed value when absent.
    pub default: Option<String>,
}

/// `[capture_all]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CaptureAllConfig {
    /// Headers never captured besides the built-in hop-by-hop and credential lists.
    pub except: Vec<String>,
}

/// `[trace]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TraceConfig {
    /// W3C trace context (default true).
    pub w3c: bool,
    /// W3C baggage (default true).
    pub baggage: bool,
    /// Accept B3 when no valid traceparent came (default false).
    pub accept_b3: bool,
    /// `none` (default), `single` or `multi`.
    pub emit_b3: B3Emit,
    /// Mark new root traces sampled (default true).
    pub sample_new_traces: bool,
    /// Other trace formats read, in order (see [`PolicyBuilder::read_format`]):
    /// `"gcp"`, `"xray"`, `"jaeger"`, `"datadog"`, `"ot"`.
    pub read: Vec<FormatName>,
    /// Other trace formats written beside W3C.
    pub write: Vec<FormatName>,
    /// Read those formats before W3C (default false).
    pub formats_first: bool,
}

/// A trace format by name, for policy files.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FormatName {
    /// Google Cloud `X-Cloud-Trace-Context`.
    Gcp,
    /// AWS X-Ray `X-Amzn-Trace-Id`.
    Xray,
    /// Jaeger `uber-trace-id` and `uberctx-*`.
    Jaeger,
    /// Datadog `x-datadog-*`.
    Datadog,
    /// OpenTracing `ot-tracer-*` and `ot-baggage-*`.
    Ot,
}

impl FormatName {
    fn add(self, b: PolicyBuilder, read: bool) -> PolicyBuilder {
        use crate::format::{CloudTraceFormat, DatadogFormat, JaegerFormat, OtFormat, XRayFormat};
        macro_rules! with {
            ($f:expr) => {
                if read {
                    b.read_format($f)
                } else {
                    b.write_format($f)
                }
            };
        }
        match self {
            FormatName::Gcp => with!(CloudTraceFormat),
            FormatName::Xray => with!(XRayFormat),
            FormatName::Jaeger => with!(JaegerFormat),
            FormatName::Datadog => with!(DatadogFormat),
            FormatName::Ot => with!(OtFormat),
        }
    }
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            w3c: true,
            baggage: true,
            accept_b3: false,
            emit_b3: B3Emit::None,
            sample_new_traces: true,
            read: Vec::new(),
            write: Vec::new(),
            formats_first: false,
        }
    }
}

/// `[untrusted]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct UntrustedConfig {
    /// Start a fresh trace for untrusted callers.
    pub fresh_trace: bool,
    /// Mint a fresh correlation id for untrusted callers.
    pub fresh_correlation_id: bool,
}

/// `[fields]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FieldsConfig {
    /// Key prefix on message carriers (default `tl-field-`).
    pub prefix: String,
    /// Also send/accept local fields over HTTP (default false).
    pub over_http: bool,
}

impl Default for FieldsConfig {
    fn default() -> Self {
        FieldsConfig {
            prefix: "tl-field-".into(),
            over_http: false,
        }
    }
}

/// A policy file that could not be read: bad TOML or an unknown key
/// ([`ConfigErrorKind::Syntax`]), or a setting the policy refuses
/// ([`ConfigErrorKind::Policy`], with the [`PolicyError`] as its source).
#[derive(Debug)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    message: String,
    policy: Option<PolicyError>,
}

/// The kinds of [`ConfigError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// Not TOML, a key that does not exist, a value of the wrong type.
    Syntax,
    /// A setting the policy refuses (see [`ConfigError::policy_error`]).
    Policy,
}

impl ConfigError {
    /// What kind of error it is.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The policy's own error, for [`ConfigErrorKind::Policy`].
    pub fn policy_error(&self) -> Option<&PolicyError> {
        self.policy.as_ref()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.policy.as_ref().map(|e| e as _)
    }
}

impl From<PolicyError> for ConfigError {
    fn from(e: PolicyError) -> Self {
        ConfigError {
            kind: ConfigErrorKind::Policy,
            message: e.to_string(),
            policy: Some(e),
        }
    }
}

impl PolicyConfig {
    /// The builder this configuration stands for (add closures there, then `build`).
    pub fn into_builder(self) -> Result<PolicyBuilder, ConfigError> {
        let c = self.correlation;
        let mut b = Policy::builder()
            .correlation_header(c.header)
            .accept_upstream_correlation_id(c.accept_from_upstream)
            .id_generator(match c.generator {
                GeneratorConfig::UuidV4 => IdGenerator::UuidV4,
                GeneratorConfig::UuidV7 => IdGenerator::UuidV7,
                GeneratorConfig::Ulid => IdGenerator::Ulid,
            })
            .limits(self.limits)
            .w3c(self.trace.w3c)
            .baggage(self.trace.baggage)
            .accept_b3(self.trace.accept_b3)
            .emit_b3(self.trace.emit_b3)
            .sample_new_traces(self.trace.sample_new_traces)
            .formats_first(self.trace.formats_first)
            .untrusted_start_fresh(
                self.untrusted.fresh_trace,
                self.untrusted.fresh_correlation_id,
            )
            .field_prefix(self.fields.prefix)
            .fields_over_http(self.fields.over_http);
        for n in c.also_accept {
            b = b.also_accept(n);
        }
        for f in self.trace.read {
            b = f.add(b, true);
        }
        for f in self.trace.write {
            b = f.add(b, false);
        }
        for h in self.headers {
            let mut rule = HeaderRule::new(h.name.clone());
            if let Some(r) = h.rename {
                rule = rule.rename(r);
            }
            if h.trusted_only {
                rule = rule.trusted_only();
            }
            if let Some(d) = h.default {
                // Checked (and refused with the policy's own error) when it is built.
                rule = rule.default_value(d);
            }
            b = b.header_rule(rule);
        }
        if let Some(all) = self.capture_all {
            b = b.capture_all_except(all.except);
        }
        if let Some(r) = self.routing {
            b = b.routing(r);
        }
        Ok(b)
    }
}

impl Policy {
    /// Parses a policy from TOML (see [`PolicyConfig`] for the keys).
    pub fn from_toml(text: &str) -> Result<Policy, ConfigError> {
        let cfg: PolicyConfig = toml::from_str(text).map_err(|e| ConfigError {
            kind: ConfigErrorKind::Syntax,
            message: format!("invalid threadline policy TOML: {e}"),
            policy: None,
        })?;
        Ok(cfg.into_builder()?.build()?)
    }
}
