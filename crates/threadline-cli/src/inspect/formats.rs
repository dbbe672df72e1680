//! `inspect` for the trace formats beyond W3C and B3 (Google Cloud, X-Ray, Jaeger,
//! Datadog, OpenTracing) and their per-header baggage: what each value decodes to,
//! the rule it breaks, and what it becomes in every other format.

use std::fmt::Write as _;

use http::{HeaderMap, HeaderName, HeaderValue};
use threadline::codec::SpanId;
use threadline::format::{
    B3Format, CloudTraceFormat, DatadogFormat, Extras, Format, JaegerFormat, OtFormat, Parts,
    Sampling, TraceContextFormat, TraceParts, XRayFormat,
};

use super::Input;

/// The formats a trace is shown in, with the label used.
fn targets() -> [(&'static str, Box<dyn Format>); 7] {
    [
        ("W3C", Box::new(TraceContextFormat)),
        ("B3", Box::new(B3Format::single())),
        ("Google Cloud", Box::new(CloudTraceFormat)),
        ("X-Ray", Box::new(XRayFormat)),
        ("Jaeger", Box::new(JaegerFormat)),
        ("Datadog", Box::new(DatadogFormat)),
        ("OT", Box::new(OtFormat)),
    ]
}

/// The inputs as one carrier (invalid names or values are left out: they are shown as
/// such by the caller's generic check).
fn carrier(inputs: &[Input]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for i in inputs {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(i.name.as_bytes()),
            HeaderValue::from_bytes(i.value.as_bytes()),
        ) {
            h.append(n, v);
        }
    }
    h
}

/// Handles `input` when it belongs to one of these formats: writes its lines and
/// answers `Some(Ok)`, or `Some(Err(why))` for the caller to report as invalid; `None`
/// for any other header.
pub(super) fn inspect_header(
    input: &Input,
    inputs: &[Input],
    out: &mut String,
) -> Option<Result<(), String>> {
    let name = input.name.as_str();
    let format: Box<dyn Format> = match name {
        "x-cloud-trace-context" => Box::new(CloudTraceFormat),
        "x-amzn-trace-id" => Box::new(XRayFormat),
        "uber-trace-id" => Box::new(JaegerFormat),
        "x-datadog-trace-id" => Box::new(DatadogFormat),
        "ot-tracer-traceid" => Box::new(OtFormat),
        "x-datadog-parent-id"
        | "x-datadog-sampling-priority"
        | "x-datadog-origin"
        | "x-datadog-tags" => {
            let _ = writeln!(out, "           (read together with x-datadog-trace-id)");
            return Some(Ok(()));
        }
        "ot-tracer-spanid" | "ot-tracer-sampled" => {
            let _ = writeln!(out, "           (read together with ot-tracer-traceid)");
            return Some(Ok(()));
        }
        _ => return member(input, out),
    };
    let h = carrier(inputs);
    match format.decode(&h) {
        Ok(parts) => match &parts.trace {
            Some(t) => {
                describe(out, t);
                translate(out, &parts, format.codec());
                conflicts(out, t, &h, format.codec());
                Some(Ok(()))
            }
            None => {
                let _ = writeln!(out, "  ok       no trace");
                Some(Ok(()))
            }
        },
        Err(r) => Some(Err(format!(
            "{}: {} → ignored; the next format is tried, else a new trace starts",
            r.header(),
            r.error()
        ))),
    }
}

