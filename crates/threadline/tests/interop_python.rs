//! Interop with the real Python peers (needs Python 3 and PyPI): OpenTelemetry's
//! propagators for W3C, B3, Google Cloud, X-Ray, Jaeger, OT and W3C baggage, and
//! ddtrace's `HTTPPropagator` for Datadog. Headers the Python propagator makes are read
//! by Threadline with the same ids, and headers Threadline writes are read by the
//! Python propagator with the same ids.
//!
//! The packages are pinned and installed once into a virtualenv under the target
//! directory (`target/tmp/python-interop`), reused while the pins do not change. When
//! Python or PyPI is unavailable the test prints a loud SKIP, or fails under
//! `THREADLINE_REQUIRE_SERVICES=1`. `THREADLINE_PYTHON` picks the interpreter.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use http::HeaderMap;
use serde_json::{Value, json};
use threadline::codec::{SpanId, TraceId};
use threadline::format::{
    B3Format, BaggageFormat, BaggageParts, CloudTraceFormat, DatadogFormat, Format, JaegerFormat,
    OtFormat, Parts, Sampling, TraceContextFormat, TraceParts, XRayFormat,
};

const TEST: &str = "interop_with_python_propagators_needs_python_and_pypi";

/// The Python peers, pinned.
const PINS: &[&str] = &[
    "opentelemetry-api==1.38.0",
    "opentelemetry-sdk==1.38.0",
    "opentelemetry-propagator-aws-xray==1.0.2",
    "opentelemetry-propagator-b3==1.45.1",
    "opentelemetry-propagator-gcp==1.15.0",
    "opentelemetry-propagator-jaeger==1.45.1",
    "opentelemetry-propagator-ot-trace==0.66b1",
];
/// Datadog's own tracer; optional (a large package): without it the Datadog rows are
/// skipped loudly.
const DDTRACE: &str = "ddtrace==4.16.0";

fn format(name: &str) -> Box<dyn Format> {
    match name {
        "w3c" => Box::new(TraceContextFormat),
        "b3" => Box::new(B3Format::single()),
        "b3multi" => Box::new(B3Format::multi()),
        "gcp" => Box::new(CloudTraceFormat),
        "xray" => Box::new(XRayFormat),
        "jaeger" => Box::new(JaegerFormat),
        "ot" => Box::new(OtFormat),
        "datadog" => Box::new(DatadogFormat),
        "baggage" => Box::new(BaggageFormat),
        other => panic!("unknown format {other}"),
    }
}

const TRACE_FORMATS: &[&str] = &[
    "w3c", "b3", "b3multi", "gcp", "xray", "jaeger", "ot", "datadog",
];

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "{:?} exited with {}: {}",
            cmd.get_program(),
            out.status,
            err.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        ))
    }
}

/// The virtualenv's python, installing the pins on first use. `None`: skipped.
fn venv() -> Option<PathBuf> {
    let python = std::env::var("THREADLINE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    if let Err(e) = run(Command::new(&python).arg("--version")) {
        threadline_testkit::unavailable(TEST, "Python 3", &python, &e);
        return None;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-interop");
    let bin = dir.join("bin").join("python");
    let marker = dir.join("installed.txt");
    let want = format!("{}\n{DDTRACE}\n", PINS.join("\n"));
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(want.as_str()) {
        return Some(bin);
    }
    let pip = |pkgs: &[&str]| {
        run(Command::new(&bin)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(["--timeout", "60", "--retries", "2"])
            .args(pkgs))
    };
    let made = run(Command::new(&python).args(["-m", "venv"]).arg(&dir)).and_then(|()| pip(PINS));
    if let Err(e) = made {
        threadline_testkit::unavailable(TEST, "PyPI (pip install of the pinned peers)", "PyPI", &e);
        return None;
    }
    if let Err(e) = pip(&[DDTRACE]) {
        eprintln!("*** {TEST}: {DDTRACE} did not install ({e}); Datadog rows will be skipped ***");
    }
    let _ = std::fs::write(&marker, want);
    Some(bin)
}

fn peers(python: &Path, request: &Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/peers.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python peers");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write the request");
    let out = child.wait_with_output().expect("Python peers finish");
    assert!(
        out.status.success(),
        "peers.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from peers.py")
}

fn to_json(h: &HeaderMap) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in h {
        m.insert(k.as_str().to_owned(), json!(v.to_str().unwrap()));
    }
    Value::Object(m)
}

fn from_json(v: &Value) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in v.as_object().expect("headers object") {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.as_str().expect("text").parse().unwrap(),
        );
    }
    h
}

/// Ids for one row: 128-bit, or 64-bit (upper half zero) every other row.
fn ids(i: usize) -> (TraceId, SpanId, bool) {
    let t = if i.is_multiple_of(2) {
        TraceId::random()
    } else {
        TraceId::from_u64_padded(SpanId::random().to_bytes()).unwrap()
    };
    (t, SpanId::random(), !i.is_multiple_of(3))
}

