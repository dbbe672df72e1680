//! [`ContextFields`]: which parts of a [`threadline::Context`] become log fields, and
//! under which names.

use std::borrow::Cow;
use std::fmt;

use threadline::Context;
use threadline::codec::{SpanId, TraceId};

use crate::sanitize::{MAX_VALUE_BYTES, clean_value, write_json_string, write_text_value};

type Name = Cow<'static, str>;

/// Which parts of the current [`Context`] are written on each event, and under which
/// names.
///
/// The defaults:
///
/// | field | from |
/// |---|---|
/// | `correlation_id` | the correlation id |
/// | `trace_id`, `span_id` | the hop's W3C trace context (32 and 16 lower-case hex digits) |
/// | `tenant_id` | a captured header `x-tenant-id`: the name without `x-`, `-` → `_` |
/// | `user.id` | a field bound with [`threadline::bind`], under its own name |
///
/// Optional: `parent_id` (the caller's span), `trace_sampled`, chosen baggage members.
/// A local field wins over a header that maps to the same name (a tenant id bound from
/// the authenticated user beats the one the caller sent).
///
/// ```
/// use threadline_tracing::ContextFields;
///
/// let fields = ContextFields::new()
///     .correlation_id_name("request_id")
///     .header("x-tenant-id", "tenant")
///     .skip_header("x-debug")
///     .field("user.id", "usr.id")
///     .baggage("synthetic", "synthetic")
///     .with_parent_id("parent_span_id")
///     .redact("user.email")
///     .nest_under("ctx");
/// # let _ = fields;
/// ```
#[derive(Clone, Debug)]
pub struct ContextFields {
    correlation_id: Option<Name>,
    trace_id: Option<Name>,
    span_id: Option<Name>,
    parent_id: Option<Name>,
    sampled: Option<Name>,
    all_headers: bool,
    header_names: Vec<(Name, Option<Name>)>,
    local_fields: bool,
    field_names: Vec<(Name, Option<Name>)>,
    baggage: Vec<(Name, Name)>,
    redact: Vec<Name>,
    redaction: Name,
    json_key: Option<Name>,
}

impl Default for ContextFields {
    fn default() -> Self {
        ContextFields {
            correlation_id: Some(Cow::Borrowed("correlation_id")),
            trace_id: Some(Cow::Borrowed("trace_id")),
            span_id: Some(Cow::Borrowed("span_id")),
            parent_id: None,
            sampled: None,
            all_headers: true,
            header_names: Vec::new(),
            local_fields: true,
            field_names: Vec::new(),
            baggage: Vec::new(),
            redact: Vec::new(),
            redaction: Cow::Borrowed("[redacted]"),
            json_key: None,
        }
    }
}

impl ContextFields {
    /// The defaults (see the type's docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the correlation id field (default `correlation_id`).
    pub fn correlation_id_name(mut self, name: impl Into<Name>) -> Self {
        self.correlation_id = Some(name.into());
        self
    }

    /// Leaves the correlation id out.
    pub fn without_correlation_id(mut self) -> Self {
        self.correlation_id = None;
        self
    }

    /// Names the trace id field (default `trace_id`).
    pub fn trace_id_name(mut self, name: impl Into<Name>) -> Self {
        self.trace_id = Some(name.into());
        self
    }

    /// Leaves the trace id out.
    pub fn without_trace_id(mut self) -> Self {
        self.trace_id = None;
        self
    }

    /// Names the field of this hop's span id (default `span_id`).
    pub fn span_id_name(mut self, name: impl Into<Name>) -> Self {
        self.span_id = Some(name.into());
        self
    }

    /// Leaves the span id out.
    pub fn without_span_id(mut self) -> Self {
        self.span_id = None;
        self
    }

    /// Adds the caller's span id (the inbound `traceparent`'s parent id) under `name`.
    pub fn with_parent_id(mut self, name: impl Into<Name>) -> Self {
        self.parent_id = Some(name.into());
        self
    }

    /// Adds the sampled flag (`true`/`false`) under `name`.
    pub fn with_sampled(mut self, name: impl Into<Name>) -> Self {
        self.sampled = Some(name.into());
        self
    }

