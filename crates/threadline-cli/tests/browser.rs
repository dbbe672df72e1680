//! The journey page in a real headless Chromium, driven through chromedriver over the
//! plain WebDriver protocol (HTTP + JSON, a small client below): fill the order form,
//! submit it, follow the link to the journey, check the three service lanes and the
//! correlation id, and save a screenshot as `target/artifacts/journey.png`; then click
//! the preview link, place an `F` order (accepted by the sandbox), see the sandbox
//! instance on its journey's hops, and leave the sandbox.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/browser.sh` installs them);
//! without them the test prints a loud SKIP, or fails under
//! `THREADLINE_REQUIRE_SERVICES=1`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use threadline_cli::demo::{Args, BrokerUrl};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const STEP: Duration = Duration::from_secs(30);

/// One HTTP/1.1 exchange with chromedriver (`Connection: close`), bounded in time.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    // chromedriver keeps the connection open: read the head, then Content-Length bytes.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the head".into());
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(len) => {
            while raw.len() < head_end + len {
                let n = s.read(&mut buf).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("connection closed in the body".into());
                }
                raw.extend_from_slice(&buf[..n]);
            }
            raw.truncate(head_end + len);
        }
        None => {
            s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
        }
    }
    let body = String::from_utf8_lossy(&raw[head_end..]).into_owned();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(&body)
    } else {
        body
    };
    let v = serde_json::from_str(&body).unwrap_or(Value::Null);
    Ok((status, v))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Kills chromedriver on every path.
struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + STEP;
        loop {
            if let Ok((200, v)) = http(driver.addr, "GET", "/status", None)
                && v["value"]["ready"] == true
            {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One browser session; deleted (Chromium closed) on every path.
struct Session<'d> {
    driver: &'d Driver,
    id: String,
    _profile: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = http(
            self.driver.addr,
            "DELETE",
            &format!("/session/{}", self.id),
            None,
        );
    }
}

