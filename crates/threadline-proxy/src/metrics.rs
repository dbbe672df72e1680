//! Counters and a latency histogram, rendered in the Prometheus text format on the
//! admin listener's `/metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `threadline_proxy_requests_total` | counter | `class` (`1xx`…`5xx`) |
//! | `threadline_proxy_request_duration_seconds` | histogram | (time to the response head) |
//! | `threadline_proxy_upstream_errors_total` | counter | `kind` (`connect`, `timeout`, `other`, `no_route`) |
//! | `threadline_proxy_rejected_context_total` | counter | `reason` |
//! | `threadline_proxy_routes_total` | counter | `route` (upstream name) |
//! | `threadline_proxy_connections_open` | gauge | `listener` |
//! | `threadline_proxy_egress_requests_total` | counter | `grant` (`context`, `traceparent`, `nothing`) |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use threadline::Reason;

/// Bucket upper bounds, in microseconds.
const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Why the proxy could not get a response from the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpstreamError {
    Connect,
    Timeout,
    Other,
    NoRoute,
}

impl UpstreamError {
    const ALL: [UpstreamError; 4] = [
        UpstreamError::Connect,
        UpstreamError::Timeout,
        UpstreamError::Other,
        UpstreamError::NoRoute,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Other => "other",
            UpstreamError::NoRoute => "no_route",
        }
    }
}

const REASONS: [&str; 12] = [
    "malformed",
    "invalid_chars",
    "too_long",
    "too_many_headers",
    "total_bytes",
    "duplicate",
    "untrusted",
    "replaced_at_edge",
    "wrong_type",
    "baggage_members_dropped",
    "tracestate_trimmed",
    "other",
];

fn reason_index(r: &Reason) -> usize {
    match r {
        Reason::Malformed(_) => 0,
        Reason::InvalidChars => 1,
        Reason::TooLong => 2,
        Reason::TooManyHeaders => 3,
        Reason::TotalBytes => 4,
        Reason::Duplicate => 5,
        Reason::Untrusted => 6,
        Reason::ReplacedAtEdge => 7,
        Reason::WrongType => 8,
        Reason::BaggageMembersDropped(_) => 9,
        Reason::TraceStateTrimmed => 10,
        _ => 11,
    }
}

/// The proxy's metrics. Updated with relaxed atomics on the request path; read with
/// [`Metrics::render`].
#[derive(Debug, Default)]
pub struct Metrics {
    by_class: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
    upstream_errors: [AtomicU64; 4],
    rejected: [AtomicU64; REASONS.len()],
    routes: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    open_proxy: AtomicI64,
    open_egress: AtomicI64,
    egress: [AtomicU64; 3],
}

