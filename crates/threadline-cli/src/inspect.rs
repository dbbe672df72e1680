//! `threadline inspect`: decode context headers and say which rule each value breaks.

use std::fmt::Write as _;

use http::HeaderName;
use threadline::codec::{B3, Baggage, CorrelationId, TraceParent, TraceState};
use threadline::{CarrierKind, CarrierValue, Extractor, IdOrigin, Policy, Reason, Trust};

mod formats;

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

/// How the headers are judged: by which policy, from which caller, on which carrier.
#[derive(Default)]
pub struct Options {
    /// The policy (the default one unless a policy file was given).
    pub policy: Policy,
    /// The caller is outside the trust boundary.
    pub untrusted: bool,
    /// The headers came with a message or job (local fields travel there), not HTTP.
    pub message: bool,
    /// A route table (`--routes FILE`): where the captured routing key would go.
    pub routes: Option<threadline_route::RouteTable>,
}

/// The inputs as a carrier: names matched ignoring case, every value kept (two inputs
/// of one name are a duplicate, as on the wire).
struct Lines<'i> {
    inputs: &'i [Input],
    kind: CarrierKind,
}

impl<'i> Extractor for Lines<'i> {
    fn kind(&self) -> CarrierKind {
        self.kind
    }

    fn get_all<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = CarrierValue<'a>> + use<'a, 'i> {
        let name = name.as_str().to_owned();
        self.inputs
            .iter()
            .filter(move |i| i.name.eq_ignore_ascii_case(&name))
            .map(|i| CarrierValue::Text(i.value.as_str()))
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        let mut seen: Vec<&str> = Vec::new();
        self.inputs.iter().filter_map(move |i| {
            if seen.contains(&i.name.as_str()) {
                return None;
            }
            seen.push(i.name.as_str());
            Some(i.name.as_str())
        })
    }
}

/// What a service with `opts.policy` would keep from the inputs, and what it would drop
/// and why (the capture itself, not a second reading of the rules). `false` when
/// anything was dropped.
fn capture_section(out: &mut String, inputs: &[Input], opts: &Options) -> bool {
    let carrier = Lines {
        inputs,
        kind: if opts.message {
            CarrierKind::Message
        } else {
            CarrierKind::Http
        },
    };
    let trust = if opts.untrusted {
        Trust::Untrusted
    } else {
        Trust::Trusted
    };
    let captured = opts.policy.capture(&carrier, trust);
    let ctx = &captured.context;
    let _ = writeln!(
        out,
        "\ncaptured ({} caller, {} carrier):",
        if opts.untrusted {
            "an untrusted"
        } else {
            "a trusted"
        },
        if opts.message { "a message" } else { "an HTTP" },
    );
    if let Some(id) = ctx.correlation_id() {
        let origin = match ctx.correlation_id_origin() {
            Some(IdOrigin::Received) => "received, as validated",
            _ => "minted here: none usable was sent",
        };
        let _ = writeln!(out, "  correlation id  {} ({origin})", shown(id.as_str()));
    }
    if let Some(t) = ctx.trace() {
        match t.parent_id() {
            Some(parent) => {
                let _ = writeln!(
                    out,
                    "  trace           continues {} from parent {parent}, sampled: {}",
                    t.trace_id(),
                    t.is_sampled()
                );
            }
            None => {
                let _ = writeln!(out, "  trace           a new root {}", t.trace_id());
            }
        }
        if let Some(ts) = t.tracestate() {
            let _ = writeln!(out, "  tracestate      {} (forwarded)", ts.as_str());
        }
    }
    if let Some(b) = ctx.baggage() {
        let _ = writeln!(out, "  baggage         {} (forwarded)", b.as_str());
    }
    for (name, value) in ctx.headers() {
        let _ = writeln!(out, "  header          {name}: {}", shown(value));
    }
    for (name, value) in ctx.fields() {
        let _ = writeln!(out, "  local field     {name} = {}", shown(value));
    }
    routing_section(out, ctx, opts);
    for r in captured.report.iter() {
        let why = match r.reason {
            Reason::Untrusted if r.name == "baggage" => "not accepted from an untrusted caller \
                 (edge mode drops baggage unless the policy opts in with untrusted_baggage)"
                .to_owned(),
            reason => reason.to_string(),
        };
        let _ = writeln!(out, "  left out        {}: {why}", r.name);
    }
    captured.report.is_empty()
}

