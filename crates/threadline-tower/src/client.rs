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
//!
//! # Where the layer goes
//!
//! The layer reads the context of the task that calls it. Put it where the request's
//! own task calls it: directly around the client (hyper-util's `Client`, a tonic
//! `Channel`), with nothing between your code and it that hands the request to another
//! task. Layers that do — `tower::buffer::Buffer`, a pool or load balancer that spawns,
//! anything that queues requests for a worker task — must sit *below* it, closer to the
//! client (`ServiceBuilder::new().layer(PropagateLayer::new(..)).buffer(8)`, not the
//! other way round). When that cannot be arranged, put the request's context into its
//! extensions, which wins over the task's:
//!
//! ```
//! # use http::Request;
//! # use threadline::Context;
//! let mut req = Request::get("http://orders.internal/").body(()).unwrap();
//! req.extensions_mut().insert(Context::current());
//! ```
//!
//! A request that leaves with no context at all (outside any scope, or below such a
//! layer) is said once per layer, at debug level. A call made inside a scope to a
//! destination no [`Target`](crate::Target) names gets only the targets' fallback
//! grant (nothing, by default): that is said once per host at warn level, naming the
//! rule to add (for at most [`MAX_WARNED_HOSTS`] hosts).

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    notes: Arc<Notes>,
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
                notes: Arc::default(),
            }),
        }
    }

    /// Outside any scope, start a new trace (a fresh correlation id and root trace
    /// from `policy`) for each request instead of passing it through untouched.
    pub fn new_trace_outside_scope(mut self, policy: Policy) -> Self {
        Arc::make_mut(&mut self.shared).outside = Some(policy);
        self
    }

    /// The grant for a request to `uri` with `headers`, and whether it is the targets'
    /// fallback because no rule named the destination.
    fn grant<'a>(&'a self, uri: &Uri, headers: &HeaderMap) -> (&'a Grant, bool) {
        match &self.shared.dest {
            Destination::Fixed(g) => (g, false),
            Destination::ByUri(targets) => {
                let grant = match uri.authority() {
                    Some(a) => targets.grant_for_authority(uri.scheme_str(), Some(a)),
                    None => targets.grant_for_authority(None, host_header(headers).as_ref()),
                };
                let unmatched = targets.has_rules() && std::ptr::eq(grant, targets.fallback());
                (grant, unmatched)
            }
        }
    }

    /// Says once per host (bounded) that an in-scope call goes to a destination no
    /// target allows, unless the fallback grants everything anyway.
    fn note_unmatched(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        grant: &Grant,
        explicit: Option<&Context>,
    ) {
        if grant.allows_everything() {
            return;
        }
        let in_scope = explicit.is_some() || Context::with_current(|_| ()).is_some();
        if !in_scope {
            return;
        }
        let authority = uri.authority().cloned().or_else(|| host_header(headers));
        self.shared
            .notes
            .unmatched(authority.as_ref().map(|a| a.host()), grant);
    }

    /// Writes the current context (or a new root, see
    /// [`PropagateLayer::new_trace_outside_scope`]) into `headers` for a request to
    /// `uri`. What the layer does per request; public for clients that are not Tower
    /// services.
    pub fn inject(&self, uri: &Uri, headers: &mut HeaderMap) {
        let (grant, unmatched) = self.grant(uri, headers);
        if unmatched {
            self.note_unmatched(uri, headers, grant, None);
        }
        let shared = &*self.shared;
        inject_with(grant, None, shared.outside.as_ref(), &shared.notes, headers);
    }
}

/// The `host` header as an authority (for a request whose URI has none).
fn host_header(headers: &HeaderMap) -> Option<http::uri::Authority> {
    headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
}

/// What a client layer has already said, so each thing is said once: a request that
/// left outside any scope (debug), and destinations no target allows (warn, once per
/// host, for at most [`MAX_WARNED_HOSTS`] hosts).
#[derive(Debug, Default)]
pub(crate) struct Notes {
    outside_logged: AtomicBool,
    warned_hosts: Mutex<HashSet<String>>,
}

/// Most destination hosts a client layer warns about (then it stops: a client that
/// calls thousands of hosts should not fill the log, or memory, with them).
pub const MAX_WARNED_HOSTS: usize = 64;

impl Notes {
    fn outside_scope(&self) {
        if !self.outside_logged.swap(true, Ordering::Relaxed) {
            tracing::debug!(
                "threadline: an outgoing request left outside any context scope and carries \
                 no context; if it was made inside a request, the client layer sits below a \
                 layer that calls it from another task (tower::buffer, a spawned worker): \
                 put the request's Context in its extensions or move the layer above it"
            );
        }
    }

    fn unmatched(&self, host: Option<&str>, fallback: &Grant) {
        let host = host.unwrap_or("(no host)");
        let mut warned = self
            .warned_hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if warned.len() >= MAX_WARNED_HOSTS || warned.contains(host) {
            return;
        }
        warned.insert(host.to_owned());
        drop(warned);
        let sent = if fallback.is_nothing() {
            "no context at all"
        } else {
            "only what the targets' fallback grants (traceparent only by default)"
        };
        tracing::warn!(
            destination = host,
            "threadline: no propagation target allows {host}: calls to it carry {sent}; \
             if it is one of your services, add `Target::host(\"{host}\")` (or a pattern) \
             to the Targets, or start from `Targets::internal()` (loopback, cluster names, \
             private IPs)"
        );
    }
}

/// Injects the context into `headers` under `grant`: `explicit` (a `Context` the
/// request carries in its extensions) when given, else the current one, else a new
/// root when `outside` is set.
pub(crate) fn inject_with(
    grant: &Grant,
    explicit: Option<&Context>,
    outside: Option<&Policy>,
    notes: &Notes,
    headers: &mut HeaderMap,
) {
    if grant.is_nothing() {
        return;
    }
    if let Some(ctx) = explicit {
        ctx.inject_where(headers, |n| grant.allows(n));
        return;
    }
    let done = Context::with_current(|ctx| {
        ctx.inject_where(headers, |n| grant.allows(n));
    });
    if done.is_none() {
        match outside {
            Some(policy) => {
                policy.new_root().inject_where(headers, |n| grant.allows(n));
            }
            None => notes.outside_scope(),
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
        // A context the request carries wins over the task's: below `tower::buffer` (or
        // anything that calls this service from another task) the task has none. The
        // grant borrows the layer, not the request: decided first, then the headers are
        // written in place (no split into parts and back, which moves the request).
        let explicit = req.extensions().get::<Context>().cloned();
        let layer = &self.layer;
        let (grant, unmatched) = layer.grant(req.uri(), req.headers());
        if unmatched {
            layer.note_unmatched(req.uri(), req.headers(), grant, explicit.as_ref());
        }
        let shared = &*layer.shared;
        inject_with(
            grant,
            explicit.as_ref(),
            shared.outside.as_ref(),
            &shared.notes,
            req.headers_mut(),
        );
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
        let layer = PropagateLayer::fixed(Grant::only(["x-tenant-id"]).unwrap())
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
                Grant::all().with_credentials([crate::Credential::Authorization]),
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
            .grant(
                Target::host("[::1]").port(80),
                Grant::only(["x-tenant-id"]).unwrap(),
            )
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
        let svc = echo_headers(PropagateLayer::fixed(Grant::only(["x-tenant-id"]).unwrap()));
        let sent = ctx()
            .scope(async { svc.oneshot(Request::new(())).await.unwrap() })
            .await;
        assert_eq!(sent.len(), 1);
        assert_eq!(sent["x-tenant-id"], "acme");
    }
}
