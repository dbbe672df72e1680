//! Malformed inbound context headers, sent over a raw TCP socket to a real server
//! (so that bytes `http` would refuse to build still reach it): the request is served,
//! the context is sane, and nothing raw is echoed back.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use common::{TIMEOUT, serve_axum};
use threadline::codec::CorrelationId;
use threadline::{Context, Policy};
use threadline_tower::ThreadlineLayer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerCx, SubscriberExt};

const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const P: &str = "00f067aa0ba902b7";

fn app() -> Router {
    let policy = Policy::builder().header("x-tenant-id").build().unwrap();
    Router::new()
        .route(
            "/",
            get(|| async {
                // Sizes and ids only: the handler never echoes raw context values.
                let c = Context::current();
                format!(
                    "cid={}\ntrace={}\ntenant={}\nbag={}\nts={}\n",
                    c.correlation_id().map(|i| i.as_str().len()).unwrap_or(0),
                    c.trace_id().map(|t| t.to_string()).unwrap_or_default(),
                    c.get("x-tenant-id").map_or(0, str::len),
                    c.baggage().map_or(0, |b| b.iter().count()),
                    c.trace()
                        .and_then(|t| t.tracestate())
                        .map_or(0, |s| s.len()),
                )
            }),
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

fn h(name: &str, value: impl AsRef<[u8]>) -> Vec<u8> {
    let mut l = format!("{name}: ").into_bytes();
    l.extend_from_slice(value.as_ref());
    l
}

fn big(prefix: &str, len: usize) -> Vec<u8> {
    let mut v = prefix.as_bytes().to_vec();
    v.resize(len, b'a');
    v
}

struct Case {
    name: &'static str,
    lines: Vec<Vec<u8>>,
    /// Must appear nowhere in the response (headers or body).
    forbidden: Vec<String>,
    /// Expected body facts (`key=value` lines).
    expect: Vec<(&'static str, String)>,
}

fn case(name: &'static str, lines: Vec<Vec<u8>>) -> Case {
    Case {
        name,
        lines,
        forbidden: vec!["EVIL".into()],
        expect: Vec::new(),
    }
}

impl Case {
    fn forbid(mut self, s: &str) -> Self {
        self.forbidden.push(s.to_owned());
        self
    }
    fn expect(mut self, key: &'static str, value: impl ToString) -> Self {
        self.expect.push((key, value.to_string()));
        self
    }
}

fn cases() -> Vec<Case> {
    let t2 = "0af7651916cd43dd8448eb211c80319c";
    let tp = |v: String| h("traceparent", v);
    let fresh = |c: Case| c.forbid(t2).forbid(&t2.to_uppercase());
    let many_members: String = (0..500)
        .map(|i| format!("k{i}=EVIL{i}"))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        // traceparent variants: all invalid → a new trace, the old id nowhere.
        case(
            "tp all-zero trace id",
            vec![tp(format!("00-{}-{P}-01", "0".repeat(32)))],
        ),
        fresh(case(
            "tp all-zero parent id",
            vec![tp(format!("00-{t2}-{}-01", "0".repeat(16)))],
        )),
        fresh(case("tp version ff", vec![tp(format!("ff-{t2}-{P}-01"))])),
        fresh(case(
            "tp uppercase hex",
            vec![tp(format!("00-{}-{P}-01", t2.to_uppercase()))],
        )),
        fresh(case("tp too short", vec![tp(format!("00-{t2}-{P}-0"))])),
        fresh(case(
            "tp v00 with extra",
            vec![tp(format!("00-{t2}-{P}-01-EVIL"))],
        )),
        fresh(case(
            "tp wrong separators",
            vec![tp(format!("00_{t2}_{P}_01"))],
        )),
        fresh(case(
            "tp non-hex",
            vec![tp(format!("00-{}g-{P}-01", &t2[..31]))],
        )),
        fresh(case(
            "tp duplicate headers",
            vec![tp(format!("00-{t2}-{P}-01")), tp(format!("00-{t2}-{P}-00"))],
        )),
        case("tp empty", vec![tp(String::new())]),
        case("tp 100 KB", vec![h("traceparent", big("EVIL", 100 * 1024))]),
        fresh(case(
            "tp non-UTF-8",
            vec![h(
                "traceparent",
                [
                    format!("00-{t2}-").as_bytes(),
                    b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3\xf2\xf1\xf0-01",
                ]
                .concat(),
            )],
        )),
        fresh(case(
            "tp valid + tracestate after invalid tp",
            vec![
                tp(format!("00-{t2}-{P}-zz")),
                h("tracestate", "vendor=EVIL"),
            ],
        ))
        .expect("ts", 0),
        case(
            "tracestate malformed with valid tp",
            vec![
                tp(format!("00-{T}-{P}-01")),
                h("tracestate", "EVIL=,,==,@@"),
            ],
        )
        .expect("trace", T)
        .expect("ts", 0),
        case(
            "tracestate 100 KB with valid tp",
            vec![
                tp(format!("00-{T}-{P}-01")),
                h("tracestate", big("k=EVIL", 100 * 1024)),
            ],
        )
        .expect("trace", T),
        case(
            "tp future version is accepted",
            vec![tp(format!("01-{T}-{P}-01-future"))],
        )
        .expect("trace", T),
        // correlation id: rejected → a new one is minted, the raw one never echoed.
        case("cid with tab", vec![h("x-correlation-id", "abc\tEVIL")]),
        case("cid with space", vec![h("x-correlation-id", "abc EVIL")]),
        case(
            "cid non-UTF-8",
            vec![h("x-correlation-id", b"EVIL\xff\xfe")],
        ),
        case(
            "cid 129 chars",
            vec![h("x-correlation-id", big("EVIL", 129))],
        ),
        case(
            "cid 100 KB",
            vec![h("x-correlation-id", big("EVIL", 100 * 1024))],
        ),
        case(
            "cid duplicate",
            vec![
                h("x-correlation-id", "EVIL-1"),
                h("x-correlation-id", "EVIL-2"),
            ],
        ),
        case("cid quotes", vec![h("x-correlation-id", "\"EVIL\"")]),
        case(
            "cid log forging with comma and semicolon",
            vec![h("x-correlation-id", "a;EVIL=1,b")],
        ),
        case("cid empty", vec![h("x-correlation-id", "")]),
        case(
            "CRLF injection: next line is its own header",
            vec![b"x-tenant-id: acme\r\nx-correlation-id: EVIL injected".to_vec()],
        )
        .expect("tenant", 4),
        // baggage
        case("baggage 500 members", vec![h("baggage", &many_members)]),
        case(
            "baggage 100 KB",
            vec![h("baggage", big("k=EVIL", 100 * 1024))],
        )
        .expect("bag", 0),
        case(
            "baggage invalid member kept apart",
            vec![h("baggage", "EVIL, a=1")],
        )
        .expect("bag", 1),
        case("baggage non-UTF-8", vec![h("baggage", b"a=EVIL\xff\xfe")]).expect("bag", 0),
        case(
            "baggage duplicate headers merge",
            vec![h("baggage", "a=1"), h("baggage", "b=2")],
        )
        .expect("bag", 2),
        // custom header
        case("tenant non-UTF-8", vec![h("x-tenant-id", b"EVIL\xff")]).expect("tenant", 0),
        case(
            "tenant 100 KB",
            vec![h("x-tenant-id", big("EVIL", 100 * 1024))],
        )
        .expect("tenant", 0),
        case(
            "tenant duplicate",
            vec![h("x-tenant-id", "EVIL1"), h("x-tenant-id", "EVIL2")],
        )
        .expect("tenant", 0),
        case("tenant with tab", vec![h("x-tenant-id", "EVIL\tx")]).expect("tenant", 0),
        case(
            "90 junk headers",
            (0..90).map(|i| h(&format!("x-junk-{i}"), "EVIL")).collect(),
        ),
    ]
}

fn body_facts(body: &str) -> HashMap<&str, &str> {
    body.lines().filter_map(|l| l.split_once('=')).collect()
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
