//! Malformed inbound context headers, sent over a raw TCP socket to a real server
//! (so that bytes `http` would refuse to build still reach it): the request is served,
//! the context is sane, and nothing raw is echoed back. The table lives in
//! `threadline_testkit::malformed`, shared with the proxy's tests.

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use common::{TIMEOUT, serve_axum};
use threadline::codec::CorrelationId;
use threadline::{Context, Policy};
use threadline_testkit::malformed::{body_facts, cases, context_facts};
use threadline_tower::ThreadlineLayer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerCx, SubscriberExt};

fn app() -> Router {
    let policy = Policy::builder().header("x-tenant-id").build().unwrap();
    Router::new()
        .route(
            "/",
            // Sizes and ids only: the handler never echoes raw context values.
            get(|| async { context_facts(&Context::current()) }),
        )
        .layer(ThreadlineLayer::new(policy).trust_all())
}

/// Sends `header_lines` (each without its CRLF) in a raw HTTP/1.1 request.
async fn raw_request(addr: std::net::SocketAddr, header_lines: &[Vec<u8>]) -> Vec<u8> {
    let mut req = b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n".to_vec();
    for line in header_lines {
        req.extend_from_slice(line);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&req).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut out))
        .await
        .expect("response in time")
        .unwrap();
    out
}

/// Collects every debug event (all its fields, formatted) the server emits.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<String>>>);

struct Line<'a>(&'a mut String);

impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Logs {
    fn on_event(&self, event: &tracing::Event<'_>, _: LayerCx<'_, S>) {
        let mut line = String::new();
        event.record(&mut Line(&mut line));
        self.0.lock().unwrap().push(line);
    }
}

// Current-thread runtime: the server runs on this thread, under this subscriber.
#[tokio::test(flavor = "current_thread")]
async fn malformed_headers_table_over_raw_tcp() {
    let logs = Logs::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(logs.clone()));
    let addr = serve_axum(app()).await;
    let cases = cases();
    assert!(cases.len() >= 30);
    for c in cases {
        let raw = raw_request(addr, &c.lines).await;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "{}: served, got {head}",
            c.name
        );
        for f in &c.forbidden {
            assert!(!text.contains(f.as_str()), "{}: {f:?} echoed back", c.name);
        }
        // Context sane: a valid correlation id echoed, a non-zero trace id.
        let echoed = head
            .lines()
            .find_map(|l| l.strip_prefix("x-correlation-id: "))
            .unwrap_or_else(|| panic!("{}: no correlation id echoed", c.name));
        assert!(
            CorrelationId::decode(echoed.as_bytes()).is_ok(),
            "{}: echoed id valid",
            c.name
        );
        let facts = body_facts(body);
        assert_eq!(facts["cid"], echoed.len().to_string(), "{}", c.name);
        let trace = facts["trace"];
        assert!(
            trace.len() == 32
                && trace.bytes().all(|b| b.is_ascii_hexdigit())
                && trace != "0".repeat(32),
            "{}: trace id {trace}",
            c.name
        );
        let members: usize = facts["bag"].parse().unwrap();
        assert!(
            members <= 64,
            "{}: baggage within the W3C minimum limit",
            c.name
        );
        for (k, v) in &c.expect {
            assert_eq!(facts[k], v.as_str(), "{}: {k}", c.name);
        }
    }
    // Dropped headers are logged at debug level, by name and reason, never by value.
    let lines = logs.0.lock().unwrap();
    let dropped = lines
        .iter()
        .filter(|l| l.contains("inbound context header dropped"))
        .count();
    assert!(dropped >= 30, "rejections are logged: {dropped}");
    for line in lines.iter() {
        assert!(
            !line.contains("EVIL"),
            "a raw value reached the log: {line}"
        );
        assert!(
            !line.contains('\r') && !line.contains('\n'),
            "raw CR/LF in the log: {line}"
        );
    }
}

/// Bytes the HTTP parser itself refuses (a bare CR, obs-fold continuation lines, NUL)
/// never reach the layer: hyper answers 400 on its own, without echoing them.
#[tokio::test]
async fn parser_level_crlf_attempts_never_echo() {
    let addr = serve_axum(app()).await;
    for (name, line) in [
        ("bare CR", b"x-correlation-id: abc\rEVIL: 1".to_vec()),
        ("obs-fold", b"x-correlation-id: abc\r\n EVIL: 1".to_vec()),
        ("NUL", b"x-tenant-id: a\x00EVIL".to_vec()),
    ] {
        let raw = raw_request(addr, &[line]).await;
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("EVIL"), "{name}: echoed");
        assert!(
            text.starts_with("HTTP/1.1 400"),
            "{name}: the parser's 400, never a 500: {text}"
        );
    }
}
