//! Where the server layer sits in an axum app: through `Router::layer` (inside each
//! route and the fallback, after routing) or around the whole `Router` (once, before
//! routing). Both capture, scope and echo, for matched routes and the 404 fallback.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use threadline::{Context, Policy};
use threadline_tower::ThreadlineLayer;
use tower::{ServiceBuilder, ServiceExt};

fn app() -> Router {
    Router::new().route(
        "/hello",
        get(|| async {
            Context::current()
                .get("x-tenant-id")
                .unwrap_or("-")
                .to_owned()
        }),
    )
}

fn layer() -> ThreadlineLayer {
    ThreadlineLayer::new(Policy::builder().header("x-tenant-id").build().unwrap()).trust_all()
}

fn request(path: &str) -> Request<Body> {
    Request::get(path)
        .header("x-correlation-id", "req-placement")
        .header("x-tenant-id", "acme")
        .body(Body::empty())
        .unwrap()
}

async fn body(resp: http::Response<Body>) -> String {
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn around_the_router() {
    let svc = ServiceBuilder::new().layer(layer()).service(app());
    let resp = svc.clone().oneshot(request("/hello")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-correlation-id"], "req-placement");
    assert_eq!(body(resp).await, "acme");

    let missing = svc.oneshot(request("/nowhere")).await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.headers()["x-correlation-id"], "req-placement");
}

#[tokio::test]
async fn through_router_layer() {
    let svc = app().layer(layer());
    let resp = svc.clone().oneshot(request("/hello")).await.unwrap();
    assert_eq!(resp.headers()["x-correlation-id"], "req-placement");
    assert_eq!(body(resp).await, "acme");

    let missing = svc.oneshot(request("/nowhere")).await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.headers()["x-correlation-id"], "req-placement");
}
