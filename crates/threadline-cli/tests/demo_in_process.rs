//! The demo in this process: real HTTP on 127.0.0.1:0, real queues, logs captured as
//! JSON and checked line by line, the journey JSON checked hop by hop.

mod common;

use std::net::SocketAddr;

use threadline_cli::demo::{Args, BrokerUrl};

fn args(broker: BrokerUrl) -> Args {
    Args {
        store_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        warehouse_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        broker,
        queue: common::unique_queue(),
        ..Args::default()
    }
}

fn scenario(broker: BrokerUrl) {
    let a = args(broker);
    let (url, queue) = (a.broker.clone(), a.queue.clone());
    let placed = std::sync::Arc::new(std::sync::Mutex::new(None));
    let journey_spans = std::sync::Arc::new(std::sync::Mutex::new(None));
    let (p, j) = (placed.clone(), journey_spans.clone());
    let (summary, lines) = common::with_demo(a, |store| async move {
        let placed = common::place_orders(&store).await;
        common::wait_for_worker(&store, &placed.good.correlation_id).await;
        let spans = common::check_journey(&store, &placed).await;
        *p.lock().unwrap() = Some(placed);
        *j.lock().unwrap() = Some(spans);
    });
    let placed = placed.lock().unwrap().take().expect("the scenario ran");
    let log_spans = common::check_logs(&lines, &placed);
    assert_eq!(
        Some(log_spans),
        journey_spans.lock().unwrap().take(),
        "the journey shows the hops the logs show"
    );
    assert_eq!(
        (
            summary.orders,
            summary.accepted,
            summary.rejected,
            summary.refused,
            summary.unknown,
            summary.failed
        ),
        (1, 1, 1, 0, 0, 0),
        "{summary}"
    );
    assert_eq!(
        (summary.shipped, summary.left_in_queue, summary.lost),
        (1, 0, 0),
        "{summary}"
    );
    common::remove_queue(&url, &queue);
}

#[test]
fn in_process_embedded_queue_one_context_through_store_warehouse_audit_and_worker() {
    scenario(BrokerUrl::Embedded);
}

#[test]
fn in_process_nats_one_context_through_store_warehouse_audit_and_worker() {
    if common::service_up(
        "in_process_nats_one_context_through_store_warehouse_audit_and_worker",
        "NATS",
        4222,
    ) {
        scenario(BrokerUrl::Nats("nats://127.0.0.1:4222".into()));
    }
}

#[test]
fn in_process_rabbitmq_amqp_one_context_through_store_warehouse_audit_and_worker() {
    if common::service_up(
        "in_process_rabbitmq_amqp_one_context_through_store_warehouse_audit_and_worker",
        "RabbitMQ",
        5672,
    ) {
        scenario(BrokerUrl::Amqp("amqp://guest:guest@127.0.0.1:5672".into()));
    }
}

#[test]
fn in_process_redis_streams_one_context_through_store_warehouse_audit_and_worker() {
    if common::service_up(
        "in_process_redis_streams_one_context_through_store_warehouse_audit_and_worker",
        "Redis",
        6379,
    ) {
        scenario(BrokerUrl::Redis("redis://127.0.0.1:6379".into()));
    }
}

#[test]
fn untrusted_store_replaces_the_callers_ids_and_tenant() {
    let sent = std::sync::Arc::new(std::sync::Mutex::new(None));
    let s = sent.clone();
    let mut a = args(BrokerUrl::Embedded);
    a.untrusted = true;
    let (summary, lines) = common::with_demo(a, |store| async move {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (status, _, text) = common::request(
            "POST",
            &format!("{store}/orders"),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("accept", "application/json"),
                ("x-correlation-id", "from-outside-1"),
                ("traceparent", tp),
                ("x-tenant-id", "forged-tenant"),
            ],
            Some("item=Teapot&quantity=1&tenant=acme".into()),
        )
        .await;
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let cid = v["correlation_id"].as_str().unwrap().to_owned();
        assert_ne!(
            cid, "from-outside-1",
            "the edge mints its own correlation id"
        );
        common::wait_for_worker(&store, &cid).await;
        let (_, j) = common::get_json(&format!("{store}/journeys/{cid}")).await;
        let traces = j["trace_ids"].as_array().unwrap();
        assert_eq!(traces.len(), 1, "{j}");
        assert_ne!(
            traces[0], "4bf92f3577b34da6a3ce929d0e0e4736",
            "a fresh trace"
        );
        *s.lock().unwrap() = Some(cid);
    });
    let cid = sent.lock().unwrap().take().expect("ran");
    let first_store_line = lines
        .iter()
        .find(|l| l["correlation_id"] == cid.as_str() && l["app"] == "store")
        .expect("a store line");
    assert!(
        first_store_line.get("tenant_id").is_none(),
        "the forged tenant header was dropped: {first_store_line}"
    );
    assert!(lines.iter().all(|l| l["tenant_id"] != "forged-tenant"));
    for header in ["x-correlation-id", "traceparent", "x-tenant-id"] {
        assert!(
            lines.iter().any(|l| l["correlation_id"] == cid.as_str()
                && l["level"] == "WARN"
                && l["header"] == header),
            "the store says it did not keep {header}"
        );
    }
    assert!(
        lines
            .iter()
            .all(|l| l["correlation_id"] != "from-outside-1")
    );
    assert_eq!((summary.accepted, summary.shipped, summary.lost), (1, 1, 0));
}

