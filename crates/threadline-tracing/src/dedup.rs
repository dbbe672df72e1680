//! Field formatters that leave out what [`ContextFormat`](crate::ContextFormat) writes
//! itself, so a request span that records the ids (the threadline server layer's does)
//! does not print them a second time on every line.

use std::fmt::{self, Write as _};

use tracing_core::field::{Field, Visit};
use tracing_core::span::Record;
use tracing_subscriber::field::{MakeVisitor, RecordFields, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::{DefaultFields, FormatFields, Writer};

use crate::sanitize::{write_json_content, write_json_string};

/// The names [`DedupFields`] and [`DedupJsonFields`] leave out by default: the ids that
/// [`ContextFields`](crate::ContextFields) writes under its default names.
pub const CONTEXT_FIELD_NAMES: &[&str] = &["correlation_id", "trace_id", "span_id"];

/// Formats span and event fields like `N` (tracing-subscriber's [`DefaultFields`] by
/// default), minus the fields named in [`CONTEXT_FIELD_NAMES`] (or the names given
/// with [`DedupFields::names`]), which the context already writes on every line.
///
/// With it, the server layer's request span reads `request{method=GET route=/orders/{id}
/// status=200}:` instead of repeating the correlation, trace and span ids that follow
/// at the end of the line. [`layer`](crate::layer) uses it.
///
/// ```
/// use tracing_subscriber::fmt;
/// use threadline_tracing::{ContextFormat, DedupFields};
///
/// let layer = fmt::layer()
///     .fmt_fields(DedupFields::default())
///     .event_format(ContextFormat::compact());
/// # let _: fmt::Layer<tracing_subscriber::Registry, _, _> = layer;
/// ```
///
/// An event's own field of one of those names is left out too: name such fields
/// differently (`upstream_trace_id`).
#[derive(Clone, Copy, Debug)]
pub struct DedupFields<N = DefaultFields> {
    inner: N,
    names: &'static [&'static str],
}

impl Default for DedupFields<DefaultFields> {
    fn default() -> Self {
        DedupFields::new(DefaultFields::new())
    }
}

impl<N> DedupFields<N> {
    /// Wraps a field formatter built from a visitor (`DefaultFields`, or one made with
    /// `tracing_subscriber::field::MakeExt`).
    pub fn new(inner: N) -> Self {
        DedupFields {
            inner,
            names: CONTEXT_FIELD_NAMES,
        }
    }

    /// Leaves out these names instead (when the context fields are renamed, say).
    pub fn names(mut self, names: &'static [&'static str]) -> Self {
        self.names = names;
        self
    }
}

impl<'a, N> MakeVisitor<Writer<'a>> for DedupFields<N>
where
    N: MakeVisitor<Writer<'a>>,
{
    type Visitor = DedupVisitor<N::Visitor>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        DedupVisitor {
            inner: self.inner.make_visitor(target),
            names: self.names,
        }
    }
}

/// The visitor of [`DedupFields`]: passes every field but the left-out ones on.
#[derive(Debug)]
pub struct DedupVisitor<V> {
    inner: V,
    names: &'static [&'static str],
}

impl<V> DedupVisitor<V> {
    fn keep(&self, field: &Field) -> bool {
        !self.names.contains(&field.name())
    }
}

impl<V: Visit> Visit for DedupVisitor<V> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.keep(field) {
            self.inner.record_debug(field, value);
        }
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.keep(field) {
            self.inner.record_f64(field, value);
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.keep(field) {
            self.inner.record_i64(field, value);
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.keep(field) {
            self.inner.record_u64(field, value);
        }
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        if self.keep(field) {
            self.inner.record_i128(field, value);
        }
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        if self.keep(field) {
            self.inner.record_u128(field, value);
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.keep(field) {
            self.inner.record_bool(field, value);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.keep(field) {
            self.inner.record_str(field, value);
        }
    }
    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        if self.keep(field) {
            self.inner.record_bytes(field, value);
        }
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.keep(field) {
            self.inner.record_error(field, value);
        }
    }
}

impl<V: VisitOutput<fmt::Result>> VisitOutput<fmt::Result> for DedupVisitor<V> {
    fn finish(self) -> fmt::Result {
        self.inner.finish()
    }
}

impl<V: VisitFmt> VisitFmt for DedupVisitor<V> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        self.inner.writer()
    }
}

