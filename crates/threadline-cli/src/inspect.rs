//! `threadline inspect`: decode context headers and say which rule each value breaks.

use std::fmt::Write as _;

use threadline::codec::{B3, Baggage, CorrelationId, TraceParent, TraceState};

/// One `name: value` line given on the command line or stdin.
pub struct Input {
    pub name: String,
    pub value: String,
}

/// Parses `Name: value` (the colon and the space after it are separators).
pub fn parse_line(line: &str) -> Result<Input, String> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| format!("expected `Header: value`, got {line:?}"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("missing header name in {line:?}"));
    }
    Ok(Input {
        name: name.to_ascii_lowercase(),
        value: value
            .strip_prefix(' ')
            .unwrap_or(value)
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
    })
}

/// Shows a value safely: control characters and non-ASCII escaped.
fn shown(v: &str) -> String {
    v.escape_debug().to_string()
}

/// The report for a set of headers, and whether everything was valid.
pub fn inspect(inputs: &[Input]) -> (String, bool) {
    let mut out = String::new();
    let mut all_ok = true;
    let mut bad = |out: &mut String, msg: &str| {
        all_ok = false;
        let _ = writeln!(out, "  INVALID  {msg}");
    };
    let count = |name: &str| inputs.iter().filter(|i| i.name == name).count();
    let mut traceparent_ok = false;
    for input in inputs {
        let v = input.value.as_str();
        let _ = writeln!(out, "{}: {}", input.name, shown(v));
        match input.name.as_str() {
            "traceparent" => {
                if count("traceparent") > 1 {
                    bad(
                        &mut out,
                        "traceparent appears more than once: all copies are ignored",
                    );
                    continue;
                }
                match TraceParent::decode(v.as_bytes()) {
                    Ok(tp) => {
                        traceparent_ok = true;
                        let _ = writeln!(out, "  ok       version    {:02x}", tp.version());
                        let _ = writeln!(out, "           trace-id   {}", tp.trace_id());
                        let _ = writeln!(out, "           parent-id  {}", tp.parent_id());
                        let f = tp.flags();
                        let _ = writeln!(
                            out,
                            "           flags      {:02x} (sampled: {}, random: {})",
                            f.bits(),
                            f.is_sampled(),
                            f.bits() & 0x02 != 0
                        );
                        let _ =
                            writeln!(out, "           a call from here sends e.g. {}", tp.child());
                    }
                    Err(e) => bad(&mut out, &format!("{e} → a new trace would be started")),
                }
            }
            "tracestate" => match TraceState::decode(v.as_bytes()) {
                Ok(ts) => {
                    let _ = writeln!(
                        out,
                        "  ok       {} member(s), {} bytes",
                        ts.len(),
                        ts.as_str().len()
                    );
                    for (k, val) in ts.iter() {
                        let _ = writeln!(out, "           {k} = {val}");
                    }
                    if ts.as_str().len() > 512 {
                        let _ = writeln!(
                            out,
                            "  note     over 512 bytes: trimmed by whole entries by default"
                        );
                    }
                }
                Err(e) => bad(&mut out, &format!("{e} → the whole tracestate is dropped")),
            },
            "baggage" => {
                let mut members = 0;
                for m in Baggage::members(v) {
                    match m {
                        Ok(m) => {
                            members += 1;
                            let props: Vec<String> = m
                                .properties()
                                .map(|(k, pv)| match pv {
                                    Some(pv) => format!("{k}={pv}"),
                                    None => k.to_owned(),
                                })
                                .collect();
                            let _ = writeln!(
                                out,
                                "           {} = {}{}",
                                m.key(),
                                shown(&m.value()),
                                if props.is_empty() {
                                    String::new()
                                } else {
                                    format!("  [{}]", props.join("; "))
                                }
                            );
                        }
                        Err(e) => bad(&mut out, &format!("member dropped: {e}")),
                    }
                }
                match Baggage::validate(v.as_bytes(), 64, 8192) {
                    Ok(n) => {
                        let _ = writeln!(out, "  ok       {n} member(s), {} bytes", v.len());
                    }
                    Err(e) => bad(
                        &mut out,
                        &format!(
                            "{e} ({members} valid member(s) would be kept, within 64 / 8192 bytes)"
                        ),
                    ),
                }
            }
            "b3" => match B3::decode_single(v.as_bytes()) {
                Ok(b3) => describe_b3(&mut out, &b3),
                Err(e) => bad(&mut out, &e.to_string()),
            },
            "x-b3-traceid" => {
                let get = |n: &str| {
                    inputs
                        .iter()
                        .find(|i| i.name == n)
                        .map(|i| i.value.as_bytes())
                };
                match B3::decode_multi(
                    get("x-b3-traceid"),
                    get("x-b3-spanid"),
                    get("x-b3-parentspanid"),
                    get("x-b3-sampled"),
                    get("x-b3-flags"),
                ) {
                    Ok(Some(b3)) => describe_b3(&mut out, &b3),
                    Ok(None) => {}
                    Err(e) => bad(&mut out, &format!("{e} (multi-header B3)")),
                }
            }
            "x-b3-spanid" | "x-b3-parentspanid" | "x-b3-sampled" | "x-b3-flags" => {
                let _ = writeln!(out, "           (read together with x-b3-traceid)");
            }
            "x-correlation-id" | "x-request-id" => match CorrelationId::decode(v.as_bytes()) {
                Ok(id) => {
                    let _ = writeln!(
                        out,
                        "  ok       correlation id {id} ({} chars)",
                        id.as_str().len()
                    );
                }
                Err(e) => bad(
                    &mut out,
                    &format!("{e} → a new id would be minted; the value is never logged"),
                ),
            },
            _ => {
                let clean = v.bytes().all(|b| (0x20..0x7f).contains(&b));
                if clean && v.len() <= 4096 {
                    let _ = writeln!(
                        out,
                        "  ok       custom header ({} bytes): captured if the policy lists it",
                        v.len()
                    );
                } else if !clean {
                    bad(
                        &mut out,
                        "control, non-ASCII or non-UTF-8 characters: never captured",
                    );
                } else {
                    bad(
                        &mut out,
                        "longer than 4096 bytes: never captured with the default limits",
                    );
                }
            }
        }
    }
    if inputs.iter().any(|i| i.name == "tracestate") && !traceparent_ok {
        bad(
            &mut out,
            "tracestate without a valid traceparent is ignored",
        );
    }
    (out, all_ok)
}

