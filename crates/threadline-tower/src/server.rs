//! The server layer: capture the inbound context, run the service inside it, echo the
//! correlation id on the response.
//!
//! Works wherever a Tower layer does: axum (`Router::layer`), hyper (through
//! hyper-util's `TowerToHyperService`) and tonic (`Server::builder().layer(..)`).
//!
//! For each request the layer
//! 1. decides whether the caller is trusted ([`TrustPolicy`]) and removes the header
//!    of a [`TrustPolicy::shared_secret`] from the request,
//! 2. captures the context through the [`Policy`] (bad or oversized context headers
//!    are dropped and logged at debug level by name and reason, never by value; the
//!    request always goes on),
//! 3. puts the [`Context`] into the request extensions (axum: `Extension<Context>`),
//!    and, when something was dropped, the capture's [`Report`] (names and reasons,
//!    never values: a service that forwards the request reads it to keep the dropped
//!    headers off the forwarded copy),
//! 4. runs the inner service inside [`Context::scope`], so `Context::current()`,
//!    `threadline::spawn` and the client layer see it,
//! 5. sets the correlation id on the response, also on error responses the inner
//!    service produces, unless the response already carries that header.
//!
//! # Preview links
//!
//! When the policy reads the routing key from a query parameter
//! ([`RoutingForm::Query`](threadline::RoutingForm::Query)), a request for
//! `/order?preview=alice` (a link a developer shares) is handled as `/order`: the
//! parameter is taken out of the URL before the inner service sees it, the key goes
//! into the context (over any other form: the link is the newest word), so every call
//! and message the request leads to carries it, and, when the policy also reads a
//! [`RoutingForm::Cookie`](threadline::RoutingForm::Cookie), the response sets that
//! cookie (`Path=/; HttpOnly; SameSite=Lax`) so the browser's following requests keep
//! the key. `?preview=` (empty) clears the key and the cookie. A malformed key, the
//! parameter twice with different values, or an untrusted caller when the policy's
//! routing does not [accept untrusted callers](threadline::Routing::accept_untrusted)
//! leave the request as it was (logged at debug level), the parameter still removed.
//!
//! ```
//! use http::{Request, Response};
//! use threadline::{Context, Policy};
//! use threadline_tower::ThreadlineLayer;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let policy = Policy::builder().header("x-tenant-id").build().unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(ThreadlineLayer::new(policy).trust_all())
//!     .service(service_fn(|_req: Request<()>| async {
//!         let tenant = Context::current().get("x-tenant-id").unwrap_or("-").to_owned();
//!         Ok::<_, std::convert::Infallible>(Response::new(tenant))
//!     }));
//!
//! let req = Request::builder()
//!     .header("x-correlation-id", "req-42")
//!     .header("x-tenant-id", "acme")
//!     .body(())
//!     .unwrap();
//! let resp = svc.oneshot(req).await.unwrap();
//! assert_eq!(resp.body(), "acme");
//! assert_eq!(resp.headers()["x-correlation-id"], "req-42");
//! # }
//! ```
//!
//! In axum the layer can go through `Router::layer`, as above for any router, or around
//! the whole `Router`. Both see every request, the 404 fallback included. Around the
//! router it runs once, before routing: axum does not box it into each route (about 900
//! fewer instructions per request in `bench/http.sh`), but the request span's `route`
//! field is the path, as `MatchedPath` is not known yet.
//!
//! ```no_run
//! use axum::{Router, extract::Request, routing::get};
//! use threadline::Policy;
//! use threadline_tower::ThreadlineLayer;
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let router = Router::new().route("/", get(|| async { "hello" }));
//! let app = ServiceBuilder::new()
//!     .layer(ThreadlineLayer::new(Policy::default()))
//!     .service(router);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, axum::ServiceExt::<Request>::into_make_service(app)).await
//! # }
//! ```
//!
//! With hyper, through hyper-util's Tower adapter (insert the peer address as
//! [`PeerAddr`](crate::PeerAddr) if a [`TrustPolicy::peer_in`] should see it):
//!
//! ```no_run
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use hyper_util::server::conn::auto::Builder;
//! use hyper_util::service::TowerToHyperService;
//! use threadline::Policy;
//! use threadline_tower::{PeerAddr, ThreadlineLayer, TrustPolicy};
//! use tower::{ServiceBuilder, service_fn};
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let layer = ThreadlineLayer::new(Policy::default())
//!     .trust(TrustPolicy::peer_in(["10.0.0.0/8"]).unwrap());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! loop {
//!     let (stream, peer) = listener.accept().await?;
//!     let svc = ServiceBuilder::new()
//!         .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
//!             req.extensions_mut().insert(PeerAddr(peer));
//!             req
//!         })
//!         .layer(layer.clone())
//!         .service(service_fn(|_req| async {
//!             Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello")))
//!         }));
//!     tokio::spawn(async move {
//!         let _ = Builder::new(TokioExecutor::new())
//!             .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
//!             .await;
//!     });
//! }
//! # }
//! ```
//!
//! With tonic: `tonic::transport::Server::builder().layer(ThreadlineLayer::new(policy))`
//! (the peer address comes from tonic's `TcpConnectInfo` with the `tonic` feature).
//!
//! # When the trust policy cannot see the peer
//!
//! A [`TrustPolicy`] that reads the peer address ([`TrustPolicy::peer_in`],
//! [`TrustPolicy::private_networks`]) trusts nobody on a server that does not hand
//! the layer the address: axum served without
//! `into_make_service_with_connect_info::<SocketAddr>()` (or without this crate's
//! `axum` feature), hyper without a [`PeerAddr`](crate::PeerAddr) per connection.
//! The layer says so once, at warn level, at the first such request, naming the fix
//! and the `trusted_only` headers that request lost ("because the caller's peer
//! address is unknown", which is not the same as a caller that is known and not
//! trusted: that one is normal at an edge and only logged at debug level).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskCx, Poll, ready};
use std::time::Instant;

