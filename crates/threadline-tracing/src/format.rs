//! [`ContextFormat`]: a `FormatEvent` that adds the current context to every event.

use std::cell::RefCell;
use std::fmt;

use threadline::Context;
use tracing_core::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Compact, Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::fields::{ContextFields, Ids, JsonSink, Names, TextSink};
use crate::sanitize::{LineKind, sanitize_line};

/// The shape of the wrapped formatter's output, which decides where the fields go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// One line of text (tracing-subscriber's `Full` and `Compact`): the fields are
    /// appended as ` name=value` before the newline.
    Text,
    /// tracing-subscriber's multi-line `Pretty`: the fields get a line of their own,
    /// `    with name=value …`, after the span lines.
    Pretty,
    /// One JSON object per line: the fields become members of the object (or of one
    /// nested object, see [`ContextFields::nest_under`]).
    Json,
}

/// A formatter whose output shape is known from its type; see [`ContextFormat::new`].
///
/// Implemented for tracing-subscriber's [`Format`] in its `Full`, `Compact`, `Pretty`
/// and (feature `json`) `Json` flavours.
pub trait KnownFormat: Sized {
    /// The shape of the output.
    const OUTPUT: Output;

    /// The same formatter with ANSI colours forced on, when it has colours at all.
    /// (tracing-subscriber gives a formatter that writes into a buffer no colours;
    /// this copy restores them when the layer's writer has them.)
    fn with_colours(&self) -> Option<Self>;
}

macro_rules! known_text {
    ($($flavour:ty => $output:expr),*) => {$(
        impl<T: Clone> KnownFormat for Format<$flavour, T> {
            const OUTPUT: Output = $output;
            fn with_colours(&self) -> Option<Self> {
                Some(self.clone().with_ansi(true))
            }
        }
    )*};
}
known_text!(Full => Output::Text, Compact => Output::Text);
#[cfg(feature = "ansi")]
known_text!(tracing_subscriber::fmt::format::Pretty => Output::Pretty);

#[cfg(feature = "json")]
impl<T: Clone> KnownFormat for Format<tracing_subscriber::fmt::format::Json, T> {
    const OUTPUT: Output = Output::Json;
    fn with_colours(&self) -> Option<Self> {
        None
    }
}

/// Wraps a tracing-subscriber event formatter and adds the current
/// [`threadline::Context`] to every event it formats: correlation id, trace id, the
/// hop's span id, configured header fields and every field bound with
/// [`threadline::bind`] — read at event time, so fields bound mid-request show up on
/// later events.
///
/// Everything else (timestamps, levels, spans, targets, `flatten_event`, span lists,
/// thread ids, `EnvFilter`, per-layer filters) is the wrapped formatter's and the
/// layer's business and works as usual.
///
/// ```
/// use tracing_subscriber::{fmt, prelude::*, EnvFilter};
/// use threadline_tracing::{ContextFields, ContextFormat};
///
/// let format = ContextFormat::new(fmt::format().compact().with_target(false))
///     .fields(ContextFields::new().header("x-tenant-id", "tenant"));
/// let subscriber = tracing_subscriber::registry()
///     .with(EnvFilter::new("info"))
///     .with(fmt::layer().event_format(format));
/// # let _ = subscriber;
/// ```
///
/// # Output
///
/// Text: `2025-01-01T00:00:00Z  INFO request{method=GET}: app: saved order=7
/// correlation_id=req-7 trace_id=4bf9… span_id=00f0… tenant_id=acme user.id=alice`.
/// Values that are not plain tokens are quoted and escaped.
///
/// JSON: `{"timestamp":…,"level":"INFO","fields":{"message":"saved","order":7},
/// "target":"app","correlation_id":"req-7","trace_id":"4bf9…","span_id":"00f0…",
/// "tenant_id":"acme","user.id":"alice"}`.
///
/// # No key twice
///
/// No line ever holds a name twice: among the context's fields the first under a
/// name wins (the ids, then headers — a local field beats a header that maps to the
/// same name —, then baggage and local fields), and in JSON a context field is left
/// out when the wrapped formatter already wrote a member of that name (`level`,
/// `timestamp`, `target`, or an event field flattened to the top level: name those
/// differently, `upstream_trace_id`). In text, an event field of the same name as a
/// context field wins the same way (`info!(tenant_id = "x", …)` prints `tenant_id=x`
/// once), except for the three ids, which are always the context's: [`DedupFields`](crate::DedupFields)
/// (which [`layer`](crate::layer) uses) leaves the event's out. Names log formats own cannot be local fields at
/// all ([`threadline::names::RESERVED_FIELDS`]).
///
/// # Log forging
///
/// In `Text` and `Json` output the whole line — the wrapped formatter's part included,
/// so also a message like `info!("{}", user_input)` — goes through
/// [`sanitize_line`]: a newline, carriage return or other control
/// character can never start a second line. `Pretty` output is multi-line by design;
/// there only the context fields are escaped.
///
/// # Colours
///
/// For [`KnownFormat`]s colours follow the layer (`fmt::layer().with_ansi(..)`); a
/// formatter wrapped with [`ContextFormat::with_output`] writes without colours.
#[derive(Clone, Debug)]
pub struct ContextFormat<F> {
    inner: F,
    coloured: Option<F>,
    output: Output,
    fields: ContextFields,
    sanitize: bool,
    #[cfg(feature = "opentelemetry")]
    otel_ids: bool,
}

