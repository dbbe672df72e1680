//! Threadline: request context that follows the work.
//!
//! Capture the configured headers (correlation id, W3C `traceparent`/`tracestate`,
//! `baggage`, B3, custom ones like `x-tenant-id`) on the way in; hold them in an
//! async-safe scope; read them anywhere; hand them to spawned tasks; write them onto
//! outgoing calls and messages; restore them on the other side.
//!
//! # Server side: capture and scope
//!
//! ```
//! use threadline::{Context, Policy, Trust};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let policy = Policy::builder().header("x-tenant-id").build().unwrap();
//!
//! let mut request = http::HeaderMap::new();
//! request.insert("x-correlation-id", "req-7".parse().unwrap());
//! request.insert("x-tenant-id", "acme".parse().unwrap());
//!
//! let ctx = policy.capture(&request, Trust::Trusted).context;
//! ctx.scope(async {
//!     threadline::bind("user.id", "alice");
//!     let background = threadline::spawn(async {
//!         Context::current().field("user.id").map(str::to_owned)
//!     });
//!     assert_eq!(background.await.unwrap().as_deref(), Some("alice"));
//!     assert_eq!(Context::current().get("x-tenant-id"), Some("acme"));
//! }).await;
//! # }
//! ```
//!
//! # Client side: inject
//!
//! ```
//! use threadline::{Context, Policy, Trust};
//!
//! let policy = Policy::builder().header("x-tenant-id").build().unwrap();
//! let mut inbound = http::HeaderMap::new();
//! inbound.insert("x-tenant-id", "acme".parse().unwrap());
//! let ctx = policy.capture(&inbound, Trust::Trusted).context;
//!
//! let mut outgoing = http::HeaderMap::new();
//! ctx.inject(&mut outgoing);
//! assert_eq!(outgoing["x-tenant-id"], "acme");
//! assert!(outgoing.contains_key("traceparent"));
//! assert!(outgoing.contains_key("x-correlation-id"));
//! ```
//!
//! # Types at a glance
//!
//! The common ones in one import: `use threadline::prelude::*;` ([`prelude`]); the
//! functions below are called by path (`threadline::bind`, `threadline::spawn`).
//!
//! | what | items |
//! |---|---|
//! | the policy: which headers, how checked, what is trusted | [`Policy`], [`PolicyBuilder`], [`HeaderRule`], [`Validator`], [`DefaultValue`], [`Limits`], [`B3Emit`], [`UntrustedBaggage`], [`Trust`], [`PolicyError`] ([`PolicyErrorKind`]); from files: [`PolicyConfig`], [`FormatName`] (a `[trace]` format), [`ConfigError`] ([`ConfigErrorKind`]); names: [`CREDENTIALS`], [`HOP_BY_HOP`], [`names`] |
//! | capture (carrier → context) and what it dropped | [`Captured`], [`Report`], [`Rejection`], [`Reason`] |
//! | routing by context: the key that sends work to a developer's copy of a service | [`RoutingKey`], [`Routing`], [`RoutingForm`] |
//! | the context | [`Context`], [`TraceContext`], [`IdOrigin`], [`FieldValue`], [`InvalidFieldName`], [`InvalidHeader`], [`MAX_FIELD_BYTES`], [`MAX_FIELD_NAME_BYTES`] |
//! | the scope and hand-over to tasks | [`bind`], [`try_bind`], [`set_header`], [`try_set_header`], [`BindError`], [`spawn`], [`spawn_blocking`], [`InCurrentContext`], [`Scoped`], [`NoContext`] |
//! | on the way out (context → carrier) | [`inject_current`], [`inject`] (`Outgoing`) |
//! | consumers of messages, jobs, tasks | [`Restorer`], [`RestoreStats`], [`restore`] (`Message`) |
//! | carriers | [`Extractor`], [`Injector`], [`MessageHeaders`], [`CarrierKind`], [`CarrierValue`], [`carrier`], [`json`] |
//! | wire formats | [`codec`] (traceparent, tracestate, baggage, B3, correlation ids), [`format`](mod@format) (pluggable formats) |
//!
//! # Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `serde` | yes | [`Policy::from_toml`] and `serde` for [`PolicyConfig`] |
//! | `json` | yes | [`json::JsonCarrier`], [`json::Envelope`]: context under one key of a JSON payload |
//! | `opentelemetry` | no | [`format`](mod@format)`::OtelFormat`: any OpenTelemetry `TextMapPropagator` as a Threadline format |

#![deny(unreachable_pub)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod capture;
pub mod carrier;
pub mod codec;
#[cfg(feature = "serde")]
mod config;
mod context;
pub mod format;
pub mod inject;
#[cfg(feature = "json")]
pub mod json;
pub mod names;
mod policy;
pub mod prelude;
pub mod restore;
mod scope;

pub use capture::{Captured, Reason, Rejection, Report};
pub use carrier::{CarrierKind, CarrierValue, Extractor, Injector, MessageHeaders};
pub use codec::RoutingKey;
#[cfg(feature = "serde")]
pub use config::{ConfigError, ConfigErrorKind, FormatName, PolicyConfig};
pub use context::{
    Context, FieldValue, IdOrigin, InvalidFieldName, InvalidHeader, MAX_FIELD_BYTES,
    MAX_FIELD_NAME_BYTES, TraceContext,
};
pub use inject::inject_current;
pub use policy::{
    B3Emit, CREDENTIALS, DefaultValue, HOP_BY_HOP, HeaderRule, Limits, Policy, PolicyBuilder,
    PolicyError, PolicyErrorKind, Routing, RoutingForm, Trust, UntrustedBaggage, Validator,
};
pub use restore::{Restorer, Stats as RestoreStats};
pub use scope::{
    BindError, InCurrentContext, NoContext, Scoped, bind, set_header, spawn, spawn_blocking,
    try_bind, try_set_header,
};
