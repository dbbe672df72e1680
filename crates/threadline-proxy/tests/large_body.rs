//! A 100 MB request body and a 100 MB response body streamed through the proxy, with
//! the test process's peak memory (proxy, app and client together) staying far below
//! the size of one body: nothing is buffered whole. Alone in its test binary so that
//! no other test's memory counts.

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use common::{TIMEOUT, start, upstream};
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use threadline_proxy::ProxyConfig;

const SIZE: u64 = 100 * 1024 * 1024;
static CHUNK: [u8; 64 * 1024] = [b'z'; 64 * 1024];

/// `left` bytes in 64 KiB frames of one static buffer: the generator allocates nothing.
struct Gen {
    left: u64,
}

impl Body for Gen {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK.len() as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..n])))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::default() // unknown length: sent chunked
    }
}

/// Bytes of a body, counted frame by frame (never collected).
async fn count<B: Body + Unpin>(mut body: B) -> u64
where
    B::Error: std::fmt::Debug,
{
    let mut n = 0;
    while let Some(f) = body.frame().await {
        if let Ok(d) = f.expect("a frame").into_data() {
            n += bytes::Buf::remaining(&d) as u64;
        }
    }
    n
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_each_way_with_bounded_memory() {
    if !std::path::Path::new("/proc/self/status").exists() {
        threadline_testkit::unavailable(
            "hundred_megabytes_each_way_with_bounded_memory",
            "/proc (peak memory)",
            "/proc/self/status",
            "not a Linux /proc",
        );
        return;
    }
    // The app: counts the upload, answers with a 100 MB download.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let got = count(req.into_body()).await;
                    let resp = Response::builder()
                        .header("x-upload-bytes", got.to_string())
                        .body(Gen { left: SIZE })
                        .unwrap();
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let proxy = start(ProxyConfig::new(upstream(app))).await;
    let before = peak_rss_kib();

    let client: Client<_, Gen> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::post(format!("http://{}/upload", proxy.local_addr()))
        .body(Gen { left: SIZE })
        .unwrap();
    let resp = tokio::time::timeout(TIMEOUT * 6, client.request(req))
        .await
        .expect("the upload finishes in time")
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upload-bytes"], SIZE.to_string().as_str());
    assert!(resp.headers().contains_key("x-correlation-id"));
    let down = tokio::time::timeout(TIMEOUT * 6, count(resp.into_body()))
        .await
        .expect("the download finishes in time");
    assert_eq!(down, SIZE);

    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 48,
        "peak memory grew by {grown_mib} MiB for 2 x 100 MiB streamed: something buffered"
    );
    proxy.shutdown().await;
}