    /// Writes the captured header `header` (case-insensitive) under `name` instead of
    /// the derived name.
    pub fn header(mut self, header: impl Into<Name>, name: impl Into<Name>) -> Self {
        let header = lower(header.into());
        self.header_names.retain(|(h, _)| *h != header);
        self.header_names.push((header, Some(name.into())));
        self
    }

    /// Never writes the captured header `header`.
    pub fn skip_header(mut self, header: impl Into<Name>) -> Self {
        let header = lower(header.into());
        self.header_names.retain(|(h, _)| *h != header);
        self.header_names.push((header, None));
        self
    }

    /// Writes only the headers named with [`ContextFields::header`]; by default every
    /// captured header is written under its derived name (`x-tenant-id` → `tenant_id`).
    pub fn only_named_headers(mut self) -> Self {
        self.all_headers = false;
        self
    }

    /// Writes the local field `field` (as bound with [`threadline::bind`]) under `name`.
    pub fn field(mut self, field: impl Into<Name>, name: impl Into<Name>) -> Self {
        let field = field.into();
        self.field_names.retain(|(f, _)| *f != field);
        self.field_names.push((field, Some(name.into())));
        self
    }

    /// Never writes the local field `field`.
    pub fn skip_field(mut self, field: impl Into<Name>) -> Self {
        let field = field.into();
        self.field_names.retain(|(f, _)| *f != field);
        self.field_names.push((field, None));
        self
    }

    /// Leaves out every local field (bound with [`threadline::bind`]).
    pub fn without_local_fields(mut self) -> Self {
        self.local_fields = false;
        self
    }

    /// Writes the baggage member `key` (percent-decoded) under `name`. Baggage is
    /// written only for the keys named here: it comes from upstream and can be large.
    pub fn baggage(mut self, key: impl Into<Name>, name: impl Into<Name>) -> Self {
        self.baggage.push((key.into(), name.into()));
        self
    }

    /// Writes `[redacted]` (see [`ContextFields::redaction_text`]) instead of the value
    /// of this field. `name` is matched against the output name (`tenant_id`), a local
    /// field's own name (`user.email`), a header's inbound name (`x-api-key`,
    /// case-insensitive) and a baggage key.
    pub fn redact(mut self, name: impl Into<Name>) -> Self {
        self.redact.push(name.into());
        self
    }

    /// [`ContextFields::redact`] for several names.
    pub fn redact_all<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Name>,
    {
        self.redact.extend(names.into_iter().map(Into::into));
        self
    }

    /// The text written in place of a redacted value (default `[redacted]`).
    pub fn redaction_text(mut self, text: impl Into<Name>) -> Self {
        self.redaction = text.into();
        self
    }

    /// In JSON output, writes the fields as one object under `key`
    /// (`{"…","ctx":{"correlation_id":"…"}}`) instead of at the top level. Text output
    /// is not affected.
    pub fn nest_under(mut self, key: impl Into<Name>) -> Self {
        self.json_key = Some(key.into());
        self
    }

    /// Writes the fields at the top level of JSON output (the default).
    pub fn flatten(mut self) -> Self {
        self.json_key = None;
        self
    }

    fn redacted(&self, names: &[&str]) -> bool {
        !self.redact.is_empty()
            && self
                .redact
                .iter()
                .any(|r| names.iter().any(|n| r.eq_ignore_ascii_case(n)))
    }

    fn header_name<'a>(&'a self, header: &'a str) -> Option<OutName<'a>> {
        match self.header_names.iter().find(|(h, _)| h == header) {
            Some((_, Some(name))) => Some(OutName::Plain(name)),
            Some((_, None)) => None,
            None if self.all_headers => Some(OutName::Header(header)),
            None => None,
        }
    }

    fn field_name<'a>(&'a self, field: &'a str) -> Option<&'a str> {
        match self.field_names.iter().find(|(f, _)| f == field) {
            Some((_, name)) => name.as_deref(),
            None => Some(field),
        }
    }