impl<F: KnownFormat> ContextFormat<F> {
    /// Wraps one of tracing-subscriber's formatters (`fmt::format()`,
    /// `fmt::format().compact()`, `.pretty()`, `.json()`), with its options.
    pub fn new(inner: F) -> Self {
        let coloured = inner.with_colours();
        Self::build(inner, coloured, F::OUTPUT)
    }
}

impl ContextFormat<Format<Full>> {
    /// tracing-subscriber's default (`Full`) text format, with the context.
    pub fn text() -> Self {
        Self::new(Format::default())
    }
}

impl ContextFormat<Format<Compact>> {
    /// tracing-subscriber's `Compact` text format, with the context.
    pub fn compact() -> Self {
        Self::new(Format::default().compact())
    }
}

#[cfg(feature = "ansi")]
impl ContextFormat<Format<tracing_subscriber::fmt::format::Pretty>> {
    /// tracing-subscriber's multi-line `Pretty` format, with the context.
    pub fn pretty() -> Self {
        Self::new(Format::default().pretty())
    }
}

#[cfg(feature = "json")]
impl ContextFormat<Format<tracing_subscriber::fmt::format::Json>> {
    /// tracing-subscriber's JSON format, with the context fields as members of each
    /// object. Use it with `fmt::layer().json()` so span fields are JSON too.
    pub fn json() -> Self {
        Self::new(Format::default().json())
    }
}

impl<F> ContextFormat<F> {
    /// Wraps any event formatter whose output has the given shape (one JSON object
    /// per line, say).
    pub fn with_output(inner: F, output: Output) -> Self {
        Self::build(inner, None, output)
    }

    fn build(inner: F, coloured: Option<F>, output: Output) -> Self {
        ContextFormat {
            inner,
            coloured,
            output,
            fields: ContextFields::default(),
            sanitize: true,
            #[cfg(feature = "opentelemetry")]
            otel_ids: true,
        }
    }

    /// Chooses which fields are written and how they are named.
    pub fn fields(mut self, fields: ContextFields) -> Self {
        self.fields = fields;
        self
    }

    /// Turns the escaping of the wrapped formatter's part of the line off (it is on by
    /// default). The context fields are always escaped.
    pub fn sanitize_lines(mut self, yes: bool) -> Self {
        self.sanitize = yes;
        self
    }

    /// Whether the trace and span ids come from the current OpenTelemetry span when
    /// there is one (default `true`). With `tracing-opentelemetry`'s layer installed,
    /// that is the innermost entered `tracing` span, so logs and traces agree even
    /// inside nested spans. Without an OpenTelemetry span the context's ids are used.
    #[cfg(feature = "opentelemetry")]
    pub fn otel_ids(mut self, yes: bool) -> Self {
        self.otel_ids = yes;
        self
    }

    /// The field configuration.
    pub fn context_fields(&self) -> &ContextFields {
        &self.fields
    }

    fn ids(&self) -> Option<Ids> {
        #[cfg(feature = "opentelemetry")]
        if self.otel_ids {
            return crate::otel::current_ids();
        }
        None
    }

