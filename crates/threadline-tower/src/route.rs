//! The route layer: send a call whose context carries a routed key to the rule's
//! upstream instead of its destination.
//!
//! Consults a [`Router`] (threadline-route) with the call's destination host and port,
//! the context's [`RoutingKey`](threadline::RoutingKey) (the request's own `Context`
//! extension, else the current one) and the request head (method, path, headers, for
//! the rule's conditions). When a rule matches, the request URI's scheme and
//! authority become the rule's upstream (path and query kept; a `host` header the
//! caller set is left as it is), an INFO event `call routed` names the route
//! (`route=<rule id>`, `upstream=`, `service=`), and, on demand
//! ([`RouteLayer::response_header`]), the response carries the rule's id. A call with
//! no key, or no rule, goes where it was going: a table read and nothing else.
//!
//! Put it *inside* [`PropagateLayer`](crate::PropagateLayer) (closer to the client),
//! so the context is written for the service the call was meant for and the
//! developer's copy receives what the baseline would:
//!
//! ```
//! use http::{Request, Response};
//! use threadline::{Policy, Routing, RoutingKey};
//! use threadline_route::{Router, Rule, Upstream};
//! use threadline_tower::{PropagateLayer, RouteLayer, Targets};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let router = Router::new();
//! router.set_rules("code", vec![
//!     Rule::new("alice", "warehouse", ["alice"], Upstream::parse("http://127.0.0.1:9001").unwrap()).unwrap(),
//! ]).unwrap();
//! let client = ServiceBuilder::new()
//!     .layer(PropagateLayer::new(Targets::everywhere()))
//!     .layer(RouteLayer::new(router).response_header(http::HeaderName::from_static("x-route")))
//!     // Stands in for hyper-util's Client: answers with the URI it was asked for.
//!     .service(service_fn(|req: Request<()>| async move {
//!         Ok::<_, std::convert::Infallible>(Response::new(req.uri().to_string()))
//!     }));
//!
//! let policy = Policy::builder().routing(Routing::header("x-routing-key")).build().unwrap();
//! let ctx = policy.new_root().with_routing_key(RoutingKey::new("alice").unwrap());
//! let resp = ctx.scope(async {
//!     client.oneshot(Request::get("http://warehouse/stock/7").body(()).unwrap()).await.unwrap()
//! }).await;
//! assert_eq!(resp.body(), "http://127.0.0.1:9001/stock/7");
//! assert_eq!(resp.headers()["x-route"], "alice");
//! # }
//! ```
//!
//! # reqwest and gRPC
//!
//! For `reqwest-middleware`, [`RouteMiddleware`](crate::RouteMiddleware) does the same
//! (features `route` and `reqwest`). For gRPC, a tonic `Channel` is bound to one
//! endpoint and cannot be pointed elsewhere per call: build the tonic client over a
//! client that connects per URI, with this layer inside `PropagateLayer`
//! (`tonic::client::Grpc::with_origin(service, origin)` with `service` =
//! `PropagateLayer` → `RouteLayer` → hyper-util's `Client` with `http2_only(true)`), as
//! `tests/chain.rs` does.
//!
//! # When the upstream fails
//!
//! The error is the client's own, wrapped in a [`RouteError`] that names the route
//! and the upstream in its message (`connection refused (route alice to
//! http://127.0.0.1:9001)`): a developer's copy that is down is never replaced by a
//! silent call to the baseline. A rule marked `fallback` says so
//! ([`RouteError::allows_fallback`]); the layer itself does not send the call again,
//! as it has handed the request body to the client.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll, ready};

use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use threadline::Context;
use threadline_route::{RequestHead, Router, Rule};
use tower_layer::Layer;
use tower_service::Service;

/// Sends calls whose context carries a routed key to the rule's upstream. See the
/// [module docs](self).
#[derive(Clone, Debug)]
pub struct RouteLayer {
    shared: Arc<Config>,
}

#[derive(Debug)]
struct Config {
    router: Router,
    header: Option<HeaderName>,
}

impl RouteLayer {
    /// Routes by the tables of `router`.
    pub fn new(router: Router) -> Self {
        RouteLayer {
            shared: Arc::new(Config {
                router,
                header: None,
            }),
        }
    }

    /// Set `name: <rule id>` on the responses of routed calls.
    pub fn response_header(self, name: HeaderName) -> Self {
        RouteLayer {
            shared: Arc::new(Config {
                router: self.shared.router.clone(),
                header: Some(name),
            }),
        }
    }

    /// The router consulted.
    pub fn router(&self) -> &Router {
        &self.shared.router
    }

