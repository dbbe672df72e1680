//! Tower layers for [Threadline](threadline): capture request context on the way in,
//! forward it on the way out.
//!
//! One line on the server ([`ThreadlineLayer`]) and one on each client
//! ([`PropagateLayer`], or [`PropagateMiddleware`] for `reqwest-middleware`). The
//! common types in one import: `use threadline_tower::prelude::*;` ([`prelude`]).
//!
//! Local defaults in one line each: [`TrustPolicy::private_networks`] (trust callers on
//! loopback and private networks; [`TrustPolicy::loopback`] for this machine only) and
//! [`Targets::internal`] (propagate to loopback, cluster and compose names and private
//! IPs; [`Targets::local`] for loopback only).
//!
//! # Server: axum
//!
//! ```
//! use axum::{Extension, Router, routing::get};
//! use threadline::{Context, Policy};
//! use threadline_tower::{ThreadlineLayer, TrustPolicy};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let policy = Policy::builder().header("x-tenant-id").build().unwrap();
//! let app: Router = Router::new()
//!     .route("/", get(|Extension(ctx): Extension<Context>| async move {
//!         // The same context is current for the whole handler.
//!         assert_eq!(Context::current().correlation_id(), ctx.correlation_id());
//!         format!("tenant={}", ctx.get("x-tenant-id").unwrap_or("-"))
//!     }))
//!     .layer(ThreadlineLayer::new(policy).trust(TrustPolicy::peer_in(["10.0.0.0/8"]).unwrap()));
//!
//! let req = http::Request::builder()
//!     .uri("/")
//!     .header("x-correlation-id", "req-7")
//!     .body(axum::body::Body::empty())
//!     .unwrap();
//! let resp = app.oneshot(req).await.unwrap();
//! assert_eq!(resp.headers()["x-correlation-id"], "req-7");
//! # }
//! ```
//!
//! With hyper, wrap the service (`ServiceBuilder::new().layer(..).service(..)`) and
//! hand it to hyper-util's `TowerToHyperService`; with tonic, use
//! `Server::builder().layer(ThreadlineLayer::new(policy))`.
//!
//! # Client: any `Service<http::Request<B>>`
//!
//! ```
//! use threadline::Policy;
//! use threadline_tower::{PropagateLayer, Target, Targets};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let targets = Targets::new()
//!     .allow(Target::host("*.svc.internal"))
//!     .others_traceparent_only();
//! // In a real service: hyper_util::client::legacy::Client, or a tonic Channel.
//! let client = ServiceBuilder::new()
//!     .layer(PropagateLayer::new(targets))
//!     .service(service_fn(|req: http::Request<()>| async move {
//!         Ok::<_, std::convert::Infallible>(req.headers().clone())
//!     }));
//!
//! let ctx = Policy::default().new_root();
//! let sent = ctx.clone().scope(async {
//!     let req = http::Request::get("http://orders.svc.internal/").body(()).unwrap();
//!     client.oneshot(req).await.unwrap()
//! }).await;
//! assert_eq!(sent["x-correlation-id"], ctx.correlation_id().unwrap().as_str());
//! # }
//! ```
//!
//! The layer goes directly around the client, with nothing between your code and it
//! that hands the request to another task (`tower::buffer`): see
//! [where the layer goes](client#where-the-layer-goes). To keep the stack in axum
//! state, its type is `Propagate<Client<HttpConnector, B>>`
//! (hyper-util's `client::legacy::Client` and `connect::HttpConnector`, `B` the
//! request body, `String` say), or [`Propagate`] around your own stack's type.
//!
//! # HTTP-pushed tasks (Cloud Tasks, Pub/Sub push, a queue of your own)
//!
//! A push queue calls your endpoint later with the headers you gave it when you created
//! the task. Give it, from inside the request's scope, the headers the client layer
//! would send to the task's URL ([`PropagateLayer::inject`]): the context is taken when
//! the task is created, and the [`Targets`] decide what that URL may receive.
//!
//! ```
//! use http::{HeaderMap, Uri};
//! use threadline::Policy;
//! use threadline_tower::{PropagateLayer, Target, Targets};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let policy = Policy::builder().header("x-tenant-id").fields_over_http(true).build().unwrap();
//! let push = PropagateLayer::new(Targets::new().allow(Target::host("worker.internal")));
//! let url: Uri = "https://worker.internal/tasks/invoice".parse().unwrap();
//!
//! // In the request handler (here a new root stands in for the request's context):
//! let ctx = policy.new_root();
//! let task_headers = ctx.clone().scope(async {
//!     threadline::bind("user.id", "alice");
//!     let mut headers = HeaderMap::new();
//!     push.inject(&url, &mut headers);
//!     headers // store with the task (Cloud Tasks: `HttpRequest.headers`)
//! }).await;
//! assert_eq!(task_headers["x-correlation-id"], ctx.correlation_id().unwrap().as_str());
//! assert!(task_headers["traceparent"].to_str().unwrap().contains(&ctx.trace_id().unwrap().to_string()));
//! assert_eq!(task_headers["tl-field-user.id"], "alice");
//! # }
//! ```
//!
//! The task endpoint, behind [`ThreadlineLayer`], then runs with the same correlation
//! id and trace id, and the task's own parent id (each task is a new hop).
//!
//! - **Local fields** (`user.id`) travel as `tl-field-<name>` headers, which go on
//!   HTTP only with the policy's `fields_over_http(true)`, and which the server layer
//!   accepts only from a trusted caller. Trust the queue, not the internet: check its
//!   token with [`TrustPolicy::shared_secret`] or [`TrustPolicy::custom`] (or its
//!   network with [`TrustPolicy::peer_in`]), and strip that header at the edge.
//! - **Scheduled or periodic tasks** started outside any request create the task
//!   inside `policy.new_root().scope(..)`: each run gets a new correlation id and a new
//!   trace. (A scheduler that calls the endpoint itself can instead use
//!   [`PropagateLayer::new_trace_outside_scope`].)
//! - **A dispatcher of your own** sends the stored headers as they are, through any
//!   client: outside a scope the client layer leaves a request untouched, and inside
//!   one it never overwrites a header already set.
//!
//! `tests/http_push.rs` runs the whole path on 127.0.0.1: an axum handler enqueues, a
//! dispatcher posts through a hyper-util client, the endpoint checks what it sees.
//!
//! # What goes where: every public item at a glance
//!
//! | piece | module |
//! |---|---|
//! | [`ThreadlineLayer`] and its service [`Threadline`] (future [`ThreadlineResponseFuture`]): capture, scope, echo, optional request span; what it warns about | [`server`] |
//! | [`TrustPolicy`]: peer IP in CIDR list ([`IpNet`], [`InvalidIpNet`]), private networks, shared secret, always, never, closure; [`InvalidTrustPolicy`] ([`TrustPolicyErrorKind`]); the peer address: [`PeerAddr`], [`peer_ip`] | [`trust`] |
//! | [`RequireCorrelationIdLayer`], [`RequireCorrelationId`], [`RequireBody`]: opt-in 400 without a valid correlation id | [`require`] |
//! | [`PropagateLayer`] and its service [`Propagate`]: inject on outgoing requests; where the layer goes; [`MAX_WARNED_HOSTS`] | [`client`] |
//! | [`Targets`], [`Target`], [`Grant`] ([`Credential`], [`InvalidGrant`]): which destination receives what | [`targets`] |
//! | [`PropagateMiddleware`]: the same for `reqwest-middleware` (feature `reqwest`) | `reqwest` |
//! | [`RouteLayer`] and its service [`Route`] (future [`RouteFuture`], error [`RouteError`]): send calls whose context carries a routed key to the rule's upstream (feature `route`, threadline-route); [`RouteMiddleware`], the same for `reqwest-middleware` (features `route` and `reqwest`); gRPC: a tonic client over a per-URI client with the layer (a `Channel` is bound to one endpoint) | `route`, `reqwest` |
//! | the common types in one import | [`prelude`] |
//!
//! # Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `axum` | no | peer IP from `ConnectInfo<SocketAddr>`, span route from `MatchedPath` |
//! | `tonic` | no | peer IP from tonic's `TcpConnectInfo` |
//! | `reqwest` | no | [`PropagateMiddleware`] for `reqwest-middleware` (no TLS stack pulled in) |
//! | `route` | no | [`RouteLayer`]: routing by context through a threadline-route `Router` |
//!
//! Without features, the peer IP is read from a `SocketAddr` or [`PeerAddr`] extension.

#![deny(unreachable_pub)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod client;
pub mod prelude;
pub mod require;
#[cfg(feature = "reqwest")]
pub mod reqwest;
#[cfg(feature = "route")]
pub mod route;
pub mod server;
pub mod targets;
pub mod trust;

pub use client::{MAX_WARNED_HOSTS, Propagate, PropagateLayer};
pub use require::{RequireBody, RequireCorrelationId, RequireCorrelationIdLayer};
#[cfg(feature = "reqwest")]
pub use reqwest::PropagateMiddleware;
#[cfg(all(feature = "reqwest", feature = "route"))]
pub use reqwest::RouteMiddleware;
#[cfg(feature = "route")]
pub use route::{Route, RouteError, RouteFuture, RouteLayer};
pub use server::{Threadline, ThreadlineLayer, ThreadlineResponseFuture};
pub use targets::{Credential, Grant, InvalidGrant, Target, Targets};
pub use trust::{
    InvalidIpNet, InvalidTrustPolicy, IpNet, PeerAddr, TrustPolicy, TrustPolicyErrorKind, peer_ip,
};