fn describe_b3(out: &mut String, b3: &B3) {
    match b3.ids() {
        Some((t, s)) => {
            let _ = writeln!(out, "  ok       trace-id {t}, span-id {s}");
        }
        None => {
            let _ = writeln!(out, "  ok       sampling decision only");
        }
    }
    if let Some(p) = b3.parent_span_id() {
        let _ = writeln!(out, "           parent span-id {p}");
    }
    if let Some(s) = b3.sampling() {
        let _ = writeln!(out, "           sampling {s:?}");
    }
    if let Some(tp) = b3.to_trace_parent() {
        let _ = writeln!(out, "           as W3C: {tp}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str]) -> (String, bool) {
        let inputs: Vec<Input> = lines.iter().map(|l| parse_line(l).unwrap()).collect();
        inspect(&inputs)
    }

    #[test]
    fn valid_headers_pass() {
        let (out, ok) = run(&[
            "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "tracestate: rojo=00f067aa0ba902b7",
            "baggage: userId=alice;ttl=60",
            "X-Correlation-Id: 0190b6a8-5c0e-7cc1-9f6e-6b7c2ad1f0a3",
            "b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
        ]);
        assert!(ok, "{out}");
        assert!(
            out.contains("trace-id   4bf92f3577b34da6a3ce929d0e0e4736"),
            "{out}"
        );
        assert!(out.contains("userId = alice  [ttl=60]"), "{out}");
        assert!(
            out.contains("as W3C: 00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01"),
            "{out}"
        );
    }

    #[test]
    fn each_broken_rule_is_named() {
        let (out, ok) =
            run(&["traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"]);
        assert!(!ok);
        assert!(out.contains("hex digits must be lower case"), "{out}");
        let (out, ok) = run(&["tracestate: a=1"]);
        assert!(!ok);
        assert!(out.contains("without a valid traceparent"), "{out}");
        let (out, ok) = run(&["baggage: ok=1,bad key=2"]);
        assert!(!ok);
        assert!(out.contains("list key is malformed"), "{out}");
        assert!(out.contains("ok = 1"), "{out}");
        let (out, ok) = run(&["x-request-id: has space"]);
        assert!(!ok);
        assert!(out.contains("never logged"), "{out}");
    }

    #[test]
    fn control_characters_are_escaped_in_the_report() {
        let (out, ok) = run(&["x-tenant-id: a\u{1b}[31mred"]);
        assert!(!ok);
        assert!(!out.contains('\u{1b}'), "{out:?}");
    }

    #[test]
    fn bad_lines_are_errors() {
        assert!(parse_line("no colon").is_err());
        assert!(parse_line(": value").is_err());
    }
}
