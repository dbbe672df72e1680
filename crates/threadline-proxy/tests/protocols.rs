//! Protocols through the proxy: HTTP/2 (h2c) end to end, gRPC to a tonic service with
//! its trailers (status codes, messages) intact, a WebSocket echo over the upgraded
//! connection, and slow clients that hold up nobody else.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskCx, Poll};

use base64::Engine as _;
use bytes::Bytes;
use common::{TIMEOUT, client, h2_client, serve, start, upstream};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use threadline_proxy::ProxyConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_prost::ProstCodec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_end_to_end_with_many_streams() {
    let (app, seen) = serve(|req: Request<Incoming>| async move {
        let v = format!("{:?}", req.version());
        Response::new(Full::new(Bytes::from(v)))
    })
    .await;
    let proxy = start(ProxyConfig::new(upstream(app))).await;
    let client = h2_client();
    let mut calls = Vec::new();
    for i in 0..50 {
        let client = client.clone();
        let url = format!("http://{}/s/{i}", proxy.local_addr());
        calls.push(tokio::spawn(async move {
            let req = Request::get(url).body(Full::new(Bytes::new())).unwrap();
            let resp = tokio::time::timeout(TIMEOUT, client.request(req))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(resp.version(), http::Version::HTTP_2);
            let id = resp.headers()["x-correlation-id"]
                .to_str()
                .unwrap()
                .to_owned();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (id, body)
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for c in calls {
        let (id, body) = c.await.unwrap();
        assert_eq!(body, "HTTP/2.0", "the app was spoken to in HTTP/2");
        ids.insert(id);
    }
    assert_eq!(ids.len(), 50, "one correlation id per stream");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 50);
        for s in seen.iter() {
            assert!(s.headers.contains_key("traceparent"));
            assert!(!s.headers.contains_key("connection"));
        }
    }
    proxy.shutdown().await;
}

#[derive(Clone, PartialEq, prost::Message)]
struct Ask {
    #[prost(string, tag = "1")]
    item: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Answer {
    #[prost(string, tag = "1")]
    correlation_id: String,
    #[prost(string, tag = "2")]
    traceparent: String,
}

const STOCK: &str = "/shop.Stock/Check";

struct CheckSvc;

impl tonic::server::UnaryService<Ask> for CheckSvc {
    type Response = Answer;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<Answer>, tonic::Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Ask>) -> Self::Future {
        let md = request.metadata().clone();
        let item = request.into_inner().item;
        Box::pin(async move {
            if item == "unknown" {
                // A status travels in the trailers: the proxy must keep them.
                return Err(tonic::Status::not_found("no such item: unknown"));
            }
            let get = |k: &str| {
                md.get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            };
            Ok(tonic::Response::new(Answer {
                correlation_id: get("x-correlation-id"),
                traceparent: get("traceparent"),
            }))
        })
    }
}

#[derive(Clone)]
struct Stock;

impl<B> tower_service::Service<Request<B>> for Stock
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskCx<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        Box::pin(async move {
            if req.uri().path() == STOCK {
                let mut grpc = tonic::server::Grpc::new(ProstCodec::<Answer, Ask>::default());
                Ok(grpc.unary(CheckSvc, req).await)
            } else {
                Ok(tonic::Status::unimplemented("no such method").into_http())
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_to_a_tonic_service_keeps_trailers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .serve_with_incoming(Stock, incoming)
            .await
            .unwrap();
    });
    let proxy = start(ProxyConfig::new(upstream(app))).await;
    let origin: http::Uri = format!("http://{}", proxy.local_addr()).parse().unwrap();
    let channel = tonic::transport::Channel::builder(origin.clone())
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT)
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::with_origin(channel, origin);

    grpc.ready().await.unwrap();
    let mut ask = tonic::Request::new(Ask {
        item: "kettle".into(),
    });
    ask.metadata_mut()
        .insert("x-correlation-id", "grpc-call-1".parse().unwrap());
    let reply = grpc
        .unary(
            ask,
            PathAndQuery::from_static(STOCK),
            ProstCodec::<Ask, Answer>::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        reply.metadata().get("x-correlation-id").unwrap(),
        "grpc-call-1",
        "echoed on the gRPC response"
    );
    let answer = reply.into_inner();
    assert_eq!(answer.correlation_id, "grpc-call-1");
    assert!(answer.traceparent.starts_with("00-"), "{answer:?}");

    grpc.ready().await.unwrap();
    let err = grpc
        .unary(
            tonic::Request::new(Ask {
                item: "unknown".into(),
            }),
            PathAndQuery::from_static(STOCK),
            ProstCodec::<Ask, Answer>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::NotFound,
        "grpc-status from the trailers"
    );
    assert_eq!(err.message(), "no such item: unknown");
    proxy.shutdown().await;
}

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

fn ws_accept(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// Reads one WebSocket frame (payload under 126 bytes), unmasking it.
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    r.read_exact(&mut head).await.unwrap();
    let masked = head[1] & 0x80 != 0;
    let len = usize::from(head[1] & 0x7f);
    assert!(len < 126, "short frames only in this test");
    let mut mask = [0u8; 4];
    if masked {
        r.read_exact(&mut mask).await.unwrap();
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await.unwrap();
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    (head[0], payload)
}

fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = vec![
        0x80 | opcode,
        payload.len() as u8 | if mask.is_some() { 0x80 } else { 0 },
    ];
    match mask {
        Some(m) => {
            f.extend_from_slice(&m);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_proxy() {
    // The app: a WebSocket echo server (handshake by the RFC 6455 rules, then echoes
    // every text frame back, unmasked, until a close frame).
    let (app, seen) = serve(|mut req: Request<Incoming>| async move {
        let key = req.headers()["sec-websocket-key"]
            .to_str()
            .unwrap()
            .to_owned();
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let mut io = TokioIo::new(upgrade.await.unwrap());
            loop {
                let (op, payload) = read_frame(&mut io).await;
                if op & 0x0f == 0x8 {
                    let _ = io.write_all(&frame(0x8, &[], None)).await;
                    break;
                }
                io.write_all(&frame(op & 0x0f, &payload, None))
                    .await
                    .unwrap();
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", ws_accept(&key))
            .body(Full::new(Bytes::new()))
            .unwrap()
    })
    .await;
    let proxy = start(ProxyConfig::new(upstream(app))).await;

    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let mut tcp = tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .unwrap();
    let handshake = format!(
        "GET /chat HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: {key}\r\nx-correlation-id: ws-1\r\n\r\n"
    );
    tcp.write_all(handshake.as_bytes()).await.unwrap();
    // Read the 101 head byte by byte up to the blank line (frames follow on the wire).
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tokio::time::timeout(TIMEOUT, tcp.read_exact(&mut b))
            .await
            .expect("101 in time")
            .unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains(&format!(
            "sec-websocket-accept: {}",
            ws_accept(key).to_ascii_lowercase()
        )),
        "{head}"
    );
    assert!(lower.contains("upgrade: websocket"), "{head}");
    assert!(lower.contains("x-correlation-id: ws-1"), "{head}");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].headers["upgrade"], "websocket");
        assert_eq!(seen[0].headers["x-correlation-id"], "ws-1");
        assert!(seen[0].headers.contains_key("traceparent"));
    }
    for msg in ["hello through the proxy", "second message"] {
        tcp.write_all(&frame(0x1, msg.as_bytes(), Some([1, 2, 3, 4])))
            .await
            .unwrap();
        let (op, payload) = tokio::time::timeout(TIMEOUT, read_frame(&mut tcp))
            .await
            .unwrap();
        assert_eq!(op, 0x81);
        assert_eq!(payload, msg.as_bytes());
    }
    tcp.write_all(&frame(0x8, &[], Some([9, 9, 9, 9])))
        .await
        .unwrap();
    let (op, _) = tokio::time::timeout(TIMEOUT, read_frame(&mut tcp))
        .await
        .unwrap();
    assert_eq!(op, 0x88, "close echoed");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_hold_up_nobody() {
    // 4 MB per response, so a client that stops reading leaves it unsent.
    let big = Bytes::from(vec![b'x'; 4 << 20]);
    let (app, _) = serve(move |_req| {
        let big = big.clone();
        async move { Response::new(Full::new(big)) }
    })
    .await;
    let mut config = ProxyConfig::new(upstream(app));
    config.timeouts.header = std::time::Duration::from_millis(500);
    let proxy = start(config).await;
    let addr = proxy.local_addr();

    // A slowloris: a head that never ends, one byte now and then.
    let mut slowloris = tokio::net::TcpStream::connect(addr).await.unwrap();
    slowloris
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // A client that asks for a big body and never reads it.
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();

    // Everybody else is served meanwhile.
    let c = client();
    for _ in 0..10 {
        let req = Request::get(format!("http://{addr}/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = tokio::time::timeout(TIMEOUT, c.request(req))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 4 << 20);
        let _ = slowloris.write_all(b"x").await;
    }
    // The slowloris is cut off by the header timeout (a 408, then the close).
    let mut out = Vec::new();
    let n = tokio::time::timeout(TIMEOUT, slowloris.read_to_end(&mut out))
        .await
        .expect("the slow head is cut off in time");
    assert!(
        n.is_err() || out.is_empty() || out.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    // The stalled reader still gets its whole body once it reads.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while got.len() < 4 << 20 {
        let n = tokio::time::timeout(TIMEOUT, stalled.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));
    proxy.shutdown().await;
}
