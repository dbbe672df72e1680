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

#![forbid(unsafe_code)]
#![warn(missing_docs)]

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
