//! The server side of `bench/http.sh`: an axum hello-world on 127.0.0.1 with one
//! Tokio worker (a current-thread runtime), in one of several variants.
//!
//! ```text
//! bench_server <variant> <port>
//! ```
//!
//! | variant | what wraps the hello-world route |
//! |---|---|
//! | `bare` | nothing |
//! | `threadline` | `ThreadlineLayer` (capture, scope, echo) |
//! | `tower-http` | tower-http `SetRequestId` + `PropagateRequestId` |
//! | `otel` | OpenTelemetry `TraceContextPropagator` extract + attach (`from_fn`) |
//! | `from-fn` | an empty `axum::middleware::from_fn` |
//! | `noop` | tower's `Identity` layer through `Router::layer`: what axum's per-route layering costs by itself |
//! | `<name>-outer` | for `threadline`, `tower-http`, `otel`, `from-fn` and `noop`: the same layer around the whole `Router` (before routing) instead of through `Router::layer` |
//! | `threadline-span` | `ThreadlineLayer` with the per-request `tracing` span |
//! | `tower-http-trace` | tower-http `SetRequestId` + `TraceLayer` with a span carrying the request id + `PropagateRequestId` (the usual way to get the id into logs) |
//! | `tl-noecho` | `ThreadlineLayer` without the response echo (the echo's share) |
//! | `capture-only` | a `from_fn` that captures and drops the context (capture's share) |
//! | `scope-only` | a `from_fn` that runs the request in a fresh root context's scope |
//! | `hop-plain` | `ThreadlineLayer`; the handler calls a keep-alive backend (hyper-util) |
//! | `hop-static` | the same, the handler setting the five headers by hand (static values): the wire cost alone |
//! | `hop-propagate` | the same, with `PropagateLayer` on the client (targets: `127.0.0.1` allowed by name) |
//!
//! Every variant runs under the same `tracing` subscriber (a registry with an INFO
//! level filter), so a span is really created where one is asked for.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use http::HeaderName;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::context::FutureExt;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use threadline::Policy;
use threadline_tower::{PropagateLayer, Target, Targets, ThreadlineLayer};
use tower::{ServiceBuilder, ServiceExt};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tracing_subscriber::layer::SubscriberExt;

const CORRELATION: HeaderName = HeaderName::from_static("x-correlation-id");

fn policy() -> Policy {
    Policy::builder()
        .header("x-tenant-id")
        .build()
        .expect("valid policy")
}

fn hello() -> Router {
    Router::new().route("/", get(|| async { "Hello, World!" }))
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

async fn otel_mw(req: Request, next: Next) -> Response {
    let propagator = TraceContextPropagator::new();
    let cx = propagator.extract(&HeaderExtractor(req.headers()));
    next.run(req).with_context(cx).await
}

async fn empty_mw(req: Request, next: Next) -> Response {
    next.run(req).await
}

async fn serve_backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, hello()).await;
    });
    addr
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Hop {
    Plain,
    Static,
    Propagate,
}

#[path = "../bench/context.rs"]
mod context;

async fn hop_router(hop: Hop) -> Router {
    let backend = serve_backend().await;
    let uri: http::Uri = format!("http://{backend}/").parse().expect("uri");
    let plain = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let propagating = ServiceBuilder::new()
        // As configured in a real service: the same-site hosts listed by name (the
        // destination is matched on every call), credentials never forwarded.
        .layer(PropagateLayer::new(
            Targets::new().allow(Target::host("127.0.0.1")),
        ))
        .service(plain.clone());
    let handler = move || {
        let plain = plain.clone();
        let propagating = propagating.clone();
        let uri = uri.clone();
        async move {
            let mut req = http::Request::get(uri)
                .body(Full::<Bytes>::default())
                .expect("request");
            if hop == Hop::Static {
                for (k, v) in context::CONTEXT {
                    req.headers_mut().insert(
                        HeaderName::from_static(k),
                        http::HeaderValue::from_static(v),
                    );
                }
            }
            let resp = if hop == Hop::Propagate {
                propagating.oneshot(req).await
            } else {
                plain.oneshot(req).await
            };
            match resp {
                Ok(r) => match r.into_body().collect().await {
                    Ok(b) => Ok::<_, Infallible>(Body::from(b.to_bytes())),
                    Err(_) => Ok(Body::from("backend body error")),
                },
                Err(_) => Ok(Body::from("backend error")),
            }
        }
    };
    Router::new()
        .route("/", get(handler))
        .layer(ThreadlineLayer::new(policy()).trust_all())
}