impl<'d> Session<'d> {
    fn new(driver: &'d Driver) -> Session<'d> {
        let profile = std::env::temp_dir().join(format!(
            "threadline-chromium-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&profile).expect("profile dir");
        let profile = TempDir(profile);
        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        "--disable-dev-shm-usage", "--hide-scrollbars",
                        "--window-size=1360,1900",
                        format!("--user-data-dir={}", profile.0.display()),
                    ]
                }
            }}
        });
        let (status, v) = http(driver.addr, "POST", "/session", Some(&caps)).expect("new session");
        assert_eq!(status, 200, "new session: {v}");
        let id = v["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_owned();
        Session {
            driver,
            id,
            _profile: profile,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.id);
        let (status, v) = http(self.driver.addr, method, &full, body.as_ref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        let v = self.cmd(
            "POST",
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching `css`, waiting for it (bounded).
    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(e) = self.find_all(css).into_iter().next() {
                return e;
            }
            if Instant::now() >= deadline {
                let url = self.cmd("GET", "/url", None);
                let source = self.cmd("GET", "/source", None);
                let source = source.as_str().unwrap_or_default();
                panic!(
                    "no element {css:?} in time on {url}: {}",
                    source.get(..2000).unwrap_or(source)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn fill(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.cmd("GET", &format!("/element/{e}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn screenshot(&self) -> Vec<u8> {
        let b64 = self.cmd("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("a base64 PNG")
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the workspace root")
        .to_path_buf()
}

fn browser_present(test: &str) -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    threadline_testkit::unavailable(
        test,
        "headless Chromium",
        &format!("{CHROMIUM}, {CHROMEDRIVER}"),
        "not installed; run scripts/browser.sh",
    );
    false
}

#[test]
fn browser_chromium_order_form_to_journey_page_shows_three_lanes() {
    let test = "browser_chromium_order_form_to_journey_page_shows_three_lanes";
    if !browser_present(test) {
        return;
    }
    let args = Args {
        store_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        warehouse_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        broker: BrokerUrl::Embedded,
        ..Args::default()
    };
    let (summary, lines) = common::with_demo(args, |store| async move {
        // The browser is driven synchronously; the demo runs on the runtime's workers.
        let driver = Driver::start();
        let s = Session::new(&driver);
        s.go(&format!("{store}/orders/new"));
        s.fill("#item", "Kettle");
        s.fill("#quantity", "3");
        s.fill("#tenant", "acme");
        s.click("#place");
        let cid = s.text("#outcome #correlation-id");
        assert!(!cid.is_empty(), "the outcome shows the correlation id");
        s.click("#journey-link");

        // Reload until the worker's events are in (bounded).
        let deadline = Instant::now() + STEP;
        loop {
            if !s.find_all(".event[data-service=\"worker\"]").is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "the worker lane stayed empty");
            std::thread::sleep(Duration::from_millis(100));
            s.go(&format!("{store}/journeys/{cid}"));
        }
        // The whole page in one picture: the window as tall as the document.
        let height = s
            .cmd(
                "POST",
                "/execute/sync",
                Some(
                    json!({ "script": "return document.documentElement.scrollHeight", "args": [] }),
                ),
            )
            .as_u64()
            .unwrap_or(1900)
            .clamp(600, 6000);
        s.cmd(
            "POST",
            "/window/rect",
            Some(json!({ "width": 1360, "height": height + 140 })),
        );
        let png = s.screenshot();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG screenshot");
        let artifacts = workspace_root().join("target").join("artifacts");
        std::fs::create_dir_all(&artifacts).expect("artifacts dir");
        std::fs::write(artifacts.join("journey.png"), &png).expect("screenshot saved");
        // The README's copy is written once (or again on request).
        let docs = workspace_root().join("docs").join("journey.png");
        if !docs.exists() || std::env::var("THREADLINE_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
            std::fs::create_dir_all(docs.parent().expect("docs")).expect("docs dir");
            std::fs::write(&docs, &png).expect("docs screenshot saved");
        }

        assert_eq!(
            s.text("#correlation-id"),
            cid,
            "the journey of the same order"
        );
        let lanes: Vec<String> = ["store", "warehouse", "worker"]
            .iter()
            .map(|l| {
                s.text(&format!(".lane-title[data-lane=\"{l}\"]:not(.absent)"))
                    .to_lowercase()
            })
            .collect();
        assert_eq!(
            lanes,
            ["store", "warehouse", "worker"],
            "three lanes with events"
        );
        for l in ["store", "warehouse", "worker"] {
            assert!(
                !s.find_all(&format!(".event[data-service=\"{l}\"]"))
                    .is_empty(),
                "events in the {l} lane"
            );
        }

        // The preview link: this browser's orders go to the sandbox from now on.
        s.go(&format!("{store}/orders/new"));
        s.find("#sandbox[data-in-sandbox=\"false\"]");
        s.click("#preview-link");
        s.find("#sandbox[data-in-sandbox=\"true\"]");
        s.fill("#item", "Fondue set");
        s.fill("#quantity", "1");
        s.fill("#tenant", "acme");
        s.click("#place");
        s.find("#outcome[data-status=\"accepted\"]");
        let cid = s.text("#outcome #correlation-id");
        assert_eq!(s.text("#warehouse-instance"), "sandbox:sandbox-f");
        s.click("#journey-link");
        let deadline = Instant::now() + STEP;
        loop {
            if !s.find_all(".event[data-service=\"worker\"]").is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the sandbox worker never shipped"
            );
            std::thread::sleep(Duration::from_millis(100));
            s.go(&format!("{store}/journeys/{cid}"));
        }
        let sandbox_hops = s.find_all(".hop .instance[data-instance=\"sandbox:sandbox-f\"]");
        assert_eq!(
            sandbox_hops.len(),
            3,
            "warehouse, audit and worker hops in the sandbox"
        );
        // And out again: an F order is refused by the baseline.
        s.go(&format!("{store}/orders/new"));
        s.click("#leave-sandbox");
        s.find("#sandbox[data-in-sandbox=\"false\"]");
        s.fill("#item", "Fondue set");
        s.click("#place");
        s.find("#outcome[data-status=\"rejected\"]");
    });
    assert_eq!(
        (
            summary.orders,
            summary.accepted,
            summary.shipped,
            summary.rejected,
            summary.lost
        ),
        (2, 2, 2, 1, 0)
    );
    assert!(lines.iter().any(|l| l["app"] == "worker"));
}