#[test]
fn bad_form_input_gets_an_error_page_never_a_panic() {
    let (summary, lines) = common::with_demo(args(BrokerUrl::Embedded), |store| async move {
        let url = format!("{store}/orders");
        let form = [("content-type", "application/x-www-form-urlencoded")];
        // Control characters, a non-number, a tenant that is no header value.
        let (status, _, page) = common::request(
            "POST",
            &url,
            &form,
            Some("item=<script>x</script>%07&quantity=lots&tenant=a%0Db".into()),
        )
        .await;
        assert_eq!(status, 400);
        assert!(page.contains("id=\"errors\""), "{page}");
        assert!(!page.contains("<script>"), "values are escaped");
        assert!(
            page.contains("&lt;script&gt;"),
            "the typed value is shown again, escaped"
        );
        // Not a form at all.
        let (status, _, _) =
            common::request("POST", &url, &form, Some("\u{0}\u{1}%%%".into())).await;
        assert_eq!(status, 400);
        // Far too large.
        let huge = format!("item={}&quantity=1&tenant=t", "x".repeat(64 * 1024));
        let (status, _, _) = common::request("POST", &url, &form, Some(huge)).await;
        assert_eq!(status, 413);
        // An unknown journey and a hostile id.
        let (status, _, page) =
            common::request("GET", &format!("{store}/journeys/%3Cb%3Ehi"), &[], None).await;
        assert_eq!(status, 404);
        assert!(
            page.contains("&lt;b&gt;hi") && !page.contains("<b>hi"),
            "{page}"
        );
        // Still serving.
        let (status, _, page) =
            common::request("GET", &format!("{store}/orders/new"), &[], None).await;
        assert_eq!(status, 200);
        assert!(page.contains("id=\"item\""));
    });
    assert_eq!((summary.orders, summary.invalid), (0, 2), "{summary}");
    assert!(
        lines.iter().all(|l| l["level"] != "ERROR"),
        "bad input is no error of the demo"
    );
    assert!(lines.iter().any(|l| l["message"] == "order form refused"));
}

#[test]
fn redis_broker_that_goes_away_refuses_the_order_cleanly_and_loses_no_job() {
    let test = "redis_broker_that_goes_away_refuses_the_order_cleanly_and_loses_no_job";
    if !common::service_up(test, "Redis", 6379) {
        return;
    }
    // The proxy lives on a runtime of its own, beside the demo's.
    let proxy_rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = proxy_rt.block_on(common::Proxy::start(6379));
    let url = format!("redis://{}", proxy.addr);
    let a = args(BrokerUrl::Redis(url));
    let queue = a.queue.clone();
    let (summary, lines) = common::with_demo(a, |store| {
        let proxy = &proxy;
        async move {
            let placed = common::place_orders(&store).await;
            common::wait_for_worker(&store, &placed.good.correlation_id).await;
            proxy.cut();
            // The demo notices (its reader's connection closes) and says so.
            common::wait_for_queue(&store, false).await;
            let (status, headers, text) = common::request(
                "POST",
                &format!("{store}/orders"),
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("accept", "application/json"),
                ],
                Some("item=Teapot&quantity=1&tenant=acme".into()),
            )
            .await;
            assert_eq!(status, 503, "{text}");
            assert!(headers.contains_key("retry-after"), "{headers:?}");
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["status"], "refused", "{text}");
            assert!(
                v["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("not created"),
                "the user is told the order was not created: {text}"
            );
        }
    });
    drop(proxy_rt);
    assert_eq!(
        (
            summary.orders,
            summary.accepted,
            summary.rejected,
            summary.refused,
            summary.unknown
        ),
        (2, 1, 1, 1, 0),
        "{summary}"
    );
    assert_eq!(
        (
            summary.shipped,
            summary.shipped_after_refusal,
            summary.left_in_queue,
            summary.lost
        ),
        (1, 0, 0, 0),
        "{summary}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["app"] == "warehouse" && l["level"] == "ERROR"),
        "the warehouse logged the queue failure"
    );
    assert!(
        lines.iter().any(
            |l| l["message"] == "shipping queue connection lost; reconnecting"
                && l["queue"].as_str().is_some_and(|q| q.contains(&queue))
        ),
        "the lost connection is logged with the queue named"
    );
    common::remove_queue(&BrokerUrl::Redis("redis://127.0.0.1:6379".into()), &queue);
}

