//! The optional forward proxy for the app's own outgoing calls (`HTTP_PROXY`).
//!
//! An app that copies the inbound headers onto its outgoing calls itself (most do it
//! by hand, or with a generic "forward these headers" list) sends them through this
//! listener. Each request is checked against the [`Targets`]: the context headers of
//! the policy (correlation id, trace context, baggage, the custom headers, local-field
//! keys) and the credentials (`authorization`, `cookie`, `proxy-authorization`) go
//! only to destinations whose grant names them; every other header passes. Only
//! plain `http://` destinations in absolute form are proxied: `CONNECT` tunnels
//! (`https://` destinations) are refused with `501`, since their headers cannot be
//! seen. With `[routing]`, a call whose routing key (read from the app's outgoing
//! headers as the policy says) a rule routes for its destination goes to the rule's
//! upstream instead: the context is granted for the destination the app named, and a
//! routed upstream that is down answers `502` naming the route, never the original
//! destination in its place.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};
use std::time::{Duration, Instant};

use http::header::{self, HeaderName};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use threadline::{Policy, Trust};
use threadline_tower::{Grant, Targets};
use tower_service::Service;

use crate::body::ProxyBody;
use crate::forward::{HttpClient, own_response};
use crate::headers::{ContextNames, strip_hop_by_hop};
use crate::metrics::{Metrics, UpstreamError};

pub(crate) struct EgressShared {
    pub(crate) targets: Targets,
    pub(crate) client: HttpClient,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) policy: Policy,
    pub(crate) names: ContextNames,
    pub(crate) timeout: Duration,
    pub(crate) access_log: bool,
    /// The `[routing]` tables: a call whose context carries a key a rule routes for
    /// its destination goes to the rule's upstream.
    pub(crate) router: Option<threadline_route::Router>,
}

#[derive(Clone)]
pub(crate) struct Egress {
    pub(crate) shared: Arc<EgressShared>,
    pub(crate) peer: SocketAddr,
}

impl Service<Request<Incoming>> for Egress {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut TaskCx<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        Box::pin(egress(self.shared.clone(), self.peer, req))
    }
}

fn is_credential(name: &HeaderName) -> bool {
    *name == header::AUTHORIZATION
        || *name == header::COOKIE
        || *name == header::PROXY_AUTHORIZATION
        || *name == header::SET_COOKIE
}

/// Keeps the context headers and credentials `grant` allows; removes the others.
pub(crate) fn filter(headers: &mut http::HeaderMap, names: &ContextNames, grant: &Grant) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| (names.contains(n) || is_credential(n)) && !grant.allows(n))
        .cloned()
        .collect();
    for n in &doomed {
        headers.remove(n);
    }
}

async fn egress(
    shared: Arc<EgressShared>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    // The app's own context, for the log line: read as a trusted caller (it is ours).
    let ctx = shared.policy.capture(req.headers(), Trust::Trusted).context;
    let method = req.method().clone();
    let respond = |resp: Response<ProxyBody>, dest: &str| {
        let took = start.elapsed();
        if shared.access_log {
            ctx.clone().sync_scope(|| {
                tracing::info!(
                    target: "threadline_proxy::egress",
                    method = %method,
                    destination = dest,
                    status = resp.status().as_u16(),
                    latency_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                    peer = %peer.ip(),
                    "outgoing request"
                );
            });
        }
        Ok(resp)
    };
    if req.method() == Method::CONNECT {
        let resp = own_response(
            StatusCode::NOT_IMPLEMENTED,
            "CONNECT tunnels are not proxied (their headers cannot be checked)",
            &ctx,
        );
        return respond(resp, "-");
    }
    let scheme = req.uri().scheme_str().map(str::to_owned);
    let Some(authority) = req.uri().authority().cloned() else {
        let resp = own_response(
            StatusCode::BAD_REQUEST,
            "a forward proxy request needs an absolute URI (http://host/path)",
            &ctx,
        );
        return respond(resp, "-");
    };
    if scheme.as_deref() != Some("http") {
        let resp = own_response(
            StatusCode::NOT_IMPLEMENTED,
            "only http:// destinations are proxied",
            &ctx,
        );
        return respond(resp, authority.as_str());
    }
    let grant = shared
        .targets
        .grant_for_authority(scheme.as_deref(), Some(&authority));
    shared.metrics.egress(if grant.is_nothing() {
        2
    } else if grant.allows(shared.policy.correlation_header()) {
        0
    } else {
        1
    });
    strip_hop_by_hop(req.headers_mut());
    filter(req.headers_mut(), &shared.names, grant);
    *req.version_mut() = http::Version::HTTP_11;
    let route = route_of(&shared, &ctx, &req, &authority);
    if let Some(rule) = &route {
        *req.uri_mut() = rule.upstream().rewrite(req.uri());
        tracing::info!(
            target: "threadline_proxy::egress",
            route = rule.id(),
            upstream = %rule.upstream(),
            service = %authority,
            "call routed"
        );
    }
    // The access line's destination: a call that was not routed logs its authority as
    // it is, with no copy made.
    let dest: std::borrow::Cow<'_, str> = match &route {
        Some(rule) => format!("{} (route {} to {})", authority, rule.id(), rule.upstream()).into(),
        None => authority.as_str().into(),
    };
    let answer = tokio::time::timeout(shared.timeout, shared.client.request(req)).await;
    let mut resp = match answer {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            shared.metrics.upstream_error(if e.is_connect() {
                UpstreamError::Connect
            } else {
                UpstreamError::Other
            });
            let resp = own_response(StatusCode::BAD_GATEWAY, "destination unavailable", &ctx);
            return respond(resp, &dest);
        }
        Err(_) => {
            shared.metrics.upstream_error(UpstreamError::Timeout);
            let resp = own_response(StatusCode::GATEWAY_TIMEOUT, "destination timed out", &ctx);
            return respond(resp, &dest);
        }
    };
    strip_hop_by_hop(resp.headers_mut());
    respond(resp.map(|body| ProxyBody::Upstream { body }), &dest)
}

/// The rule that routes this call, if the app's context carries a key a rule claims
/// for the destination (its host and port, and the rule's conditions).
fn route_of<B>(
    shared: &EgressShared,
    ctx: &threadline::Context,
    req: &Request<B>,
    authority: &http::uri::Authority,
) -> Option<Arc<threadline_route::Rule>> {
    let router = shared.router.as_ref()?;
    let key = ctx.routing_key()?;
    let head = threadline_route::RequestHead::http(req.method(), req.uri(), req.headers());
    // An upstream the listener cannot reach (an `https://` one: it speaks plain HTTP)
    // fails as the call's `502`, never as a silent call to the original destination.
    router.route(
        authority.host(),
        Some(authority.port_u16().unwrap_or(80)),
        key,
        &head,
    )
}
