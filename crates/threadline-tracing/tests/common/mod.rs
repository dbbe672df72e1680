//! Shared test helpers: capture subscriber output, parse it, run runtimes with the
//! subscriber on every thread.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use tracing::Dispatch;
use tracing_subscriber::fmt::MakeWriter;

/// Everything the subscriber wrote, shared with the test.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

pub struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> CaptureWriter {
        CaptureWriter(Arc::clone(&self.0))
    }
}

impl Capture {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("utf-8 output")
    }

    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_owned).collect()
    }

    /// Every line parsed as one JSON object (panics on a line that is not).
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
            .collect()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// The `name=value` pairs of a logfmt-ish text line (values bare or in double quotes
/// with backslash escapes). Words without `=` (the message, level, target) are skipped.
pub fn logfmt(line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c == ' ' || c == '=' {
                break;
            }
            word.push(c);
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            continue;
        }
        chars.next();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => {
                        if let Some(e) = chars.next() {
                            value.push('\\');
                            value.push(e);
                        }
                    }
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(word, value);
    }
    out
}

thread_local! {
    static GUARD: std::cell::RefCell<Option<tracing::dispatcher::DefaultGuard>> =
        const { std::cell::RefCell::new(None) };
}

/// A Tokio runtime whose every thread (workers and the blocking pool) has `dispatch` as
/// its default subscriber; `workers == 0` means a current-thread runtime (run it with
/// [`block_on`] so the calling thread has the subscriber too).
pub fn runtime(dispatch: &Dispatch, workers: usize) -> tokio::runtime::Runtime {
    let mut builder = if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let d = dispatch.clone();
    builder
        .enable_all()
        .on_thread_start(move || {
            let guard = tracing::dispatcher::set_default(&d);
            GUARD.with(|g| *g.borrow_mut() = Some(guard));
        })
        .on_thread_stop(|| {
            GUARD.with(|g| g.borrow_mut().take());
        })
        .build()
        .unwrap()
}

/// Runs `fut` on `rt` with `dispatch` as the default on the calling thread too.
pub fn block_on<F: std::future::Future>(
    rt: &tokio::runtime::Runtime,
    dispatch: &Dispatch,
    fut: F,
) -> F::Output {
    tracing::dispatcher::with_default(dispatch, || rt.block_on(fut))
}

/// The policy the tests use: a tenant header, the default correlation id and W3C.
pub fn policy() -> threadline::Policy {
    threadline::Policy::builder()
        .header("x-tenant-id")
        .build()
        .unwrap()
}

/// A context captured from request headers.
pub fn request(correlation_id: &str, tenant: &str) -> threadline::Context {
    let mut h = http::HeaderMap::new();
    h.insert("x-correlation-id", correlation_id.parse().unwrap());
    h.insert("x-tenant-id", tenant.parse().unwrap());
    h.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    policy().capture(&h, threadline::Trust::Trusted).context
}

/// `line` without ANSI colour sequences (`ESC [ … m`).
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
