//! The trust boundary on a real server: untrusted callers cannot set `trusted_only`
//! headers (nor, in edge mode, their trace and correlation id); trusted ones can.

#![cfg(feature = "axum")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use common::{send, serve_axum, text};
use http::Request;
use http_body_util::Full;
use threadline::{Context, HeaderRule, Policy, Reason};
use threadline_tower::{RequireCorrelationIdLayer, ThreadlineLayer, TrustPolicy};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn policy(edge: bool) -> Policy {
    Policy::builder()
        .header_rule(HeaderRule::new("x-tenant-id").trusted_only())
        .header("x-client")
        .untrusted_start_fresh(edge, edge)
        .build()
        .unwrap()
}

fn app() -> Router {
    Router::new().route(
        "/",
        get(|| async {
            let c = Context::current();
            format!(
                "tenant={};client={};trace={}",
                c.get("x-tenant-id").unwrap_or("-"),
                c.get("x-client").unwrap_or("-"),
                c.trace_id().map(|t| t.to_string()).unwrap_or_default()
            )
        }),
    )
}

struct Seen {
    status: u16,
    echoed: String,
    body: String,
}

async fn call(layer: ThreadlineLayer, headers: &[(&str, &str)]) -> Seen {
    let addr = serve_axum(app().layer(layer)).await;
    let mut req = Request::get(format!("http://{addr}/"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::<Bytes>::default()).unwrap();
    let resp = send(req).await;
    Seen {
        status: resp.status().as_u16(),
        echoed: resp
            .headers()
            .get("x-correlation-id")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body: text(resp.into_body()).await,
    }
}

const CALLER: &[(&str, &str)] = &[
    ("x-tenant-id", "acme"),
    ("x-client", "web"),
    ("x-correlation-id", "caller-id-1"),
    (
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ),
];

#[tokio::test]
async fn untrusted_caller_cannot_set_tenant_trusted_can() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    // The peer is 127.0.0.1: outside 10.0.0.0/8.
    let untrusted = ThreadlineLayer::new(policy(false))
        .trust(TrustPolicy::peer_in(["10.0.0.0/8"]).unwrap())
        .on_rejected(move |report, _| {
            d.fetch_add(
                report
                    .iter()
                    .filter(|r| r.reason == Reason::Untrusted)
                    .count(),
                Ordering::Relaxed,
            );
        });
    let seen = call(untrusted, CALLER).await;
    assert_eq!(seen.status, 200);
    assert!(
        seen.body.starts_with("tenant=-;client=web;"),
        "{}",
        seen.body
    );
    assert_eq!(
        dropped.load(Ordering::Relaxed),
        1,
        "the dropped tenant is counted"
    );

    let trusted = ThreadlineLayer::new(policy(false))
        .trust(TrustPolicy::peer_in(["10.0.0.0/8", "127.0.0.1/32"]).unwrap());
    let seen = call(trusted, CALLER).await;
    assert!(
        seen.body.starts_with("tenant=acme;client=web;"),
        "{}",
        seen.body
    );
}

#[tokio::test]
async fn shared_secret_and_closure() {
    let secret = || TrustPolicy::shared_secret("x-internal-token", "let-me-in").unwrap();
    let mut with_secret = CALLER.to_vec();
    with_secret.push(("x-internal-token", "let-me-in"));
    let seen = call(
        ThreadlineLayer::new(policy(false)).trust(secret()),
        &with_secret,
    )
    .await;
    assert!(seen.body.starts_with("tenant=acme;"), "{}", seen.body);

    let mut wrong = CALLER.to_vec();
    wrong.push(("x-internal-token", "let-me-in-please"));
    let seen = call(ThreadlineLayer::new(policy(false)).trust(secret()), &wrong).await;
    assert!(seen.body.starts_with("tenant=-;"), "{}", seen.body);

    let mesh_header = TrustPolicy::custom(|headers, _, _| headers.contains_key("x-from-mesh"));
    let seen = call(
        ThreadlineLayer::new(policy(false)).trust(mesh_header.clone()),
        CALLER,
    )
    .await;
    assert!(seen.body.starts_with("tenant=-;"), "{}", seen.body);
    let mut mesh = CALLER.to_vec();
    mesh.push(("x-from-mesh", "1"));
    let seen = call(
        ThreadlineLayer::new(policy(false)).trust(mesh_header),
        &mesh,
    )
    .await;
    assert!(seen.body.starts_with("tenant=acme;"), "{}", seen.body);
}