use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use threadline::{Context, Policy, Reason, Report, RoutingKey, Scoped, Trust};
use tower_layer::Layer;
use tower_service::Service;

use crate::trust::{Decision, TrustPolicy};

type ReportHook = dyn Fn(&Report, Trust) + Send + Sync;

struct Config {
    policy: Policy,
    /// Preview links, when the policy reads the routing key from a query parameter.
    preview: Option<Preview>,
    trust: TrustPolicy,
    echo: Option<HeaderName>,
    span: bool,
    on_report: Option<Arc<ReportHook>>,
    /// The warning about a trust policy that cannot see the peer was given.
    peer_warned: AtomicBool,
}

/// Captures inbound context and runs the inner service inside it. See the
/// [module docs](self).
#[derive(Clone)]
pub struct ThreadlineLayer {
    config: Arc<Config>,
}

impl fmt::Debug for ThreadlineLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &*self.config;
        f.debug_struct("ThreadlineLayer")
            .field("policy", &c.policy)
            .field("trust", &c.trust)
            .field("echo", &c.echo)
            .field("span", &c.span)
            .finish_non_exhaustive()
    }
}

impl ThreadlineLayer {
    /// A layer capturing with `policy`; no caller trusted ([`TrustPolicy::never`]);
    /// the correlation id echoed under the policy's correlation header; no span.
    pub fn new(policy: Policy) -> Self {
        let echo = Some(policy.correlation_header().clone());
        ThreadlineLayer {
            config: Arc::new(Config {
                preview: Preview::of(&policy),
                policy,
                trust: TrustPolicy::never(),
                echo,
                span: false,
                on_report: None,
                peer_warned: AtomicBool::new(false),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        match Arc::get_mut(&mut self.config) {
            Some(c) => f(c),
            None => {
                let c = &*self.config;
                let mut copy = Config {
                    policy: c.policy.clone(),
                    preview: c.preview.clone(),
                    trust: c.trust.clone(),
                    echo: c.echo.clone(),
                    span: c.span,
                    on_report: c.on_report.clone(),
                    peer_warned: AtomicBool::new(false),
                };
                f(&mut copy);
                self.config = Arc::new(copy);
            }
        }
        self
    }

    /// Who is trusted to set `trusted_only` headers (and, in the policy's edge mode,
    /// to continue their own trace and correlation id).
    ///
    /// A header that a [`TrustPolicy::shared_secret`] reads is removed from every
    /// request once trust is decided (whatever it held), so the secret reaches neither
    /// the inner service and its logs nor a context captured in "capture all" mode,
    /// and so is never forwarded.
    pub fn trust(self, trust: TrustPolicy) -> Self {
        self.edit(|c| c.trust = trust)
    }

    /// Shortcut for `.trust(TrustPolicy::always())`: a service reachable only from
    /// inside the system.
    pub fn trust_all(self) -> Self {
        self.trust(TrustPolicy::always())
    }

    /// Echo the correlation id under another response header.
    pub fn echo_header(self, name: HeaderName) -> Self {
        self.edit(|c| c.echo = Some(name))
    }

    /// Do not echo the correlation id on responses.
    pub fn no_echo(self) -> Self {
        self.edit(|c| c.echo = None)
    }

    /// Open an INFO `tracing` span named `request` around each request, with
    /// `method`, `route` (axum's `MatchedPath` with the `axum` feature, else the
    /// path), `correlation_id`, `trace_id`, `span_id`, and, when the response is
    /// ready, `status` and `latency_us`. Off by default.
    pub fn request_span(self, yes: bool) -> Self {
        self.edit(|c| c.span = yes)
    }

    /// Called with the capture report whenever something was dropped (to count
    /// rejections in your metrics). The report names headers and reasons, never values.
    pub fn on_rejected(self, f: impl Fn(&Report, Trust) + Send + Sync + 'static) -> Self {
        self.edit(|c| c.on_report = Some(Arc::new(f)))
    }

    /// The policy in use.
    pub fn policy(&self) -> &Policy {
        &self.config.policy
    }
}

impl<S> Layer<S> for ThreadlineLayer {
    type Service = Threadline<S>;

    fn layer(&self, inner: S) -> Threadline<S> {
        Threadline {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by [`ThreadlineLayer`].
#[derive(Clone)]
pub struct Threadline<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for Threadline<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Threadline")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Threadline<S> {
    /// Wraps `inner` with the layer's settings.
    pub fn new(inner: S, layer: &ThreadlineLayer) -> Self {
        layer.layer(inner)
    }
}

fn log_report(report: &Report, decision: Decision) {
    let caller = match decision {
        Decision::Trusted => "trusted",
        Decision::NotTrusted => "not trusted",
        Decision::PeerUnknown => "not trusted: peer address unknown",
    };
    for r in report.iter() {
        // Name and reason only: the raw value may be hostile (log forging, size).
        tracing::debug!(
            target: "threadline_tower",
            header = %r.name,
            reason = %r.reason,
            trusted = decision == Decision::Trusted,
            caller,
            "inbound context header dropped"
        );
    }
}

/// The fix for a server that does not give the layer the peer address, as this build
/// of the crate can tell it.
const PEER_FIX: &str = if cfg!(feature = "axum") {
    "with axum, serve the app with \
     `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())`; \
     with hyper, insert `threadline_tower::PeerAddr` into each request's extensions \
     per connection"
} else {
    "with axum, enable threadline-tower's `axum` feature and serve the app with \
     `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())`; \
     with hyper, insert `threadline_tower::PeerAddr` into each request's extensions \
     per connection; with tonic, enable threadline-tower's `tonic` feature"
};

impl Config {
    /// Says once per layer that the trust policy needs the peer address and the
    /// request has none, with the trusted-only values that cost this request.
    fn peer_unknown(&self, report: &Report) {
        if self.peer_warned.load(Ordering::Relaxed)
            || self.peer_warned.swap(true, Ordering::Relaxed)
        {
            return;
        }
        let lost: Vec<&str> = report
            .iter()
            .filter(|r| matches!(r.reason, Reason::Untrusted))
            .map(|r| r.name.as_str())
            .collect();
        if lost.is_empty() {
            tracing::warn!(
                target: "threadline_tower",
                "threadline: the trust policy reads the caller's peer address, and this \
                 server does not provide it: every caller is untrusted, and trusted-only \
                 headers and local fields are dropped. Fix: {PEER_FIX}"
            );
        } else {
            let lost = lost.join(", ");
            tracing::warn!(
                target: "threadline_tower",
                dropped = %lost,
                "threadline: dropped {lost}, which only trusted callers may set, because \
                 the caller's peer address is unknown (not because the peer is untrusted): \
                 the trust policy reads the peer address, and this server does not provide \
                 it. Fix: {PEER_FIX}"
            );
        }
    }
}

fn route<B>(req: &Request<B>) -> &str {
    #[cfg(feature = "axum")]
    if let Some(m) = req.extensions().get::<axum::extract::MatchedPath>() {
        return m.as_str();
    }
    req.uri().path()
}

fn request_span<B>(req: &Request<B>, ctx: &Context) -> tracing::Span {
    use tracing::field::Empty;
    // Every known field at creation: one dispatch instead of a `record` call per id.
    let trace = ctx.trace();
    tracing::info_span!(
        target: "threadline_tower",
        "request",
        method = %req.method(),
        route = route(req),
        status = Empty,
        latency_us = Empty,
        correlation_id = ctx.correlation_id().map(|id| id.as_str()),
        trace_id = trace.map(|t| tracing::field::display(t.trace_id())),
        span_id = trace.map(|t| tracing::field::display(t.span_id())),
    )
}

impl<S, B, ResBody> Service<Request<B>> for Threadline<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ThreadlineResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut TaskCx<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let c = &*self.config;
        let decision = c.trust.decide_why(&req);
        let trust = decision.trust();
        for name in c.trust.secret_headers() {
            req.headers_mut().remove(name);
        }
        let captured = c.policy.capture(req.headers(), trust);
        let ctx = captured.context;
        if decision == Decision::PeerUnknown {
            c.peer_unknown(&captured.report);
        }
        if !captured.report.is_empty() {
            log_report(&captured.report, decision);
            if let Some(hook) = &c.on_report {
                hook(&captured.report, trust);
            }
            // For services that forward the request (a proxy): the names of the
            // headers that were dropped, so they can be kept off the forwarded request.
            req.extensions_mut().insert(captured.report);
        }
        // Boxed: off by default, and the future stays small (it is moved several times
        // on its way into the connection's task).
        let span = c.span.then(|| {
            Box::new(SpanState {
                // Made inside the request's scope, so that layers reading the
                // current context when a span opens (threadline-tracing's
                // `ContextLayer`) see this request's.
                span: ctx.clone().sync_scope(|| request_span(&req, &ctx)),
                start: Instant::now(),
            })
        });
        let mut set_cookie = None;
        let ctx = match &c.preview {
            Some(p) if req.uri().query().is_some() => {
                p.apply(&mut req, ctx, trust, &mut set_cookie)
            }
            _ => ctx,
        };
        req.extensions_mut().insert(ctx.clone());
        // Built in one expression, so the inner future is written where it will live
        // (it can hold the whole request, and is moved once less).
        ThreadlineResponseFuture {
            inner: match &span {
                Some(s) => s.span.in_scope(|| ctx.scope_with(|| self.inner.call(req))),
                None => ctx.scope_with(|| self.inner.call(req)),
            },
            echo: c.echo.clone(),
            span,
            set_cookie,
        }
    }
}

/// Preview links: `?<param>=<key>` is taken out of the URL, the key put into the
/// context (so into every form the policy writes) and a cookie set so that the
/// browser's following requests keep it; `?<param>=` (empty) clears both.
#[derive(Clone, Debug)]
struct Preview {
    param: String,
    cookie: Option<String>,
    max_len: usize,
    accept_untrusted: bool,
}

impl Preview {
    fn of(policy: &Policy) -> Option<Preview> {
        let r = policy.routing()?;
        Some(Preview {
            param: r.query_param()?.to_owned(),
            cookie: r.cookie_name().map(str::to_owned),
            max_len: r.max_len,
            accept_untrusted: r.accept_untrusted,
        })
    }

    /// Strips the parameter from the request's URL and answers the context with the
    /// link's key (or without any, for an empty value) and the cookie to set.
    fn apply<B>(
        &self,
        req: &mut Request<B>,
        ctx: Context,
        trust: Trust,
        set_cookie: &mut Option<Box<HeaderValue>>,
    ) -> Context {
        let Some(query) = req.uri().query() else {
            return ctx;
        };
        // Most queries do not carry the parameter: look for it before copying anything.
        if !query
            .split('&')
            .any(|pair| pair.split_once('=').map_or(pair, |(n, _)| n) == self.param)
        {
            return ctx;
        }
        let mut value: Option<&str> = None;
        let mut conflict = false;
        let mut kept = String::new();
        for pair in query.split('&') {
            let (name, v) = pair.split_once('=').unwrap_or((pair, ""));
            if name == self.param {
                conflict |= value.is_some_and(|first| first != v);
                value = Some(v);
            } else {
                if !kept.is_empty() {
                    kept.push('&');
                }
                kept.push_str(pair);
            }
        }
        let Some(value) = value.map(str::to_owned) else {
            return ctx;
        };
        // The application never sees the parameter, whatever becomes of the key.
        let path = req.uri().path();
        let pq = if kept.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{kept}")
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = pq.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
        let refused = |why: &str| {
            tracing::debug!(
                target: "threadline_tower",
                param = %self.param,
                reason = why,
                "preview link ignored"
            );
        };
        if trust == Trust::Untrusted && !self.accept_untrusted {
            refused("not accepted from an untrusted caller");
            return ctx;
        }
        if conflict {
            refused("the parameter is given twice with different values");
            return ctx;
        }
        let cookie = |text: String| HeaderValue::from_str(&text).ok().map(Box::new);
        if value.is_empty() {
            if let Some(name) = &self.cookie {
                *set_cookie = cookie(format!(
                    "{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
                ));
            }
            return ctx.without_routing_key();
        }
        match RoutingKey::decode(value.as_bytes(), self.max_len) {
            Ok(key) => {
                if let Some(name) = &self.cookie {
                    *set_cookie = cookie(format!("{name}={key}; Path=/; HttpOnly; SameSite=Lax"));
                }
                ctx.with_routing_key(key)
            }
            Err(e) => {
                refused(&e.to_string());
                ctx
            }
        }
    }
}

struct SpanState {
    span: tracing::Span,
    start: Instant,
}

pin_project! {
    /// The response future of [`Threadline`]: the inner future, run inside the context.
    pub struct ThreadlineResponseFuture<F> {
        #[pin]
        inner: Scoped<F>,
        // The header to echo the correlation id under; the id itself is read from the
        // context when the response is ready.
        echo: Option<HeaderName>,
        span: Option<Box<SpanState>>,
        // A preview link's cookie (boxed: rare, and the future stays small).
        set_cookie: Option<Box<HeaderValue>>,
    }
}

impl<F> fmt::Debug for ThreadlineResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadlineResponseFuture")
            .finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for ThreadlineResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut res = {
            let _entered = this.span.as_ref().map(|s| s.span.enter());
            ready!(this.inner.as_mut().poll(cx))
        };
        if let Ok(resp) = &mut res {
            if let Some(cookie) = this.set_cookie.take() {
                resp.headers_mut().append(http::header::SET_COOKIE, *cookie);
            }
            if let Some(name) = this.echo.take() {
                let ctx = this.inner.as_mut().take_context();
                if let Some(id) = ctx.as_ref().and_then(Context::correlation_id) {
                    // Never over a value the service set itself.
                    if let http::header::Entry::Vacant(slot) = resp.headers_mut().entry(name) {
                        slot.insert(id.header_value().clone());
                    }
                }
            }
        }
        if let Some(s) = this.span.take() {
            if !s.span.is_disabled() {
                if let Ok(resp) = &res {
                    s.span.record("status", resp.status().as_u16());
                }
                let us = u64::try_from(s.start.elapsed().as_micros()).unwrap_or(u64::MAX);
                s.span.record("latency_us", us);
            }
        }
        Poll::Ready(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    async fn echo_ctx(req: Request<()>) -> Result<Response<String>, Infallible> {
        let from_ext = req.extensions().get::<Context>().cloned().unwrap();
        let cur = Context::current();
        assert_eq!(from_ext.correlation_id(), cur.correlation_id());
        let status = if req.uri().path() == "/fail" {
            503
        } else {
            200
        };
        let mut r = Response::new(cur.correlation_id().unwrap().to_string());
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Ok(r)
    }

    #[tokio::test]
    async fn echo_on_success_and_error_responses() {
        let layer = ThreadlineLayer::new(Policy::default());
        for path in ["/", "/fail"] {
            let svc = ServiceBuilder::new()
                .layer(layer.clone())
                .service(service_fn(echo_ctx));
            let req = Request::builder()
                .uri(path)
                .header("x-correlation-id", "abc-1")
                .body(())
                .unwrap();
            let resp = svc.oneshot(req).await.unwrap();
            assert_eq!(resp.headers()["x-correlation-id"], "abc-1", "{path}");
            assert_eq!(resp.body(), "abc-1");
        }
    }

    /// A layer that notes, when a span opens, which request's context is current: the
    /// request span must open inside its request's scope.
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;
    struct SeesContext(Seen);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SeesContext {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let id = Context::with_current(|c| c.correlation_id().map(|i| i.as_str().to_owned()))
                .flatten();
            self.0
                .lock()
                .unwrap()
                .push((attrs.metadata().name().to_owned(), id));
        }
    }

    #[tokio::test]
    async fn the_request_span_opens_inside_the_request_scope() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry().with(SeesContext(seen.clone()));
        let _guard = tracing::subscriber::set_default(subscriber);
        let svc = ServiceBuilder::new()
            .layer(ThreadlineLayer::new(Policy::default()).request_span(true))
            .service(service_fn(echo_ctx));
        let req = Request::builder()
            .header("x-correlation-id", "span-1")
            .body(())
            .unwrap();
        svc.oneshot(req).await.unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            [("request".to_owned(), Some("span-1".to_owned()))]
        );
    }

