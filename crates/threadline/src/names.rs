//! Header names Threadline handles itself.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use http::HeaderName;

/// `traceparent`.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// `baggage`.
pub const BAGGAGE: HeaderName = HeaderName::from_static("baggage");
/// Single-header B3.
pub const B3: HeaderName = HeaderName::from_static("b3");
/// `X-B3-TraceId`.
pub const B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
/// `X-B3-SpanId`.
pub const B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
/// `X-B3-ParentSpanId`.
pub const B3_PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
/// `X-B3-Sampled`.
pub const B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
/// `X-B3-Flags`.
pub const B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");
/// `x-correlation-id`, the default correlation header.
pub const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
/// `x-request-id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Name used in reports for a broken envelope.
pub(crate) const ENVELOPE: HeaderName = HeaderName::from_static("_http_headers");

/// Names a local field can never take, from any source (a carrier, [`bind`](crate::bind),
/// [`Context::try_with_field`](crate::Context::try_with_field)): the members log formats
/// write themselves (tracing-subscriber's JSON, ECS, Datadog, OpenTelemetry logs) and
/// the context's own fields under their usual names. A field under one of them would
/// put a second `level` or `correlation_id` on a log line, and readers of JSON keep the
/// last one. Compared ignoring ASCII case.
pub const RESERVED_FIELDS: &[&str] = &[
    "level",
    "message",
    "msg",
    "timestamp",
    "time",
    "target",
    "fields",
    "span",
    "spans",
    "threadname",
    "threadid",
    "thread_name",
    "thread_id",
    "filename",
    "line_number",
    "module_path",
    "severity",
    "severity_text",
    "body",
    "status",
    "log.level",
    "log.logger",
    "service",
    "service.name",
    "correlation_id",
    "request_id",
    "trace_id",
    "span_id",
    "parent_id",
    "trace_flags",
    "trace_sampled",
    "sampled",
    "trace.id",
    "span.id",
    "dd.trace_id",
    "dd.span_id",
];

/// Whether a local field name is one of [`RESERVED_FIELDS`].
pub fn is_reserved_field(name: &str) -> bool {
    RESERVED_FIELDS.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// Names handled by the trace-context, baggage and B3 settings.
pub(crate) fn is_reserved(name: &HeaderName) -> bool {
    [
        &TRACEPARENT,
        &TRACESTATE,
        &BAGGAGE,
        &B3,
        &B3_TRACE_ID,
        &B3_SPAN_ID,
        &B3_PARENT_SPAN_ID,
        &B3_SAMPLED,
        &B3_FLAGS,
    ]
    .contains(&name)
}

/// At most this many distinct names are interned (`interned`), ...
pub(crate) const MAX_INTERNED_NAMES: usize = 512;
/// ... holding at most this many bytes in all.
pub(crate) const MAX_INTERNED_BYTES: usize = 16 * 1024;

struct Interned {
    names: HashSet<&'static str>,
    bytes: usize,
}

fn interned_set() -> std::sync::MutexGuard<'static, Interned> {
    static NAMES: OnceLock<Mutex<Interned>> = OnceLock::new();
    NAMES
        .get_or_init(|| {
            Mutex::new(Interned {
                names: HashSet::new(),
                bytes: 0,
            })
        })
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The same name backed by process-lifetime storage, so that cloning it (every inject
/// puts a clone into the outgoing map) copies two words instead of touching a shared
/// reference count. Each distinct configured name is stored once for the life of the
/// process, and the store is bounded ([`MAX_INTERNED_NAMES`] names,
/// [`MAX_INTERNED_BYTES`] bytes): a process that keeps building policies from
/// changing configuration gets, past the bound, names that are not interned (the same
/// name, reference-counted: correct, a few nanoseconds slower to clone), never a store
/// that grows without end. Traffic never adds names; only policy building does.
pub(crate) fn interned(name: HeaderName) -> HeaderName {
    let mut set = interned_set();
    let text: &'static str = match set.names.get(name.as_str()) {
        Some(t) => t,
        None => {
            let len = name.as_str().len();
            if set.names.len() >= MAX_INTERNED_NAMES || set.bytes + len > MAX_INTERNED_BYTES {
                return name;
            }
            let t: &'static str = Box::leak(name.as_str().to_owned().into_boxed_str());
            set.names.insert(t);
            set.bytes += len;
            t
        }
    };
    // A parsed name is lowercase and valid, which is all `from_static` asks for.
    HeaderName::from_static(text)
}

#[cfg(test)]
mod interner_tests {
    use super::*;

    #[test]
    fn the_interner_is_bounded_and_names_stay_equal() {
        let first = interned(HeaderName::from_static("x-interner-test-first"));
        for i in 0..(MAX_INTERNED_NAMES * 3) {
            let name = HeaderName::from_bytes(format!("x-interner-test-{i}").as_bytes()).unwrap();
            let got = interned(name.clone());
            assert_eq!(got, name);
        }
        let set = interned_set();
        assert!(set.names.len() <= MAX_INTERNED_NAMES, "{}", set.names.len());
        assert!(set.bytes <= MAX_INTERNED_BYTES);
        drop(set);
        // A name interned before the bound was reached is still found, not stored again.
        let again = interned(HeaderName::from_static("x-interner-test-first"));
        assert_eq!(again, first);
        let huge = HeaderName::from_bytes("x".repeat(MAX_INTERNED_BYTES + 1).as_bytes()).unwrap();
        assert_eq!(interned(huge.clone()), huge);
    }
}
