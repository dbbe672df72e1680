//! Helpers shared by the proxy's integration tests: the proxy in process, apps behind
//! it (Python's standard library, or small Rust servers), raw TCP and hyper clients.
//! Everything listens on 127.0.0.1, on ports picked by binding `:0`, and every
//! network step is bounded by [`TIMEOUT`].

#![allow(dead_code)]

use std::convert::Infallible;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use threadline_proxy::{Proxy, ProxyConfig, Running, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every network step of the tests is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Starts the proxy on 127.0.0.1:0 (and its admin/egress listeners, as configured).
pub async fn start(config: ProxyConfig) -> Running {
    let config = config.listen("127.0.0.1:0".parse().unwrap());
    Proxy::new(config).unwrap().start().await.unwrap()
}

/// The upstream at `addr`.
pub fn upstream(addr: SocketAddr) -> Upstream {
    Upstream::new(&format!("http://{addr}")).unwrap()
}

/// A Python app (`tests/apps/app.py`) on a free port; killed when dropped.
pub struct PyApp {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its stdout lines after the first (one JSON object per request).
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Drop for PyApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PyApp {
    /// Its log lines parsed as JSON.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Starts the Python app named `name`; `None` (after the loud SKIP, or a panic under
/// `THREADLINE_REQUIRE_SERVICES=1`) when `python3` cannot be run.
pub fn python_app(test: &str, name: &str, egress: Option<SocketAddr>) -> Option<PyApp> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps/app.py");
    let mut cmd = Command::new("python3");
    cmd.arg("-u")
        .arg(script)
        .arg(name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY");
    if let Some(e) = egress {
        cmd.env("THREADLINE_EGRESS", format!("http://{e}"));
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            threadline_testkit::unavailable(test, "python3", "PATH", &e.to_string());
            return None;
        }
    };
    let stdout = child.stdout.take().expect("piped stdout");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = logs.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match line.strip_prefix("PORT ") {
                Some(p) if tx.is_some() => {
                    let _ = tx.take().unwrap().send(p.trim().parse::<u16>().ok());
                }
                _ => sink.lock().unwrap().push(line),
            }
        }
    });
    let port = match rx.recv_timeout(TIMEOUT) {
        Ok(Some(p)) => p,
        other => {
            let _ = child.kill();
            panic!("{test}: the Python app did not start: {other:?}");
        }
    };
    Some(PyApp {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        logs,
    })
}

/// What a Rust app behind the proxy saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: http::Method,
    pub path: String,
    pub version: http::Version,
    pub headers: HeaderMap,
}

/// Requests seen by a [`serve`]d app.
pub type SeenLog = Arc<Mutex<Vec<Seen>>>;

/// Serves `handler` on 127.0.0.1:0 with hyper (HTTP/1.1 and h2c, upgrades on),
/// recording every request head first.
pub async fn serve<F, Fut>(handler: F) -> (SocketAddr, SeenLog)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: SeenLog = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    log.lock().unwrap().push(Seen {
                        method: req.method().clone(),
                        path: req.uri().path().to_owned(),
                        version: req.version(),
                        headers: req.headers().clone(),
                    });
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// An app answering `200 ok` to everything.
pub async fn ok_app() -> (SocketAddr, SeenLog) {
    serve(|_req| async { Response::new(Full::new(Bytes::from_static(b"ok"))) }).await
}

/// A keep-alive HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An h2c (prior knowledge) client.
pub fn h2_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// GET `url` with `headers`, bounded; answers the status, headers and body text.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, String) {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(Bytes::new())).unwrap();
    let resp = tokio::time::timeout(TIMEOUT, client().request(req))
        .await
        .expect("an answer in time")
        .expect("a response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(TIMEOUT, resp.into_body().collect())
        .await
        .expect("a body in time")
        .expect("a body")
        .to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// Writes `bytes` on a fresh connection and reads until the proxy closes it.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut out))
        .await
        .expect("the proxy answers and closes in time");
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in `raw` (0 when there is none).
pub fn status_of(raw: &str) -> u16 {
    raw.strip_prefix("HTTP/1.1 ")
        .or_else(|| raw.strip_prefix("HTTP/1.0 "))
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The value of `name` in the head of the raw response (first occurrence).
pub fn raw_header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    let head = raw.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}