    /// Appends the context fields to `line` (the wrapped formatter's output) and makes
    /// the line safe.
    fn finish_line(&self, line: &mut String, ansi: bool, event: &Event<'_>) -> fmt::Result {
        let ids = self.ids();
        let ended = line.ends_with('\n');
        match self.output {
            Output::Text => {
                if self.sanitize {
                    sanitize_line(line, LineKind::Text { keep_ansi: ansi });
                }
                if ended {
                    line.pop();
                }
                let sep = if line.is_empty() || line.ends_with(' ') {
                    ""
                } else {
                    " "
                };
                // The event's own fields are on the line already: a context field of
                // the same name is left out (the ids excepted: `DedupFields` takes
                // those out of the event, and the context's are written).
                let mut names = Names::default();
                for f in event.fields() {
                    if !crate::dedup::CONTEXT_FIELD_NAMES.contains(&f.name()) {
                        names.add_name(f.name());
                    }
                }
                let mut sink = TextSink {
                    out: line,
                    ansi,
                    sep,
                    written: 0,
                    names,
                };
                with_context(|ctx| self.fields.write(ctx, ids, &mut sink))?;
                if ended {
                    line.push('\n');
                }
            }
            Output::Pretty => {
                // `Pretty` ends an event with an empty line; ours goes before it.
                let blank = line.ends_with("\n\n");
                if blank {
                    line.pop();
                } else if !ended && !line.is_empty() {
                    line.push('\n');
                }
                let mark = line.len();
                line.push_str(if ansi {
                    "    \x1b[2;3mwith\x1b[0m"
                } else {
                    "    with"
                });
                let prefix = line.len();
                let mut sink = TextSink {
                    out: line,
                    ansi,
                    sep: " ",
                    written: 0,
                    names: Names::default(),
                };
                with_context(|ctx| self.fields.write(ctx, ids, &mut sink))?;
                if line.len() == prefix {
                    line.truncate(mark);
                } else {
                    line.push('\n');
                }
                if blank {
                    line.push('\n');
                }
            }
            Output::Json => {
                if self.sanitize {
                    sanitize_line(line, LineKind::Json);
                }
                let body_end = line.trim_end().len();
                if !line[..body_end].ends_with('}') {
                    // Not a JSON object: leave it alone rather than break it.
                    return Ok(());
                }
                let suffix_at = body_end - 1;
                let before = line[..suffix_at].trim_end();
                let comma = !before.ends_with('{');
                // The members the wrapped formatter wrote: a context field never adds a
                // second member of the same name (readers of JSON keep the last one).
                let mut names = Names::default();
                top_level_keys(&line[..body_end], |k| names.add_json_key(k));
                let nest = self.fields.json_key();
                if let Some(key) = nest {
                    if names.contains(key) {
                        // The nest key is taken: leave the line as the formatter wrote it.
                        return Ok(());
                    }
                    names = Names::default();
                }
                // Move the closing brace and whatever followed it aside.
                let mut tail = smallvec::SmallVec::<[u8; 4]>::new();
                tail.extend_from_slice(&line.as_bytes()[suffix_at..]);
                line.truncate(suffix_at);
                let mut sink = JsonSink {
                    out: line,
                    nest,
                    comma,
                    written: 0,
                    names,
                };
                let res = with_context(|ctx| self.fields.write(ctx, ids, &mut sink));
                sink.finish();
                line.push_str(std::str::from_utf8(&tail).unwrap_or("}\n"));
                res?;
            }
        }
        Ok(())
    }
}

/// Calls `each` with the raw text (between the quotes) of every top-level member name
/// of the JSON object `s` (the wrapped formatter's output, so well formed).
fn top_level_keys(s: &str, mut each: impl FnMut(&str)) {
    let b = s.as_bytes();
    let Some(open) = b.iter().position(|&c| c == b'{') else {
        return;
    };
    let mut i = open + 1;
    let mut depth = 0usize;
    let mut expect_key = true;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                let end = i.min(b.len());
                if depth == 0 && expect_key {
                    if let Some(key) = s.get(start..end) {
                        each(key);
                    }
                    expect_key = false;
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth == 0 {
                    return;
                }
                depth -= 1;
            }
            b',' if depth == 0 => expect_key = true,
            _ => {}
        }
        i += 1;
    }
}

/// Runs `f` with the current context (by reference, no clone), or with `None` outside
/// any scope.
fn with_context(f: impl FnOnce(Option<&Context>) -> fmt::Result) -> fmt::Result {
    let mut f = Some(f);
    match Context::with_current(|ctx| (f.take().expect("called once"))(Some(ctx))) {
        Some(r) => r,
        None => match f.take() {
            Some(f) => f(None),
            None => Ok(()),
        },
    }
}

thread_local! {
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Lines longer than this do not keep their buffer alive between events.
const KEEP_CAPACITY: usize = 16 * 1024;

impl<S, N, F> FormatEvent<S, N> for ContextFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ansi = writer.has_ansi_escapes();
        let inner = match (&self.coloured, ansi) {
            (Some(coloured), true) => coloured,
            _ => &self.inner,
        };
        let mut render = |line: &mut String| {
            line.clear();
            inner.format_event(ctx, Writer::new(line), event)?;
            self.finish_line(line, ansi, event)?;
            writer.write_str(line)
        };
        // A reentrant event (one logged while formatting another) gets its own buffer.
        let pooled = LINE.try_with(|cell| {
            let mut line = cell.try_borrow_mut().ok()?;
            let r = render(&mut line);
            if line.capacity() > KEEP_CAPACITY {
                *line = String::new();
            }
            Some(r)
        });
        match pooled {
            Ok(Some(r)) => r,
            _ => render(&mut String::new()),
        }
    }
}
