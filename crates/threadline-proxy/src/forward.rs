//! The reverse proxy's per-request service: route, clean the headers, write the
//! captured context, forward, stream the answer back (or tunnel an upgrade).
//!
//! It runs inside threadline-tower's `ThreadlineLayer`, which decided trust, removed a
//! shared secret, captured the context (in the request extensions and current for this
//! future) and echoes the correlation id on whatever this service answers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use threadline::{Context, Policy, Report};
use tower_service::Service;

use crate::body::ProxyBody;
use crate::headers::{ContextNames, set_upgrade, strip_hop_by_hop, wants_upgrade};
use crate::metrics::{Metrics, UpstreamError};
use crate::route::{RequestHead, Route};

pub(crate) type HttpClient = Client<HttpConnector, Incoming>;

/// What every request of the reverse proxy shares.
pub(crate) struct Shared {
    pub(crate) route: Arc<dyn Route>,
    pub(crate) h1: HttpClient,
    pub(crate) h2: HttpClient,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) policy: Policy,
    pub(crate) names: ContextNames,
    pub(crate) upstream_timeout: Duration,
    pub(crate) access_log: bool,
    pub(crate) forwarded: bool,
    pub(crate) tls: bool,
}

/// The per-connection service (the peer address is the connection's).
#[derive(Clone)]
pub(crate) struct Forward {
    pub(crate) shared: Arc<Shared>,
    pub(crate) peer: SocketAddr,
}

impl Service<Request<Incoming>> for Forward {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut TaskCx<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        Box::pin(forward(self.shared.clone(), self.peer, req))
    }
}

