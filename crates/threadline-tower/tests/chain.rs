//! Three real services on 127.0.0.1: axum (A) → axum (B, over the hyper-util client)
//! → tonic gRPC (C, over a tonic client), plus a service D that is not an allowed
//! destination. The context must arrive intact where it is allowed and nowhere else.

#![cfg(all(feature = "axum", feature = "tonic"))]

mod common;

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context as TaskCx, Poll};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use common::{client, send, serve_axum, text};
use http::uri::PathAndQuery;
use http::{HeaderMap, Request, Uri};
use http_body_util::Full;
use serde_json::{Value, json};
use threadline::{Context, HeaderRule, Policy};
use threadline_tower::{Grant, PropagateLayer, Target, Targets, ThreadlineLayer, TrustPolicy};
use tonic_prost::ProstCodec;
use tower::{Service, ServiceBuilder, ServiceExt};

#[derive(Clone, PartialEq, prost::Message)]
struct HopRequest {
    #[prost(string, tag = "1")]
    note: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HopReply {
    #[prost(string, tag = "1")]
    seen: String,
}

const HOP_PATH: &str = "/chain.Hop/Call";

fn policy() -> Policy {
    Policy::builder()
        .header_rule(HeaderRule::new("x-tenant-id").trusted_only())
        .header_rule(HeaderRule::new("x-client").rename("x-upstream-client"))
        .header("x-upstream-client")
        .header("authorization")
        .build()
        .unwrap()
}

/// What one hop saw: its context, and a few raw headers.
fn view(ctx: &Context, raw: &HeaderMap) -> Value {
    let t = ctx.trace().expect("trace at every hop");
    json!({
        "cid": ctx.correlation_id().map(|c| c.as_str().to_owned()),
        "trace": t.trace_id().to_string(),
        "parent": t.parent_id().map(|p| p.to_string()),
        "span": t.span_id().to_string(),
        "tenant": ctx.get("x-tenant-id"),
        "upstream_client": ctx.get("x-upstream-client"),
        "baggage": ctx.baggage().map(|b| b.as_str().to_owned()),
        "raw_authorization": raw.contains_key("authorization"),
        "raw_x_client": raw.contains_key("x-client"),
        "raw_x_upstream_client": raw.get("x-upstream-client").and_then(|v| v.to_str().ok()),
    })
}

/// The gRPC service C, written by hand (what tonic's codegen would write).
#[derive(Clone)]
struct HopService;

struct CallSvc;

impl tonic::server::UnaryService<HopRequest> for CallSvc {
    type Response = HopReply;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<HopReply>, tonic::Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<HopRequest>) -> Self::Future {
        let raw = request.metadata().clone().into_headers();
        Box::pin(async move {
            tokio::task::yield_now().await;
            let seen = view(&Context::current(), &raw).to_string();
            Ok(tonic::Response::new(HopReply { seen }))
        })
    }
}

impl<B> Service<Request<B>> for HopService
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskCx<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        Box::pin(async move {
            if req.uri().path() == HOP_PATH {
                let mut grpc =
                    tonic::server::Grpc::new(ProstCodec::<HopReply, HopRequest>::default());
                Ok(grpc.unary(CallSvc, req).await)
            } else {
                Ok(tonic::Status::unimplemented("no such method").into_http())
            }
        })
    }
}

async fn serve_tonic(layer: ThreadlineLayer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(layer)
            .serve_with_incoming(HopService, incoming)
            .await
            .unwrap();
    });
    addr
}