/// `POST /orders` as a JSON client with its own idempotency key.
async fn order(store: &str, key: &str, item: &str) -> (u16, http::HeaderMap, serde_json::Value) {
    let (status, headers, text) = common::request(
        "POST",
        &format!("{store}/orders"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
            ("idempotency-key", key),
        ],
        Some(format!("item={item}&quantity=1&tenant=acme")),
    )
    .await;
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, headers, v)
}

/// How often the worker logged `key` as shipped.
fn times_shipped(lines: &[serde_json::Value], key: &str) -> usize {
    lines
        .iter()
        .filter(|l| {
            l["message"] == "parcel packed and handed to the carrier" && l["order_key"] == key
        })
        .count()
}

#[test]
fn every_store_page_has_csp_and_nosniff_and_the_404_answers_json_when_asked() {
    common::with_demo(args(BrokerUrl::Embedded), |store| async move {
        let form = [("content-type", "application/x-www-form-urlencoded")];
        type Page<'a> = (&'a str, String, &'a [(&'a str, &'a str)], Option<String>);
        let pages: Vec<Page> = vec![
            ("GET", format!("{store}/orders/new"), &[], None),
            ("GET", format!("{store}/journeys"), &[], None),
            ("GET", format!("{store}/journeys/none-such"), &[], None),
            ("GET", format!("{store}/no/such/page"), &[], None),
            (
                "POST",
                format!("{store}/orders"),
                &form,
                Some("item=Kettle&quantity=1&tenant=acme".into()),
            ),
            (
                "POST",
                format!("{store}/orders"),
                &form,
                Some("item=&quantity=x&tenant=".into()),
            ),
            (
                "POST",
                format!("{store}/orders"),
                &form,
                Some(format!(
                    "item={}&quantity=1&tenant=t",
                    "x".repeat(64 * 1024)
                )),
            ),
        ];
        for (method, url, headers, body) in pages {
            let (status, h, _) = common::request(method, &url, headers, body).await;
            let csp = h
                .get("content-security-policy")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{method} {url} ({status}): no CSP"));
            assert!(
                csp.contains("default-src 'none'") && !csp.contains("script-src"),
                "{method} {url}: no script allowed: {csp}"
            );
            assert_eq!(
                h.get("x-content-type-options").map(|v| v.as_bytes()),
                Some(&b"nosniff"[..]),
                "{method} {url} ({status})"
            );
        }
        let (status, h, body) = common::request(
            "GET",
            &format!("{store}/no/such/page"),
            &[("accept", "application/json")],
            None,
        )
        .await;
        assert_eq!(status, 404);
        assert!(
            h["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{h:?}"
        );
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON 404");
        assert_eq!(v["path"], "/no/such/page", "{v}");
        let (status, h, _) =
            common::request("GET", &format!("{store}/no/such/page"), &[], None).await;
        assert_eq!(status, 404);
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    });
}

#[test]
fn item_with_a_right_to_left_override_is_refused_and_shown_escaped() {
    let (summary, _) = common::with_demo(args(BrokerUrl::Embedded), |store| async move {
        for item in [
            "Kettle%E2%80%AEgpj.exe", // U+202E RIGHT-TO-LEFT OVERRIDE
            "Kettle%E2%81%A6gpj.exe", // U+2066 LEFT-TO-RIGHT ISOLATE
            "Ket%E2%80%8Btle",        // U+200B ZERO WIDTH SPACE
            "Kettle%EF%BB%BF",        // U+FEFF BYTE ORDER MARK
        ] {
            let (status, _, page) = common::request(
                "POST",
                &format!("{store}/orders"),
                &[("content-type", "application/x-www-form-urlencoded")],
                Some(format!("item={item}&quantity=1&tenant=acme")),
            )
            .await;
            assert_eq!(status, 400, "{item}");
            assert!(
                page.contains("invisible formatting characters"),
                "{item}: {page}"
            );
            for c in ['\u{202e}', '\u{2066}', '\u{200b}', '\u{feff}'] {
                assert!(!page.contains(c), "{item}: the page never renders it raw");
            }
        }
    });
    assert_eq!((summary.orders, summary.invalid), (0, 4), "{summary}");
}

#[test]
fn embedded_queue_full_answers_503_with_retry_after_and_never_ships_what_it_refused() {
    let mut a = args(BrokerUrl::Embedded);
    a.queue_capacity = 1;
    a.worker_concurrency = 1;
    a.packing_ms = 800;
    let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let t = told.clone();
    let (summary, lines) = common::with_demo(a, |store| async move {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..6 {
            let store = store.clone();
            tasks.spawn(async move {
                let key = format!("full-{i}-{}", std::process::id());
                let (status, h, v) = order(&store, &key, "Kettle").await;
                (key, status, h.get("retry-after").cloned(), v)
            });
        }
        while let Some(r) = tasks.join_next().await {
            t.lock().unwrap().push(r.unwrap());
        }
    });
    let told = told.lock().unwrap();
    let accepted: Vec<&str> = told
        .iter()
        .filter(|(_, s, _, _)| *s == 200)
        .map(|(k, ..)| k.as_str())
        .collect();
    let refused: Vec<&(String, u16, Option<http::HeaderValue>, serde_json::Value)> =
        told.iter().filter(|(_, s, _, _)| *s == 503).collect();
    assert_eq!(accepted.len() + refused.len(), 6, "{told:?}");
    assert!(!accepted.is_empty() && !refused.is_empty(), "{told:?}");
    for (key, _, retry, v) in &refused {
        assert_eq!(v["status"], "refused", "{v}");
        assert!(
            v["reason"].as_str().unwrap().contains("full")
                && v["reason"].as_str().unwrap().contains("not created"),
            "{v}"
        );
        assert_eq!(retry.as_ref().map(|r| r.as_bytes()), Some(&b"1"[..]));
        assert_eq!(times_shipped(&lines, key), 0, "a refused order never ships");
    }
    for key in &accepted {
        assert_eq!(
            times_shipped(&lines, key),
            1,
            "an accepted order ships once"
        );
    }
    assert_eq!(
        (
            summary.accepted,
            summary.refused,
            summary.shipped,
            summary.lost
        ),
        (
            accepted.len() as u64,
            refused.len() as u64,
            accepted.len() as u64,
            0
        ),
        "{summary}"
    );
}

#[test]
fn embedded_worker_handles_jobs_concurrently_up_to_its_bound() {
    let mut a = args(BrokerUrl::Embedded);
    a.worker_concurrency = 4;
    a.packing_ms = 500;
    let peak = std::sync::Arc::new(std::sync::Mutex::new(None));
    let p = peak.clone();
    let (summary, _) = common::with_demo(a, |store| async move {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..16 {
            let store = store.clone();
            tasks.spawn(async move { order(&store, &format!("conc-{i}"), "Kettle").await.0 });
        }
        while let Some(r) = tasks.join_next().await {
            assert_eq!(r.unwrap(), 200);
        }
        // All 16 wait or are packed; the worker takes four at a time.
        let deadline = tokio::time::Instant::now() + common::TIMEOUT;
        loop {
            let (_, v) = common::get_json(&format!("{store}/journeys")).await;
            let q = &v["queue"];
            if q["in_flight"] == 0 && q["waiting"] == 0 {
                *p.lock().unwrap() = Some((
                    q["peak_in_flight"].as_u64(),
                    q["worker_concurrency"].as_u64(),
                ));
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{q}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    assert_eq!(
        *peak.lock().unwrap(),
        Some((Some(4), Some(4))),
        "four jobs at once, never more"
    );
    assert_eq!((summary.accepted, summary.shipped), (16, 16), "{summary}");
}

/// The broker stops answering while the order is being published: the user is told
/// the outcome is unknown (never "not created"), and a retry with the same key, once
/// the broker answers again, is the same order, shipped once.
fn unconfirmed_publish(
    broker: fn(std::net::SocketAddr) -> BrokerUrl,
    direct: BrokerUrl,
    port: u16,
) {
    let proxy_rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = proxy_rt.block_on(common::Proxy::start(port));
    let a = args(broker(proxy.addr));
    let queue = a.queue.clone();
    let key = format!("unconfirmed-{}-{}", std::process::id(), fastrand::u32(..));
    let k = key.clone();
    let (summary, lines) = common::with_demo(a, |store| {
        let proxy = &proxy;
        async move {
            proxy.pause();
            let (status, h, first) = order(&store, &k, "Kettle").await;
            assert_eq!(status, 504, "{first}");
            assert_eq!(first["status"], "unknown", "{first}");
            assert!(h.contains_key("retry-after"));
            assert!(
                !first["reason"].as_str().unwrap().contains("not created"),
                "{first}"
            );
            proxy.resume();
            common::wait_for_queue(&store, true).await;
            // Retried until the warehouse knows (bounded).
            let deadline = tokio::time::Instant::now() + common::TIMEOUT;
            let again = loop {
                let (status, _, again) = order(&store, &k, "Kettle").await;
                if status == 200 {
                    break again;
                }
                assert_eq!(status, 504, "{again}");
                assert!(tokio::time::Instant::now() < deadline, "{again}");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            };
            assert_eq!(again["status"], "accepted");
            assert_eq!(again["order_id"], first["order_id"], "the same order");
            // Shipped (bounded wait), and not twice. The job that ships is the one the
            // broker kept: the first attempt's, with its context, unless the broker
            // never got it and the retry's was stored.
            let deadline = tokio::time::Instant::now() + common::TIMEOUT;
            'wait: loop {
                for attempt in [&first, &again] {
                    let cid = attempt["correlation_id"].as_str().unwrap();
                    let (_, j) = common::get_json(&format!("{store}/journeys/{cid}")).await;
                    if j["events"].as_array().is_some_and(|e| {
                        e.iter()
                            .any(|e| e["message"] == "parcel packed and handed to the carrier")
                    }) {
                        break 'wait;
                    }
                }
                assert!(tokio::time::Instant::now() < deadline, "never shipped");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            // Time for a second copy to show up, if there were one.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    });
    drop(proxy_rt);
    assert_eq!(times_shipped(&lines, &key), 1, "shipped exactly once");
    assert_eq!(
        (
            summary.orders,
            summary.accepted,
            summary.refused,
            summary.unknown,
            summary.shipped,
            summary.shipped_after_refusal
        ),
        (1, 1, 0, 0, 1, 0),
        "{summary}"
    );
    common::remove_queue(&direct, &queue);
}

#[test]
fn nats_unconfirmed_publish_is_told_unknown_and_the_retry_ships_once() {
    if common::service_up(
        "nats_unconfirmed_publish_is_told_unknown_and_the_retry_ships_once",
        "NATS",
        4222,
    ) {
        unconfirmed_publish(
            |a| BrokerUrl::Nats(format!("nats://{a}")),
            BrokerUrl::Nats("nats://127.0.0.1:4222".into()),
            4222,
        );
    }
}

#[test]
fn redis_unconfirmed_publish_is_told_unknown_and_the_retry_ships_once() {
    if common::service_up(
        "redis_unconfirmed_publish_is_told_unknown_and_the_retry_ships_once",
        "Redis",
        6379,
    ) {
        unconfirmed_publish(
            |a| BrokerUrl::Redis(format!("redis://{a}")),
            BrokerUrl::Redis("redis://127.0.0.1:6379".into()),
            6379,
        );
    }
}

#[test]
fn rabbitmq_unconfirmed_publish_is_told_unknown_and_the_retry_ships_once() {
    if common::service_up(
        "rabbitmq_unconfirmed_publish_is_told_unknown_and_the_retry_ships_once",
        "RabbitMQ",
        5672,
    ) {
        unconfirmed_publish(
            |a| BrokerUrl::Amqp(format!("amqp://guest:guest@{a}")),
            BrokerUrl::Amqp("amqp://guest:guest@127.0.0.1:5672".into()),
            5672,
        );
    }
}
