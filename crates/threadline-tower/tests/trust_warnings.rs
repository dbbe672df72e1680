//! A trust policy that cannot work says so, once, at warn level, naming the fix: one
//! that reads the peer address on a server that does not provide it, and a
//! `trusted_only` header dropped for that reason (told apart from a caller that is
//! known and not trusted, which is normal at an edge and stays at debug level).

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use http::Request;
use threadline::{Context, HeaderRule, Policy};
use threadline_testkit::logs::Captured;
use threadline_tower::{ThreadlineLayer, TrustPolicy};
use tower::ServiceExt;
use tracing::Level;

fn policy() -> Policy {
    Policy::builder()
        .header_rule(HeaderRule::new("x-tenant-id").trusted_only())
        .build()
        .unwrap()
}

fn app(trust: TrustPolicy) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async {
                let tenant = Context::current().get("x-tenant-id").map(str::to_owned);
                format!("tenant={}", tenant.as_deref().unwrap_or("-"))
            }),
        )
        .layer(ThreadlineLayer::new(policy()).trust(trust))
}

/// One request through `app` in process, from `peer` (none: what a server that does
/// not provide the address hands the layer), with `x-tenant-id: acme` when `tenant`.
async fn call(app: &Router, peer: Option<&str>, tenant: bool) -> String {
    let mut req = Request::get("/");
    if tenant {
        req = req.header("x-tenant-id", "acme");
    }
    let mut req = req.body(axum::body::Body::empty()).unwrap();
    if let Some(p) = peer {
        req.extensions_mut()
            .insert(p.parse::<SocketAddr>().unwrap());
    }
    let resp = app.clone().oneshot(req).await.unwrap();
    common::text(resp.into_body()).await
}

fn dropped_lines(logs: &Captured) -> Vec<String> {
    logs.at(Level::DEBUG)
        .into_iter()
        .filter(|l| l.contains("inbound context header dropped"))
        .collect()
}

fn names_the_fix(warning: &str) {
    assert!(
        warning.contains("into_make_service_with_connect_info::<SocketAddr>()"),
        "names the axum fix: {warning}"
    );
    assert!(
        warning.contains("threadline_tower::PeerAddr"),
        "names the hyper fix: {warning}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_trusted_only_header_dropped_for_an_unknown_peer_is_one_warning() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let app = app(TrustPolicy::private_networks());
    for _ in 0..3 {
        assert_eq!(call(&app, None, true).await, "tenant=-");
    }
    let warnings = logs.at(Level::WARN);
    assert_eq!(warnings.len(), 1, "once per layer: {warnings:?}");
    let w = &warnings[0];
    assert!(w.contains("dropped x-tenant-id"), "names the header: {w}");
    assert!(
        w.contains(
            "because the caller's peer address is unknown (not because the peer is untrusted)"
        ),
        "says why, apart from an untrusted peer: {w}"
    );
    names_the_fix(w);
    // Each drop, at debug, says the same reason.
    let dropped = dropped_lines(&logs);
    assert_eq!(dropped.len(), 3, "{dropped:?}");
    for line in dropped {
        assert!(
            line.contains("caller=not trusted: peer address unknown"),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_peer_policy_on_a_server_without_peer_addresses_is_one_warning() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let app = app(TrustPolicy::peer_in(["10.0.0.0/8"]).unwrap());
    // The first request carries nothing trusted: the warning still comes, at once.
    assert_eq!(call(&app, None, false).await, "tenant=-");
    let warnings = logs.at(Level::WARN);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert!(
        w.contains(
            "the trust policy reads the caller's peer address, and this server does not provide it"
        ),
        "{w}"
    );
    assert!(w.contains("every caller is untrusted"), "{w}");
    names_the_fix(w);
    // Later requests, even ones that lose a header, do not repeat it.
    call(&app, None, true).await;
    call(&app, None, false).await;
    assert_eq!(logs.at(Level::WARN).len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_known_peer_that_is_not_trusted_is_no_warning() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let app = app(TrustPolicy::private_networks());
    assert_eq!(call(&app, Some("203.0.113.9:443"), true).await, "tenant=-");
    assert_eq!(call(&app, Some("10.1.2.3:5000"), true).await, "tenant=acme");
    assert!(logs.at(Level::WARN).is_empty(), "{:?}", logs.all());
    let dropped = dropped_lines(&logs);
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert!(dropped[0].contains("header=x-tenant-id"), "{}", dropped[0]);
    assert!(dropped[0].contains("caller=not trusted"), "{}", dropped[0]);
    assert!(
        !dropped[0].contains("peer address unknown"),
        "{}",
        dropped[0]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn policies_that_do_not_read_the_peer_never_warn() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    for trust in [
        TrustPolicy::never(),
        TrustPolicy::shared_secret("x-internal", "s3cret").unwrap(),
    ] {
        assert_eq!(call(&app(trust), None, true).await, "tenant=-");
    }
    assert!(logs.at(Level::WARN).is_empty(), "{:?}", logs.all());
}

/// On a real axum server: served without `ConnectInfo`, one warning; served as the
/// warning says, the loopback caller is trusted.
#[cfg(feature = "axum")]
#[tokio::test(flavor = "current_thread")]
async fn axum_served_with_and_without_connect_info() {
    use bytes::Bytes;
    use http_body_util::Full;

    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let get_tenant = |addr: SocketAddr| {
        let req = Request::get(format!("http://{addr}/"))
            .header("x-tenant-id", "acme")
            .body(Full::<Bytes>::default())
            .unwrap();
        async move { common::text(common::send(req).await.into_body()).await }
    };

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let without = listener.local_addr().unwrap();
    let router = app(TrustPolicy::loopback());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    assert_eq!(get_tenant(without).await, "tenant=-");
    assert_eq!(get_tenant(without).await, "tenant=-");
    let warnings = logs.at(Level::WARN);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("dropped x-tenant-id"),
        "{}",
        warnings[0]
    );
    names_the_fix(&warnings[0]);

    let with = common::serve_axum(app(TrustPolicy::loopback())).await;
    assert_eq!(get_tenant(with).await, "tenant=acme");
    assert_eq!(logs.at(Level::WARN).len(), 1, "no new warning");
}
