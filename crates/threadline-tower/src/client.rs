//! The client layer: write the current context onto outgoing requests.
//!
//! Wraps any `Service<http::Request<B>>`: hyper-util's legacy `Client`, a tonic
//! `Channel`, a tower stack of your own. Each outgoing request gets, as far as the
//! [`Targets`] allow for its destination: the correlation id, a child `traceparent`
//! (same trace id, a new parent id per call), `tracestate`, `baggage` and the custom
//! headers under their outbound (renamed) names. A header the caller already set is
//! never overwritten. Outside any scope the request passes through untouched, or
//! starts a new trace with [`PropagateLayer::new_trace_outside_scope`].
//!
//! ```
//! use http::{HeaderMap, Request, Response};
//! use threadline::{Policy, Trust};
//! use threadline_tower::{PropagateLayer, Target, Targets};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // Stands in for hyper-util's Client: answers with the headers it was sent.
//! let client = ServiceBuilder::new()
//!     .layer(PropagateLayer::new(Targets::new().allow(Target::host("*.internal"))))
//!     .service(service_fn(|req: Request<()>| async move {
//!         Ok::<_, std::convert::Infallible>(Response::new(req.headers().clone()))
//!     }));
//!
//! let policy = Policy::builder().header("x-tenant-id").build().unwrap();
//! let mut inbound = HeaderMap::new();
//! inbound.insert("x-tenant-id", "acme".parse().unwrap());
//! let ctx = policy.capture(&inbound, Trust::Trusted).context;
//!
//! let sent: HeaderMap = ctx.clone().scope(async {
//!     let req = Request::get("http://orders.internal/x").body(()).unwrap();
//!     client.clone().oneshot(req).await.unwrap().into_body()
//! }).await;
//! assert_eq!(sent["x-tenant-id"], "acme");
//!
//! let outside: HeaderMap = ctx.scope(async {
//!     let req = Request::get("https://api.example.com/").body(()).unwrap();
//!     client.clone().oneshot(req).await.unwrap().into_body()
//! }).await;
//! assert!(outside.is_empty()); // not an allowed destination
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};

use http::{HeaderMap, Request, Uri};
use threadline::{Context, Policy};
use tower_layer::Layer;
use tower_service::Service;

use crate::targets::{Grant, Targets};

#[derive(Clone, Debug)]
enum Destination {
    ByUri(Targets),
    Fixed(Grant),
}

/// Writes the current context onto outgoing requests. See the [module docs](self).
///
/// Cheap to clone (one reference count): clients are often cloned per request, and
/// every clone of a [`Propagate`] service clones its layer.
#[derive(Clone, Debug)]
pub struct PropagateLayer {
    shared: Arc<Shared>,
}

#[derive(Clone, Debug)]
struct Shared {
    dest: Destination,
    outside: Option<Policy>,
}

impl PropagateLayer {
    /// Decides per request from its URI (scheme, host, port) through `targets`. A URI
    /// without a host (a request built for a connection-bound client) is looked up
    /// by its `host` header, and failing that gets the targets' fallback grant.
    pub fn new(targets: Targets) -> Self {
        PropagateLayer::with(Destination::ByUri(targets))
    }

    /// For a client bound to one known destination (a tonic `Channel` to one of
    /// your services): every request gets `grant`, whatever its URI.
    pub fn fixed(grant: Grant) -> Self {
        PropagateLayer::with(Destination::Fixed(grant))
    }

    fn with(dest: Destination) -> Self {
        PropagateLayer {
            shared: Arc::new(Shared {
                dest,
                outside: None,
            }),
        }
    }

    /// Outside any scope, start a new trace (a fresh correlation id and root trace
    /// from `policy`) for each request instead of passing it through untouched.
    pub fn new_trace_outside_scope(mut self, policy: Policy) -> Self {
        Arc::make_mut(&mut self.shared).outside = Some(policy);
        self
    }