impl Metrics {
    pub(crate) fn request(&self, status: u16, took: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Relaxed);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = BUCKETS_US.iter().position(|b| us <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    pub(crate) fn upstream_error(&self, e: UpstreamError) {
        self.upstream_errors[e as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn rejected(&self, report: &threadline::Report) {
        for r in report.iter() {
            self.rejected[reason_index(&r.reason)].fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn route_counter(&self, name: &str) -> Arc<AtomicU64> {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        routes.entry(name.to_owned()).or_default().clone()
    }

    pub(crate) fn connection(&self, egress: bool, delta: i64) {
        let g = if egress {
            &self.open_egress
        } else {
            &self.open_proxy
        };
        g.fetch_add(delta, Relaxed);
    }

    pub(crate) fn egress(&self, grant: usize) {
        self.egress[grant.min(2)].fetch_add(1, Relaxed);
    }

    /// Requests answered so far (every status).
    pub fn requests(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Rejected context headers counted so far for `reason` (a label of the
    /// `threadline_proxy_rejected_context_total` metric, such as `untrusted`).
    pub fn rejected_for(&self, reason: &str) -> u64 {
        REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.rejected[i].load(Relaxed))
    }

    /// The metrics in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let w = &mut out;
        let _ = writeln!(
            w,
            "# HELP threadline_proxy_requests_total Requests answered, by status class."
        );
        let _ = writeln!(w, "# TYPE threadline_proxy_requests_total counter");
        for (i, c) in self.by_class.iter().enumerate() {
            let _ = writeln!(
                w,
                "threadline_proxy_requests_total{{class=\"{}xx\"}} {}",
                i + 1,
                c.load(Relaxed)
            );
        }
        let _ = writeln!(
            w,
            "# HELP threadline_proxy_request_duration_seconds Time from the request head to the response head."
        );
        let _ = writeln!(
            w,
            "# TYPE threadline_proxy_request_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (b, c) in BUCKETS_US.iter().zip(&self.buckets) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(
                w,
                "threadline_proxy_request_duration_seconds_bucket{{le=\"{}\"}} {cumulative}",
                *b as f64 / 1e6
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(
            w,
            "threadline_proxy_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            w,
            "threadline_proxy_request_duration_seconds_sum {}",
            self.sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(w, "threadline_proxy_request_duration_seconds_count {count}");
        let _ = writeln!(
            w,
            "# HELP threadline_proxy_upstream_errors_total Requests the upstream did not answer, by kind."
        );
        let _ = writeln!(w, "# TYPE threadline_proxy_upstream_errors_total counter");
        for e in UpstreamError::ALL {
            let _ = writeln!(
                w,
                "threadline_proxy_upstream_errors_total{{kind=\"{}\"}} {}",
                e.label(),
                self.upstream_errors[e as usize].load(Relaxed)
            );
        }
        let _ = writeln!(
            w,
            "# HELP threadline_proxy_rejected_context_total Inbound context headers dropped by the policy, by reason."
        );
        let _ = writeln!(w, "# TYPE threadline_proxy_rejected_context_total counter");
        for (r, c) in REASONS.iter().zip(&self.rejected) {
            let _ = writeln!(
                w,
                "threadline_proxy_rejected_context_total{{reason=\"{r}\"}} {}",
                c.load(Relaxed)
            );
        }
        let _ = writeln!(
            w,
            "# HELP threadline_proxy_routes_total Requests sent to each route (upstream name)."
        );
        let _ = writeln!(w, "# TYPE threadline_proxy_routes_total counter");
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, c) in routes.iter() {
            let _ = writeln!(
                w,
                "threadline_proxy_routes_total{{route=\"{}\"}} {}",
                label(name),
                c.load(Relaxed)
            );
        }
        drop(routes);
        let _ = writeln!(
            w,
            "# HELP threadline_proxy_connections_open Client connections open, by listener."
        );
        let _ = writeln!(w, "# TYPE threadline_proxy_connections_open gauge");
        let _ = writeln!(
            w,
            "threadline_proxy_connections_open{{listener=\"proxy\"}} {}",
            self.open_proxy.load(Relaxed)
        );
        let _ = writeln!(
            w,
            "threadline_proxy_connections_open{{listener=\"egress\"}} {}",
            self.open_egress.load(Relaxed)
        );
        let _ = writeln!(
            w,
            "# HELP threadline_proxy_egress_requests_total Outgoing requests of the app, by what their destination was granted."
        );
        let _ = writeln!(w, "# TYPE threadline_proxy_egress_requests_total counter");
        for (g, c) in ["context", "traceparent", "nothing"]
            .iter()
            .zip(&self.egress)
        {
            let _ = writeln!(
                w,
                "threadline_proxy_egress_requests_total{{grant=\"{g}\"}} {}",
                c.load(Relaxed)
            );
        }
        out
    }
}

/// A label value escaped for the text format (backslash, quote, newline).
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_counts_and_buckets() {
        let m = Metrics::default();
        m.request(200, Duration::from_micros(700));
        m.request(502, Duration::from_secs(20));
        m.upstream_error(UpstreamError::Connect);
        m.route_counter("alice \"x\"").fetch_add(3, Relaxed);
        m.connection(false, 1);
        let text = m.render();
        for line in [
            "threadline_proxy_requests_total{class=\"2xx\"} 1",
            "threadline_proxy_requests_total{class=\"5xx\"} 1",
            "threadline_proxy_request_duration_seconds_bucket{le=\"0.0005\"} 0",
            "threadline_proxy_request_duration_seconds_bucket{le=\"0.001\"} 1",
            "threadline_proxy_request_duration_seconds_bucket{le=\"10\"} 1",
            "threadline_proxy_request_duration_seconds_bucket{le=\"+Inf\"} 2",
            "threadline_proxy_request_duration_seconds_count 2",
            "threadline_proxy_upstream_errors_total{kind=\"connect\"} 1",
            "threadline_proxy_routes_total{route=\"alice \\\"x\\\"\"} 3",
            "threadline_proxy_connections_open{listener=\"proxy\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert_eq!(m.requests(), 2);
    }
}
