//! The examples pair, run in process from the examples' own code against the local
//! NATS: orders calls billing over HTTP, billing publishes one message, orders consumes
//! it; the three log lines carry one correlation id and one trace id.

#[allow(dead_code)]
#[path = "../examples/billing.rs"]
mod billing;
#[allow(dead_code)]
#[path = "../examples/orders.rs"]
mod orders;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use threadline_tracing::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NATS: &str = "127.0.0.1:4222";

/// Where the JSON lines go.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn json(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// `POST /orders` with `x-tenant-id: acme`, no ids: orders starts the trace. Answers
/// the status line and the echoed correlation id.
async fn post_order(addr: std::net::SocketAddr) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        b"POST /orders HTTP/1.1\r\nhost: 127.0.0.1\r\nx-tenant-id: acme\r\n\
          content-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_string(&mut answer))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let id = answer
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-correlation-id")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no x-correlation-id in {answer:?}"));
    (status, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_and_billing_share_one_id_over_http_and_nats() {
    let test = "orders_and_billing_share_one_id_over_http_and_nats";
    let Some(_) = threadline_testkit::connect(
        test,
        "NATS",
        NATS,
        Duration::from_secs(5),
        async_nats::connect(NATS),
    )
    .await
    else {
        return;
    };
    let lines = Lines::default();
    let sink = lines.clone();
    tracing_subscriber::registry()
        .with(threadline_tracing::json_layer().with_writer(move || sink.clone()))
        .init();

    let subject = threadline_testkit::unique("invoices", '.');
    let billing_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let billing_addr = billing_listener.local_addr().unwrap();
    let orders_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let orders_addr = orders_listener.local_addr().unwrap();
    let billing = billing::Config {
        nats_url: NATS.into(),
        subject: subject.clone(),
    };
    let orders = orders::Config {
        billing_url: format!("http://{billing_addr}"),
        nats_url: NATS.into(),
        subject,
    };
    let billing = tokio::spawn(billing::run(billing_listener, billing));
    let orders = tokio::spawn(orders::run(orders_listener, orders));

    // Orders subscribes before it serves: once it answers, the consumer is listening.
    let (status, id) = post_order(orders_addr).await;
    assert!(status.contains(" 200 "), "{status}");
    let until = Instant::now() + Duration::from_secs(30);
    let noted = loop {
        let all = lines.json();
        if let Some(l) = all
            .iter()
            .find(|l| l["fields"]["message"] == "invoice noted")
        {
            break l.clone();
        }
        assert!(Instant::now() < until, "no consumer line: {all:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    billing.abort();
    orders.abort();

    let all = lines.json();
    let find = |message: &str| {
        all.iter()
            .find(|l| l["fields"]["message"] == message)
            .cloned()
            .unwrap_or_else(|| panic!("no {message:?} line: {all:?}"))
    };
    let placed = find("order placed");
    let invoiced = find("invoice created");
    let trace = placed["trace_id"].as_str().expect("a trace id");
    for (line, app) in [
        (&placed, "orders"),
        (&invoiced, "billing"),
        (&noted, "orders"),
    ] {
        assert_eq!(line["app"], app, "{line}");
        assert_eq!(line["correlation_id"], id.as_str(), "{line}");
        assert_eq!(line["trace_id"], trace, "{line}");
        assert_eq!(line["tenant_id"], "acme", "{line}");
        assert_eq!(line["user.id"], "alice", "{line}");
    }
    // Each hop is its own span of the one trace.
    assert_ne!(placed["span_id"], invoiced["span_id"]);
    assert_ne!(invoiced["span_id"], noted["span_id"]);
}