/// A response the proxy writes itself: JSON with the correlation id (the server
/// layer also echoes it as a header).
pub(crate) fn own_response(status: StatusCode, error: &str, ctx: &Context) -> Response<ProxyBody> {
    let id = ctx.correlation_id().map(|c| c.as_str()).unwrap_or("");
    // A correlation id is visible ASCII without quotes or backslashes: no escaping needed.
    let body = format!(
        "{{\"status\":{},\"error\":\"{error}\",\"correlation_id\":\"{id}\"}}\n",
        status.as_u16()
    );
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn x_forwarded_for(headers: &mut http::HeaderMap, peer: SocketAddr) {
    let name = header::HeaderName::from_static("x-forwarded-for");
    let ip = peer.ip().to_string();
    let value = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {ip}"),
        _ => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

async fn forward(
    shared: Arc<Shared>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let ctx = req
        .extensions_mut()
        .remove::<Context>()
        .unwrap_or_else(|| shared.policy.new_root());
    let report = req.extensions_mut().remove::<Report>();
    if let Some(r) = &report {
        shared.metrics.rejected(r);
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let inbound_version = req.version();

    let Some(upstream) = shared.route.route(&RequestHead::of(&req), &ctx) else {
        shared.metrics.upstream_error(UpstreamError::NoRoute);
        let resp = own_response(StatusCode::BAD_GATEWAY, "no route", &ctx);
        return Ok(finish(
            &shared, &ctx, resp, start, &method, &path, "-", None, peer,
        ));
    };
    upstream.count(&shared.metrics);
    let h2 = upstream.http2_for(inbound_version);

    let upgrade = wants_upgrade(&req);
    let inbound_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

    let (mut parts, body) = req.into_parts();
    // The caller's authority, kept as the `host` the app sees (HTTP/2 sends it in the
    // URI, HTTP/1.1 in the header, which stays as it is).
    let caller_authority: Option<Authority> = parts.uri.authority().cloned();
    let pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let uri = Uri::builder()
        .scheme(upstream.scheme().clone())
        .authority(upstream.authority().clone())
        .path_and_query(pq)
        .build();
    let Ok(uri) = uri else {
        let resp = own_response(StatusCode::BAD_REQUEST, "bad request target", &ctx);
        return Ok(finish(
            &shared,
            &ctx,
            resp,
            start,
            &method,
            &path,
            upstream.name(),
            None,
            peer,
        ));
    };
    parts.uri = uri;
    parts.version = if h2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };

    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    shared.names.strip(
        headers,
        report.iter().flat_map(|r| r.iter().map(|x| &x.name)),
    );
    let call_id = ctx.inject(headers);
    if !headers.contains_key(header::HOST) {
        if let Some(a) = &caller_authority {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                headers.insert(header::HOST, v);
            }
        }
    }
    if shared.forwarded {
        x_forwarded_for(headers, peer);
        headers.insert(
            header::HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static(if shared.tls { "https" } else { "http" }),
        );
    }
    if let Some(u) = &upgrade {
        set_upgrade(headers, u.clone());
    }

    let client = if h2 { &shared.h2 } else { &shared.h1 };
    let sent = client.request(Request::from_parts(parts, body));
    let answer = tokio::time::timeout(shared.upstream_timeout, sent).await;
    let mut resp = match answer {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            let kind = if e.is_connect() {
                UpstreamError::Connect
            } else {
                UpstreamError::Other
            };
            shared.metrics.upstream_error(kind);
            tracing::warn!(
                target: "threadline_proxy",
                upstream = upstream.name(),
                error = %e,
                "upstream request failed"
            );
            let resp = own_response(StatusCode::BAD_GATEWAY, "upstream unavailable", &ctx);
            return Ok(finish(
                &shared,
                &ctx,
                resp,
                start,
                &method,
                &path,
                upstream.name(),
                call_id,
                peer,
            ));
        }
        Err(_) => {
            shared.metrics.upstream_error(UpstreamError::Timeout);
            let resp = own_response(StatusCode::GATEWAY_TIMEOUT, "upstream timed out", &ctx);
            return Ok(finish(
                &shared,
                &ctx,
                resp,
                start,
                &method,
                &path,
                upstream.name(),
                call_id,
                peer,
            ));
        }
    };

    // The proxy answers in the caller's version, whatever the app spoke (an HTTP/1.0
    // app behind it must not turn the caller's keep-alive connection into a closing one).
    *resp.version_mut() = inbound_version;
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    let upstream_upgrade = resp.headers().get(header::UPGRADE).cloned();
    strip_hop_by_hop(resp.headers_mut());
    match (switching, inbound_upgrade, upstream_upgrade) {
        (true, Some(inbound), Some(proto)) => {
            set_upgrade(resp.headers_mut(), proto);
            let outbound = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                if let (Ok(a), Ok(b)) = tokio::join!(inbound, outbound) {
                    let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
        }
        (true, _, _) => {
            // A 101 nobody asked for (or without a protocol): not forwarded.
            shared.metrics.upstream_error(UpstreamError::Other);
            let resp = own_response(StatusCode::BAD_GATEWAY, "unexpected upgrade", &ctx);
            return Ok(finish(
                &shared,
                &ctx,
                resp,
                start,
                &method,
                &path,
                upstream.name(),
                call_id,
                peer,
            ));
        }
        _ => {}
    }
    let resp = resp.map(|body| ProxyBody::Upstream { body });
    Ok(finish(
        &shared,
        &ctx,
        resp,
        start,
        &method,
        &path,
        upstream.name(),
        call_id,
        peer,
    ))
}

/// Counts the response and writes the access log line (inside the request's context,
/// so the line carries its correlation id, trace id and captured fields).
#[allow(clippy::too_many_arguments)]
fn finish(
    shared: &Shared,
    ctx: &Context,
    resp: Response<ProxyBody>,
    start: Instant,
    method: &http::Method,
    path: &str,
    upstream: &str,
    call_id: Option<threadline::codec::SpanId>,
    peer: SocketAddr,
) -> Response<ProxyBody> {
    let took = start.elapsed();
    let status = resp.status().as_u16();
    shared.metrics.request(status, took);
    if shared.access_log {
        let _ = ctx;
        tracing::info!(
            target: "threadline_proxy::access",
            method = %method,
            path = path,
            status = status,
            upstream = upstream,
            latency_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            peer = %peer.ip(),
            call_id = call_id.map(tracing::field::display),
            "request"
        );
    }
    resp
}
