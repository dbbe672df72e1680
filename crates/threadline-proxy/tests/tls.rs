//! TLS on the proxy's listener (feature `tls`): HTTP/2 and HTTP/1.1 by ALPN, the
//! context forwarded to a plain-HTTP app with `x-forwarded-proto: https`, and bad
//! certificate files refused with a TLS error. The certificate in `tests/tls/` is for
//! `localhost` / 127.0.0.1, signed by the test CA beside it (test material only).

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{TIMEOUT, ok_app, start, upstream};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use threadline_proxy::{ErrorKind, Proxy, ProxyConfig, TlsFiles};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls")
}

fn connector(alpn: &[u8]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir().join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_speaks_h2_and_http1_by_alpn() {
    let (app, seen) = ok_app().await;
    let mut config = ProxyConfig::new(upstream(app));
    config.tls = Some(TlsFiles::new(dir().join("cert.pem"), dir().join("key.pem")));
    let proxy = start(config).await;
    let name = ServerName::try_from("localhost").unwrap();

    // HTTP/2 over TLS.
    let tcp = tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .unwrap();
    let tls = connector(b"h2").connect(name.clone(), tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("https://localhost/secure")
        .header("x-correlation-id", "tls-1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(TIMEOUT, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-correlation-id"], "tls-1");
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");

    // HTTP/1.1 over TLS.
    let tcp = tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .unwrap();
    let tls = connector(b"http/1.1").connect(name, tcp).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/plain")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(TIMEOUT, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-correlation-id"));

    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        for s in seen.iter() {
            assert_eq!(s.headers["x-forwarded-proto"], "https");
            assert!(s.headers.contains_key("traceparent"));
        }
        assert_eq!(
            seen[0].headers["host"], "localhost",
            "the caller's authority is kept"
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn bad_certificate_files_are_tls_errors() {
    let (app, _) = ok_app().await;
    for (cert, key) in [
        ("missing.pem", "key.pem"),
        ("cert.pem", "missing.pem"),
        ("key.pem", "key.pem"),
    ] {
        let mut config = ProxyConfig::new(upstream(app)).listen("127.0.0.1:0".parse().unwrap());
        config.tls = Some(TlsFiles::new(dir().join(cert), dir().join(key)));
        let err = Proxy::new(config).unwrap().start().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Tls, "{cert} / {key}: {err}");
    }
}
