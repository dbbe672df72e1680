//! Operations: upstream down or slow (502 / 504 with the correlation id, never a
//! hang), the admin listener (`/healthz`, `/metrics`), graceful shutdown draining a
//! request in flight, the connection limit, and a `Route` of ones own (the seam a
//! route table plugs into) reading the captured context.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{TIMEOUT, get, ok_app, serve, start, upstream};
use http::Response;
use http_body_util::Full;
use threadline_proxy::ProxyConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An address nobody listens on.
fn dead_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_answers_502_with_the_correlation_id() {
    let proxy = start(ProxyConfig::new(upstream(dead_addr()))).await;
    let url = format!("http://{}/orders", proxy.local_addr());
    let (status, headers, body) = get(&url, &[("x-correlation-id", "down-1")]).await;
    assert_eq!(status, 502);
    assert_eq!(headers["x-correlation-id"], "down-1");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["correlation_id"], "down-1");
    assert_eq!(v["status"], 502);
    // Without an id: the minted one, the same in the header and the body.
    let (status, headers, body) = get(&url, &[]).await;
    assert_eq!(status, 502);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["correlation_id"],
        headers["x-correlation-id"].to_str().unwrap()
    );
    let text = proxy.metrics().render();
    assert!(
        text.contains("threadline_proxy_upstream_errors_total{kind=\"connect\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("threadline_proxy_requests_total{class=\"5xx\"} 2"),
        "{text}"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_too_slow_answers_504_with_the_correlation_id() {
    let (app, _) = serve(|_req| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Response::new(Full::new(Bytes::new()))
    })
    .await;
    let mut config = ProxyConfig::new(upstream(app));
    config.timeouts.upstream = Duration::from_millis(200);
    let proxy = start(config).await;
    let (status, headers, body) = get(
        &format!("http://{}/", proxy.local_addr()),
        &[("x-correlation-id", "slow-1")],
    )
    .await;
    assert_eq!(status, 504);
    assert_eq!(headers["x-correlation-id"], "slow-1");
    assert!(body.contains("\"correlation_id\":\"slow-1\""), "{body}");
    assert!(
        proxy
            .metrics()
            .render()
            .contains("threadline_proxy_upstream_errors_total{kind=\"timeout\"} 1")
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_serves_healthz_and_metrics() {
    let (app, _) = ok_app().await;
    let config = ProxyConfig::new(upstream(app)).admin("127.0.0.1:0".parse().unwrap());
    let proxy = start(config).await;
    let admin = proxy.admin_addr().unwrap();
    let (status, _, body) = get(&format!("http://{admin}/healthz"), &[]).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, _) = get(
        &format!("http://{}/x", proxy.local_addr()),
        &[("traceparent", "00-bad")],
    )
    .await;
    assert_eq!(status, 200);
    let (status, headers, body) = get(&format!("http://{admin}/metrics"), &[]).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    for line in [
        "threadline_proxy_requests_total{class=\"2xx\"} 1",
        "threadline_proxy_request_duration_seconds_count 1",
        "threadline_proxy_rejected_context_total{reason=\"malformed\"} 1",
        "# TYPE threadline_proxy_request_duration_seconds histogram",
    ] {
        assert!(body.lines().any(|l| l == line), "{line} in\n{body}");
    }
    let (status, _, _) = get(&format!("http://{admin}/nothing"), &[]).await;
    assert_eq!(status, 404);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_the_request_in_flight() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let arrived = Arc::new(tokio::sync::Notify::new());
    let (g, a) = (gate.clone(), arrived.clone());
    let (app, _) = serve(move |_req| {
        let (g, a) = (g.clone(), a.clone());
        async move {
            a.notify_one();
            g.notified().await;
            Response::new(Full::new(Bytes::from_static(b"finished")))
        }
    })
    .await;
    let proxy = start(ProxyConfig::new(upstream(app))).await;
    let addr = proxy.local_addr();
    let in_flight = tokio::spawn(async move { get(&format!("http://{addr}/work"), &[]).await });
    tokio::time::timeout(TIMEOUT, arrived.notified())
        .await
        .expect("the request reached the app");
    let stopping = tokio::spawn(proxy.shutdown());
    // New connections are refused once the listener is closed.
    let mut refused = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener closes on shutdown");
    assert!(
        !stopping.is_finished(),
        "shutdown waits for the request in flight"
    );
    gate.notify_one();
    let (status, _, body) = tokio::time::timeout(TIMEOUT, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "finished"));
    tokio::time::timeout(TIMEOUT, stopping)
        .await
        .expect("shutdown ends")
        .unwrap();
}

async fn request_on(tcp: &mut tokio::net::TcpStream) -> String {
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tcp.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_holds_further_connections() {
    let (app, _) = ok_app().await;
    let mut config = ProxyConfig::new(upstream(app));
    config.limits.max_connections = 2;
    let proxy = start(config).await;
    let addr = proxy.local_addr();
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(request_on(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(request_on(&mut second).await.starts_with("HTTP/1.1 200"));
    assert!(
        proxy
            .metrics()
            .render()
            .contains("threadline_proxy_connections_open{listener=\"proxy\"} 2")
    );
    // A third connection waits in the backlog: the proxy does not take it while two
    // are open, so its request gets no answer.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf))
            .await
            .is_err(),
        "served beyond the limit"
    );
    drop(first);
    let n = tokio::time::timeout(TIMEOUT, third.read(&mut buf))
        .await
        .expect("served once a slot frees")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    drop((second, third));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_of_ones_own_sees_the_captured_context() {
    // The seam a full route table plugs into: here, a routing key read from baggage
    // (what the route-table library will do among other forms), `None` for no route.
    let (baseline, _) =
        serve(|_req| async { Response::new(Full::new(Bytes::from_static(b"baseline"))) }).await;
    let (alice, _) =
        serve(|_req| async { Response::new(Full::new(Bytes::from_static(b"alice"))) }).await;
    let (b, a) = (
        upstream(baseline).named("baseline"),
        upstream(alice).named("alice"),
    );
    let route = move |head: &threadline_proxy::RequestHead<'_>, ctx: &threadline::Context| {
        if head.uri.path() == "/nowhere" {
            return None;
        }
        match ctx.baggage().and_then(|bag| bag.get("routing-key")) {
            Some(k) if k == "alice" => Some(a.clone()),
            _ => Some(b.clone()),
        }
    };
    let proxy = threadline_proxy::Proxy::new(
        ProxyConfig::new(upstream(baseline)).listen("127.0.0.1:0".parse().unwrap()),
    )
    .unwrap()
    .with_route(route)
    .start()
    .await
    .unwrap();
    let base = format!("http://{}", proxy.local_addr());
    let (_, _, body) = get(&format!("{base}/"), &[("baggage", "routing-key=alice,x=1")]).await;
    assert_eq!(body, "alice");
    let (_, _, body) = get(&format!("{base}/"), &[("baggage", "routing-key=bob")]).await;
    assert_eq!(body, "baseline");
    let (status, headers, body) = get(
        &format!("{base}/nowhere"),
        &[("x-correlation-id", "lost-1")],
    )
    .await;
    assert_eq!(status, 502);
    assert_eq!(headers["x-correlation-id"], "lost-1");
    assert!(body.contains("\"error\":\"no route\""), "{body}");
    let text = proxy.metrics().render();
    assert!(
        text.contains("threadline_proxy_upstream_errors_total{kind=\"no_route\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("threadline_proxy_routes_total{route=\"alice\"} 1"),
        "{text}"
    );
    proxy.shutdown().await;
}
