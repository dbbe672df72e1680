//! The real `threadline demo` binary: started on ports 0 with JSON logs, driven over
//! HTTP, stopped with SIGINT; its stdout is checked line by line and its summary and
//! exit status at the end.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the child on every path (a failed assert included).
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Demo {
    guard: Guard,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Demo {
    fn start(extra: &[&str]) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_threadline"))
            .args([
                "demo",
                "--store-addr",
                "127.0.0.1:0",
                "--warehouse-addr",
                "127.0.0.1:0",
            ])
            .args(["--log-format", "json"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the threadline binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Demo {
            guard: Guard(Some(child)),
            lines: rx,
            seen: Vec::new(),
            reader: Some(reader),
        }
    }

    /// Reads lines until one contains `needle` (bounded).
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?} in time; seen: {:#?}", self.seen),
            }
        }
    }

    fn pid(&self) -> u32 {
        self.guard.0.as_ref().expect("running").id()
    }

    /// SIGINT, then the exit status and every remaining line (bounded).
    fn interrupt(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let ok = Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -INT delivered");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            let child = self.guard.0.as_mut().expect("running");
            if let Some(s) = child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not stop after SIGINT"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        self.guard.0 = None;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.seen.extend(self.lines.try_iter());
        (status, std::mem::take(&mut self.seen))
    }
}

fn url_of(line: &str) -> String {
    let start = line.find("http://").expect("a URL");
    let url = line[start..].trim();
    url.trim_end_matches("/orders/new").to_owned()
}

fn scenario(broker: Option<&str>) {
    let queue = common::unique_queue();
    let mut extra = vec!["--queue", &queue];
    if let Some(b) = broker {
        extra.extend(["--broker", b]);
    }
    let mut demo = Demo::start(&extra);
    let store = url_of(&demo.wait_for("order form"));
    demo.wait_for("queue");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (placed, journey_spans) = rt.block_on(async {
        let placed = common::place_orders(&store).await;
        common::wait_for_worker(&store, &placed.good.correlation_id).await;
        let spans = common::check_journey(&store, &placed).await;
        (placed, spans)
    });
    let (status, lines) = demo.interrupt();
    let text = lines.join("\n");
    let log_spans = common::check_logs(&common::json_lines(&text), &placed);
    assert_eq!(
        log_spans, journey_spans,
        "the journey shows the hops the logs show"
    );
    let summary = lines
        .iter()
        .find(|l| l.starts_with("threadline demo: orders="))
        .unwrap_or_else(|| panic!("a summary line: {text}"));
    assert_eq!(
        summary,
        "threadline demo: orders=1 accepted=1 refused=0 unknown=0 rejected=1 invalid=0 failed=0 \
         shipped=1 shipped_after_refusal=0 duplicates=0 earlier_runs=0 left_in_queue=0 lost=0",
        "two orders placed, the F one rejected, the other shipped"
    );
    assert!(status.success(), "exit status after SIGINT: {status}");
    if let Some(b) = broker {
        common::remove_queue(&b.parse().expect("a broker URL"), &queue);
    }
}

#[test]
fn binary_embedded_queue_context_in_every_log_line_and_clean_sigint() {
    scenario(None);
}

#[test]
fn binary_nats_context_in_every_log_line_and_clean_sigint() {
    if common::service_up(
        "binary_nats_context_in_every_log_line_and_clean_sigint",
        "NATS",
        4222,
    ) {
        scenario(Some("nats://127.0.0.1:4222"));
    }
}

#[test]
fn binary_rabbitmq_amqp_context_in_every_log_line_and_clean_sigint() {
    if common::service_up(
        "binary_rabbitmq_amqp_context_in_every_log_line_and_clean_sigint",
        "RabbitMQ",
        5672,
    ) {
        scenario(Some("amqp://guest:guest@127.0.0.1:5672"));
    }
}

#[test]
fn binary_redis_streams_context_in_every_log_line_and_clean_sigint() {
    if common::service_up(
        "binary_redis_streams_context_in_every_log_line_and_clean_sigint",
        "Redis",
        6379,
    ) {
        scenario(Some("redis://127.0.0.1:6379"));
    }
}