/// The shared secret goes no further than the trust decision: the handler, a context
/// captured in "capture all" mode (and so outgoing calls) never hold it, whether the
/// caller sent the right value or a guess, and also when the secret policy sits inside
/// `TrustPolicy::any`.
#[tokio::test]
async fn the_shared_secret_header_is_removed_once_trust_is_decided() {
    let capture_all = Policy::builder()
        .header_rule(HeaderRule::new("x-tenant-id").trusted_only())
        .capture_all_except(["user-agent"])
        .build()
        .unwrap();
    let app = Router::new().route(
        "/",
        get(|headers: http::HeaderMap| async move {
            let c = Context::current();
            let captured: Vec<String> = c.headers().map(|(n, _)| n.to_string()).collect();
            format!(
                "tenant={};handler_sees={};captured={}",
                c.get("x-tenant-id").unwrap_or("-"),
                headers.contains_key("x-internal-token"),
                captured.join(",")
            )
        }),
    );
    let policies = [
        TrustPolicy::shared_secret("x-internal-token", "let-me-in").unwrap(),
        TrustPolicy::any([
            TrustPolicy::peer_in(["10.0.0.0/8"]).unwrap(),
            TrustPolicy::shared_secret("x-internal-token", "let-me-in").unwrap(),
        ]),
    ];
    for trust in policies {
        let addr = serve_axum(
            app.clone()
                .layer(ThreadlineLayer::new(capture_all.clone()).trust(trust)),
        )
        .await;
        for (sent, tenant) in [("let-me-in", "acme"), ("a-guess", "-")] {
            let req = Request::get(format!("http://{addr}/"))
                .header("x-tenant-id", "acme")
                .header("x-other", "kept")
                .header("x-internal-token", sent)
                .body(Full::<Bytes>::default())
                .unwrap();
            let resp = send(req).await;
            let body = text(resp.into_body()).await;
            assert!(
                body.starts_with(&format!("tenant={tenant};handler_sees=false;")),
                "{body}"
            );
            assert!(body.contains("x-other"), "capture all works: {body}");
            assert!(!body.contains("x-internal-token"), "{body}");
        }
    }
}

#[tokio::test]
async fn edge_mode_starts_fresh_for_untrusted_callers_only() {
    let edge = call(
        ThreadlineLayer::new(policy(true)).trust(TrustPolicy::never()),
        CALLER,
    )
    .await;
    assert_ne!(
        edge.echoed, "caller-id-1",
        "fresh correlation id at the edge"
    );
    assert!(!edge.echoed.is_empty());
    assert!(
        !edge.body.contains(TRACE),
        "fresh trace at the edge: {}",
        edge.body
    );

    let inside = call(
        ThreadlineLayer::new(policy(true)).trust(TrustPolicy::always()),
        CALLER,
    )
    .await;
    assert_eq!(inside.echoed, "caller-id-1");
    assert!(inside.body.ends_with(TRACE), "{}", inside.body);
}

#[tokio::test]
async fn require_correlation_id_answers_400_over_http() {
    let addr = serve_axum(
        app()
            .layer(RequireCorrelationIdLayer::new())
            .layer(ThreadlineLayer::new(Policy::default())),
    )
    .await;
    for (value, want) in [
        (None, 400),
        (Some("bad id with spaces"), 400),
        (Some("good-1"), 200),
    ] {
        let mut req = Request::get(format!("http://{addr}/"));
        if let Some(v) = value {
            req = req.header("x-correlation-id", v);
        }
        let resp = send(req.body(Full::<Bytes>::default()).unwrap()).await;
        assert_eq!(resp.status().as_u16(), want, "{value:?}");
        assert!(resp.headers().contains_key("x-correlation-id"));
        let body = text(resp.into_body()).await;
        if want == 400 {
            assert_eq!(body, "missing or invalid x-correlation-id header\n");
        }
    }
}