    /// Writes the fields of `ctx` (and the trace ids `ids`, which take precedence over
    /// the context's own) into `sink`.
    pub(crate) fn write<S: Sink>(
        &self,
        ctx: Option<&Context>,
        ids: Option<Ids>,
        sink: &mut S,
    ) -> fmt::Result {
        let own = ctx.and_then(Context::trace);
        let ids = match ids {
            // A tracer's span that is this hop's own span: the caller is the context's.
            Some(mut ids) => {
                if let Some(t) = own.filter(|t| t.span_id() == ids.span_id) {
                    ids.parent_id = ids.parent_id.or(t.parent_id());
                }
                Some(ids)
            }
            None => own.map(|t| Ids {
                trace_id: t.trace_id(),
                span_id: t.span_id(),
                parent_id: t.parent_id(),
                sampled: t.is_sampled(),
            }),
        };
        if let (Some(name), Some(id)) =
            (&self.correlation_id, ctx.and_then(Context::correlation_id))
        {
            self.value(sink, OutName::Plain(name), &[], id.as_str())?;
        }
        if let Some(ids) = ids {
            if let Some(name) = &self.trace_id {
                let hex = ids.trace_id.to_hex();
                sink.hex_field(OutName::Plain(name), as_str(&hex))?;
            }
            if let Some(name) = &self.span_id {
                let hex = ids.span_id.to_hex();
                sink.hex_field(OutName::Plain(name), as_str(&hex))?;
            }
            if let (Some(name), Some(parent)) = (&self.parent_id, ids.parent_id) {
                let hex = parent.to_hex();
                sink.hex_field(OutName::Plain(name), as_str(&hex))?;
            }
            if let Some(name) = &self.sampled {
                sink.bool_field(OutName::Plain(name), ids.sampled)?;
            }
        }
        let Some(ctx) = ctx else { return Ok(()) };
        for (header, value) in ctx.headers() {
            let header = header.as_str();
            let Some(name) = self.header_name(header) else {
                continue;
            };
            // A local field of the same name wins.
            if self.local_fields
                && ctx
                    .fields()
                    .any(|(f, _)| self.field_name(f).is_some_and(|f| name.is(f)))
            {
                continue;
            }
            self.value(sink, name, &[header], value)?;
        }
        if let (false, Some(baggage)) = (self.baggage.is_empty(), ctx.baggage()) {
            for (key, name) in &self.baggage {
                if let Some(value) = baggage.get(key) {
                    self.value(sink, OutName::Plain(name), &[key], &value)?;
                }
            }
        }
        if self.local_fields {
            for (field, value) in ctx.fields() {
                if let Some(name) = self.field_name(field) {
                    self.value(sink, OutName::Plain(name), &[field], value)?;
                }
            }
        }
        Ok(())
    }

    fn value<S: Sink>(
        &self,
        sink: &mut S,
        name: OutName<'_>,
        also: &[&str],
        value: &str,
    ) -> fmt::Result {
        let redacted = !self.redact.is_empty() && {
            let mut derived = SmallName::default();
            let out = name.resolve(&mut derived);
            self.redacted(&[out]) || self.redacted(also)
        };
        sink.str_field(name, if redacted { &self.redaction } else { value })
    }

    pub(crate) fn json_key(&self) -> Option<&str> {
        self.json_key.as_deref()
    }

    /// The key the fields are nested under in JSON output, if any
    /// ([`ContextFields::nest_under`]).
    pub fn nested_under(&self) -> Option<&str> {
        self.json_key.as_deref()
    }