/// The routing key the policy took, and where a route table would send it.
fn routing_section(out: &mut String, ctx: &threadline::Context, opts: &Options) {
    let Some(key) = ctx.routing_key() else {
        if opts.policy.routing().is_some() {
            let _ = writeln!(out, "  routing key     none: calls go to the baseline");
        }
        return;
    };
    let _ = writeln!(out, "  routing key     {} (forwarded)", key.as_str());
    let Some(table) = &opts.routes else {
        return;
    };
    let now = std::time::SystemTime::now();
    let mut any = false;
    for rule in table.rules().filter(|r| r.keys().contains(key)) {
        any = true;
        let state = if rule.is_expired(now) {
            " (expired: not used)"
        } else if rule.has_conditions() {
            " (when its conditions hold)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  route           calls to {} go to {} by rule {}{state}",
            rule.service(),
            rule.upstream(),
            rule.id()
        );
    }
    if !any {
        let _ = writeln!(
            out,
            "  route           no rule claims this key: calls go to the baseline"
        );
    }
}

/// A route table file (`[[rule]]` tables), listed: each rule, or why the file is
/// refused (a router keeps its last good table then). Answers whether it is valid.
pub fn routes_report(path: &std::path::Path) -> (String, Option<threadline_route::RouteTable>) {
    let mut out = String::new();
    let table = threadline_route::FileRules::load(path).and_then(threadline_route::RouteTable::new);
    match table {
        Ok(table) => {
            let _ = writeln!(out, "routes {}: {} rule(s)", path.display(), table.len());
            let now = std::time::SystemTime::now();
            for r in table.rules() {
                let keys: Vec<&str> = r.keys().iter().map(|k| k.as_str()).collect();
                let _ = writeln!(
                    out,
                    "  rule {}: calls to {}{} with key {} -> {}{}{}{}",
                    r.id(),
                    r.service(),
                    r.port().map(|p| format!(":{p}")).unwrap_or_default(),
                    keys.join(" | "),
                    r.upstream(),
                    if r.has_conditions() {
                        " (with conditions)"
                    } else {
                        ""
                    },
                    if r.allows_fallback() {
                        " (falls back to the baseline if down)"
                    } else {
                        ""
                    },
                    if r.is_expired(now) { " (expired)" } else { "" },
                );
            }
            (out, Some(table))
        }
        Err(e) => {
            let _ = writeln!(out, "routes {}: INVALID  {e}", path.display());
            let _ = writeln!(
                out,
                "  a router reading this file keeps its last good table until it is fixed"
            );
            (out, None)
        }
    }
}