#[test]
fn binary_refuses_an_unknown_broker_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_threadline"))
        .args(["demo", "--broker", "kafka://127.0.0.1:9092"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown broker"), "{err}");
}

#[test]
fn binary_refuses_a_malformed_sandbox_key() {
    for key in ["bad key", "", "sandbox;f"] {
        let out = Command::new(env!("CARGO_BIN_EXE_threadline"))
            .args(["demo", "--sandbox-key", key])
            .output()
            .expect("runs");
        assert!(!out.status.success(), "{key:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("invalid routing key"), "{key:?}: {err}");
    }
}

#[test]
fn binary_prints_the_preview_link_and_it_routes_to_the_sandbox() {
    let mut demo = Demo::start(&["--sandbox-key", "bob"]);
    let store = url_of(&demo.wait_for("order form"));
    let sandbox = demo.wait_for("sandbox ");
    assert!(sandbox.contains("key bob"), "{sandbox}");
    let preview = demo.wait_for("preview");
    let link = preview[preview.find("http://").expect("a URL")..]
        .trim()
        .to_owned();
    assert_eq!(link, format!("{store}/orders/new?preview=bob"));
    demo.wait_for("queue");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (status, headers, _) = common::request("GET", &link, &[], None).await;
        assert_eq!(status, 200);
        let cookie = headers["set-cookie"].to_str().expect("a cookie").to_owned();
        let jar = cookie.split(';').next().unwrap_or_default();
        assert_eq!(jar, "preview=bob");
        let (status, _, text) = common::request(
            "POST",
            &format!("{store}/orders"),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("accept", "application/json"),
                ("x-correlation-id", "binary-sandbox-1"),
                ("cookie", jar),
            ],
            Some("item=Fondue&quantity=1&tenant=acme".into()),
        )
        .await;
        assert_eq!(status, 200, "{text}");
        common::wait_for_worker(&store, "binary-sandbox-1").await;
    });
    let (status, lines) = demo.interrupt();
    assert!(status.success(), "{status}");
    let json = common::json_lines(&lines.join("\n"));
    assert!(
        json.iter()
            .any(|l| l["correlation_id"] == "binary-sandbox-1"
                && l["app"] == "worker"
                && l["instance"] == "sandbox:bob"),
        "the sandbox worker shipped it"
    );
}

#[test]
fn binary_unreachable_broker_fails_at_start_with_a_clear_message() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let out = Command::new(env!("CARGO_BIN_EXE_threadline"))
        .args([
            "demo",
            "--store-addr",
            "127.0.0.1:0",
            "--warehouse-addr",
            "127.0.0.1:0",
        ])
        .args(["--broker", "redis://127.0.0.1:1"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connecting the shipping queue"), "{err}");
}

#[test]
fn binary_sigint_right_after_an_order_lets_the_job_finish_first() {
    let mut demo = Demo::start(&[]);
    let store = url_of(&demo.wait_for("order form"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (status, _, text) = rt.block_on(common::request(
        "POST",
        &format!("{store}/orders"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
        ],
        Some("item=Kettle&quantity=1&tenant=acme".into()),
    ));
    assert_eq!(status, 200, "{text}");
    let cid = serde_json::from_str::<serde_json::Value>(&text).expect("JSON")["correlation_id"]
        .as_str()
        .expect("cid")
        .to_owned();
    // The worker may still be packing: the signal must not cut the job short.
    let (status, lines) = demo.interrupt();
    assert!(status.success(), "{status}");
    let logs = common::json_lines(&lines.join("\n"));
    assert!(
        logs.iter().any(|l| l["correlation_id"] == cid.as_str()
            && l["app"] == "worker"
            && l["message"] == "parcel packed and handed to the carrier"),
        "the in-flight job finished before the exit"
    );
    let summary = lines
        .iter()
        .find(|l| l.starts_with("threadline demo: orders="))
        .expect("a summary line");
    assert!(
        summary.contains(" accepted=1 ")
            && summary.contains(" shipped=1 ")
            && summary.ends_with("left_in_queue=0 lost=0"),
        "{summary}"
    );
}
