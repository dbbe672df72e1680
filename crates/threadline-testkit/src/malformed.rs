//! The table of malformed inbound context headers (30+ cases) that every HTTP entry
//! point is held to: threadline-tower's server layer and the proxy run the same table.
//!
//! Each [`Case`] is a list of raw header lines (bytes `http` would refuse to build
//! included), strings that must appear nowhere in the answer, and facts the handler
//! reports about the context it ended up with, as `key=value` lines:
//!
//! | key | value |
//! |---|---|
//! | `cid` | length of the correlation id |
//! | `trace` | the trace id (32 hex) |
//! | `tenant` | length of `x-tenant-id` (0 when absent) |
//! | `bag` | baggage members |
//! | `ts` | tracestate length |
//!
//! ```
//! let cases = threadline_testkit::malformed::cases();
//! assert!(cases.len() >= 30);
//! let facts = threadline_testkit::malformed::body_facts("cid=36\ntrace=ab\n");
//! assert_eq!(facts["cid"], "36");
//! ```

use std::collections::HashMap;

/// A valid trace id used by the cases that expect it to be continued.
pub const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// A valid parent id.
pub const P: &str = "00f067aa0ba902b7";

/// One raw header line `name: value` (without CRLF).
pub fn h(name: &str, value: impl AsRef<[u8]>) -> Vec<u8> {
    let mut l = format!("{name}: ").into_bytes();
    l.extend_from_slice(value.as_ref());
    l
}

/// `prefix` padded with `a` to `len` bytes.
pub fn big(prefix: &str, len: usize) -> Vec<u8> {
    let mut v = prefix.as_bytes().to_vec();
    v.resize(len, b'a');
    v
}

/// One malformed-input case.
pub struct Case {
    /// What is being sent.
    pub name: &'static str,
    /// Raw header lines, each without its CRLF.
    pub lines: Vec<Vec<u8>>,
    /// Must appear nowhere in the response (headers or body).
    pub forbidden: Vec<String>,
    /// Expected body facts (`key=value` lines).
    pub expect: Vec<(&'static str, String)>,
}

/// A case that forbids `EVIL` in the answer.
pub fn case(name: &'static str, lines: Vec<Vec<u8>>) -> Case {
    Case {
        name,
        lines,
        forbidden: vec!["EVIL".into()],
        expect: Vec::new(),
    }
}

impl Case {
    /// Also forbids `s` in the answer.
    pub fn forbid(mut self, s: &str) -> Self {
        self.forbidden.push(s.to_owned());
        self
    }
    /// Expects the fact `key` to be `value`.
    pub fn expect(mut self, key: &'static str, value: impl ToString) -> Self {
        self.expect.push((key, value.to_string()));
        self
    }
}

/// The table: traceparent, tracestate, correlation id, baggage and custom-header cases.
pub fn cases() -> Vec<Case> {
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

/// The `key=value` lines of a handler's answer.
pub fn body_facts(body: &str) -> HashMap<&str, &str> {
    body.lines().filter_map(|l| l.split_once('=')).collect()
}

/// The facts a handler answers about `c` (sizes and ids only: never a raw value).
pub fn context_facts(c: &threadline::Context) -> String {
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
}
