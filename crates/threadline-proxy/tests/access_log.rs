//! The access log: one JSON line per request, inside the request's context, so it
//! carries the correlation id, trace id and captured header fields. Alone in its test
//! binary: its subscriber is set for this thread only, and tests running beside it on
//! other threads would change what tracing's callsites remember.

mod common;

use std::sync::{Arc, Mutex};

use common::{get, ok_app, start, upstream};
use threadline::Policy;
use threadline_proxy::ProxyConfig;
use threadline_tower::TrustPolicy;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// Current-thread runtime: the proxy's tasks run on this thread, under this subscriber.
#[tokio::test(flavor = "current_thread")]
async fn access_log_line_carries_the_context() {
    let buf = Buf::default();
    let out = buf.clone();
    let subscriber = tracing_subscriber::registry()
        .with(threadline_tracing::json_layer().with_writer(move || buf.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);

    let (app, seen) = ok_app().await;
    let policy = Policy::builder().header("x-tenant-id").build().unwrap();
    let config = ProxyConfig::new(upstream(app).named("orders"))
        .policy(policy)
        .trust(TrustPolicy::always());
    let proxy = start(config).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (status, _, _) = get(
        &format!("http://{}/orders/7?secret=no", proxy.local_addr()),
        &[
            ("x-correlation-id", "log-1"),
            ("traceparent", tp),
            ("x-tenant-id", "acme"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    proxy.shutdown().await;

    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let line: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["target"] == "threadline_proxy::access")
        .unwrap_or_else(|| panic!("no access line in {text}"));
    assert_eq!(line["correlation_id"], "log-1");
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(line["tenant_id"], "acme");
    let f = &line["fields"];
    assert_eq!(f["method"], "GET");
    assert_eq!(f["path"], "/orders/7", "the query is not logged");
    assert_eq!(f["status"], 200);
    assert_eq!(f["upstream"], "orders");
    // The parent id the app received is the call id the proxy logged.
    let sent = seen.lock().unwrap()[0].headers["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        sent.split('-').nth(2).unwrap(),
        f["call_id"].as_str().unwrap()
    );
    assert!(!text.contains("secret=no"));
}
