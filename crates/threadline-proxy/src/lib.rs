//! `threadline-proxy`: the Threadline policy in front of a service written in any
//! language — the reverse-proxy core of `threadline proxy`, as a library to embed.
//!
//! For each request the proxy decides trust (peer network or shared secret, which is
//! removed), captures the context with the [`Policy`](threadline::Policy) (edge mode
//! replaces an untrusted caller's ids; `trusted_only` headers from untrusted callers
//! and local fields are refused), mints a correlation id and a `traceparent` when
//! absent, chooses the upstream ([`Route`]), removes the hop-by-hop headers and every
//! raw context header, writes the captured context back (a child `traceparent` per
//! hop), forwards with the body streamed, and echoes the correlation id on the
//! response. Upstream down: `502` with the correlation id in the body and header.
//!
//! ```
//! use threadline::Policy;
//! use threadline_proxy::{Proxy, ProxyConfig, Upstream};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // An app that is not there: the proxy answers 502, with the correlation id.
//! let config = ProxyConfig::new(Upstream::new("http://127.0.0.1:9").unwrap())
//!     .listen("127.0.0.1:0".parse().unwrap())
//!     .policy(Policy::builder().header("x-tenant-id").build().unwrap());
//! let running = Proxy::new(config).unwrap().start().await.unwrap();
//!
//! let mut tcp = tokio::net::TcpStream::connect(running.local_addr()).await.unwrap();
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nx-correlation-id: req-7\r\nconnection: close\r\n\r\n")
//!     .await.unwrap();
//! let mut answer = String::new();
//! tcp.read_to_string(&mut answer).await.unwrap();
//! assert!(answer.starts_with("HTTP/1.1 502"));
//! assert!(answer.contains("x-correlation-id: req-7\r\n"));
//! assert!(answer.contains("\"correlation_id\":\"req-7\""));
//! running.shutdown().await;
//! # }
//! ```
//!
//! The same from TOML (the file `threadline proxy --config` reads): see
//! [`ProxyFile`]. Routing by the context's routing key (sandboxes, preview links):
//! `[policy.routing]` says where the key is read from, `[routing]`
//! ([`RoutingConfig`]) where the rules come from (a TOML file reloaded on change, a
//! NATS KV bucket, a Redis hash), and [`KeyRoutes`] does it from code. To route with
//! a table of your own, implement [`Route`] and call [`Proxy::with_route`].
//!
//! # What goes where
//!
//! | piece | file |
//! |---|---|
//! | [`Proxy`], [`Running`]: listeners, limits, timeouts, graceful shutdown | `server.rs` |
//! | the forwarding service: headers, context, upgrades, errors, access log | `forward.rs` |
//! | [`Route`], [`Upstream`], [`RuleTable`], [`Rule`] | `route.rs` |
//! | [`KeyRoutes`], [`RoutingConfig`]: routing by the context's routing key | `keyroute.rs` |
//! | the forward proxy for outgoing calls (propagation targets) | `egress.rs` |
//! | [`Metrics`]: Prometheus text | `metrics.rs` |
//! | [`ProxyConfig`], [`ProxyFile`] | `config.rs` |
//!
//! # Logs
//!
//! The library installs no subscriber. Each request emits one `tracing` event (target
//! `threadline_proxy::access`: `method`, `path`, `status`, `upstream`, `latency_us`,
//! `peer`, `call_id`) inside the request's context: with `threadline_tracing`'s JSON
//! layer it is one JSON line carrying `correlation_id`, `trace_id`, `span_id` and the
//! captured header fields. `call_id` is the parent id sent to the app: the app's own
//! log lines show it as their parent.
//!
//! # Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `tls` | no | TLS on the listener (rustls, `ring`), HTTP/2 by ALPN |
//! | `nats` | no | `[routing.nats]`: route rules from a NATS JetStream key-value bucket (async-nats, no TLS) |
//! | `redis` | no | `[routing.redis]`: route rules from a Redis hash (redis-rs, no TLS) |

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod body;
pub mod config;
mod egress;
mod error;
mod forward;
mod headers;
pub mod keyroute;
pub mod metrics;
pub mod route;
mod server;
#[cfg(feature = "tls")]
mod tls;

pub use config::{EgressConfig, Limits, ProxyConfig, ProxyFile, Timeouts, TlsFiles};
pub use error::{Error, ErrorKind};
pub use keyroute::{KeyRoutes, RoutingConfig};
pub use metrics::Metrics;
pub use route::{RequestHead, Route, Rule, RuleTable, Upstream, UpstreamProtocol};
pub use server::{Proxy, Running};