/// `uberctx-*` and `ot-baggage-*`: one baggage member per header.
fn member(input: &Input, out: &mut String) -> Option<Result<(), String>> {
    let (format, prefix): (&dyn Format, &str) = if input.name.starts_with("uberctx-") {
        (&JaegerFormat, "uberctx-")
    } else if input.name.starts_with("ot-baggage-") {
        (&OtFormat, "ot-baggage-")
    } else {
        return None;
    };
    let one = [Input {
        name: input.name.clone(),
        value: input.value.clone(),
    }];
    let h = carrier(&one);
    let parts = format.decode(&h).ok();
    let mut found = None;
    if let Some(b) = parts.as_ref().and_then(|p| p.baggage.as_ref()) {
        b.for_each(&mut |k, v| found = Some((k.to_owned(), v.to_owned())));
    }
    match found {
        Some((k, v)) => {
            let _ = writeln!(out, "  ok       baggage member {k} = {}", v.escape_debug());
            let w3c = parts
                .as_ref()
                .and_then(|p| p.baggage.as_ref())
                .and_then(|b| b.to_w3c());
            if let Some(b) = w3c {
                let _ = writeln!(out, "           as W3C baggage: {}", b.as_str());
            }
            Some(Ok(()))
        }
        None => Some(Err(format!(
            "{prefix}member: the key must be a header token and the value visible ASCII \
             (at most 8192 bytes) → dropped"
        ))),
    }
}

fn describe(out: &mut String, t: &TraceParts<'_>) {
    let _ = writeln!(out, "  ok       trace-id   {}", t.trace_id);
    match t.span_id {
        Some(s) => {
            let _ = writeln!(
                out,
                "           span-id    {s} (decimal {})",
                u64::from_be_bytes(s.to_bytes())
            );
        }
        None => {
            let _ = writeln!(
                out,
                "           span-id    none (this hop would be a child of the trace root)"
            );
        }
    }
    if let Some(p) = t.parent_span_id {
        let _ = writeln!(out, "           parent span-id {p}");
    }
    let sampling = match t.sampling {
        Sampling::Deferred => "deferred (the receiver decides)",
        Sampling::NotSampled => "not sampled",
        Sampling::Sampled => "sampled",
        Sampling::Debug => "debug (sampled, forced)",
    };
    let _ = writeln!(out, "           sampling   {sampling}");
    match &t.extras {
        Extras::XRay(x) => {
            for (k, v) in x.iter() {
                let _ = writeln!(
                    out,
                    "           kept       {k}={} (forwarded as X-Ray)",
                    v.escape_debug()
                );
            }
        }
        Extras::Datadog(d) => {
            if let Some(o) = d.origin {
                let _ = writeln!(out, "           origin     {o}");
            }
            if let Some(t) = d.tags {
                let _ = writeln!(out, "           tags       {t}");
            }
            if let Some(p) = d.priority {
                let _ = writeln!(out, "           priority   {p}");
            }
        }
        _ => {}
    }
}

/// The trace in every other format; W3C first (`as W3C: 00-…`).
fn translate(out: &mut String, parts: &Parts<'_>, from: threadline::codec::Codec) {
    // A trace without a span id (X-Ray without Parent, Datadog without parent-id) is
    // shown as a call from here would send it: with a fresh span id.
    let mut with_span;
    let parts = match &parts.trace {
        Some(t) if t.span_id.is_none() => {
            with_span = Parts::trace(t.without_extras());
            if let Some(t) = &mut with_span.trace {
                t.span_id = Some(SpanId::random());
            }
            let _ = writeln!(
                out,
                "           (no span id: shown with a fresh one, as a call from here sends)"
            );
            &with_span
        }
        _ => parts,
    };
    for (label, f) in targets() {
        if f.codec() == from {
            continue;
        }
        let mut h = HeaderMap::new();
        f.encode(parts, &mut h);
        let shown: Vec<String> = if h.len() == 1 {
            h.values()
                .map(|v| v.to_str().unwrap_or("?").to_owned())
                .collect()
        } else {
            h.iter()
                .map(|(k, v)| format!("{k}={}", v.to_str().unwrap_or("?")))
                .collect()
        };
        if shown.is_empty() {
            let _ = writeln!(out, "           as {label}: cannot be expressed");
        } else {
            let _ = writeln!(out, "           as {label}: {}", shown.join(", "));
        }
    }
}