    /// The rule for `req`, if its context carries a key a rule routes. Without a key
    /// nothing else is looked at.
    fn rule_for<B>(&self, req: &Request<B>) -> Option<Arc<Rule>> {
        let lookup = |ctx: &Context| {
            let key = ctx.routing_key()?;
            self.lookup(req, key)
        };
        match req.extensions().get::<Context>() {
            Some(ctx) => lookup(ctx),
            None => Context::with_current(lookup).flatten(),
        }
    }

    fn lookup<B>(&self, req: &Request<B>, key: &threadline::RoutingKey) -> Option<Arc<Rule>> {
        let uri = req.uri();
        let host_header;
        let authority = match uri.authority() {
            Some(a) => a,
            None => {
                host_header = req
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| h.parse::<http::uri::Authority>().ok())?;
                &host_header
            }
        };
        let port = authority.port_u16().or(match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") | None => Some(80),
            _ => None,
        });
        let head = RequestHead::http(req.method(), uri, req.headers());
        self.shared.router.route(authority.host(), port, key, &head)
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Route<S>;

    fn layer(&self, inner: S) -> Route<S> {
        Route {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`RouteLayer`].
#[derive(Clone, Debug)]
pub struct Route<S> {
    inner: S,
    layer: RouteLayer,
}

impl<S> Route<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, layer: RouteLayer) -> Self {
        Route { inner, layer }
    }
}

impl<S, B, ResBody> Service<Request<B>> for Route<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = RouteError<S::Error>;
    type Future = RouteFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut TaskCx<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(RouteError::unrouted)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let rule = self.layer.rule_for(&req);
        if let Some(rule) = &rule {
            let service = req.uri().host().unwrap_or("").to_owned();
            *req.uri_mut() = rule.upstream().rewrite(req.uri());
            tracing::info!(
                target: "threadline_tower",
                route = rule.id(),
                upstream = %rule.upstream(),
                service = %service,
                "call routed"
            );
        }
        RouteFuture {
            inner: self.inner.call(req),
            header: rule
                .is_some()
                .then(|| self.layer.shared.header.clone())
                .flatten(),
            rule,
        }
    }
}

pin_project! {
    /// The response future of [`Route`].
    pub struct RouteFuture<F> {
        #[pin]
        inner: F,
        rule: Option<Arc<Rule>>,
        header: Option<HeaderName>,
    }
}

impl<F> fmt::Debug for RouteFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteFuture")
            .field("rule", &self.rule.as_ref().map(|r| r.id()))
            .finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for RouteFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, RouteError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx));
        Poll::Ready(match res {
            Ok(mut resp) => {
                if let (Some(name), Some(rule)) = (this.header.take(), this.rule.as_ref()) {
                    if let Ok(v) = HeaderValue::from_str(rule.id()) {
                        resp.headers_mut().insert(name, v);
                    }
                }
                Ok(resp)
            }
            Err(inner) => {
                let rule = this.rule.take();
                if let Some(r) = &rule {
                    tracing::warn!(
                        target: "threadline_tower",
                        route = r.id(),
                        upstream = %r.upstream(),
                        "routed call failed"
                    );
                }
                Err(RouteError { inner, rule })
            }
        })
    }
}

/// The client's error, and the route the call took, if it was routed: its message
/// names the route and the upstream.
pub struct RouteError<E> {
    inner: E,
    rule: Option<Arc<Rule>>,
}

impl<E> RouteError<E> {
    fn unrouted(inner: E) -> Self {
        RouteError { inner, rule: None }
    }

    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    pub(crate) fn routed(inner: E, rule: Arc<Rule>) -> Self {
        RouteError {
            inner,
            rule: Some(rule),
        }
    }

    /// The id of the rule the call was routed by, if it was.
    pub fn route(&self) -> Option<&str> {
        self.rule.as_deref().map(Rule::id)
    }

    /// The upstream the call was sent to, if it was routed.
    pub fn upstream(&self) -> Option<&threadline_route::Upstream> {
        self.rule.as_deref().map(Rule::upstream)
    }

    /// Whether the rule allows the caller to send the call to the baseline instead.
    pub fn allows_fallback(&self) -> bool {
        self.rule.as_deref().is_some_and(Rule::allows_fallback)
    }

    /// The client's own error.
    pub fn get_ref(&self) -> &E {
        &self.inner
    }

    /// The client's own error.
    pub fn into_inner(self) -> E {
        self.inner
    }
}

impl<E: fmt::Debug> fmt::Debug for RouteError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteError")
            .field("inner", &self.inner)
            .field("route", &self.route())
            .finish()
    }
}

impl<E: fmt::Display> fmt::Display for RouteError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(r) => write!(f, "{} (route {} to {})", self.inner, r.id(), r.upstream()),
            None => fmt::Display::fmt(&self.inner, f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RouteError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.inner)
    }
}