/// The JSON counterpart of [`DedupFields`]: formats span fields as one JSON object,
/// like tracing-subscriber's `JsonFields`, minus the fields named in
/// [`CONTEXT_FIELD_NAMES`]. Use it as the layer's field formatter with a JSON event
/// format; [`json_layer`](crate::json_layer) does.
///
/// Fields recorded on a span later (`span.record("status", 200)`) are appended to the
/// object without re-parsing it.
#[derive(Clone, Copy, Debug)]
pub struct DedupJsonFields {
    names: &'static [&'static str],
}

impl Default for DedupJsonFields {
    fn default() -> Self {
        DedupJsonFields {
            names: CONTEXT_FIELD_NAMES,
        }
    }
}

impl DedupJsonFields {
    /// Leaves out [`CONTEXT_FIELD_NAMES`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Leaves out these names instead.
    pub fn names(mut self, names: &'static [&'static str]) -> Self {
        self.names = names;
        self
    }

    fn record_into(
        &self,
        out: &mut dyn fmt::Write,
        first: bool,
        fields: impl RecordFields,
    ) -> fmt::Result {
        let mut v = JsonObjectVisitor {
            out,
            first,
            names: self.names,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

impl<'w> FormatFields<'w> for DedupJsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        writer.write_char('{')?;
        self.record_into(&mut writer, true, fields)?;
        writer.write_char('}')
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        if !current.fields.ends_with('}') {
            current.fields.clear();
            return self.format_fields(current.as_writer(), fields);
        }
        current.fields.pop();
        let first = current.fields == "{";
        let result = self.record_into(&mut current.fields, first, fields);
        current.fields.push('}');
        result
    }
}

struct JsonObjectVisitor<'a> {
    out: &'a mut dyn fmt::Write,
    first: bool,
    names: &'static [&'static str],
    result: fmt::Result,
}

impl JsonObjectVisitor<'_> {
    /// Writes `"name":` and answers whether to go on (the field is not left out).
    fn key(&mut self, field: &Field) -> bool {
        let name = field.name();
        if self.result.is_err() || self.names.contains(&name) || name.starts_with("log.") {
            return false;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        let sep = if self.first { "" } else { "," };
        self.first = false;
        self.result = self
            .out
            .write_str(sep)
            .and_then(|()| write_json_string(&mut self.out, name))
            .and_then(|()| self.out.write_char(':'));
        self.result.is_ok()
    }

    fn raw(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.key(field) {
            self.result = self.out.write_fmt(value);
        }
    }
}

/// Escapes everything written through it as the inside of a JSON string.
struct JsonEscaping<'a>(&'a mut dyn fmt::Write);

impl fmt::Write for JsonEscaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_json_content(&mut self.0, s)
    }
}

impl Visit for JsonObjectVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.key(field) {
            self.result = self
                .out
                .write_char('"')
                .and_then(|()| write!(JsonEscaping(self.out), "{value:?}"))
                .and_then(|()| self.out.write_char('"'));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.key(field) {
            self.result = write_json_string(&mut self.out, value);
        }
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.raw(field, format_args!("{value}"));
        } else {
            self.raw(field, format_args!("null"));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw(field, format_args!("{value}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw(field, format_args!("{value}"));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.raw(field, format_args!("{value}"));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.raw(field, format_args!("{value}"));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field, format_args!("{value}"));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.key(field) {
            self.result = self
                .out
                .write_char('"')
                .and_then(|()| write!(JsonEscaping(self.out), "{value}"))
                .and_then(|()| self.out.write_char('"'));
        }
    }
}
