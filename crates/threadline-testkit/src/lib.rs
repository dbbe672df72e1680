//! Test support shared by the workspace's integration tests (not published).
//!
//! The rule for tests that need a local service (PostgreSQL, Redis, RabbitMQ, NATS,
//! Chromium): when the service is unreachable the test prints a loud `SKIP` line and
//! returns — unless `THREADLINE_REQUIRE_SERVICES=1` (CI sets it), then it fails.
//!
//! ```
//! // A test that could not reach its service:
//! if !threadline_testkit::services_required() {
//!     threadline_testkit::unavailable("my_test", "NATS", "127.0.0.1:4222", "connection refused");
//! }
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
/// otherwise prints a loud SKIP line (the caller then returns).
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