#[test]
fn interop_with_python_propagators_needs_python_and_pypi() {
    let Some(python) = venv() else { return };
    let bag = [("user", "alice smith")];

    // Threadline writes; Python reads.
    let mut read = Vec::new();
    let mut written = Vec::new();
    for (i, name) in TRACE_FORMATS
        .iter()
        .enumerate()
        .flat_map(|(n, f)| (0..4).map(move |k| (n * 4 + k, f)))
    {
        let (t, s, sampled) = ids(i);
        let parts = Parts::new(
            Some(TraceParts::new(t, Some(s), Sampling::from_bool(sampled))),
            Some(BaggageParts::pairs(&bag)),
        );
        let mut h = HeaderMap::new();
        format(name).encode(&parts, &mut h);
        read.push(json!({"format": name, "headers": to_json(&h)}));
        written.push((name, t, s, sampled, h));
    }
    // Python writes; Threadline reads.
    let mut make = Vec::new();
    for (i, name) in TRACE_FORMATS
        .iter()
        .enumerate()
        .flat_map(|(n, f)| (0..4).map(move |k| (n * 4 + k, f)))
    {
        let (t, s, sampled) = ids(i);
        make.push(json!({"format": name, "trace_id": t.to_string(), "span_id": s.to_string(), "sampled": sampled}));
    }
    make.push(json!({"format": "baggage", "trace_id": "1", "span_id": "1", "sampled": true}));
    let answer = peers(&python, &json!({"make": make, "read": read}));
    let skipped: Vec<&str> = answer["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for s in &skipped {
        threadline_testkit::unavailable(
            &format!("{TEST} ({s})"),
            "a Python propagator",
            s,
            "not installed in the virtualenv",
        );
    }

    let mut checked = 0;
    for (row, (name, t, s, sampled, h)) in answer["read"]
        .as_array()
        .unwrap()
        .iter()
        .zip(written.iter().filter(|w| !skipped.contains(w.0)))
    {
        assert_eq!(row["format"], **name);
        let got = &row["got"];
        assert_eq!(
            got["trace_id"],
            t.to_string(),
            "{name}: Python read the trace id Threadline wrote in {h:?}"
        );
        assert_eq!(got["span_id"], s.to_string(), "{name}: span id from {h:?}");
        assert_eq!(got["sampled"], *sampled, "{name}: sampled from {h:?}");
        if matches!(**name, "jaeger" | "ot") {
            assert_eq!(
                got["baggage"]["user"], "alice smith",
                "{name}: baggage from {h:?}"
            );
        }
        checked += 1;
    }
    assert_eq!(
        checked,
        written.iter().filter(|w| !skipped.contains(w.0)).count()
    );

    let mut checked = 0;
    for row in answer["made"].as_array().unwrap() {
        let name = row["format"].as_str().unwrap();
        let h = from_json(&row["headers"]);
        let parts = format(name)
            .decode(&h)
            .unwrap_or_else(|e| panic!("{name}: Threadline refused {h:?}: {e}"));
        if name == "baggage" {
            let mut got = Vec::new();
            parts
                .baggage
                .expect("baggage")
                .for_each(&mut |k, v| got.push(format!("{k}={v}")));
            // Python's W3C baggage propagator writes a space as `+` (urllib's
            // quote_plus); W3C percent-encoding has no such rule, so `+` is read as
            // itself, as the specification and the baggage codec say.
            assert_eq!(
                h["baggage"], "user=alice+smith",
                "Python's encoding changed"
            );
            assert_eq!(got, ["user=alice+smith"], "W3C baggage made by Python");
            continue;
        }
        let t = parts
            .trace
            .unwrap_or_else(|| panic!("{name}: no trace in {h:?}"));
        let mut want_trace = row["trace_id"].as_str().unwrap().to_owned();
        if name == "ot" {
            // Python's OT propagator writes only the lower 64 bits of the trace id.
            want_trace = format!("{:0>32}", &want_trace[16..]);
        }
        assert_eq!(
            t.trace_id.to_string(),
            want_trace,
            "{name}: trace id from {h:?}"
        );
        assert_eq!(
            t.span_id.map(|s| s.to_string()).as_deref(),
            row["span_id"].as_str(),
            "{name}: span id from {h:?}"
        );
        assert_eq!(
            t.sampling.is_sampled(),
            row["sampled"].as_bool().unwrap(),
            "{name}: sampled from {h:?}"
        );
        if matches!(name, "jaeger" | "ot") {
            let mut got = Vec::new();
            parts
                .baggage
                .expect("baggage")
                .for_each(&mut |k, v| got.push(format!("{k}={v}")));
            assert_eq!(
                got,
                ["user=alice smith"],
                "{name}: baggage made by Python: {h:?}"
            );
        }
        checked += 1;
    }
    let expected_rows = TRACE_FORMATS
        .iter()
        .filter(|f| !skipped.contains(f))
        .count()
        * 4;
    assert_eq!(
        checked, expected_rows,
        "every format made by Python was read"
    );
}