/// Other trace formats in the same request naming another trace.
fn conflicts(out: &mut String, t: &TraceParts<'_>, h: &HeaderMap, from: threadline::codec::Codec) {
    for (label, f) in targets() {
        if f.codec() == from {
            continue;
        }
        let other = f.decode(h).ok().and_then(|p| p.trace).map(|o| o.trace_id);
        if let Some(other) = other.filter(|o| *o != t.trace_id) {
            let _ = writeln!(
                out,
                "  note     the {label} headers name another trace ({other}): formats are read \
                 in the policy's order and the first valid one wins; the other is reported"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Options, inspect, parse_line};

    fn run(lines: &[&str]) -> (String, bool) {
        let inputs: Vec<_> = lines.iter().map(|l| parse_line(l).unwrap()).collect();
        inspect(&inputs, &Options::default())
    }

    #[test]
    fn each_trace_format_shows_its_w3c_traceparent_and_the_others() {
        let (out, ok) = run(&["X-Cloud-Trace-Context: 105445aa7843bc8bf206b12000100000/1;o=1"]);
        assert!(ok, "{out}");
        assert!(
            out.contains("as W3C: 00-105445aa7843bc8bf206b12000100000-0000000000000001-01"),
            "{out}"
        );
        assert!(out.contains("as X-Ray: Root=1-105445aa-7843bc8bf206b12000100000;Parent=0000000000000001;Sampled=1"), "{out}");
        assert!(
            out.contains("as Datadog: x-datadog-trace-id=17439821358036942848"),
            "{out}"
        );

        let (out, ok) = run(&[
            "X-Amzn-Trace-Id: Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1",
        ]);
        assert!(ok, "{out}");
        assert!(
            out.contains("as W3C: 00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"),
            "{out}"
        );
        assert!(out.contains("kept       Lineage=a87bd80c:1"), "{out}");

        let (out, ok) = run(&["uber-trace-id: abc:def:0:3"]);
        assert!(ok, "{out}");
        assert!(
            out.contains("as W3C: 00-00000000000000000000000000000abc-0000000000000def-01"),
            "{out}"
        );
        assert!(out.contains("debug"), "{out}");

        let (out, ok) = run(&[
            "x-datadog-trace-id: 1234",
            "x-datadog-parent-id: 5678",
            "x-datadog-sampling-priority: 2",
            "x-datadog-tags: _dd.p.tid=640cfd8d00000000",
        ]);
        assert!(ok, "{out}");
        assert!(
            out.contains("as W3C: 00-640cfd8d0000000000000000000004d2-000000000000162e-01"),
            "{out}"
        );
        assert!(
            out.contains("read together with x-datadog-trace-id"),
            "{out}"
        );

        let (out, ok) = run(&[
            "ot-tracer-traceid: 4bf92f3577b34da6",
            "ot-tracer-spanid: 00f067aa0ba902b7",
            "ot-tracer-sampled: false",
        ]);
        assert!(ok, "{out}");
        assert!(
            out.contains("as W3C: 00-00000000000000004bf92f3577b34da6-00f067aa0ba902b7-00"),
            "{out}"
        );
    }

    #[test]
    fn broken_values_name_the_rule_and_baggage_headers_are_members() {
        let (out, ok) = run(&["x-cloud-trace-context: 105445aa7843bc8bf206b12000100000/0;o=1"]);
        assert!(!ok);
        assert!(out.contains("INVALID  x-cloud-trace-context: invalid x-cloud-trace-context: span/parent id is all zeros"), "{out}");
        let (out, ok) = run(&["x-amzn-trace-id: Parent=53995c3f42cd8ad8"]);
        assert!(!ok);
        assert!(out.contains("a required field is missing"), "{out}");
        let (out, ok) = run(&["x-datadog-trace-id: 12a"]);
        assert!(!ok);
        assert!(
            out.contains("not a decimal unsigned 64-bit integer"),
            "{out}"
        );
        let (out, ok) = run(&["uberctx-user: alice%20smith", "ot-baggage-tenant: acme"]);
        assert!(ok, "{out}");
        assert!(out.contains("baggage member user = alice smith"), "{out}");
        assert!(out.contains("as W3C baggage: tenant=acme"), "{out}");
    }

    #[test]
    fn two_formats_naming_different_traces_are_explained() {
        let (out, _) = run(&[
            "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "x-amzn-trace-id: Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        ]);
        assert!(
            out.contains("the W3C headers name another trace (4bf92f3577b34da6a3ce929d0e0e4736)"),
            "{out}"
        );
    }
}
