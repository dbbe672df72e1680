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

/// A TCP proxy to 127.0.0.1:`upstream` that can be cut: the broker "goes away".
struct Proxy {
    addr: SocketAddr,
    tasks: std::sync::Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks = std::sync::Arc::new(std::sync::Mutex::new(tokio::task::JoinSet::new()));
        let t = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                t.lock().unwrap().spawn(async move {
                    if let Ok(mut out) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        Proxy {
            addr,
            tasks,
            accept,
        }
    }

    /// Closes every connection and stops accepting.
    fn cut(&self) {
        self.accept.abort();
        self.tasks.lock().unwrap().abort_all();
    }
}

#[test]
fn redis_broker_that_goes_away_refuses_the_order_cleanly_and_loses_no_job() {
    let test = "redis_broker_that_goes_away_refuses_the_order_cleanly_and_loses_no_job";
    if !common::service_up(test, "Redis", 6379) {
        return;
    }
    // The proxy lives on a runtime of its own, beside the demo's.
    let proxy_rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = proxy_rt.block_on(Proxy::start(6379));
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