    /// Calls `each` with every field of `ctx` this configuration writes, in the order
    /// the formatter writes them, under the same names (renamed, redacted, each name
    /// once: the first wins) — for a layer of your own, or any consumer that is not
    /// `tracing_subscriber::fmt`.
    ///
    /// Values are [cleaned](crate::sanitize::clean_value): control and other
    /// [dangerous](crate::sanitize::is_dangerous) characters arrive as visible escapes,
    /// and values are cut at [`MAX_VALUE_BYTES`](crate::sanitize::MAX_VALUE_BYTES).
    /// The trace and span ids are the context's own; see
    /// [`ContextFields::visit_current`] for the ids of the current OpenTelemetry span.
    ///
    /// ```
    /// use threadline::Policy;
    /// use threadline_tracing::{ContextFields, ContextValue};
    ///
    /// let ctx = Policy::default().new_root().with_field("user.id", "alice");
    /// let mut seen = Vec::new();
    /// ContextFields::new().without_trace_id().without_span_id().visit(&ctx, |name, value| {
    ///     seen.push(format!("{name}={value}"));
    /// });
    /// assert_eq!(seen.len(), 2);
    /// assert!(seen[0].starts_with("correlation_id="));
    /// assert_eq!(seen[1], "user.id=alice");
    /// # let _ = ContextValue::Bool(true);
    /// ```
    pub fn visit(&self, ctx: &Context, each: impl FnMut(&str, ContextValue<'_>)) {
        let mut sink = VisitSink {
            each,
            names: Names::default(),
        };
        let _ = self.write(Some(ctx), None, &mut sink);
    }

    /// [`ContextFields::visit`] over the current context (the one the calling thread
    /// runs in); does nothing outside any scope. This is what an event-time consumer
    /// calls: `Layer::on_event` runs on the thread that emitted the event, inside its
    /// scope, so it sees fields bound a moment before. With the `opentelemetry`
    /// feature the trace and span ids come from the current OpenTelemetry span when
    /// there is one, as in [`ContextFormat`](crate::ContextFormat)'s output.
    pub fn visit_current(&self, each: impl FnMut(&str, ContextValue<'_>)) {
        let mut sink = VisitSink {
            each,
            names: Names::default(),
        };
        #[cfg(feature = "opentelemetry")]
        let ids = crate::otel::current_ids();
        #[cfg(not(feature = "opentelemetry"))]
        let ids = None;
        Context::with_current(|ctx| {
            let _ = self.write(Some(ctx), ids, &mut sink);
        });
    }
}

/// A context field's value as [`ContextFields::visit`] hands it over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContextValue<'a> {
    /// Text: an id, a header value, a bound field ([cleaned](crate::sanitize::clean_value)).
    Str(&'a str),
    /// The sampled flag ([`ContextFields::with_sampled`]).
    Bool(bool),
}

impl<'a> ContextValue<'a> {
    /// The value as text (`"true"`/`"false"` for a flag).
    pub fn as_str(&self) -> &'a str {
        match *self {
            ContextValue::Str(s) => s,
            ContextValue::Bool(true) => "true",
            ContextValue::Bool(false) => "false",
        }
    }
}

impl fmt::Display for ContextValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Hands each field to a closure, with names resolved and values cleaned.
struct VisitSink<F> {
    each: F,
    names: Names,
}

impl<F: FnMut(&str, ContextValue<'_>)> VisitSink<F> {
    fn emit(&mut self, name: OutName<'_>, value: ContextValue<'_>) {
        if !self.names.admit(name.hash()) {
            return;
        }
        let mut buf = SmallName::default();
        let name = name.resolve(&mut buf);
        (self.each)(&clean_value(name, MAX_VALUE_BYTES), value);
    }
}

impl<F: FnMut(&str, ContextValue<'_>)> Sink for VisitSink<F> {
    fn str_field(&mut self, name: OutName<'_>, value: &str) -> fmt::Result {
        let value = clean_value(value, MAX_VALUE_BYTES);
        self.emit(name, ContextValue::Str(&value));
        Ok(())
    }

    fn hex_field(&mut self, name: OutName<'_>, hex: &str) -> fmt::Result {
        self.emit(name, ContextValue::Str(hex));
        Ok(())
    }

    fn bool_field(&mut self, name: OutName<'_>, value: bool) -> fmt::Result {
        self.emit(name, ContextValue::Bool(value));
        Ok(())
    }
}

fn lower(name: Name) -> Name {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        name
    }
}

fn as_str(hex: &[u8]) -> &str {
    // Hex digits are ASCII.
    std::str::from_utf8(hex).unwrap_or_default()
}

/// The ids of this moment: the current OpenTelemetry span's (feature
/// `opentelemetry`), else the current context's.
#[cfg_attr(not(feature = "opentelemetry-logs"), allow(dead_code))]
pub(crate) fn current_ids() -> Option<Ids> {
    #[cfg(feature = "opentelemetry")]
    if let Some(ids) = crate::otel::current_ids() {
        return Some(ids);
    }
    Context::with_current(|ctx| {
        ctx.trace().map(|t| Ids {
            trace_id: t.trace_id(),
            span_id: t.span_id(),
            parent_id: t.parent_id(),
            sampled: t.is_sampled(),
        })
    })
    .flatten()
}

