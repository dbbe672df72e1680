//! Malformed input through the proxy, over raw TCP so that bytes `http` would refuse
//! to build still arrive: the server layer's table of malformed context headers
//! (shared with threadline-tower through `threadline_testkit::malformed`), malformed
//! HTTP (bad request lines, conflicting `Content-Length` / `Transfer-Encoding`:
//! request smuggling), and header floods. Always a clear answer, never a crash, never
//! a raw value forwarded, never a smuggled request reaching the app.

mod common;

use bytes::Bytes;
use common::{SeenLog, get, raw, raw_header, serve, start, status_of, upstream};
use http::Response;
use http_body_util::{BodyExt, Full};
use threadline::codec::CorrelationId;
use threadline::{Policy, Trust};
use threadline_proxy::ProxyConfig;
use threadline_testkit::malformed::{body_facts, cases, context_facts};
use threadline_tower::TrustPolicy;

fn policy() -> Policy {
    Policy::builder().header("x-tenant-id").build().unwrap()
}

/// An app that reads the context the proxy forwarded (as a trusting Threadline service
/// would) and answers its facts (sizes and ids only); it also drains any body.
async fn facts_app() -> (std::net::SocketAddr, SeenLog) {
    serve(|req: http::Request<hyper::body::Incoming>| async move {
        let ctx = policy().capture(req.headers(), Trust::Trusted).context;
        let facts = context_facts(&ctx);
        let _ = req.into_body().collect().await;
        Response::new(Full::new(Bytes::from(facts)))
    })
    .await
}

