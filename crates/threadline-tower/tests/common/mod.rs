//! Helpers shared by the integration tests: real servers on 127.0.0.1:0.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Every network step of the tests is bounded.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Serves an axum router on 127.0.0.1:0 (with `ConnectInfo<SocketAddr>`).
pub async fn serve_axum(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// A plain hyper-util keep-alive client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends one request with a fresh [`client`], bounded by [`TIMEOUT`]; panics on a
/// timeout or a connection error.
pub async fn send(req: http::Request<Full<Bytes>>) -> http::Response<hyper::body::Incoming> {
    tokio::time::timeout(TIMEOUT, client().request(req))
        .await
        .expect("an answer in time")
        .expect("a response")
}

/// An HTTP/2 (prior knowledge) client: one connection, many concurrent streams.
pub fn h2_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// Collects a response body as text.
pub async fn text<B>(body: B) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = tokio::time::timeout(TIMEOUT, body.collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8 body")
}

/// Serves a Tower service with hyper (through hyper-util's `TowerToHyperService`) on
/// 127.0.0.1:0, HTTP/1 and HTTP/2 (prior knowledge) with room for many concurrent
/// streams on one connection.
pub async fn serve_hyper<S, B>(svc: S) -> SocketAddr
where
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let svc = svc.clone();
            tokio::spawn(async move {
                let svc = tower::ServiceBuilder::new()
                    .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                        req.extensions_mut()
                            .insert(threadline_tower::PeerAddr(peer));
                        req
                    })
                    .service(svc);
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder.http2().max_concurrent_streams(Some(50_000));
                let _ = builder
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(stream),
                        hyper_util::service::TowerToHyperService::new(svc),
                    )
                    .await;
            });
        }
    });
    addr
}