/// Trace ids to write, from the threadline context or from a tracer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ids {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent_id: Option<SpanId>,
    pub(crate) sampled: bool,
}

/// An output field name: configured, or derived from a header name on the fly
/// (`x-tenant-id` → `tenant_id`) without allocating.
#[derive(Clone, Copy, Debug)]
pub(crate) enum OutName<'a> {
    Plain(&'a str),
    Header(&'a str),
}

/// Room for a derived header name on the stack.
type SmallName = smallvec::SmallVec<[u8; 64]>;

impl<'a> OutName<'a> {
    fn derived(header: &str) -> impl Iterator<Item = char> + '_ {
        let h = header
            .strip_prefix("x-")
            .filter(|rest| !rest.is_empty())
            .unwrap_or(header);
        h.chars().map(|c| if c == '-' { '_' } else { c })
    }

    /// Whether this name equals `other`.
    fn is(&self, other: &str) -> bool {
        match self {
            OutName::Plain(n) => *n == other,
            OutName::Header(h) => Self::derived(h).eq(other.chars()),
        }
    }

    fn resolve<'b>(&self, buf: &'b mut SmallName) -> &'b str
    where
        'a: 'b,
    {
        match self {
            OutName::Plain(n) => n,
            OutName::Header(h) => {
                buf.clear();
                let mut tmp = [0u8; 4];
                for c in Self::derived(h) {
                    buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                }
                std::str::from_utf8(buf).unwrap_or_default()
            }
        }
    }

    /// Writes the name; header-derived names are tokens, configured ones are escaped
    /// by the caller's rules.
    fn write_raw(&self, out: &mut String) {
        match self {
            OutName::Plain(n) => out.push_str(n),
            OutName::Header(h) => {
                let h = h.strip_prefix("x-").filter(|r| !r.is_empty()).unwrap_or(h);
                for (i, part) in h.split('-').enumerate() {
                    if i > 0 {
                        out.push('_');
                    }
                    out.push_str(part);
                }
            }
        }
    }
}

/// The names already on a line (as 64-bit hashes of their text), so that no name is
/// written twice: the first field under a name wins, and a name the wrapped formatter
/// already wrote (JSON) is not written again.
#[derive(Debug, Default)]
pub(crate) struct Names(smallvec::SmallVec<[u64; 16]>);

impl Names {
    /// Records `hash`; `false` when it was already there.
    fn admit(&mut self, hash: u64) -> bool {
        if self.0.contains(&hash) {
            return false;
        }
        self.0.push(hash);
        true
    }

    /// Records a member name as it appears between the quotes of a JSON object key.
    pub(crate) fn add_json_key(&mut self, raw: &str) {
        let hash = if raw.contains('\\') {
            fnv(unescape_json(raw).bytes())
        } else {
            fnv(raw.bytes())
        };
        self.admit(hash);
    }

    /// Records a plain name (an event field's).
    pub(crate) fn add_name(&mut self, name: &str) {
        self.admit(fnv(name.bytes()));
    }

    /// Whether `name` is recorded.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.0.contains(&fnv(name.bytes()))
    }
}

/// FNV-1a over the name's bytes.
fn fnv(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The text of a JSON string's content (escapes resolved; a malformed escape is kept
/// as written).
fn unescape_json(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(c) => out.push(c),
                    None => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

impl OutName<'_> {
    fn hash(&self) -> u64 {
        match self {
            OutName::Plain(n) => fnv(n.bytes()),
            // Derived names are ASCII (header names are).
            OutName::Header(h) => fnv(Self::derived(h).map(|c| c as u8)),
        }
    }
}

/// Where fields go: text (`name=value`) or JSON (`"name":"value"`).
pub(crate) trait Sink {
    fn str_field(&mut self, name: OutName<'_>, value: &str) -> fmt::Result;
    /// A value that needs no escaping: lower-case hex digits.
    fn hex_field(&mut self, name: OutName<'_>, hex: &str) -> fmt::Result;
    fn bool_field(&mut self, name: OutName<'_>, value: bool) -> fmt::Result;
}

fn name_is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b'='))
}

/// ` name=value` pairs, logfmt style, with italic names when colours are on (like
/// tracing-subscriber's own fields).
pub(crate) struct TextSink<'a> {
    pub(crate) out: &'a mut String,
    pub(crate) ansi: bool,
    /// Separator before the first field (a space, or nothing at the start of a line).
    pub(crate) sep: &'static str,
    pub(crate) written: usize,
    pub(crate) names: Names,
}