    /// The grant for a request to `uri` with `headers`.
    fn grant<'a>(&'a self, uri: &Uri, headers: &HeaderMap) -> &'a Grant {
        match &self.shared.dest {
            Destination::Fixed(g) => g,
            Destination::ByUri(targets) => match uri.authority() {
                Some(a) => targets.grant_for_authority(uri.scheme_str(), Some(a.as_str())),
                None => {
                    let authority = headers
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .and_then(|h| h.parse::<http::uri::Authority>().ok());
                    targets.grant_for_authority(None, authority.as_ref().map(|a| a.as_str()))
                }
            },
        }
    }

    /// Writes the current context (or a new root, see
    /// [`PropagateLayer::new_trace_outside_scope`]) into `headers` for a request to
    /// `uri`. What the layer does per request; public for clients that are not Tower
    /// services.
    pub fn inject(&self, uri: &Uri, headers: &mut HeaderMap) {
        let grant = self.grant(uri, headers);
        inject_with(grant, self.shared.outside.as_ref(), headers);
    }
}

/// Injects the current context into `headers` under `grant`.
pub(crate) fn inject_with(grant: &Grant, outside: Option<&Policy>, headers: &mut HeaderMap) {
    if grant.is_nothing() {
        return;
    }
    let done = Context::with_current(|ctx| {
        ctx.inject_where(headers, |n| grant.allows(n));
    });
    if done.is_none() {
        if let Some(policy) = outside {
            policy.new_root().inject_where(headers, |n| grant.allows(n));
        }
    }
}

impl<S> Layer<S> for PropagateLayer {
    type Service = Propagate<S>;

    fn layer(&self, inner: S) -> Propagate<S> {
        Propagate {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`PropagateLayer`].
#[derive(Clone)]
pub struct Propagate<S> {
    inner: S,
    layer: PropagateLayer,
}

impl<S: fmt::Debug> fmt::Debug for Propagate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Propagate")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S> Propagate<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, layer: PropagateLayer) -> Self {
        Propagate { inner, layer }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B> Service<Request<B>> for Propagate<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut TaskCx<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> S::Future {
        // The grant borrows the layer, not the request: decided first, then the headers
        // are written in place (no split into parts and back, which moves the request).
        let grant = self.layer.grant(req.uri(), req.headers());
        inject_with(grant, self.layer.shared.outside.as_ref(), req.headers_mut());
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::Target;
    use std::convert::Infallible;
    use threadline::Trust;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    fn echo_headers(
        layer: PropagateLayer,
    ) -> impl Service<Request<()>, Response = HeaderMap, Error = Infallible> + Clone {
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|req: Request<()>| async move {
                Ok::<_, Infallible>(req.headers().clone())
            }))
    }

    fn ctx() -> Context {
        let policy = Policy::builder()
            .header("x-tenant-id")
            .header("authorization")
            .build()
            .unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-tenant-id", "acme".parse().unwrap());
        h.insert("authorization", "Bearer secret".parse().unwrap());
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        policy.capture(&h, Trust::Trusted).context
    }

    /// A client stack is often cloned per request: the layer's grants and targets are
    /// shared, not copied (a `Grant::only` list was cloned, and allocated, each time).
    #[test]
    fn clones_share_the_configuration() {
        let layer = PropagateLayer::fixed(Grant::only(["x-tenant-id"]))
            .new_trace_outside_scope(Policy::default());
        let svc = Propagate::new((), layer.clone());
        let copy = svc.clone();
        assert!(Arc::ptr_eq(&layer.shared, &copy.layer.shared));
        // Configuring a shared layer leaves the other holders as they were.
        let plain = PropagateLayer::fixed(Grant::all());
        let configured = plain.clone().new_trace_outside_scope(Policy::default());
        assert!(plain.shared.outside.is_none());
        assert!(configured.shared.outside.is_some());
    }

    #[tokio::test]
    async fn outside_scope_passes_through_or_starts_a_trace() {
        let svc = echo_headers(PropagateLayer::new(Targets::everywhere()));
        let sent = svc.oneshot(Request::new(())).await.unwrap();
        assert!(sent.is_empty());

        let svc = echo_headers(
            PropagateLayer::new(Targets::everywhere()).new_trace_outside_scope(Policy::default()),
        );
        let sent = svc.oneshot(Request::new(())).await.unwrap();
        assert!(sent.contains_key("traceparent"));
        assert!(sent.contains_key("x-correlation-id"));
    }