    #[tokio::test]
    async fn echo_renamed_or_off() {
        let renamed = ThreadlineLayer::new(Policy::default())
            .echo_header(HeaderName::from_static("x-request-id"));
        let svc = ServiceBuilder::new()
            .layer(renamed)
            .service(service_fn(echo_ctx));
        let resp = svc.oneshot(Request::new(())).await.unwrap();
        let minted = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(resp.body(), &minted);
        assert!(!resp.headers().contains_key("x-correlation-id"));

        let off = ThreadlineLayer::new(Policy::default()).no_echo();
        let svc = ServiceBuilder::new()
            .layer(off)
            .service(service_fn(echo_ctx));
        let resp = svc.oneshot(Request::new(())).await.unwrap();
        assert!(resp.headers().is_empty());
    }

    #[tokio::test]
    async fn handler_header_wins_over_echo() {
        let svc = ServiceBuilder::new()
            .layer(ThreadlineLayer::new(Policy::default()))
            .service(service_fn(|_: Request<()>| async {
                let mut r = Response::new(());
                r.headers_mut()
                    .insert("x-correlation-id", http::HeaderValue::from_static("mine"));
                Ok::<_, Infallible>(r)
            }));
        let resp = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(resp.headers()["x-correlation-id"], "mine");
    }