impl TextSink<'_> {
    /// Writes ` name=`; `false` (and nothing written) for a name already on the line.
    fn name(&mut self, name: OutName<'_>) -> bool {
        if !self.names.admit(name.hash()) {
            return false;
        }
        let sep = if self.written == 0 { self.sep } else { " " };
        self.out.push_str(sep);
        self.written += 1;
        if self.ansi {
            self.out.push_str("\x1b[3m");
        }
        match name {
            OutName::Plain(n) if !name_is_token(n) => {
                let _ = write_text_value(self.out, n);
            }
            _ => name.write_raw(self.out),
        }
        self.out.push_str(if self.ansi {
            "\x1b[0m\x1b[2m=\x1b[0m"
        } else {
            "="
        });
        true
    }
}

impl Sink for TextSink<'_> {
    fn str_field(&mut self, name: OutName<'_>, value: &str) -> fmt::Result {
        if !self.name(name) {
            return Ok(());
        }
        write_text_value(self.out, value)
    }

    fn hex_field(&mut self, name: OutName<'_>, hex: &str) -> fmt::Result {
        if self.name(name) {
            self.out.push_str(hex);
        }
        Ok(())
    }

    fn bool_field(&mut self, name: OutName<'_>, value: bool) -> fmt::Result {
        if self.name(name) {
            self.out.push_str(if value { "true" } else { "false" });
        }
        Ok(())
    }
}

/// `,"name":"value"` members appended to a JSON object, optionally inside a nested
/// object opened on the first field.
pub(crate) struct JsonSink<'a> {
    pub(crate) out: &'a mut String,
    pub(crate) nest: Option<&'a str>,
    /// Whether the object being appended to already has members.
    pub(crate) comma: bool,
    pub(crate) written: usize,
    /// The names already in the object written to (the wrapped formatter's members,
    /// when the fields go at the top level), and those written since.
    pub(crate) names: Names,
}

impl JsonSink<'_> {
    /// Writes `,"name":`; `Ok(false)` (and nothing written) for a name already in the
    /// object.
    fn name(&mut self, name: OutName<'_>) -> Result<bool, fmt::Error> {
        if !self.names.admit(name.hash()) {
            return Ok(false);
        }
        if let (0, Some(key)) = (self.written, self.nest) {
            if self.comma {
                self.out.push(',');
            }
            write_json_string(self.out, key)?;
            self.out.push_str(":{");
            self.comma = false;
        }
        if self.comma {
            self.out.push(',');
        }
        self.comma = true;
        self.written += 1;
        match name {
            OutName::Plain(n) => write_json_string(self.out, n)?,
            OutName::Header(_) => {
                self.out.push('"');
                name.write_raw(self.out);
                self.out.push('"');
            }
        }
        self.out.push(':');
        Ok(true)
    }

    /// Closes the nested object, if one was opened.
    pub(crate) fn finish(self) {
        if self.written > 0 && self.nest.is_some() {
            self.out.push('}');
        }
    }
}