/// The report for a set of headers, and whether everything was valid.
pub fn inspect(inputs: &[Input], opts: &Options) -> (String, bool) {
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
            "tracestate" if v.split(',').all(|m| m.trim().is_empty()) => {
                let _ = writeln!(out, "  ok       empty: no list, never forwarded");
            }
            "tracestate" => match TraceState::decode(v.as_bytes()) {
                Ok(ts) => {
                    let sent = v.split(',').filter(|m| !m.trim().is_empty()).count();
                    if sent > ts.len() {
                        let _ = writeln!(
                            out,
                            "  note     duplicate key: the list is kept without the later \
                             duplicate(s), and the capture reports it"
                        );
                    }
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
            name if name.starts_with(opts.policy.field_prefix()) => {
                let field = &name[opts.policy.field_prefix().len()..];
                let decoded = threadline::codec::percent_decode(v);
                let _ = writeln!(
                    out,
                    "  note     local field {} = {}: kept only from trusted sources, on \
                     messages (or HTTP with fields_over_http); names log formats own and \
                     values with control or invisible characters (once decoded) are refused",
                    shown(field),
                    shown(&decoded)
                );
            }
            _ => {
                if let Some(checked) = formats::inspect_header(input, inputs, &mut out) {
                    if let Err(why) = checked {
                        bad(&mut out, &why);
                    }
                    continue;
                }
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
    let kept_all = capture_section(&mut out, inputs, opts);
    (out, all_ok && kept_all)
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
    match b3.sampling() {
        Some(s) => {
            let _ = writeln!(out, "           sampling {s:?}");
        }
        None if b3.ids().is_some() => {
            let _ = writeln!(
                out,
                "           sampling deferred (none sent): maps to traceparent flags 00"
            );
        }
        None => {}
    }
    if let Some(tp) = b3.to_trace_parent() {
        let _ = writeln!(out, "           as W3C: {tp}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str]) -> (String, bool) {
        run_with(lines, &Options::default())
    }

    fn run_with(lines: &[&str], opts: &Options) -> (String, bool) {
        let inputs: Vec<Input> = lines.iter().map(|l| parse_line(l).unwrap()).collect();
        inspect(&inputs, opts)
    }

    const TP: &str = "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn routes_file_listed_or_refused_and_the_key_followed() {
        let dir = std::env::temp_dir();
        let good = dir.join(format!(
            "threadline-inspect-routes-{}.toml",
            std::process::id()
        ));
        std::fs::write(
            &good,
            "[[rule]]\nid = \"alice-orders\"\nservice = \"orders\"\nkey = \"alice\"\nupstream = \"http://127.0.0.1:3001\"\n",
        )
        .unwrap();
        let (report, table) = routes_report(&good);
        std::fs::remove_file(&good).unwrap();
        assert!(report.contains("1 rule(s)"), "{report}");
        assert!(
            report.contains(
                "rule alice-orders: calls to orders with key alice -> http://127.0.0.1:3001"
            ),
            "{report}"
        );

        let policy = Policy::builder()
            .routing(threadline::Routing::header("x-routing-key"))
            .build()
            .unwrap();
        let opts = Options {
            policy,
            routes: table,
            ..Options::default()
        };
        let (out, _) = run_with(&["x-routing-key: alice"], &opts);
        assert!(out.contains("routing key     alice"), "{out}");
        assert!(
            out.contains("calls to orders go to http://127.0.0.1:3001 by rule alice-orders"),
            "{out}"
        );
        let (out, _) = run_with(&["x-routing-key: bob"], &opts);
        assert!(out.contains("no rule claims this key"), "{out}");
        let (out, ok) = run_with(&["x-routing-key: b ob"], &opts);
        assert!(!ok);
        assert!(out.contains("routing key     none"), "{out}");
        assert!(out.contains("left out        x-routing-key"), "{out}");

        let bad = dir.join(format!(
            "threadline-inspect-routes-bad-{}.toml",
            std::process::id()
        ));
        std::fs::write(
            &bad,
            "[[rule]]\nid = \"x\"\nservice = \"orders\"\nkey = \"a b\"\nupstream = \"http://h\"\n",
        )
        .unwrap();
        let (report, table) = routes_report(&bad);
        std::fs::remove_file(&bad).unwrap();
        assert!(table.is_none());
        assert!(report.contains("INVALID"), "{report}");
        assert!(report.contains("last good table"), "{report}");
    }

    fn untrusted_message(policy: Policy) -> Options {
        Options {
            policy,
            untrusted: true,
            message: true,
            routes: None,
        }
    }

    #[test]
    fn untrusted_sources_set_no_trusted_header_and_no_local_field() {
        let policy = Policy::builder()
            .header_rule(threadline::HeaderRule::new("x-tenant-id").trusted_only())
            .build()
            .unwrap();
        let (out, ok) = run_with(
            &["x-tenant-id: mallory", "tl-field-user.id: mallory"],
            &untrusted_message(policy.clone()),
        );
        assert!(!ok);
        assert!(
            out.contains("left out        x-tenant-id: not accepted from an untrusted caller"),
            "{out}"
        );
        assert!(
            out.contains("left out        tl-field-user.id: not accepted from an untrusted caller"),
            "{out}"
        );
        let trusted = Options {
            policy,
            untrusted: false,
            message: true,
            routes: None,
        };
        let (out, ok) = run_with(&["x-tenant-id: acme", "tl-field-user.id: alice"], &trusted);
        assert!(ok, "{out}");
        assert!(out.contains("header          x-tenant-id: acme"), "{out}");
        assert!(out.contains("local field     user.id = alice"), "{out}");
    }

    #[test]
    fn local_field_names_and_decoded_values_are_checked() {
        let trusted_message = Options {
            message: true,
            ..Options::default()
        };
        let (out, ok) = run_with(
            &[
                "tl-field-level: ERROR",
                "tl-field-item: Kettle%E2%80%AEgpj.exe",
            ],
            &trusted_message,
        );
        assert!(!ok);
        assert!(
            out.contains("tl-field-level: local field name not allowed"),
            "{out}"
        );
        assert!(
            out.contains("tl-field-item: control, non-ASCII or non-UTF-8 characters"),
            "{out}"
        );
        assert!(!out.contains('\u{202e}'), "shown escaped: {out}");
    }

    #[test]
    fn baggage_is_cleaned_and_follows_trust_at_the_edge() {
        let (out, ok) = run(&["baggage: a=1,,b=2,"]);
        assert!(!ok);
        assert!(out.contains("list has an empty member"), "{out}");
        assert!(out.contains("baggage         a=1,b=2 (forwarded)"), "{out}");
        let edge = Policy::builder()
            .untrusted_start_fresh(true, true)
            .build()
            .unwrap();
        let (out, _) = run_with(&["baggage: user.id=mallory"], &untrusted_message(edge));
        assert!(
            out.contains("baggage: not accepted from an untrusted caller (edge mode"),
            "{out}"
        );
        assert!(!out.contains("(forwarded)"), "{out}");
    }

    #[test]
    fn correlation_ids_are_kept_as_validated() {
        let (out, ok) = run(&["x-correlation-id:   req-7  "]);
        assert!(ok, "{out}");
        assert!(
            out.contains("correlation id  req-7 (received, as validated)"),
            "{out}"
        );
    }

    #[test]
    fn tracestate_follows_the_current_key_grammar() {
        let (out, ok) = run(&[
            TP,
            "tracestate: foo@@bar=1,1abc=2,t@vvvvvvvvvvvvvvv=3,foo@=4",
        ]);
        assert!(ok, "{out}");
        assert!(out.contains("4 member(s)"), "{out}");
        let (out, ok) = run(&[TP, "tracestate: a=1,b=2,a=3"]);
        assert!(!ok, "a duplicate is reported");
        assert!(out.contains("tracestate      a=1,b=2 (forwarded)"), "{out}");
        assert!(out.contains("tracestate: duplicate key"), "{out}");
        let (out, ok) = run(&[TP, "tracestate: "]);
        assert!(ok, "{out}");
        assert!(out.contains("empty: no list, never forwarded"), "{out}");
        assert!(!out.contains("(forwarded)"), "{out}");
    }

    #[test]
    fn b3_flags_sampled_words_and_deferred_sampling() {
        let b3 = |extra: &[&str]| {
            let mut lines = vec![
                "x-b3-traceid: 80f198ee56343ba864fe8b2a57d3eff7",
                "x-b3-spanid: e457b5a2e4d86bd1",
            ];
            lines.extend_from_slice(extra);
            run(&lines)
        };
        let (out, _) = b3(&["x-b3-flags: 0", "x-b3-sampled: true"]);
        assert!(out.contains("sampling Accept"), "{out}");
        assert!(
            out.contains("as W3C: 00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01"),
            "{out}"
        );
        let (out, _) = b3(&["x-b3-sampled: false"]);
        assert!(out.contains("sampling Deny"), "{out}");
        let (out, _) = run(&["b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1"]);
        assert!(
            out.contains("deferred (none sent): maps to traceparent flags 00"),
            "{out}"
        );
        assert!(out.contains("-e457b5a2e4d86bd1-00"), "{out}");
    }

    #[test]
    fn names_differing_only_in_case_are_duplicates() {
        let (out, ok) = run(&[
            TP,
            "Traceparent: 00-11111111111111111111111111111111-2222222222222222-01",
        ]);
        assert!(!ok);
        assert!(out.contains("appears more than once"), "{out}");
        assert!(out.contains("trace           a new root"), "{out}");
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
