//! The [`Composite`]: an ordered list of readers and a list of writers.

use std::sync::Arc;

use http::HeaderName;

use super::Format;
use super::carrier::ReadCarrier;
use super::parts::{Parts, Rejected};
use super::w3c::{BaggageFormat, TraceContextFormat};
use crate::carrier::Injector;
use crate::codec::{Codec, Error, ErrorKind, TraceId};

/// Formats read in order (the first valid one wins) and formats written (all of them).
///
/// See the precedence rules in the [module docs](super#precedence-the-composite).
/// Cloning is a reference-count bump per format.
///
/// ```
/// use threadline::format::{Composite, DatadogFormat, TraceContextFormat};
/// use threadline::codec::{Codec, ErrorKind};
///
/// let formats = Composite::new().read(TraceContextFormat).read(DatadogFormat);
/// let mut headers = http::HeaderMap::new();
/// headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
/// headers.insert("x-datadog-trace-id", "1234".parse().unwrap());
/// let decoded = formats.decode(&headers);
/// assert_eq!(decoded.trace_from, Some(Codec::TraceParent));
/// // The Datadog headers name another trace: kept out, and reported.
/// let r = &decoded.report[0];
/// assert_eq!(r.header(), "x-datadog-trace-id");
/// assert_eq!(r.error().kind(), ErrorKind::Conflict);
/// ```
#[derive(Clone, Debug)]
pub struct Composite {
    readers: Vec<Arc<dyn Format>>,
    writers: Vec<Arc<dyn Format>>,
}

impl Default for Composite {
    /// W3C Trace Context then W3C Baggage, read and written.
    fn default() -> Self {
        Composite::new()
            .read_write(TraceContextFormat)
            .read_write(BaggageFormat)
    }
}

/// What a [`Composite`] decoded: the parts, which format each half came from, and
/// what was refused or conflicting on the way (empty on the happy path, and then it
/// costs no allocation).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Decoded<'a> {
    /// The trace from the first reader that had one, the baggage from the first reader
    /// that had some.
    pub parts: Parts<'a>,
    /// The format the trace came from.
    pub trace_from: Option<Codec>,
    /// The format the baggage came from.
    pub baggage_from: Option<Codec>,
    /// Refused values, and later formats naming another trace
    /// ([`ErrorKind::Conflict`]), in reader order; each names the header, never the value.
    pub report: Vec<Rejected>,
}

impl Composite {
    /// No readers, no writers.
    pub fn new() -> Self {
        Composite {
            readers: Vec::new(),
            writers: Vec::new(),
        }
    }

    /// Adds a reader after the ones already given.
    pub fn read(mut self, format: impl Format + 'static) -> Self {
        self.readers.push(Arc::new(format));
        self
    }

    /// Adds a writer.
    pub fn write(mut self, format: impl Format + 'static) -> Self {
        self.writers.push(Arc::new(format));
        self
    }

    /// Adds a format as both a reader (after the ones given) and a writer.
    pub fn read_write(mut self, format: impl Format + 'static) -> Self {
        let f: Arc<dyn Format> = Arc::new(format);
        self.readers.push(f.clone());
        self.writers.push(f);
        self
    }

    /// Adds a shared format as a reader.
    pub fn read_shared(mut self, format: Arc<dyn Format>) -> Self {
        self.readers.push(format);
        self
    }

    /// Adds a shared format as a writer.
    pub fn write_shared(mut self, format: Arc<dyn Format>) -> Self {
        self.writers.push(format);
        self
    }

    /// The readers, in order.
    pub fn readers(&self) -> impl Iterator<Item = &dyn Format> {
        self.readers.iter().map(|f| &**f)
    }

    /// The writers, in order.
    pub fn writers(&self) -> impl Iterator<Item = &dyn Format> {
        self.writers.iter().map(|f| &**f)
    }

    /// Every header name a reader or writer handles (a name may repeat).
    pub fn fields(&self) -> impl Iterator<Item = &HeaderName> {
        self.readers
            .iter()
            .chain(&self.writers)
            .flat_map(|f| f.fields().iter())
    }

    /// Every per-member baggage prefix a reader or writer handles.
    pub fn prefixes(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.readers
            .iter()
            .chain(&self.writers)
            .filter_map(|f| f.prefix())
    }

    /// Reads the carrier with every reader, by the precedence rules.
    pub fn decode<'a>(&self, carrier: &'a dyn ReadCarrier) -> Decoded<'a> {
        self.decode_after(carrier, None)
    }

    /// Reports the readers (other than `kept`) that name another trace than
    /// `trace_id`, or refuse their value: for a caller that found the trace on a fast
    /// path of its own (the policy's W3C capture) and wants the same report as
    /// [`Composite::decode`] would give.
    pub fn conflicts(
        &self,
        carrier: &dyn ReadCarrier,
        kept: Codec,
        trace_id: TraceId,
    ) -> Vec<Rejected> {
        self.decode_after(carrier, Some((kept, trace_id))).report
    }

    fn decode_after<'a>(
        &self,
        carrier: &'a dyn ReadCarrier,
        kept: Option<(Codec, TraceId)>,
    ) -> Decoded<'a> {
        let mut out = Decoded::default();
        let mut kept_id = kept.map(|(_, id)| id);
        for f in &self.readers {
            if kept.is_some_and(|(codec, _)| codec == f.codec()) {
                continue;
            }
            let parts = match f.decode(carrier) {
                Ok(p) => p,
                Err(r) => {
                    out.report.push(r);
                    continue;
                }
            };
            if let Some(trace) = parts.trace {
                match kept_id {
                    None => {
                        kept_id = Some(trace.trace_id);
                        out.trace_from = Some(f.codec());
                        out.parts.trace = Some(trace);
                    }
                    Some(id) if id != trace.trace_id => {
                        let header = f
                            .fields()
                            .first()
                            .cloned()
                            .unwrap_or_else(|| HeaderName::from_static("unknown"));
                        out.report.push(Rejected::new(
                            header,
                            Error::new(f.codec(), ErrorKind::Conflict),
                        ));
                    }
                    Some(_) => {}
                }
            }
            if out.parts.baggage.is_none() && parts.baggage.is_some() {
                out.parts.baggage = parts.baggage;
                out.baggage_from = Some(f.codec());
            }
        }
        out
    }

    /// Writes `parts` with every writer, in order (a header set by an earlier writer,
    /// or already in the carrier, is not overwritten).
    pub fn encode(&self, parts: &Parts<'_>, carrier: &mut dyn Injector) {
        for f in &self.writers {
            f.encode(parts, carrier);
        }
    }
}

impl Format for Composite {
    /// The first reader's codec (a composite has no codec of its own).
    fn codec(&self) -> Codec {
        self.readers
            .first()
            .map_or(Codec::Custom("composite"), |f| f.codec())
    }

    fn fields(&self) -> &[HeaderName] {
        // The names of several formats do not form one slice; use `Composite::fields`.
        &[]
    }

    /// [`Composite::decode`]; refused only when nothing was found and a reader refused
    /// its value (the first such refusal).
    fn decode<'a>(&self, carrier: &'a dyn ReadCarrier) -> Result<Parts<'a>, Rejected> {
        let mut d = Composite::decode(self, carrier);
        if d.parts.is_empty() && !d.report.is_empty() {
            return Err(d.report.swap_remove(0));
        }
        Ok(d.parts)
    }

    fn encode(&self, parts: &Parts<'_>, carrier: &mut dyn Injector) {
        Composite::encode(self, parts, carrier);
    }
}
