//! Routing by the context's routing key through the proxy: the key read from a header,
//! baggage or a preview link (its parameter stripped, a cookie set and followed, an
//! empty parameter clearing it), rules from a TOML file reloaded on change, bad keys
//! and untrusted callers kept on the baseline, a rules file that breaks keeping the
//! last good table, and a sandbox that is down answered 502, never the baseline.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use common::{get, serve, start, upstream};
use http_body_util::Full;
use hyper::Response;
use threadline::{Policy, Routing, RoutingForm};
use threadline_proxy::{ProxyConfig, ProxyFile, RoutingConfig};
use threadline_tower::TrustPolicy;

/// An app that answers its name and the URI (path and query) it was asked for.
async fn named_app(name: &'static str) -> SocketAddr {
    let (addr, _) = serve(move |req| async move {
        Response::new(Full::new(Bytes::from(format!("{name} {}", req.uri()))))
    })
    .await;
    addr
}

fn policy() -> Policy {
    Policy::builder()
        .routing(
            Routing::header("x-routing-key")
                .read(RoutingForm::baggage("sd-routing-key"))
                .read(RoutingForm::query("preview"))
                .read(RoutingForm::cookie("preview")),
        )
        .build()
        .unwrap()
}

struct RulesFile(PathBuf);

impl RulesFile {
    fn new(text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "{}.toml",
            threadline_testkit::unique("threadline-proxy-routes", '-')
        ));
        std::fs::write(&path, text).unwrap();
        RulesFile(path)
    }

    fn write(&self, text: &str) {
        // A different size as well as a later time: the source notices either.
        std::fs::write(&self.0, text).unwrap();
    }
}

impl Drop for RulesFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn rule(id: &str, key: &str, to: SocketAddr) -> String {
    format!(
        "[[rule]]\nid = \"{id}\"\nservice = \"orders\"\nkey = \"{key}\"\nupstream = \"http://{to}\"\n"
    )
}

fn routing(file: &RulesFile) -> RoutingConfig {
    ProxyFile::from_toml(&format!(
        "upstream = \"http://127.0.0.1:1\"\n[routing]\nservice = \"orders\"\nfile = {:?}\nfile_interval_ms = 20\n",
        file.0.display().to_string()
    ))
    .unwrap()
    .into_config()
    .unwrap()
    .routing
    .unwrap()
}

