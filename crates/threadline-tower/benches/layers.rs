//! In-process cost of the layers per request, without sockets: a hello-world
//! `service_fn` bare, behind `ThreadlineLayer`, behind an empty `map_request` (the
//! plumbing floor), and `PropagateLayer` on a client stand-in against the same five
//! headers set by hand. Five context headers per request, as in `bench/http.sh`.
//! Ratios against `bare` from the same run matter, not absolute times.
//!
//! ```text
//! cargo bench -p threadline-tower --bench layers
//! ```

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{Criterion, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use threadline::{Context, Policy};
use threadline_tower::{PropagateLayer, Target, Targets, ThreadlineLayer};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

#[path = "../bench/context.rs"]
mod context;

fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in context::CONTEXT {
        h.insert(HeaderName::from_static(k), v.parse().unwrap());
    }
    h.insert("host", "127.0.0.1:8080".parse().unwrap());
    h.insert("user-agent", "wrk".parse().unwrap());
    h
}

fn request(h: &HeaderMap) -> Request<()> {
    let mut r = Request::new(());
    *r.headers_mut() = h.clone();
    r
}

async fn hello(_: Request<()>) -> Result<Response<&'static str>, Infallible> {
    Ok(Response::new("Hello, World!"))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let h = headers();
    let policy = Policy::builder().header("x-tenant-id").build().unwrap();
    let mut g = c.benchmark_group("server");

    g.bench_function("capture only", |b| {
        b.iter(|| {
            policy
                .capture(black_box(&h), threadline::Trust::Trusted)
                .context
        })
    });
    let mut bare = service_fn(hello);
    g.bench_function("bare", |b| {
        b.iter(|| rt.block_on(bare.call(request(black_box(&h)))).unwrap())
    });
    let mut empty = ServiceBuilder::new()
        .map_request(|r: Request<()>| r)
        .service(service_fn(hello));
    g.bench_function("empty map_request", |b| {
        b.iter(|| rt.block_on(empty.call(request(black_box(&h)))).unwrap())
    });
    let mut tl = ServiceBuilder::new()
        .layer(ThreadlineLayer::new(policy.clone()).trust_all())
        .service(service_fn(hello));
    g.bench_function("threadline", |b| {
        b.iter(|| rt.block_on(tl.call(request(black_box(&h)))).unwrap())
    });
    let mut span = ServiceBuilder::new()
        .layer(
            ThreadlineLayer::new(policy.clone())
                .trust_all()
                .request_span(true),
        )
        .service(service_fn(hello));
    g.bench_function("threadline + span (no subscriber)", |b| {
        b.iter(|| rt.block_on(span.call(request(black_box(&h)))).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("client");
    let ctx: Context = policy.capture(&h, threadline::Trust::Trusted).context;
    let send = |r: Request<()>| async move { Ok::<_, Infallible>(r.headers().len()) };
    // Each iteration makes the request, sends it through the stand-in client inside the
    // context's scope and drops it: `plain` with no context headers, `static` with the
    // five set by hand from constants, `propagate` through the layer (a by-host rule,
    // as a real service configures it). propagate - static is the layer's own work.
    let mut plain = service_fn(send);
    let mut fixed = service_fn(send);
    let mut prop = ServiceBuilder::new()
        .layer(PropagateLayer::new(
            Targets::new().allow(Target::host("*.internal")),
        ))
        .service(service_fn(send));
    let get = || Request::get("http://a.internal/").body(()).unwrap();
    g.bench_function("plain", |b| {
        b.iter(|| {
            rt.block_on(
                ctx.clone()
                    .scope(async { plain.ready().await.unwrap().call(get()).await }),
            )
            .unwrap()
        })
    });
    g.bench_function("static", |b| {
        b.iter(|| {
            rt.block_on(ctx.clone().scope(async {
                let mut req = get();
                for (k, v) in context::CONTEXT {
                    req.headers_mut()
                        .insert(HeaderName::from_static(k), HeaderValue::from_static(v));
                }
                fixed.ready().await.unwrap().call(req).await
            }))
            .unwrap()
        })
    });
    g.bench_function("propagate", |b| {
        b.iter(|| {
            rt.block_on(
                ctx.clone()
                    .scope(async { prop.ready().await.unwrap().call(get()).await }),
            )
            .unwrap()
        })
    });
    g.finish();
}

#[allow(missing_docs)]
mod groups {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(groups::benches);
