//! End to end with a Python app (standard library `http.server`) behind the proxy:
//! the context arrives as headers and in the app's own log lines, the correlation id
//! is echoed, requests are routed by key, untrusted callers cannot set tenant ids, and
//! the app's outgoing calls (through the egress listener) never carry credentials or
//! internal headers to a host that is not allowed. Needs `python3`.

mod common;

use common::{get, python_app, start, upstream};
use serde_json::Value;
use threadline::{HeaderRule, Policy};
use threadline_proxy::{EgressConfig, ProxyConfig, Rule};
use threadline_tower::{Grant, Target, Targets, TrustPolicy};

const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const P: &str = "00f067aa0ba902b7";

fn policy() -> Policy {
    Policy::builder()
        .header_rule(HeaderRule::new("x-tenant-id").trusted_only())
        .header("authorization")
        .untrusted_start_fresh(true, true)
        .build()
        .unwrap()
}

fn headers_of(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["headers"].clone()
}

fn one(h: &Value, name: &str) -> Option<String> {
    let all = h[name].as_array()?;
    assert_eq!(all.len(), 1, "{name} sent once: {all:?}");
    all[0].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_app_gets_the_context_and_logs_it() {
    let test = "python_app_gets_the_context_and_logs_it";
    let Some(app) = python_app(test, "orders", None) else {
        return;
    };
    let secret = "s3cret-for-the-test";
    let config = ProxyConfig::new(upstream(app.addr))
        .policy(policy())
        .trust(TrustPolicy::shared_secret("x-proxy-secret", secret).unwrap());
    let proxy = start(config).await;
    let base = format!("http://{}", proxy.local_addr());

    // A trusted caller (it knows the secret): its ids and tenant go through.
    let (status, resp_headers, body) = get(
        &format!("{base}/echo"),
        &[
            ("x-correlation-id", "order-7"),
            ("traceparent", &format!("00-{T}-{P}-01")),
            ("x-tenant-id", "acme"),
            ("x-proxy-secret", secret),
            ("baggage", "region=eu"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "hop-by-hop"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(resp_headers["x-correlation-id"], "order-7", "echoed");
    let h = headers_of(&body);
    assert_eq!(one(&h, "x-correlation-id").as_deref(), Some("order-7"));
    assert_eq!(one(&h, "x-tenant-id").as_deref(), Some("acme"));
    assert_eq!(one(&h, "baggage").as_deref(), Some("region=eu"));
    let tp = one(&h, "traceparent").unwrap();
    assert!(tp.starts_with(&format!("00-{T}-")), "same trace: {tp}");
    assert!(!tp.contains(P), "the proxy's own parent id: {tp}");
    assert!(
        h.get("x-proxy-secret").is_none(),
        "the secret never reaches the app"
    );
    assert!(
        h.get("x-hop").is_none(),
        "headers named by Connection are hop-by-hop"
    );
    assert_eq!(one(&h, "x-forwarded-for").as_deref(), Some("127.0.0.1"));

    // No context at all: a correlation id and a traceparent are minted.
    let (status, resp_headers, body) = get(&format!("{base}/echo"), &[]).await;
    assert_eq!(status, 200);
    let h = headers_of(&body);
    let minted = one(&h, "x-correlation-id").unwrap();
    assert_eq!(resp_headers["x-correlation-id"], minted.as_str());
    assert!(one(&h, "traceparent").unwrap().starts_with("00-"));

    // The app's own log lines carry the ids it was given.
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    loop {
        let lines = app.log_lines();
        let ours: Vec<&Value> = lines
            .iter()
            .filter(|l| l["correlation_id"] == "order-7")
            .collect();
        if let Some(l) = ours.first() {
            assert_eq!(l["trace_id"], T);
            assert_eq!(l["tenant_id"], "acme");
            assert!(lines.iter().any(|l| l["correlation_id"] == minted.as_str()));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "app log lines: {lines:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_callers_cannot_set_tenant_ids_or_ids() {
    let test = "untrusted_callers_cannot_set_tenant_ids_or_ids";
    let Some(app) = python_app(test, "orders", None) else {
        return;
    };
    // Edge: nobody is trusted (a wrong secret does not help).
    let config = ProxyConfig::new(upstream(app.addr))
        .policy(policy())
        .trust(TrustPolicy::shared_secret("x-proxy-secret", "right").unwrap());
    let proxy = start(config).await;
    let (status, resp_headers, body) = get(
        &format!("http://{}/echo", proxy.local_addr()),
        &[
            ("x-correlation-id", "spoofed-id"),
            ("traceparent", &format!("00-{T}-{P}-01")),
            ("x-tenant-id", "someone-else"),
            ("x-proxy-secret", "wrong"),
            ("tl-field-user.id", "admin"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let h = headers_of(&body);
    assert!(h.get("x-tenant-id").is_none(), "tenant id refused: {h}");
    assert!(h.get("tl-field-user.id").is_none(), "local fields refused");
    assert!(h.get("x-proxy-secret").is_none());
    let cid = one(&h, "x-correlation-id").unwrap();
    assert_ne!(cid, "spoofed-id", "edge mode replaces the id");
    assert_eq!(resp_headers["x-correlation-id"], cid.as_str());
    assert!(
        !one(&h, "traceparent").unwrap().contains(T),
        "a fresh trace"
    );
    assert!(proxy.metrics().rejected_for("untrusted") >= 1);
    assert!(proxy.metrics().rejected_for("replaced_at_edge") >= 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_routed_by_key_to_python_apps() {
    let test = "requests_are_routed_by_key_to_python_apps";
    let (Some(baseline), Some(alice)) = (
        python_app(test, "baseline", None),
        python_app(test, "alice", None),
    ) else {
        return;
    };
    let config = ProxyConfig::new(upstream(baseline.addr).named("baseline"))
        .rule(
            Rule::new(upstream(alice.addr).named("alice"))
                .header_equals("x-routing-key", "alice")
                .unwrap(),
        )
        .trust(TrustPolicy::always());
    let proxy = start(config).await;
    let url = format!("http://{}/echo", proxy.local_addr());
    for (key, want) in [
        (Some("alice"), "alice"),
        (None, "baseline"),
        (Some("bob"), "baseline"),
    ] {
        let headers: Vec<(&str, &str)> = key.map(|k| ("x-routing-key", k)).into_iter().collect();
        let (status, resp, body) = get(&url, &headers).await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["app"], want, "key {key:?}");
        assert!(resp.contains_key("x-correlation-id"));
    }
    let text = proxy.metrics().render();
    assert!(
        text.contains("threadline_proxy_routes_total{route=\"alice\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("threadline_proxy_routes_total{route=\"baseline\"} 2"),
        "{text}"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_calls_through_egress_never_leak_credentials_to_foreign_hosts() {
    let test = "app_calls_through_egress_never_leak_credentials_to_foreign_hosts";
    // Two destinations: an internal service (allowed, with `authorization`), and a
    // foreign one (only `traceparent`).
    let (Some(internal), Some(foreign)) = (
        python_app(test, "internal", None),
        python_app(test, "foreign", None),
    ) else {
        return;
    };
    // The egress listener's port must be known before the app starts: bind, free, reuse.
    let egress_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let Some(app) = python_app(test, "orders", Some(egress_addr)) else {
        return;
    };
    let targets = Targets::new()
        .grant(
            Target::host("127.0.0.1").port(internal.addr.port()),
            Grant::all().with_credentials([threadline_tower::Credential::Authorization]),
        )
        .others_traceparent_only();
    let config = ProxyConfig::new(upstream(app.addr))
        .policy(policy())
        .trust(TrustPolicy::always())
        .egress(EgressConfig::new(egress_addr, targets));
    let proxy = start(config).await;
    assert_eq!(proxy.egress_addr(), Some(egress_addr));
    let base = format!("http://{}", proxy.local_addr());
    let tp = format!("00-{T}-{P}-01");
    let inbound: [(&str, &str); 5] = [
        ("x-correlation-id", "order-8"),
        ("x-tenant-id", "acme"),
        ("authorization", "Bearer top-secret"),
        ("cookie", "session=top-secret"),
        ("traceparent", &tp),
    ];

    let (status, _, body) = get(
        &format!("{base}/call?to=http://{}/echo", internal.addr),
        &inbound,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let h = headers_of(&body);
    assert_eq!(one(&h, "x-tenant-id").as_deref(), Some("acme"));
    assert_eq!(
        one(&h, "authorization").as_deref(),
        Some("Bearer top-secret")
    );
    assert_eq!(one(&h, "x-correlation-id").as_deref(), Some("order-8"));
    assert!(
        h.get("cookie").is_none(),
        "a credential not named in the grant"
    );

    let (status, _, body) = get(
        &format!("{base}/call?to=http://{}/echo", foreign.addr),
        &inbound,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("top-secret"),
        "credentials reached a foreign host: {body}"
    );
    assert!(
        !body.contains("acme"),
        "the tenant reached a foreign host: {body}"
    );
    let h = headers_of(&body);
    assert!(h.get("authorization").is_none() && h.get("cookie").is_none());
    assert!(h.get("x-correlation-id").is_none() && h.get("x-tenant-id").is_none());
    assert!(
        one(&h, "traceparent").unwrap().contains(T),
        "traceparent may go"
    );
    let text = proxy.metrics().render();
    assert!(
        text.contains("threadline_proxy_egress_requests_total{grant=\"context\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("threadline_proxy_egress_requests_total{grant=\"traceparent\"} 1"),
        "{text}"
    );
    proxy.shutdown().await;
}