/// Asks until `want` answers (a reload is asynchronous), at most 5 s.
async fn eventually(url: &str, headers: &[(&str, &str)], want: &str) -> String {
    let mut last = String::new();
    for _ in 0..250 {
        let (_, _, body) = get(url, headers).await;
        if body.starts_with(want) {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url}: never answered by {want}; last answer {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_routes_to_the_sandbox_and_everything_else_to_the_baseline() {
    let baseline = named_app("baseline").await;
    let sandbox = named_app("sandbox").await;
    let other = named_app("other").await;
    let file = RulesFile::new(&rule("alice-orders", "alice", sandbox));
    let mut config = ProxyConfig::new(upstream(baseline))
        .policy(policy())
        .trust(TrustPolicy::loopback());
    config.routing = Some(routing(&file));
    let proxy = start(config).await;
    let base = format!("http://{}", proxy.local_addr());
    let url = format!("{base}/orders?x=1");

    // No key: the baseline.
    let (s, _, body) = get(&url, &[]).await;
    assert_eq!((s, body.as_str()), (200, "baseline /orders?x=1"));
    // The key in the header, or in baggage: the sandbox; another key: the baseline.
    let (_, _, body) = get(&url, &[("x-routing-key", "alice")]).await;
    assert_eq!(body, "sandbox /orders?x=1");
    let (_, _, body) = get(&url, &[("baggage", "sd-routing-key=alice")]).await;
    assert_eq!(body, "sandbox /orders?x=1");
    let (_, _, body) = get(&url, &[("x-routing-key", "bob")]).await;
    assert_eq!(body, "baseline /orders?x=1");

    // Malformed, oversized or conflicting keys are absent: the baseline.
    let long = "a".repeat(200);
    for bad in [
        vec![("x-routing-key", "al ice")],
        vec![("x-routing-key", long.as_str())],
        vec![
            ("x-routing-key", "alice"),
            ("baggage", "sd-routing-key=bob"),
        ],
    ] {
        let (_, _, body) = get(&url, &bad).await;
        assert_eq!(body, "baseline /orders?x=1", "{bad:?}");
    }

    // A preview link: the parameter never reaches the app, the cookie keeps the key.
    let (s, headers, body) = get(&format!("{base}/orders?preview=alice&x=1"), &[]).await;
    assert_eq!(s, 200);
    assert_eq!(body, "sandbox /orders?x=1", "the parameter is stripped");
    let cookie = headers
        .get(http::header::SET_COOKIE)
        .expect("the preview cookie")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("preview=alice"), "{cookie}");
    let (_, _, body) = get(&url, &[("cookie", "preview=alice")]).await;
    assert_eq!(body, "sandbox /orders?x=1", "the browser's next request");
    let (_, headers, body) = get(
        &format!("{base}/orders?preview=&x=1"),
        &[("cookie", "preview=alice")],
    )
    .await;
    assert_eq!(
        body, "baseline /orders?x=1",
        "an empty parameter leaves the sandbox"
    );
    let cleared = headers[http::header::SET_COOKIE].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    // The table changes: the rule moves to another upstream, then goes.
    file.write(&format!(
        "{}\n# moved\n",
        rule("alice-orders", "alice", other)
    ));
    eventually(&url, &[("x-routing-key", "alice")], "other ").await;
    // A file that stops parsing keeps the last good rules.
    file.write("[[rule]]\nid = \"broken\"\nservice = \n");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, _, body) = get(&url, &[("x-routing-key", "alice")]).await;
    assert_eq!(body, "other /orders?x=1", "the last good table");
    file.write("# no rules\n");
    eventually(&url, &[("x-routing-key", "alice")], "baseline ").await;

    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_callers_cannot_route_and_a_sandbox_that_is_down_is_not_replaced() {
    let baseline = named_app("baseline").await;
    // A port nothing listens on: bind, note, close.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let file = RulesFile::new(&rule("alice-orders", "alice", down));

    // Nobody trusted: the caller's key is refused, the baseline answers.
    let mut config = ProxyConfig::new(upstream(baseline)).policy(policy());
    config.routing = Some(routing(&file));
    let proxy = start(config).await;
    let url = format!("http://{}/orders", proxy.local_addr());
    let (_, _, body) = get(&url, &[("x-routing-key", "alice")]).await;
    assert_eq!(body, "baseline /orders");
    proxy.shutdown().await;

    // Trusted: routed to the sandbox, which is down: 502, not the baseline.
    let mut config = ProxyConfig::new(upstream(baseline))
        .policy(policy())
        .trust(TrustPolicy::loopback());
    config.routing = Some(routing(&file));
    let proxy = start(config).await;
    let url = format!("http://{}/orders", proxy.local_addr());
    let (s, headers, body) = get(&url, &[("x-routing-key", "alice")]).await;
    assert_eq!(s, 502, "{body}");
    assert!(!body.contains("baseline"), "{body}");
    assert!(headers.contains_key("x-correlation-id"));
    proxy.shutdown().await;
}

#[tokio::test]
async fn routing_config_errors_are_said_at_start() {
    for (text, why) in [
        ("[routing]\nservice = \"orders\"", "no source"),
        ("[routing]\nnats = { bucket = \"\" }", "no bucket"),
        ("[routing]\nredis = { hash = \" \" }", "no hash"),
        ("[routing]\nfile = \"x\"\nunknown = 1", "unknown key"),
    ] {
        let text = format!("upstream = \"http://127.0.0.1:1\"\n{text}");
        let r = ProxyFile::from_toml(&text).and_then(ProxyFile::into_config);
        assert!(r.is_err(), "{why}");
    }
    // A rules file that does not parse fails the start, naming the file.
    let file = RulesFile::new("[[rule]]\nid = ");
    let baseline = named_app("baseline").await;
    let mut config = ProxyConfig::new(upstream(baseline)).policy(policy());
    config.routing = Some(routing(&file));
    let err = match threadline_proxy::Proxy::new(config).unwrap().start().await {
        Ok(_) => panic!("a rules file that does not parse must stop the start"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("[routing] file"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_own_calls_are_routed_through_the_egress_listener() {
    use threadline_proxy::EgressConfig;
    use threadline_tower::Targets;

    let app = named_app("app").await;
    let billing = named_app("billing").await;
    let billing_sandbox = named_app("billing-sandbox").await;
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    // Rules for the app's destinations, by host and port.
    let rule_for = |id: &str, key: &str, to: SocketAddr| {
        format!(
            "[[rule]]\nid = \"{id}\"\nservice = \"{billing}\"\nkey = \"{key}\"\nupstream = \"http://{to}\"\n"
        )
    };
    let file = RulesFile::new(&format!(
        "{}{}",
        rule_for("alice-billing", "alice", billing_sandbox),
        rule_for("carol-billing", "carol", down)
    ));
    let mut config = ProxyConfig::new(upstream(app))
        .policy(policy())
        .egress(EgressConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            Targets::everywhere(),
        ));
    config.routing = Some(routing(&file));
    let proxy = start(config).await;
    let egress = proxy.egress_addr().expect("the egress listener");

    // The app's call, as an HTTP proxy client sends it: absolute form.
    let call = |key: Option<&'static str>| async move {
        let key_line = key
            .map(|k| format!("x-routing-key: {k}\r\n"))
            .unwrap_or_default();
        common::raw(
            egress,
            format!(
                "GET http://{billing}/invoices HTTP/1.1\r\nhost: {billing}\r\n{key_line}connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
    };
    let plain = call(None).await;
    assert!(plain.ends_with("billing /invoices"), "{plain}");
    let routed = call(Some("alice")).await;
    assert!(routed.ends_with("billing-sandbox /invoices"), "{routed}");
    let other = call(Some("bob")).await;
    assert!(other.ends_with("billing /invoices"), "{other}");
    // A routed upstream that is down: 502, not the original destination.
    let failed = call(Some("carol")).await;
    assert_eq!(common::status_of(&failed), 502, "{failed}");
    assert!(!failed.contains("billing /invoices"), "{failed}");
    proxy.shutdown().await;
}
