//! The app behind the proxy in `bench/nginx.sh`: answers `hello` (HTTP/1.1 and h2c,
//! keep-alive) on every port given, on one Tokio thread.
//!
//! `cargo run --release -p threadline-proxy --example bench_backend -- 127.0.0.1:9001 127.0.0.1:9002`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};

fn main() -> std::io::Result<()> {
    let addrs: Vec<std::net::SocketAddr> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("an address such as 127.0.0.1:9001"))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for addr in addrs {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(|_req| async {
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                                b"hello",
                            ))))
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tcp), svc)
                            .await;
                    });
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    })
}
