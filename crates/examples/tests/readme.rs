//! The README's quick start: its `[dependencies]` are this crate's (so the block that
//! `build.rs` extracts is built with exactly what the README tells a newcomer to
//! write), and its program, run twice as the README says, gives two services and a
//! NATS consumer that log one correlation id and one trace id.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

const README_DEPS: &str = include_str!(concat!(env!("OUT_DIR"), "/readme_deps.toml"));
const MANIFEST: &str = include_str!("../Cargo.toml");

/// A dependency as the README states it: version, features (sorted), default features.
type Spec = (String, Vec<String>, bool);

fn spec(v: &toml::Value) -> Spec {
    match v {
        toml::Value::String(version) => (version.clone(), Vec::new(), true),
        toml::Value::Table(t) => {
            let version = t.get("version").and_then(|v| v.as_str()).unwrap_or("");
            let mut features: Vec<String> = t
                .get("features")
                .and_then(|f| f.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            features.sort();
            let default = t
                .get("default-features")
                .and_then(|d| d.as_bool())
                .unwrap_or(true);
            (version.to_owned(), features, default)
        }
        other => panic!("unexpected dependency form {other:?}"),
    }
}

fn dependencies(toml_text: &str) -> Vec<(String, Spec)> {
    let doc: toml::Table = toml_text.parse().expect("valid TOML");
    let deps = doc["dependencies"]
        .as_table()
        .expect("a [dependencies] table");
    deps.iter().map(|(k, v)| (k.clone(), spec(v))).collect()
}

#[test]
fn the_readme_dependencies_are_the_ones_this_crate_builds_with() {
    let readme = dependencies(README_DEPS);
    let ours = dependencies(MANIFEST);
    assert!(!readme.is_empty());
    assert_eq!(
        readme, ours,
        "README.md's quick start [dependencies] and crates/examples/Cargo.toml's must \
         name the same crates, versions and features (paths aside)"
    );
}

/// A child process killed when the test ends, its stdout lines collected.
struct Service {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Service {
    fn start(args: &[&str]) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_readme"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the quick start binary starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("piped stdout");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Service { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn json(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (bounded) until a line contains `text`.
    fn wait_for(&mut self, text: &str) -> bool {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if self.lines().iter().any(|l| l.contains(text)) {
                return true;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the service exited ({status}): {:?}", self.lines());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// `POST /orders` with `x-tenant-id: acme`; answers the status line and the echoed
/// correlation id.
fn post_order(port: u16) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        b"POST /orders HTTP/1.1\r\nhost: 127.0.0.1\r\nx-tenant-id: acme\r\n\
          content-length: 0\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("an answer");
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let id = answer
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-correlation-id")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no x-correlation-id in {answer:?}"));
    (status, id)
}

#[test]
fn the_quick_start_run_twice_shares_one_id_through_http_and_nats() {
    let nats: SocketAddr = "127.0.0.1:4222".parse().unwrap();
    if let Err(e) = TcpStream::connect_timeout(&nats, Duration::from_secs(5)) {
        threadline_testkit::unavailable(
            "the_quick_start_run_twice_shares_one_id_through_http_and_nats",
            "NATS",
            "127.0.0.1:4222",
            &e.to_string(),
        );
        return;
    }
    let (port_a, port_b) = (free_port(), free_port());
    let mut b = Service::start(&[&port_b.to_string()]);
    let next = format!("http://127.0.0.1:{port_b}");
    let mut a = Service::start(&[&port_a.to_string(), &next]);
    assert!(b.wait_for("listening"), "{:?}", b.lines());
    assert!(a.wait_for("listening"), "{:?}", a.lines());

    let (status, id) = post_order(port_a);
    assert!(status.contains(" 200 "), "{status}");
    // The message goes to one of the two consumers (a queue group).
    let until = Instant::now() + Duration::from_secs(30);
    let shipped = |l: &String| l.contains("order shipped") && l.contains(id.as_str());
    while !(a.lines().iter().chain(&b.lines())).any(shipped) {
        assert!(
            Instant::now() < until,
            "no consumer line: {:?} {:?}",
            a.lines(),
            b.lines()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let (a, b) = (a.json(), b.json());
    let find = |lines: &[Value], message: &str| -> Value {
        lines
            .iter()
            .find(|l| l["fields"]["message"] == message && l["correlation_id"] == id.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("no {message:?} line with {id}: {lines:?}"))
    };
    let shipped = |lines: &[Value]| {
        lines
            .iter()
            .find(|l| {
                l["fields"]["message"] == "order shipped" && l["correlation_id"] == id.as_str()
            })
            .cloned()
    };
    let consumer = shipped(&a)
        .or_else(|| shipped(&b))
        .expect("a consumer line");
    let seen = [
        find(&a, "order received"),
        find(&a, "next service answered"),
        find(&b, "order received"),
        find(&b, "order published"),
        consumer,
    ];
    let trace = seen[0]["trace_id"].as_str().expect("a trace id").to_owned();
    for line in &seen {
        assert_eq!(line["correlation_id"], id.as_str(), "{line}");
        assert_eq!(line["trace_id"], trace.as_str(), "{line}");
        assert_eq!(line["tenant_id"], "acme", "{line}");
    }
    // user.id was bound in each handler; B's and the consumer's came over the wire too.
    assert_eq!(seen[4]["user.id"], "alice", "{}", seen[4]);
}
