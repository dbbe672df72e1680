//! Test support shared by the workspace's integration tests (not published).
//!
//! The rule for tests that need a local service (PostgreSQL, Redis, RabbitMQ, NATS,
//! Chromium, Python): when the service is unreachable the test prints a loud `SKIP`
//! line, records the skip for `./scripts/test`'s closing count, and returns — unless
//! `THREADLINE_REQUIRE_SERVICES=1` (CI sets it), then it fails.
//!
//! ```
//! // How a test that could not reach its service gives up:
//! fn connect_or_skip() -> Option<std::net::TcpStream> {
//!     match std::net::TcpStream::connect("127.0.0.1:4222") {
//!         Ok(s) => Some(s),
//!         Err(e) => {
//!             threadline_testkit::unavailable("my_test", "NATS", "127.0.0.1:4222", &e.to_string());
//!             None
//!         }
//!     }
//! }
//! # let _ = connect_or_skip;
//! let a = threadline_testkit::unique("orders", '.');
//! assert_ne!(a, threadline_testkit::unique("orders", '.'));
//! ```

#![deny(unreachable_pub)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod malformed;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Whether `THREADLINE_REQUIRE_SERVICES=1`: an unreachable service fails the test.
pub fn services_required() -> bool {
    std::env::var("THREADLINE_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// Reacts to an unreachable service: fails the test when services are required,
/// otherwise prints a loud SKIP line (the caller then returns) and records the skip
/// in the file named by `THREADLINE_SKIP_LOG`, when set: `./scripts/test` sets it and
/// ends with the count and the list, so a test that returned early is never counted
/// as passed without a word.
///
/// # Panics
///
/// When `THREADLINE_REQUIRE_SERVICES=1`.
pub fn unavailable(test: &str, service: &str, addr: &str, why: &str) {
    if services_required() {
        panic!("{test}: {service} is required but unreachable on {addr}: {why}");
    }
    eprintln!(
        "\n*** SKIP {test}: {service} is not reachable on {addr} ({why}); \
         set THREADLINE_REQUIRE_SERVICES=1 to fail instead ***\n"
    );
    record_skip(test, service, addr, why);
}

/// Appends one line (`test<TAB>service<TAB>addr<TAB>why`, control characters
/// replaced) to `THREADLINE_SKIP_LOG`. Tests run in parallel threads and processes;
/// each line is one `write` of an append-mode file, so lines do not interleave.
fn record_skip(test: &str, service: &str, addr: &str, why: &str) {
    if let Some(path) = std::env::var_os("THREADLINE_SKIP_LOG") {
        record_skip_to(std::path::Path::new(&path), test, service, addr, why);
    }
}

fn record_skip_to(path: &std::path::Path, test: &str, service: &str, addr: &str, why: &str) {
    use std::io::Write;
    let clean = |s: &str| s.replace(|c: char| c.is_control(), " ");
    let line = format!(
        "{}\t{}\t{}\t{}\n",
        clean(test),
        clean(service),
        clean(addr),
        clean(why)
    );
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!("*** could not record the skip of {test} in {path:?}: {e} ***");
    }
}

/// A name no other test run uses: `prefix`, the process id, the time and a counter,
/// joined by `sep` (`.` for RabbitMQ queues, `:` for Redis keys, `_` for SQL).
pub fn unique(prefix: &str, sep: char) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() % 1_000_000_000_000);
    format!(
        "{prefix}{sep}{}{sep}{nanos}{sep}{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub mod logs;
pub mod suites;

use threadline::codec::{SpanId, TraceId};
use threadline::{Context, Policy, Trust};

/// What an HTTP server layer would have captured from an inbound request: the context,
/// and the trace id and caller's parent id it was sent, to compare with downstream.
pub struct Inbound {
    /// The captured context.
    pub ctx: Context,
    /// The trace id the request carried.
    pub trace_id: TraceId,
    /// The parent id the request carried (the caller's span).
    pub parent_id: SpanId,
}

/// Captures a request carrying `x-correlation-id: correlation_id`, a fresh
/// `traceparent` and `x-tenant-id: tenant` through `policy`, as an untrusted caller.
///
/// # Panics
///
/// When the values are not valid header values or the policy drops any of them.
pub fn inbound(policy: &Policy, correlation_id: &str, tenant: &str) -> Inbound {
    inbound_with(policy, correlation_id, tenant, Trust::Untrusted)
}

/// [`inbound`] from a caller of the given trust (a trusted one keeps `trusted_only`
/// headers).
///
/// # Panics
///
/// When the values are not valid header values or the policy drops any of them.
pub fn inbound_with(policy: &Policy, correlation_id: &str, tenant: &str, trust: Trust) -> Inbound {
    let trace_id = TraceId::random();
    let parent_id = SpanId::random();
    let mut req = http::HeaderMap::new();
    req.insert(
        "x-correlation-id",
        correlation_id.parse().expect("a header value"),
    );
    req.insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01")
            .parse()
            .expect("a header value"),
    );
    req.insert("x-tenant-id", tenant.parse().expect("a header value"));
    let captured = policy.capture(&req, trust);
    assert!(captured.report.is_empty(), "{:?}", captured.report);
    Inbound {
        ctx: captured.context,
        trace_id,
        parent_id,
    }
}

/// Connects to a local service within `within`, or reacts as [`unavailable`] says
/// (`None`: the caller returns).
///
/// # Panics
///
/// When the service cannot be reached and `THREADLINE_REQUIRE_SERVICES=1`.
pub async fn connect<T, E, F>(
    test: &str,
    service: &str,
    addr: &str,
    within: std::time::Duration,
    connecting: F,
) -> Option<T>
where
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<T, E>>,
{
    let why = match tokio::time::timeout(within, connecting).await {
        Ok(Ok(connection)) => return Some(connection),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no connection within {within:?}"),
    };
    unavailable(test, service, addr, &why);
    None
}

/// Whether the current context is the one message `i` of a concurrent suite was
/// published with: correlation id `<correlation_prefix><i>`, trace id `trace`,
/// `x-tenant-id` `tenant-<i>` and field `user.id` `user-<i>`. Read three times with a
/// yield in between, so that another task's context showing through after a yield on a
/// shared worker thread is caught too.
pub async fn holds_message_context(
    correlation_prefix: &str,
    trace: &str,
    i: impl std::fmt::Display,
) -> bool {
    let mut ok = true;
    for _ in 0..3 {
        let ctx = threadline::Context::current();
        ok &= ctx.correlation_id().map(|c| c.as_str().to_owned())
            == Some(format!("{correlation_prefix}{i}"))
            && ctx.trace_id().map(|t| t.to_string()).as_deref() == Some(trace)
            && ctx.get("x-tenant-id") == Some(format!("tenant-{i}").as_str())
            && ctx.field("user.id") == Some(format!("user-{i}").as_str());
        tokio::task::yield_now().await;
    }
    ok
}

#[cfg(test)]
mod skip_tests {
    #[test]
    fn skips_are_recorded_one_line_each_with_control_characters_replaced() {
        let path = std::env::temp_dir().join(super::unique("threadline-skip-test", '-'));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for j in 0..50 {
                        super::record_skip_to(
                            &path,
                            &format!("t{i}_{j}"),
                            "NATS",
                            "127.0.0.1:4222",
                            "refused\nforged line",
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 400);
        for l in lines {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), 4, "{l:?}");
            assert_eq!(cols[1..], ["NATS", "127.0.0.1:4222", "refused forged line"]);
        }
    }
}
