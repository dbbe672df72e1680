//! The demo's sandbox on 127.0.0.1: an `F` order is refused by the baseline warehouse
//! and accepted through the sandbox (preview link and its cookie, or the routing
//! header), handled by the sandbox warehouse and shipped by the sandbox worker, on
//! every queue; malformed keys and `--no-sandbox` leave orders with the baseline.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use threadline_cli::demo::{Args, BrokerUrl, DEFAULT_SANDBOX_KEY, Summary};

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const JSON: (&str, &str) = ("accept", "application/json");
const SANDBOX: &str = "sandbox:sandbox-f";

fn args(broker: BrokerUrl) -> Args {
    Args {
        store_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        warehouse_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        broker,
        queue: common::unique_queue(),
        ..Args::default()
    }
}

fn cid(label: &str) -> String {
    format!(
        "sb-{label}-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    )
}

/// `POST /orders` for `item` with `headers`; answers the status and the JSON outcome.
async fn order(
    store: &str,
    path: &str,
    item: &str,
    cid: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut all = vec![FORM, JSON, ("x-correlation-id", cid)];
    all.extend_from_slice(headers);
    let (status, _, text) = common::request(
        "POST",
        &format!("{store}{path}"),
        &all,
        Some(format!(
            "item={}&quantity=1&tenant=acme",
            item.replace(' ', "+")
        )),
    )
    .await;
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(v["correlation_id"], cid, "{v}");
    (status, v)
}

/// The instance of each hop of a journey, by role (`store`, `warehouse`, `audit`,
/// `worker`).
async fn instances(store: &str, cid: &str) -> Vec<(String, String)> {
    let (status, v) = common::get_json(&format!("{store}/journeys/{cid}")).await;
    assert_eq!(status, 200, "{v}");
    let mut out: Vec<(String, String)> = v["hops"]
        .as_array()
        .expect("hops")
        .iter()
        .map(|h| {
            let role = match (h["service"].as_str(), h["task"].as_str()) {
                (Some(s), Some(t)) => format!("{s}/{t}"),
                (Some(s), None) => s.to_owned(),
                _ => "-".to_owned(),
            };
            (role, h["instance"].as_str().unwrap_or("-").to_owned())
        })
        .collect();
    out.sort();
    out
}

fn hops(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    v.sort();
    v
}

/// The cookie a preview link sets (`preview=<key>` or the clearing one).
fn set_cookie(headers: &http::HeaderMap) -> String {
    headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

struct Seen {
    sandboxed: String,
    by_header: String,
    baseline: String,
    refused: String,
}

fn sandbox_scenario(broker: BrokerUrl) {
    let a = args(broker);
    let (url, queue) = (a.broker.clone(), a.queue.clone());
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let (summary, lines) = common::with_demo(a, |store| async move {
        // The form offers the preview link, and this browser is not in the sandbox.
        let (status, _, page) =
            common::request("GET", &format!("{store}/orders/new"), &[], None).await;
        assert_eq!(status, 200);
        assert!(page.contains(r#"data-in-sandbox="false""#), "{page}");
        let link =
            format!(r#"<a id="preview-link" href="/orders/new?preview={DEFAULT_SANDBOX_KEY}">"#);
        assert!(page.contains(&link), "{page}");
        assert!(!page.contains("<script"), "no script on the page");

        // Without the key: the baseline refuses F.
        let refused = cid("refused");
        let (status, v) = order(&store, "/orders", "Fondue set", &refused, &[]).await;
        assert_eq!(
            (status, v["status"].as_str()),
            (422, Some("rejected")),
            "{v}"
        );
        assert_eq!(v["warehouse_instance"], "baseline", "{v}");

        // Following the preview link: the cookie, and the page says so.
        let (status, headers, page) = common::request(
            "GET",
            &format!("{store}/orders/new?preview={DEFAULT_SANDBOX_KEY}"),
            &[],
            None,
        )
        .await;
        assert_eq!(status, 200);
        let cookie = set_cookie(&headers);
        assert!(cookie.starts_with("preview=sandbox-f;"), "{cookie}");
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(page.contains(r#"data-in-sandbox="true""#), "{page}");
        assert!(
            page.contains(r#"href="/orders/new?preview=""#),
            "a way out: {page}"
        );
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'"),
            "the page keeps its CSP"
        );
        let jar = cookie.split(';').next().unwrap_or_default().to_owned();

        // The same F order from that browser: accepted by the sandbox, shipped by its
        // worker.
        let sandboxed = cid("cookie");
        let (status, v) = order(
            &store,
            "/orders",
            "Fondue set",
            &sandboxed,
            &[("cookie", &jar)],
        )
        .await;
        assert_eq!(
            (status, v["status"].as_str()),
            (200, Some("accepted")),
            "{v}"
        );
        assert_eq!(v["warehouse_instance"], SANDBOX, "{v}");
        common::wait_for_worker(&store, &sandboxed).await;
        assert_eq!(
            instances(&store, &sandboxed).await,
            hops(&[
                ("store", "baseline"),
                ("warehouse", SANDBOX),
                ("warehouse/audit", SANDBOX),
                ("worker", SANDBOX),
            ]),
        );
        let (_, j) = common::get_json(&format!("{store}/journeys/{sandboxed}")).await;
        let (_, _, page) =
            common::request("GET", &format!("{store}/journeys/{sandboxed}"), &[], None).await;
        assert!(
            page.contains(r#"data-instance="sandbox:sandbox-f""#),
            "the journey page names the instance"
        );
        // The warehouse hop was called at the routed call's upstream.
        let events = j["events"].as_array().expect("events");
        let routed = events
            .iter()
            .find(|e| e["message"] == "call routed")
            .unwrap_or_else(|| panic!("the store logs the routed call: {j}"));
        assert_eq!(routed["fields"]["route"], "sandbox-f-warehouse", "{routed}");
        let upstream = routed["fields"]["upstream"].as_str().expect("upstream");
        let warehouse_hop = j["hops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["service"] == "warehouse" && h["task"].is_null())
            .expect("a warehouse hop");
        assert_eq!(
            warehouse_hop["via"].as_str(),
            Some(format!("POST {upstream}/api/orders").as_str()),
            "{warehouse_hop}"
        );

        // The routing header does the same (a service calling the store).
        let by_header = cid("header");
        let (status, v) = order(
            &store,
            "/orders",
            "Fig jam",
            &by_header,
            &[("x-routing-key", DEFAULT_SANDBOX_KEY)],
        )
        .await;
        assert_eq!(
            (status, v["status"].as_str()),
            (200, Some("accepted")),
            "{v}"
        );
        assert_eq!(v["warehouse_instance"], SANDBOX, "{v}");
        common::wait_for_worker(&store, &by_header).await;

        // A normal order: baseline all the way.
        let baseline = cid("baseline");
        let (status, v) = order(&store, "/orders", "Kettle", &baseline, &[]).await;
        assert_eq!(
            (status, v["status"].as_str()),
            (200, Some("accepted")),
            "{v}"
        );
        assert_eq!(v["warehouse_instance"], "baseline", "{v}");
        common::wait_for_worker(&store, &baseline).await;
        assert_eq!(
            instances(&store, &baseline).await,
            hops(&[
                ("store", "baseline"),
                ("warehouse", "baseline"),
                ("warehouse/audit", "baseline"),
                ("worker", "baseline"),
            ]),
        );

        // Malformed keys, in the parameter or the header, and an unknown key: baseline.
        for (path, headers) in [
            ("/orders?preview=bad%20key", vec![]),
            ("/orders?preview=sandbox-f%3B", vec![]),
            ("/orders", vec![("x-routing-key", "bad key!")]),
            ("/orders", vec![("x-routing-key", "someone-else")]),
            // Two forms that disagree: no key at all.
            (
                "/orders",
                vec![("x-routing-key", "someone-else"), ("cookie", jar.as_str())],
            ),
        ] {
            let c = cid("malformed");
            let (status, v) = order(&store, path, "Fondue set", &c, &headers).await;
            assert_eq!(
                (status, v["status"].as_str()),
                (422, Some("rejected")),
                "{path} {headers:?}: {v}"
            );
        }

        // Leaving the sandbox clears the cookie.
        let (status, headers, page) = common::request(
            "GET",
            &format!("{store}/orders/new?preview="),
            &[("cookie", &jar)],
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert!(set_cookie(&headers).contains("Max-Age=0"), "{headers:?}");
        assert!(page.contains(r#"data-in-sandbox="false""#), "{page}");

        *s.lock().unwrap() = Some(Seen {
            sandboxed,
            by_header,
            baseline,
            refused,
        });
    });
    let seen = seen.lock().unwrap().take().expect("the scenario ran");
    check_log_lines(&lines, &seen);
    assert_eq!(
        (
            summary.orders,
            summary.accepted,
            summary.shipped,
            summary.lost
        ),
        (3, 3, 3, 0),
        "{summary}"
    );
    assert_eq!(summary.rejected, 6, "{summary}");
    assert_clean(&summary);
    common::remove_queue(&url, &queue);
}

fn assert_clean(summary: &Summary) {
    assert_eq!(
        (
            summary.shipped_after_refusal,
            summary.duplicates,
            summary.left_in_queue
        ),
        (0, 0, 0),
        "{summary}"
    );
}

/// Every log line names its instance: the sandbox's warehouse and worker lines for
/// the orders that carried the key, the baseline's for the others.
fn check_log_lines(lines: &[Value], seen: &Seen) {
    let of = |cid: &str, app: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["correlation_id"] == cid && l["app"] == app)
            .collect()
    };
    for cid in [&seen.sandboxed, &seen.by_header] {
        for app in ["warehouse", "worker"] {
            let ls = of(cid, app);
            assert!(!ls.is_empty(), "{app} lines of {cid}");
            assert!(ls.iter().all(|l| l["instance"] == SANDBOX), "{ls:#?}");
        }
        assert!(of(cid, "store").iter().all(|l| l["instance"] == "baseline"));
        assert!(
            lines.iter().any(|l| l["correlation_id"] == cid.as_str()
                && l["message"] == "call routed"
                && l["route"] == "sandbox-f-warehouse"),
            "the store logs the routed call of {cid}"
        );
    }
    for cid in [&seen.baseline, &seen.refused] {
        let ls: Vec<&Value> = lines
            .iter()
            .filter(|l| l["correlation_id"] == cid.as_str())
            .collect();
        assert!(!ls.is_empty());
        assert!(ls.iter().all(|l| l["instance"] == "baseline"), "{ls:#?}");
    }
}

#[test]
fn sandbox_embedded_queue_f_order_goes_through_the_sandbox_warehouse_and_worker() {
    sandbox_scenario(BrokerUrl::Embedded);
}

#[test]
fn sandbox_nats_f_order_goes_through_the_sandbox_warehouse_and_worker() {
    if common::service_up(
        "sandbox_nats_f_order_goes_through_the_sandbox_warehouse_and_worker",
        "NATS",
        4222,
    ) {
        sandbox_scenario(BrokerUrl::Nats("nats://127.0.0.1:4222".into()));
    }
}

#[test]
fn sandbox_rabbitmq_f_order_goes_through_the_sandbox_warehouse_and_worker() {
    if common::service_up(
        "sandbox_rabbitmq_f_order_goes_through_the_sandbox_warehouse_and_worker",
        "RabbitMQ",
        5672,
    ) {
        sandbox_scenario(BrokerUrl::Amqp("amqp://guest:guest@127.0.0.1:5672".into()));
    }
}

#[test]
fn sandbox_redis_streams_f_order_goes_through_the_sandbox_warehouse_and_worker() {
    if common::service_up(
        "sandbox_redis_streams_f_order_goes_through_the_sandbox_warehouse_and_worker",
        "Redis",
        6379,
    ) {
        sandbox_scenario(BrokerUrl::Redis("redis://127.0.0.1:6379".into()));
    }
}

#[test]
fn no_sandbox_f_order_is_refused_even_with_the_preview_parameter() {
    let mut a = args(BrokerUrl::Embedded);
    a.no_sandbox = true;
    let (summary, lines) = common::with_demo(a, |store| async move {
        let (status, _, page) =
            common::request("GET", &format!("{store}/orders/new"), &[], None).await;
        assert_eq!(status, 200);
        assert!(!page.contains("preview-link"), "no preview link: {page}");
        let c = cid("nosandbox");
        let (status, v) = order(
            &store,
            &format!("/orders?preview={DEFAULT_SANDBOX_KEY}"),
            "Fondue set",
            &c,
            &[("x-routing-key", DEFAULT_SANDBOX_KEY)],
        )
        .await;
        assert_eq!(
            (status, v["status"].as_str()),
            (422, Some("rejected")),
            "{v}"
        );
        let (status, v) = order(&store, "/orders", "Kettle", &cid("nosandbox-ok"), &[]).await;
        assert_eq!(status, 200, "{v}");
    });
    assert!(
        lines
            .iter()
            .all(|l| l["instance"].is_null() || l["instance"] == "baseline"),
        "only the baseline runs"
    );
    assert!(!lines.iter().any(|l| l["message"] == "call routed"));
    assert_eq!((summary.rejected, summary.accepted), (1, 1), "{summary}");
    assert_clean(&summary);
}

#[test]
fn a_custom_sandbox_key_is_the_one_routed() {
    let mut a = args(BrokerUrl::Embedded);
    a.sandbox_key = threadline::RoutingKey::new("alice.preview_2").unwrap();
    let (summary, _) = common::with_demo(a, |store| async move {
        let (_, _, page) = common::request("GET", &format!("{store}/orders/new"), &[], None).await;
        assert!(
            page.contains("/orders/new?preview=alice.preview_2"),
            "{page}"
        );
        let (status, v) = order(
            &store,
            "/orders",
            "Fondue set",
            &cid("default-key"),
            &[("cookie", "preview=sandbox-f")],
        )
        .await;
        assert_eq!(status, 422, "the default key routes nowhere now: {v}");
        let c = cid("custom-key");
        let (status, v) = order(
            &store,
            "/orders?preview=alice.preview_2",
            "Fondue set",
            &c,
            &[],
        )
        .await;
        assert_eq!(status, 200, "{v}");
        common::wait_for_worker(&store, &c).await;
        let found = instances(&store, &c).await;
        assert!(
            found.contains(&("worker".to_owned(), "sandbox:alice.preview_2".to_owned())),
            "{found:?}"
        );
    });
    assert_eq!(
        (summary.accepted, summary.shipped, summary.rejected),
        (1, 1, 1),
        "{summary}"
    );
}

#[test]
fn untrusted_callers_cannot_route_their_orders() {
    let mut a = args(BrokerUrl::Embedded);
    a.untrusted = true;
    let (summary, _) = common::with_demo(a, |store| async move {
        // The preview link from an untrusted caller: the parameter is stripped, no key
        // is taken and no cookie set.
        let (status, headers, page) = common::request(
            "GET",
            &format!("{store}/orders/new?preview={DEFAULT_SANDBOX_KEY}"),
            &[],
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert!(!page.contains(r#"data-in-sandbox="true""#), "{page}");
        assert!(headers.get("set-cookie").is_none(), "{headers:?}");
        // Nor a header or a cookie it made up: the F order meets the baseline's 422.
        let (status, _, text) = common::request(
            "POST",
            &format!("{store}/orders"),
            &[
                FORM,
                JSON,
                ("x-routing-key", DEFAULT_SANDBOX_KEY),
                ("cookie", &format!("preview={DEFAULT_SANDBOX_KEY}")),
            ],
            Some("item=Fondue&quantity=1&tenant=acme".into()),
        )
        .await;
        assert_eq!(status, 422, "{text}");
    });
    assert_eq!((summary.accepted, summary.shipped), (0, 0), "{summary}");
}