/// The layers measured in both placements, by variant name.
macro_rules! with_layer {
    ($variant:expr, |$layer:ident| $body:expr) => {
        match $variant {
            "threadline" => {
                let $layer = ThreadlineLayer::new(policy()).trust_all();
                Some($body)
            }
            "tower-http" => {
                let $layer = ServiceBuilder::new()
                    .layer(SetRequestIdLayer::new(CORRELATION, MakeRequestUuid))
                    .layer(PropagateRequestIdLayer::new(CORRELATION));
                Some($body)
            }
            "otel" => {
                let $layer = middleware::from_fn(otel_mw);
                Some($body)
            }
            "from-fn" => {
                let $layer = middleware::from_fn(empty_mw);
                Some($body)
            }
            "noop" => {
                let $layer = tower::layer::util::Identity::new();
                Some($body)
            }
            _ => None,
        }
    };
}

async fn router(variant: &str) -> Option<Router> {
    if let Some(app) = with_layer!(variant, |layer| hello().layer(layer)) {
        return Some(app);
    }
    Some(match variant {
        "bare" => hello(),
        "threadline-span" => hello().layer(
            ThreadlineLayer::new(policy())
                .trust_all()
                .request_span(true),
        ),
        "tower-http-trace" => hello().layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(CORRELATION, MakeRequestUuid))
                .layer(
                    tower_http::trace::TraceLayer::new_for_http().make_span_with(
                        |req: &http::Request<Body>| {
                            let id = req
                                .headers()
                                .get(CORRELATION)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-");
                            tracing::info_span!(
                                "request",
                                method = %req.method(),
                                uri = %req.uri(),
                                request_id = %id,
                            )
                        },
                    ),
                )
                .layer(PropagateRequestIdLayer::new(CORRELATION)),
        ),
        "tl-noecho" => hello().layer(ThreadlineLayer::new(policy()).trust_all().no_echo()),
        "capture-only" => {
            let p = policy();
            hello().layer(middleware::from_fn(move |req: Request, next: Next| {
                let c = p.capture(req.headers(), threadline::Trust::Trusted);
                drop(c);
                next.run(req)
            }))
        }
        "scope-only" => {
            let p = policy();
            hello().layer(middleware::from_fn(move |req: Request, next: Next| {
                let ctx = p.new_root();
                ctx.scope(next.run(req))
            }))
        }
        "hop-plain" => hop_router(Hop::Plain).await,
        "hop-static" => hop_router(Hop::Static).await,
        "hop-propagate" => hop_router(Hop::Propagate).await,
        _ => return None,
    })
}

/// Serves `layer` wrapped around the whole router (it runs once, before routing,
/// instead of inside each route: no per-route boxing, no `MatchedPath` for it to see).
async fn serve_outer<L>(layer: L, listener: tokio::net::TcpListener)
where
    L: tower::Layer<Router>,
    L::Service:
        tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    <L::Service as tower::Service<Request>>::Future: Send,
{
    let app = ServiceBuilder::new().layer(layer).service(hello());
    let app = axum::ServiceExt::<Request>::into_make_service(app);
    axum::serve(listener, app).await.expect("serve");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(variant), Some(port)) = (args.next(), args.next()) else {
        eprintln!("usage: bench_server <variant> <port>");
        std::process::exit(2);
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("bad port {port:?}");
        std::process::exit(2);
    };
    // The bench binary's own subscriber: spans are created and entered, nothing printed.
    let subscriber = tracing_subscriber::registry().with(tracing::level_filters::LevelFilter::INFO);
    tracing::subscriber::set_global_default(subscriber).expect("subscriber");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        eprintln!(
            "{variant} listening on {}",
            listener.local_addr().expect("addr")
        );
        if let Some(base) = variant.strip_suffix("-outer") {
            let served = with_layer!(base, |layer| serve_outer(layer, listener).await);
            if served.is_none() {
                eprintln!("unknown variant {variant:?}");
                std::process::exit(2);
            }
            return;
        }
        let Some(app) = router(&variant).await else {
            eprintln!("unknown variant {variant:?}");
            std::process::exit(2);
        };
        axum::serve(listener, app).await.expect("serve");
    });
}