fn request(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut req = b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n".to_vec();
    for line in lines {
        req.extend_from_slice(line);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req
}

const CONTEXT_HEADERS: [&str; 5] = [
    "traceparent",
    "tracestate",
    "baggage",
    "x-correlation-id",
    "x-tenant-id",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_context_table_through_the_proxy() {
    let (app, seen) = facts_app().await;
    let mut config = ProxyConfig::new(upstream(app))
        .policy(policy())
        .trust(TrustPolicy::always());
    // Room for the table's 100 KB values, so they reach the policy (the default limit
    // answers 431 before: see the header-flood test).
    config.limits.max_header_bytes = 256 * 1024;
    let proxy = start(config).await;
    let cases = cases();
    assert!(cases.len() >= 30);
    for c in &cases {
        seen.lock().unwrap().clear();
        let text = raw(proxy.local_addr(), &request(&c.lines)).await;
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        assert_eq!(status_of(&text), 200, "{}: served, got {head}", c.name);
        for f in &c.forbidden {
            assert!(!text.contains(f.as_str()), "{}: {f:?} echoed back", c.name);
        }
        let echoed = raw_header(&text, "x-correlation-id")
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
        assert!(facts["bag"].parse::<usize>().unwrap() <= 64, "{}", c.name);
        for (k, v) in &c.expect {
            assert_eq!(facts[k], v.as_str(), "{}: {k}", c.name);
        }
        // What the app received: each context header at most once, and nothing the
        // policy would reject (the rejected values were dropped, not forwarded).
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{}: one request reached the app", c.name);
        for name in CONTEXT_HEADERS {
            let n = seen[0].headers.get_all(name).iter().count();
            assert!(n <= 1, "{}: {name} forwarded {n} times", c.name);
        }
        let again = policy().capture(&seen[0].headers, Trust::Trusted);
        assert!(
            again.report.is_empty(),
            "{}: forwarded context that breaks the policy: {:?}",
            c.name,
            again.report
        );
    }
    assert!(proxy.metrics().rejected_for("malformed") >= 10);
    // Still serving.
    let (status, _, _) = get(&format!("http://{}/", proxy.local_addr()), &[]).await;
    assert_eq!(status, 200);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_4xx_and_never_reach_the_app() {
    let (app, seen) = facts_app().await;
    let proxy = start(ProxyConfig::new(upstream(app)).policy(policy())).await;
    let cases: &[(&str, &[u8])] = &[
        ("three spaces", b"GET  / HTTP/1.1\r\nhost: x\r\n\r\n"),
        ("extra token", b"GET / HTTP/1.1 EVIL\r\nhost: x\r\n\r\n"),
        ("NUL in method", b"GE\x00T / HTTP/1.1\r\nhost: x\r\n\r\n"),
        ("no version", b"GET /\r\nhost: x\r\n\r\n"),
        ("junk version", b"GET / HTTX/1.1\r\nhost: x\r\n\r\n"),
        (
            "control char in target",
            b"GET /a\x01b HTTP/1.1\r\nhost: x\r\n\r\n",
        ),
        (
            "TLS hello on plain HTTP",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03EVIL\r\n\r\n",
        ),
        (
            "header without colon",
            b"GET / HTTP/1.1\r\nhost: x\r\nEVIL\r\n\r\n",
        ),
        ("space before colon", b"GET / HTTP/1.1\r\nhost : x\r\n\r\n"),
        (
            "bare CR in header",
            b"GET / HTTP/1.1\r\nhost: x\r\nx-a: a\rEVIL: 1\r\n\r\n",
        ),
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nhost: x\r\nx-correlation-id: a\r\n EVIL: 1\r\n\r\n",
        ),
        (
            "NUL in value",
            b"GET / HTTP/1.1\r\nhost: x\r\nx-tenant-id: a\x00EVIL\r\n\r\n",
        ),
        (
            "bad header name byte",
            b"GET / HTTP/1.1\r\nhost: x\r\nx(a): 1\r\n\r\n",
        ),
    ];
    for (name, bytes) in cases {
        let text = raw(proxy.local_addr(), bytes).await;
        let status = status_of(&text);
        assert!((400..500).contains(&status), "{name}: a 4xx, got {text:?}");
        assert!(!text.contains("EVIL"), "{name}: echoed");
    }
    assert!(seen.lock().unwrap().is_empty(), "nothing reached the app");
    let (status, _, _) = get(&format!("http://{}/", proxy.local_addr()), &[]).await;
    assert_eq!(status, 200, "still serving");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_never_reaches_the_app() {
    let (app, seen) = facts_app().await;
    let proxy = start(ProxyConfig::new(upstream(app)).policy(policy())).await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n";
    // (name, request bytes, whether the first request may be served)
    let cases: Vec<(&str, String, bool)> = vec![
        (
            "CL then TE (CL.TE)",
            format!(
                "POST /first HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            true,
        ),
        (
            "TE then CL (TE.CL)",
            format!(
                "POST /first HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 44\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            true,
        ),
        (
            "two different Content-Lengths",
            format!(
                "POST /first HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\ncontent-length: 38\r\n\r\n{smuggled}"
            ),
            false,
        ),
        (
            "Content-Length list",
            format!("POST /first HTTP/1.1\r\nhost: x\r\ncontent-length: 0, 38\r\n\r\n{smuggled}"),
            false,
        ),
        (
            "signed Content-Length",
            format!("POST /first HTTP/1.1\r\nhost: x\r\ncontent-length: +0\r\n\r\n{smuggled}"),
            false,
        ),
        (
            "TE not ending in chunked",
            format!(
                "POST /first HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            false,
        ),
        (
            "TE xchunked",
            format!(
                "POST /first HTTP/1.1\r\nhost: x\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            false,
        ),
        (
            "TE with space before colon",
            format!(
                "POST /first HTTP/1.1\r\nhost: x\r\ntransfer-encoding : chunked\r\ncontent-length: 0\r\n\r\n{smuggled}"
            ),
            false,
        ),
        (
            "TE on HTTP/1.0",
            format!(
                "POST /first HTTP/1.0\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            false,
        ),
        (
            "chunk size overflow",
            format!(
                "POST /first HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n\r\n{smuggled}"
            ),
            true,
        ),
    ];
    for (name, bytes, may_serve_first) in &cases {
        seen.lock().unwrap().clear();
        let text = raw(proxy.local_addr(), bytes.as_bytes()).await;
        let status = status_of(&text);
        let paths: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.path.clone())
            .collect();
        assert!(
            !paths.iter().any(|p| p == "/smuggled"),
            "{name}: a smuggled request reached the app: {paths:?}"
        );
        // Never more than one response: the rest of the bytes is never a request.
        assert!(
            text.matches("HTTP/1.1 ").count() <= 1,
            "{name}: a second response: {text}"
        );
        if *may_serve_first {
            assert!(
                status == 200 || (400..500).contains(&status) || status == 502,
                "{name}: {text:?}"
            );
        } else {
            assert!((400..500).contains(&status), "{name}: a 4xx, got {text:?}");
            assert!(paths.is_empty(), "{name}: reached the app: {paths:?}");
        }
        for s in seen.lock().unwrap().iter() {
            assert!(
                !(s.headers.contains_key("content-length")
                    && s.headers.contains_key("transfer-encoding")),
                "{name}: the app got both framings"
            );
        }
    }
    // Pipelining proper still works: two requests, both parsed by the proxy.
    seen.lock().unwrap().clear();
    let text = raw(
        proxy.local_addr(),
        b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(paths, ["/a", "/b"]);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_floods_get_431_and_never_reach_the_app() {
    let (app, seen) = facts_app().await;
    let proxy = start(ProxyConfig::new(upstream(app)).policy(policy())).await;
    let many: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("x-flood-{i}: 1").into_bytes())
        .collect();
    let huge = vec![format!("x-big: {}", "a".repeat(100 * 1024)).into_bytes()];
    let wide: Vec<Vec<u8>> = (0..90)
        .map(|i| format!("x-wide-{i}: {}", "b".repeat(1000)).into_bytes())
        .collect();
    for (name, lines) in [
        ("300 headers", many),
        ("one 100 KB header", huge),
        ("90 KB of headers", wide),
    ] {
        let text = raw(proxy.local_addr(), &request(&lines)).await;
        assert_eq!(
            status_of(&text),
            431,
            "{name}: {}",
            text.lines().next().unwrap_or("")
        );
    }
    assert!(seen.lock().unwrap().is_empty());
    // Within the limits: served.
    let ok: Vec<Vec<u8>> = (0..60)
        .map(|i| format!("x-ok-{i}: 1").into_bytes())
        .collect();
    assert_eq!(
        status_of(&raw(proxy.local_addr(), &request(&ok)).await),
        200
    );
    proxy.shutdown().await;
}