impl Sink for JsonSink<'_> {
    fn str_field(&mut self, name: OutName<'_>, value: &str) -> fmt::Result {
        if !self.name(name)? {
            return Ok(());
        }
        write_json_string(self.out, value)
    }

    fn hex_field(&mut self, name: OutName<'_>, hex: &str) -> fmt::Result {
        if self.name(name)? {
            self.out.push('"');
            self.out.push_str(hex);
            self.out.push('"');
        }
        Ok(())
    }

    fn bool_field(&mut self, name: OutName<'_>, value: bool) -> fmt::Result {
        if self.name(name)? {
            self.out.push_str(if value { "true" } else { "false" });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use threadline::{Policy, Trust};

    fn ctx() -> Context {
        let policy = Policy::builder()
            .header("x-tenant-id")
            .header("x-api-key")
            .header("x-region")
            .build()
            .unwrap();
        let mut h = http::HeaderMap::new();
        h.insert("x-correlation-id", "req-1".parse().unwrap());
        h.insert("x-tenant-id", "acme".parse().unwrap());
        h.insert("x-api-key", "secret".parse().unwrap());
        h.insert("x-region", "eu west".parse().unwrap());
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        h.insert("baggage", "synthetic=true,other=x".parse().unwrap());
        policy
            .capture(&h, Trust::Trusted)
            .context
            .with_field("user.id", "alice")
    }

    fn text(fields: &ContextFields, ctx: &Context) -> String {
        let mut out = String::new();
        let mut sink = TextSink {
            out: &mut out,
            ansi: false,
            sep: "",
            written: 0,
            names: Names::default(),
        };
        fields.write(Some(ctx), None, &mut sink).unwrap();
        out
    }

    #[test]
    fn defaults() {
        let c = ctx();
        let span = c.span_id().unwrap();
        assert_eq!(
            text(&ContextFields::new(), &c),
            format!(
                "correlation_id=req-1 trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id={span} \
                 tenant_id=acme api_key=secret region=\"eu west\" user.id=alice"
            )
        );
    }

    #[test]
    fn renames_skips_redaction_and_extras() {
        let c = ctx();
        let fields = ContextFields::new()
            .correlation_id_name("request_id")
            .without_span_id()
            .with_parent_id("parent_id")
            .with_sampled("sampled")
            .header("X-Tenant-Id", "tenant")
            .skip_header("x-region")
            .field("user.id", "usr.id")
            .baggage("synthetic", "synthetic")
            .redact("X-API-KEY");
        assert_eq!(
            text(&fields, &c),
            "request_id=req-1 trace_id=4bf92f3577b34da6a3ce929d0e0e4736 \
             parent_id=00f067aa0ba902b7 sampled=true tenant=acme api_key=[redacted] \
             synthetic=true usr.id=alice"
        );
        let only = ContextFields::new()
            .without_trace_id()
            .without_span_id()
            .without_correlation_id()
            .without_local_fields()
            .only_named_headers()
            .header("x-tenant-id", "tenant")
            .redact("tenant")
            .redaction_text("***");
        assert_eq!(text(&only, &c), "tenant=***");
    }

    #[test]
    fn local_field_wins_over_header_of_same_name() {
        let c = ctx().with_field("tenant_id", "from-auth");
        let out = text(
            &ContextFields::new().without_trace_id().without_span_id(),
            &c,
        );
        assert_eq!(
            out,
            "correlation_id=req-1 api_key=secret region=\"eu west\" user.id=alice tenant_id=from-auth"
        );
    }

    #[test]
    fn json_nested_and_flat() {
        let c = ctx();
        let fields = ContextFields::new()
            .without_trace_id()
            .without_span_id()
            .nest_under("ctx");
        let mut out = String::from("{\"a\":1");
        let mut sink = JsonSink {
            out: &mut out,
            nest: fields.json_key(),
            comma: true,
            written: 0,
            names: Names::default(),
        };
        fields.write(Some(&c), None, &mut sink).unwrap();
        sink.finish();
        out.push('}');
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["a"], 1);
        assert_eq!(v["ctx"]["correlation_id"], "req-1");
        assert_eq!(v["ctx"]["tenant_id"], "acme");
        assert_eq!(v["ctx"]["user.id"], "alice");

        let mut out = String::from("{");
        let mut sink = JsonSink {
            out: &mut out,
            nest: None,
            comma: false,
            written: 0,
            names: Names::default(),
        };
        fields.write(None, None, &mut sink).unwrap();
        sink.finish();
        out.push('}');
        assert_eq!(out, "{}");
    }

    #[test]
    fn odd_configured_names_are_escaped() {
        let c = ctx();
        let fields = ContextFields::new()
            .correlation_id_name("a b\n")
            .without_trace_id()
            .without_span_id()
            .without_local_fields()
            .only_named_headers();
        assert_eq!(text(&fields, &c), "\"a b\\n\"=req-1");
    }
}
