//! The route layer's cost, in the same run: a call that is not routed (the context
//! has no key, or a key no rule routes for that destination) through
//! `PropagateLayer` + `RouteLayer` with a 1,000-rule table, against `PropagateLayer`
//! alone; and a routed call against calling the sandbox directly. Over real loopback
//! HTTP/1.1 (hyper server on its own thread, hyper-util keep-alive client) and
//! in-process (a stand-in client), the latter to see the layer's own nanoseconds.
//!
//! ```text
//! cargo bench -p threadline-tower --features route --bench route
//! ```

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use threadline::{Policy, Routing, RoutingKey};
use threadline_route::{Router, Rule, Upstream};
use threadline_tower::{PropagateLayer, RouteLayer, Targets};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// A hello-world HTTP/1.1 server on its own thread and runtime.
fn server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    addr
}

/// 1,000 rules: 50 services (the baseline among them) with 20 keys each.
fn router(baseline: SocketAddr, sandbox: SocketAddr) -> Router {
    let up = Upstream::parse(&format!("http://{sandbox}")).unwrap();
    let mut rules = Vec::new();
    for s in 0..50 {
        let service = if s == 0 {
            format!("127.0.0.1:{}", baseline.port())
        } else {
            format!("svc{s}.internal")
        };
        for k in 0..20 {
            let key = if s == 0 && k == 0 {
                "alice".to_owned()
            } else {
                format!("dev{s}-{k}")
            };
            rules.push(Rule::new(format!("r{s}-{k}"), &service, [key], up.clone()).unwrap());
        }
    }
    let router = Router::new();
    router.set_rules("bench", rules).unwrap();
    assert_eq!(router.table().len(), 1000);
    router
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let baseline = server();
    let sandbox = server();
    let router = router(baseline, sandbox);
    let policy = Policy::builder()
        .routing(Routing::header("x-routing-key"))
        .build()
        .unwrap();
    let no_key = policy.new_root();
    let unrouted = no_key.with_routing_key(RoutingKey::new("bob").unwrap());
    let routed = no_key.with_routing_key(RoutingKey::new("alice").unwrap());

    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut alone = ServiceBuilder::new()
        .layer(PropagateLayer::new(Targets::everywhere()))
        .service(http.clone());
    let mut with_route = ServiceBuilder::new()
        .layer(PropagateLayer::new(Targets::everywhere()))
        .layer(RouteLayer::new(router.clone()))
        .service(http);
    let to_baseline = format!("http://{baseline}/");
    let to_sandbox = format!("http://{sandbox}/");
    let req = |url: &str| Request::get(url).body(Full::default()).unwrap();

    let mut g = c.benchmark_group("loopback hop, 1,000 rules");
    g.measurement_time(Duration::from_secs(8));
    macro_rules! hop {
        ($name:expr, $svc:expr, $ctx:expr, $url:expr) => {
            g.bench_function($name, |b| {
                b.iter(|| {
                    rt.block_on($ctx.clone().scope(async {
                        let resp = $svc.ready().await.unwrap().call(req($url)).await.unwrap();
                        resp.into_body().collect().await.unwrap()
                    }))
                })
            });
        };
    }
    hop!("client layer alone", alone, unrouted, &to_baseline);
    hop!(
        "+ route layer, not routed (no key)",
        with_route,
        no_key,
        &to_baseline
    );
    hop!(
        "+ route layer, not routed (key, no rule)",
        with_route,
        unrouted,
        &to_baseline
    );
    hop!(
        "+ route layer, routed to the sandbox",
        with_route,
        routed,
        &to_baseline
    );
    hop!(
        "client layer alone, to the sandbox directly",
        alone,
        routed,
        &to_sandbox
    );
    g.finish();

    // In-process: a stand-in client that answers at once.
    let answer = |r: Request<Full<Bytes>>| async move {
        Ok::<_, Infallible>(Response::new(r.uri().port_u16()))
    };
    let mut alone = ServiceBuilder::new()
        .layer(PropagateLayer::new(Targets::everywhere()))
        .service(service_fn(answer));
    let mut with_route = ServiceBuilder::new()
        .layer(PropagateLayer::new(Targets::everywhere()))
        .layer(RouteLayer::new(router))
        .service(service_fn(answer));
    let mut g = c.benchmark_group("in-process, 1,000 rules");
    macro_rules! call {
        ($name:expr, $svc:expr, $ctx:expr) => {
            g.bench_function($name, |b| {
                b.iter(|| {
                    rt.block_on($ctx.clone().scope(async {
                        let resp = $svc.ready().await.unwrap().call(req(&to_baseline)).await;
                        black_box(resp.ok().map(Response::into_body))
                    }))
                })
            });
        };
    }
    call!("client layer alone", alone, unrouted);
    call!("+ route layer, not routed (no key)", with_route, no_key);
    call!(
        "+ route layer, not routed (key, no rule)",
        with_route,
        unrouted
    );
    call!("+ route layer, routed", with_route, routed);
    g.finish();
}

#[allow(missing_docs)]
mod groups {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(groups::benches);