/// Service D: not an allowed destination; reports every header it received.
async fn serve_recorder() -> SocketAddr {
    let app = Router::new().route(
        "/",
        get(|headers: HeaderMap| async move {
            let names: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
            json!(names).to_string()
        }),
    );
    serve_axum(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_service_chain_axum_hyper_tonic() {
    // C: tonic, trusts peers on loopback (tonic's TcpConnectInfo).
    let c_addr = serve_tonic(
        ThreadlineLayer::new(policy()).trust(TrustPolicy::peer_in(["127.0.0.1/32"]).unwrap()),
    )
    .await;

    // B: axum, calls C over a tonic Channel wrapped in the client layer.
    let channel = tonic::transport::Channel::from_shared(format!("http://{c_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let c_targets = Targets::new().allow(Target::host("127.0.0.1").port(c_addr.port()));
    let grpc_client = ServiceBuilder::new()
        .layer(PropagateLayer::new(c_targets))
        .service(channel);
    let c_origin: Uri = format!("http://{c_addr}").parse().unwrap();
    let b_app = Router::new()
        .route(
            "/b",
            get(move |headers: HeaderMap| {
                let grpc_client = grpc_client.clone();
                let origin = c_origin.clone();
                async move {
                    let me = view(&Context::current(), &headers);
                    let mut grpc = tonic::client::Grpc::with_origin(grpc_client, origin);
                    grpc.ready().await.unwrap();
                    let reply = grpc
                        .unary(
                            tonic::Request::new(HopRequest {
                                note: "from b".into(),
                            }),
                            PathAndQuery::from_static(HOP_PATH),
                            ProstCodec::<HopRequest, HopReply>::default(),
                        )
                        .await
                        .unwrap()
                        .into_inner();
                    let c: Value = serde_json::from_str(&reply.seen).unwrap();
                    json!({ "b": me, "c": c }).to_string()
                }
            }),
        )
        .layer(ThreadlineLayer::new(policy()).trust_all());
    let b_addr = serve_axum(b_app).await;

    // D: some other service that must receive nothing internal.
    let d_addr = serve_recorder().await;

    // A: axum, calls B (allowed, no credentials) and D (not allowed) over hyper-util.
    let a_targets = Targets::new().grant(
        Target::host("127.0.0.1").scheme("http").port(b_addr.port()),
        Grant::all(),
    );
    let a_client = ServiceBuilder::new()
        .layer(PropagateLayer::new(a_targets))
        .service(client());
    let a_app = Router::new()
        .route(
            "/a",
            get(move |headers: HeaderMap| {
                let a_client = a_client.clone();
                async move {
                    let me = view(&Context::current(), &headers);
                    let b_req = Request::get(format!("http://{b_addr}/b"))
                        .body(Full::<Bytes>::default())
                        .unwrap();
                    let b_resp = a_client.clone().oneshot(b_req).await.unwrap();
                    assert_eq!(b_resp.status(), 200);
                    let bc: Value = serde_json::from_str(&text(b_resp.into_body()).await).unwrap();
                    let d_req = Request::get(format!("http://{d_addr}/"))
                        .body(Full::<Bytes>::default())
                        .unwrap();
                    let d_resp = a_client.oneshot(d_req).await.unwrap();
                    let d: Value = serde_json::from_str(&text(d_resp.into_body()).await).unwrap();
                    json!({ "a": me, "b": bc["b"], "c": bc["c"], "d": d }).to_string()
                }
            }),
        )
        .layer(
            ThreadlineLayer::new(policy()).trust(TrustPolicy::peer_in(["127.0.0.1/32"]).unwrap()),
        );
    let a_addr = serve_axum(a_app).await;

    // The outside caller.
    let cid = format!("chain-{}", std::process::id());
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let p0 = "00f067aa0ba902b7";
    let req = Request::get(format!("http://{a_addr}/a"))
        .header("x-correlation-id", &cid)
        .header("traceparent", format!("00-{trace}-{p0}-01"))
        .header("tracestate", "vendor=abc")
        .header("baggage", "region=eu")
        .header("x-tenant-id", "acme")
        .header("x-client", "web")
        .header("authorization", "Bearer top-secret")
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = send(req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-correlation-id"],
        cid.as_str(),
        "echo at A"
    );
    let all: Value = serde_json::from_str(&text(resp.into_body()).await).unwrap();
    let (a, b, c, d) = (&all["a"], &all["b"], &all["c"], &all["d"]);

    for (hop, v) in [("a", a), ("b", b), ("c", c)] {
        assert_eq!(v["cid"], cid.as_str(), "same correlation id at {hop}");
        assert_eq!(v["trace"], trace, "same trace id at {hop}");
        assert_eq!(v["tenant"], "acme", "x-tenant-id arrives at {hop}");
        assert_eq!(v["baggage"], "region=eu", "baggage arrives at {hop}");
    }
    // A different parent id at every hop, none equal to a hop's own span id reused.
    let parents: HashSet<&str> = [a, b, c]
        .iter()
        .map(|v| v["parent"].as_str().unwrap())
        .collect();
    assert_eq!(
        parents.len(),
        3,
        "a different parent id at every hop: {all}"
    );
    assert_eq!(a["parent"], p0);
    let spans: HashSet<&str> = [a, b, c]
        .iter()
        .map(|v| v["span"].as_str().unwrap())
        .collect();
    assert_eq!(spans.len(), 3, "each hop has its own span id");

    // Renamed header: arrives under its new name only.
    assert_eq!(a["upstream_client"], Value::Null);
    assert_eq!(b["raw_x_upstream_client"], "web");
    assert_eq!(b["raw_x_client"], false);
    assert_eq!(b["upstream_client"], "web");
    assert_eq!(c["raw_x_upstream_client"], "web");

    // Credentials: captured at A, never forwarded (not named for B or C).
    assert_eq!(a["raw_authorization"], true);
    assert_eq!(
        b["raw_authorization"], false,
        "authorization not forwarded to B"
    );
    assert_eq!(
        c["raw_authorization"], false,
        "authorization not forwarded to C"
    );

    // D is not an allowed destination: nothing internal at all.
    let d_names: Vec<&str> = d
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for internal in [
        "x-correlation-id",
        "traceparent",
        "tracestate",
        "baggage",
        "x-tenant-id",
        "x-upstream-client",
        "x-client",
        "authorization",
    ] {
        assert!(
            !d_names.contains(&internal),
            "{internal} leaked to D: {d_names:?}"
        );
    }
    assert!(
        d_names.contains(&"host"),
        "D did receive the request: {d_names:?}"
    );
}

/// gRPC calls routed by key: a tonic client over a client that connects per URI
/// (hyper-util's, HTTP/2 with prior knowledge) and the route layer. A tonic `Channel`
/// is bound to one endpoint, so it cannot be pointed elsewhere per call; this is the
/// shape that can.
#[cfg(feature = "route")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_routed_by_key_over_a_per_uri_client() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use threadline::{Routing, RoutingKey};
    use threadline_route::{Router as Routes, Rule, Upstream};
    use threadline_tower::RouteLayer;

    async fn counted_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .layer(tower::util::MapRequestLayer::new(move |req: Request<_>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    req
                }))
                .layer(ThreadlineLayer::new(policy()).trust_all())
                .serve_with_incoming(HopService, incoming)
                .await
                .unwrap();
        });
        (addr, calls)
    }

    let (baseline, baseline_calls) = counted_server().await;
    let (sandbox, sandbox_calls) = counted_server().await;
    let routes = Routes::new();
    routes
        .set_rules(
            "code",
            vec![
                Rule::new(
                    "alice-hop",
                    &baseline.to_string(),
                    ["alice"],
                    Upstream::parse(&format!("http://{sandbox}")).unwrap(),
                )
                .unwrap(),
            ],
        )
        .unwrap();
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<tonic::body::Body>();
    let svc = ServiceBuilder::new()
        .layer(PropagateLayer::new(Targets::everywhere()))
        .layer(RouteLayer::new(routes))
        .service(h2);
    let origin: Uri = format!("http://{baseline}").parse().unwrap();
    let call = |ctx: Context| {
        let mut grpc = tonic::client::Grpc::with_origin(svc.clone(), origin.clone());
        ctx.scope(async move {
            grpc.ready().await.unwrap();
            grpc.unary(
                tonic::Request::new(HopRequest { note: "hop".into() }),
                PathAndQuery::from_static(HOP_PATH),
                ProstCodec::<HopRequest, HopReply>::default(),
            )
            .await
            .unwrap()
            .into_inner()
        })
    };
    let routed_policy = Policy::builder()
        .routing(Routing::header("x-routing-key"))
        .build()
        .unwrap();
    let plain = routed_policy.new_root();
    let alice = plain.with_routing_key(RoutingKey::new("alice").unwrap());

    call(plain.clone()).await;
    assert_eq!(
        (
            baseline_calls.load(Ordering::SeqCst),
            sandbox_calls.load(Ordering::SeqCst)
        ),
        (1, 0)
    );
    let reply = call(alice).await;
    assert_eq!(
        (
            baseline_calls.load(Ordering::SeqCst),
            sandbox_calls.load(Ordering::SeqCst)
        ),
        (1, 1),
        "the keyed call reached the sandbox"
    );
    // The sandbox saw the same trace the caller is in.
    let seen: Value = serde_json::from_str(&reply.seen).unwrap();
    assert_eq!(
        seen["trace"],
        plain.trace().unwrap().trace_id().to_string(),
        "{seen}"
    );
}