    #[tokio::test]
    async fn never_overwrites_and_new_parent_per_call() {
        let svc = echo_headers(PropagateLayer::new(Targets::everywhere()));
        let c = ctx();
        let (a, b, mine) = c
            .scope(async {
                let a = svc.clone().oneshot(Request::new(())).await.unwrap();
                let b = svc.clone().oneshot(Request::new(())).await.unwrap();
                let req = Request::builder()
                    .header("x-tenant-id", "caller-set")
                    .body(())
                    .unwrap();
                let mine = svc.clone().oneshot(req).await.unwrap();
                (a, b, mine)
            })
            .await;
        let (ta, tb) = (
            a["traceparent"].to_str().unwrap(),
            b["traceparent"].to_str().unwrap(),
        );
        assert_eq!(&ta[..35], &tb[..35], "same trace id");
        assert_ne!(ta, tb, "new parent id per call");
        assert!(!ta.contains("00f067aa0ba902b7"));
        assert_eq!(mine["x-tenant-id"], "caller-set");
        assert!(!a.contains_key("authorization"), "credentials not named");
    }

    /// What `svc` sends for a GET of `uri` made inside `ctx()`.
    async fn send_in_context<S>(svc: S, uri: &'static str) -> HeaderMap
    where
        S: Service<Request<()>, Response = HeaderMap, Error = Infallible>,
    {
        ctx()
            .scope(async move {
                let req = Request::get(uri).body(()).unwrap();
                svc.oneshot(req).await.unwrap()
            })
            .await
    }

    #[tokio::test]
    async fn grants_by_destination() {
        let targets = Targets::new()
            .grant(
                Target::host("auth.internal"),
                Grant::all().with_credentials(["authorization"]),
            )
            .allow(Target::host("*.internal"))
            .others_traceparent_only();
        let svc = echo_headers(PropagateLayer::new(targets));
        let send = |uri: &'static str| send_in_context(svc.clone(), uri);
        let auth = send("http://auth.internal/").await;
        assert_eq!(auth["authorization"], "Bearer secret");
        let internal = send("http://orders.internal/").await;
        assert_eq!(internal["x-tenant-id"], "acme");
        assert!(!internal.contains_key("authorization"));
        let outside = send("https://example.com/").await;
        assert_eq!(outside.len(), 1, "{outside:?}");
        assert!(outside.contains_key("traceparent"));
        // No host in the URI: the Host header decides.
        let c = ctx();
        let by_host = c
            .scope(async {
                let req = Request::get("/x")
                    .header("host", "orders.internal:8080")
                    .body(())
                    .unwrap();
                svc.clone().oneshot(req).await.unwrap()
            })
            .await;
        assert_eq!(by_host["x-tenant-id"], "acme");
    }

    #[tokio::test]
    async fn grants_by_port_scheme_and_userinfo() {
        let targets = Targets::new()
            .allow(Target::host("orders.internal").scheme("https").port(8443))
            .grant(Target::host("[::1]").port(80), Grant::only(["x-tenant-id"]))
            .others_traceparent_only();
        let svc = echo_headers(PropagateLayer::new(targets));
        let send = |uri: &'static str| send_in_context(svc.clone(), uri);
        let full =
            |h: &HeaderMap| h.contains_key("x-tenant-id") && h.contains_key("x-correlation-id");
        assert!(full(&send("https://orders.internal:8443/").await));
        assert!(full(&send("https://user:pw@ORDERS.internal:8443/x").await));
        // Wrong port, wrong scheme, no port (https means 443): traceparent only.
        for uri in [
            "https://orders.internal:8444/",
            "http://orders.internal:8443/",
            "https://orders.internal/",
        ] {
            let sent = send(uri).await;
            assert_eq!(sent.len(), 1, "{uri}: {sent:?}");
            assert!(sent.contains_key("traceparent"), "{uri}");
        }
        // An IPv6 literal, its port implied by the scheme.
        let v6 = send("http://[::1]/").await;
        assert_eq!(v6.len(), 1, "{v6:?}");
        assert_eq!(v6["x-tenant-id"], "acme");
    }

    #[tokio::test]
    async fn fixed_destination() {
        let svc = echo_headers(PropagateLayer::fixed(Grant::only(["x-tenant-id"])));
        let sent = ctx()
            .scope(async { svc.oneshot(Request::new(())).await.unwrap() })
            .await;
        assert_eq!(sent.len(), 1);
        assert_eq!(sent["x-tenant-id"], "acme");
    }
}