    #[tokio::test]
    async fn rejections_are_reported_without_values() {
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        let layer = ThreadlineLayer::new(Policy::default()).on_rejected(move |r, trust| {
            assert_eq!(trust, Trust::Untrusted);
            for rej in r.iter() {
                assert!(!format!("{rej:?}").contains("EVIL"));
            }
            s.fetch_add(r.len(), Ordering::Relaxed);
        });
        let svc = ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(echo_ctx));
        let req = Request::builder()
            .header("x-correlation-id", "EVIL id with spaces")
            .header("traceparent", "00-EVIL-00")
            .body(())
            .unwrap();
        let resp = svc.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(seen.load(Ordering::Relaxed), 2);
        assert!(!resp.body().contains("EVIL"));
    }

    #[tokio::test]
    async fn report_reaches_the_inner_service_only_when_something_was_dropped() {
        let svc = ServiceBuilder::new()
            .layer(ThreadlineLayer::new(Policy::default()))
            .service(service_fn(|req: Request<()>| async move {
                let names: Vec<String> = req
                    .extensions()
                    .get::<Report>()
                    .map(|r| r.iter().map(|x| x.name.to_string()).collect())
                    .unwrap_or_default();
                Ok::<_, Infallible>(Response::new(names.join(",")))
            }));
        let bad = Request::builder()
            .header("traceparent", "00-EVIL-00")
            .body(())
            .unwrap();
        let resp = svc.clone().oneshot(bad).await.unwrap();
        assert_eq!(resp.body(), "traceparent");
        let clean = Request::builder()
            .header("x-correlation-id", "ok-1")
            .body(())
            .unwrap();
        let resp = svc.oneshot(clean).await.unwrap();
        assert_eq!(resp.body(), "");
    }

    #[tokio::test]
    async fn inner_errors_pass_through() {
        let svc = ServiceBuilder::new()
            .layer(ThreadlineLayer::new(Policy::default()))
            .service(service_fn(|_: Request<()>| async {
                Err::<Response<()>, _>("boom")
            }));
        assert_eq!(svc.oneshot(Request::new(())).await.unwrap_err(), "boom");
    }

    #[tokio::test]
    async fn span_option_runs_with_and_without_subscriber() {
        let layer = ThreadlineLayer::new(Policy::default()).request_span(true);
        let svc = ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(echo_ctx));
        let resp = svc.oneshot(Request::new(())).await.unwrap();
        assert!(resp.headers().contains_key("x-correlation-id"));
    }
}
