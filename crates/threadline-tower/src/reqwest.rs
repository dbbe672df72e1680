//! A [`reqwest_middleware::Middleware`] that writes the current context onto
//! outgoing `reqwest` requests, under the same [`Targets`] rules as the client layer.
//!
//! ```
//! use threadline_tower::{PropagateMiddleware, Target, Targets};
//!
//! let targets = Targets::new().allow(Target::host("*.internal")).others_traceparent_only();
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(PropagateMiddleware::new(targets))
//!     .build();
//! # drop(client);
//! ```

use std::sync::Arc;

use http::Extensions;
use reqwest_middleware::{Middleware, Next, Result};
use threadline::{Context, Policy};

use crate::client::{Notes, inject_with};
use crate::targets::{Grant, Targets};

/// Writes the current context onto outgoing `reqwest` requests (a [`Context`] in the
/// request's middleware extensions wins over the task's). Outside any scope it passes
/// requests through (or starts a new trace, see
/// [`PropagateMiddleware::new_trace_outside_scope`]). A header the caller already set
/// is never overwritten.
#[derive(Clone, Debug)]
pub struct PropagateMiddleware {
    targets: Targets,
    outside: Option<Policy>,
    notes: Arc<Notes>,
}

impl PropagateMiddleware {
    /// Decides per request from its URL (scheme, host, port) through `targets`.
    pub fn new(targets: Targets) -> Self {
        PropagateMiddleware {
            targets,
            outside: None,
            notes: Arc::default(),
        }
    }

    /// Outside any scope, start a new trace from `policy` for each request.
    pub fn new_trace_outside_scope(mut self, policy: Policy) -> Self {
        self.outside = Some(policy);
        self
    }

    fn grant(&self, url: &reqwest::Url) -> &Grant {
        self.targets
            .grant_for(Some(url.scheme()), url.host_str(), url.port())
    }
}

#[async_trait::async_trait]
impl Middleware for PropagateMiddleware {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<reqwest::Response> {
        let grant = self.grant(req.url());
        // A context put in the middleware's extensions wins over the task's.
        let explicit = extensions.get::<Context>().cloned();
        inject_with(
            grant,
            explicit.as_ref(),
            self.outside.as_ref(),
            &self.notes,
            req.headers_mut(),
        );
        next.run(req, extensions).await
    }
}

/// The route layer's counterpart for `reqwest`: a request whose context (the
/// middleware extensions' [`Context`], else the task's) carries a key a rule of the
/// [`Router`](threadline_route::Router) routes for its destination (host and port, and
/// the rule's path, method and header conditions) is sent to the rule's upstream: the
/// URL's scheme, host and port are rewritten, path and query kept. Add it *after*
/// [`PropagateMiddleware`], so the context is granted for the service the call was
/// meant for. A failure of a routed call is the client's error wrapped in a
/// [`RouteError`](crate::RouteError) naming the route and the upstream, never a
/// silent call to the baseline.
///
/// ```
/// use threadline_route::{Router, Rule, Upstream};
/// use threadline_tower::{PropagateMiddleware, RouteMiddleware, Targets};
///
/// let router = Router::new();
/// router.set_rules("code", vec![
///     Rule::new("alice", "warehouse", ["alice"], Upstream::parse("http://127.0.0.1:9001").unwrap()).unwrap(),
/// ]).unwrap();
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(PropagateMiddleware::new(Targets::internal()))
///     .with(RouteMiddleware::new(router))
///     .build();
/// # drop(client);
/// ```
#[cfg(feature = "route")]
#[derive(Clone, Debug)]
pub struct RouteMiddleware {
    router: threadline_route::Router,
}

#[cfg(feature = "route")]
impl RouteMiddleware {
    /// Routes by the tables of `router`.
    pub fn new(router: threadline_route::Router) -> Self {
        RouteMiddleware { router }
    }

    fn rule_for(
        &self,
        req: &reqwest::Request,
        ctx: &Context,
    ) -> Option<Arc<threadline_route::Rule>> {
        let key = ctx.routing_key()?;
        let url = req.url();
        let host = url.host_str()?;
        // Only a call that carries a key pays for the head the conditions read.
        let uri: http::Uri = url.as_str().parse().ok()?;
        let head = threadline_route::RequestHead::http(req.method(), &uri, req.headers());
        self.router
            .route(host, url.port_or_known_default(), key, &head)
    }
}

#[cfg(feature = "route")]
#[async_trait::async_trait]
impl Middleware for RouteMiddleware {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<reqwest::Response> {
        let rule = match extensions.get::<Context>() {
            Some(ctx) => self.rule_for(&req, ctx),
            None => Context::with_current(|ctx| self.rule_for(&req, ctx)).flatten(),
        };
        let Some(rule) = rule else {
            return next.run(req, extensions).await;
        };
        let service = req.url().host_str().unwrap_or("").to_owned();
        let up = rule.upstream();
        let url = req.url_mut();
        let rewritten = url.set_scheme(up.scheme().as_str()).is_ok()
            && url.set_host(Some(up.authority().host())).is_ok()
            && url.set_port(up.authority().port_u16()).is_ok();
        if !rewritten {
            // An upstream this URL cannot take (a scheme change reqwest refuses): the
            // caller is told, the call is not sent to the baseline.
            return Err(reqwest_middleware::Error::middleware(
                crate::route::RouteError::routed(UpstreamUnusable, rule),
            ));
        }
        tracing::info!(
            target: "threadline_tower",
            route = rule.id(),
            upstream = %rule.upstream(),
            service = %service,
            "call routed"
        );
        match next.run(req, extensions).await {
            Ok(resp) => Ok(resp),
            Err(e) => {
                tracing::warn!(
                    target: "threadline_tower",
                    route = rule.id(),
                    upstream = %rule.upstream(),
                    "routed call failed"
                );
                Err(reqwest_middleware::Error::middleware(
                    crate::route::RouteError::routed(e, rule),
                ))
            }
        }
    }
}

/// The rule's upstream cannot be written into the request's URL.
#[cfg(feature = "route")]
#[derive(Debug)]
struct UpstreamUnusable;

#[cfg(feature = "route")]
impl std::fmt::Display for UpstreamUnusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the route's upstream cannot be written into the request's URL")
    }
}

#[cfg(feature = "route")]
impl std::error::Error for UpstreamUnusable {}
