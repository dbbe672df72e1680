//! Datadog `x-datadog-*`.

use http::HeaderName;

use super::carrier::{Found, ReadCarrier};
use super::parts::{DatadogExtras, Extras, Parts, Rejected, Sampling, TraceParts};
use super::text::{Buf, Dec, bytes_of, parse_dec_u64, put, visible_text};
use super::{Encoded, Format};
use crate::carrier::Injector;
use crate::codec::{Codec, Error, ErrorKind, SpanId, TraceId, hex, trim_ows};

static TRACE_ID: HeaderName = HeaderName::from_static("x-datadog-trace-id");
static PARENT_ID: HeaderName = HeaderName::from_static("x-datadog-parent-id");
static PRIORITY: HeaderName = HeaderName::from_static("x-datadog-sampling-priority");
static ORIGIN: HeaderName = HeaderName::from_static("x-datadog-origin");
static TAGS: HeaderName = HeaderName::from_static("x-datadog-tags");

/// Longest `x-datadog-tags` kept (Datadog's own default limit).
pub const DATADOG_TAGS_MAX_BYTES: usize = 512;

const fn err(kind: ErrorKind) -> Error {
    Error::new(Codec::Datadog, kind)
}

/// Datadog's headers: `x-datadog-trace-id`, `x-datadog-parent-id`,
/// `x-datadog-sampling-priority`, `x-datadog-origin`, `x-datadog-tags`.
///
/// # Shape
///
/// ```text
/// x-datadog-trace-id          = 1*20DIGIT    ; lower 64 bits of the trace id, not zero
/// x-datadog-parent-id         = 1*20DIGIT    ; optional; "0" = none
/// x-datadog-sampling-priority = ["-"] 1*10DIGIT  ; optional; > 0 sampled (-1..2 in use)
/// x-datadog-origin            = visible text ; optional, forwarded
/// x-datadog-tags              = tag *( "," tag ), tag = key "=" value   ; ≤ 512 bytes
/// ; "_dd.p.tid=" 16HEXDIGLC in the tags: the upper 64 bits of the trace id
/// ```
///
/// As Datadog's tracers do, malformed or oversized tags are dropped whole and a
/// malformed `_dd.p.tid` is ignored: the trace is kept with the ids that are valid
/// (and only the lower 64 bits when `_dd.p.tid` could not be read); an invalid origin
/// is dropped. The ids themselves are strict: a malformed trace id, parent id or
/// sampling priority refuses the whole value.
///
/// Valid: `x-datadog-trace-id: 1234`, `x-datadog-parent-id: 5678`,
/// `x-datadog-sampling-priority: 2`, `x-datadog-tags: _dd.p.tid=640cfd8d00000000,_dd.p.dm=-4`.
/// Invalid: `x-datadog-trace-id: 0`, `… : 12a`, `… : 18446744073709551616`,
/// `x-datadog-sampling-priority: high`.
///
/// ```
/// use threadline::format::{DatadogFormat, Format};
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-datadog-trace-id", "1234".parse().unwrap());
/// headers.insert("x-datadog-parent-id", "5678".parse().unwrap());
/// headers.insert("x-datadog-sampling-priority", "1".parse().unwrap());
/// headers.insert("x-datadog-tags", "_dd.p.tid=640cfd8d00000000".parse().unwrap());
/// let t = DatadogFormat.decode(&headers).unwrap().trace.unwrap();
/// assert_eq!(t.trace_id.to_string(), "640cfd8d0000000000000000000004d2");
/// assert_eq!(t.to_trace_parent().unwrap().to_string(),
///            "00-640cfd8d0000000000000000000004d2-000000000000162e-01");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct DatadogFormat;

fn value(found: Found<'_>) -> Result<Option<&[u8]>, Error> {
    match found {
        Found::Absent => Ok(None),
        Found::Many(_) => Err(err(ErrorKind::Duplicate)),
        Found::One(v) => bytes_of(v, Codec::Datadog).map(|b| Some(trim_ows(b))),
    }
}

fn parse_priority(v: &[u8]) -> Option<i32> {
    let (neg, digits) = match v.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, v),
    };
    if digits.len() > 10 {
        return None;
    }
    let n = i64::try_from(parse_dec_u64(digits)?).ok()?;
    i32::try_from(if neg { -n } else { n }).ok()
}

/// Valid tags (`key=value` pairs joined by `,`, visible ASCII, within the limit) and
/// the upper 64 bits from `_dd.p.tid` if it is 16 lower-case hex digits. `None` when
/// the tags must be dropped.
fn read_tags(v: &[u8]) -> Option<(&str, Option<[u8; 8]>)> {
    if v.is_empty() || v.len() > DATADOG_TAGS_MAX_BYTES {
        return None;
    }
    let text = visible_text(v, Codec::Datadog).ok()?;
    let mut tid = None;
    for tag in text.split(',') {
        let (k, val) = tag.split_once('=')?;
        if k.is_empty() || k.contains(' ') {
            return None;
        }
        if k == "_dd.p.tid" && val.len() == 16 {
            let mut b = [0u8; 8];
            if hex::decode_into(val.as_bytes(), &mut b).is_ok() {
                tid = Some(b);
            }
        }
    }
    Some((text, tid))
}

impl DatadogFormat {
    /// Decodes the values of the five headers (each `None` when absent); an error names
    /// the header whose value broke a rule.
    pub fn decode_values<'a>(
        trace_id: Option<&'a [u8]>,
        parent_id: Option<&'a [u8]>,
        priority: Option<&'a [u8]>,
        origin: Option<&'a [u8]>,
        tags: Option<&'a [u8]>,
    ) -> Result<Option<TraceParts<'a>>, Rejected> {
        let at = |name: &HeaderName, kind| Rejected::new(name.clone(), err(kind));
        let Some(t) = trace_id else { return Ok(None) };
        let lower =
            parse_dec_u64(trim_ows(t)).ok_or_else(|| at(&TRACE_ID, ErrorKind::DecimalId))?;
        if lower == 0 {
            return Err(at(&TRACE_ID, ErrorKind::ZeroTraceId));
        }
        let span_id = match parent_id {
            None => None,
            Some(p) => SpanId::from_bytes(
                parse_dec_u64(trim_ows(p))
                    .ok_or_else(|| at(&PARENT_ID, ErrorKind::DecimalId))?
                    .to_be_bytes(),
            ),
        };
        let priority = priority
            .map(|p| {
                parse_priority(trim_ows(p)).ok_or_else(|| at(&PRIORITY, ErrorKind::SamplingValue))
            })
            .transpose()?;
        let sampling = match priority {
            None => Sampling::Deferred,
            Some(p) => Sampling::from_bool(p > 0),
        };
        let origin = origin
            .map(trim_ows)
            .filter(|o| !o.is_empty())
            .and_then(|o| visible_text(o, Codec::Datadog).ok());
        let (tags, upper) = match tags.map(trim_ows).and_then(read_tags) {
            Some((text, upper)) => (Some(text), upper),
            None => (None, None),
        };
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&upper.unwrap_or_default());
        id[8..].copy_from_slice(&lower.to_be_bytes());
        let trace_id =
            TraceId::from_bytes(id).ok_or_else(|| at(&TRACE_ID, ErrorKind::ZeroTraceId))?;
        let extras = if origin.is_some() || tags.is_some() || priority.is_some() {
            Extras::Datadog(DatadogExtras::new(origin, tags, priority))
        } else {
            Extras::None
        };
        Ok(Some(
            TraceParts::new(trace_id, span_id, sampling).with_extras(extras),
        ))
    }
}

impl Format for DatadogFormat {
    fn codec(&self) -> Codec {
        Codec::Datadog
    }

    fn fields(&self) -> &[HeaderName] {
        static FIELDS: [HeaderName; 5] = [
            HeaderName::from_static("x-datadog-trace-id"),
            HeaderName::from_static("x-datadog-parent-id"),
            HeaderName::from_static("x-datadog-sampling-priority"),
            HeaderName::from_static("x-datadog-origin"),
            HeaderName::from_static("x-datadog-tags"),
        ];
        &FIELDS
    }

    fn decode<'a>(&self, carrier: &'a dyn ReadCarrier) -> Result<Parts<'a>, Rejected> {
        fn at(name: &HeaderName) -> impl Fn(Error) -> Rejected + '_ {
            move |e| Rejected::new(name.clone(), e)
        }
        // All five in one walk over the entries where that is cheap (a `HeaderMap`),
        // instead of five hashed lookups.
        let found = if carrier.walks_entries() {
            let mut slots = [Found::Absent; 5];
            carrier.each_prefixed("x-datadog-", &mut |k, v| {
                // The five suffixes differ in length: one comparison each.
                let suffix = &k.as_bytes()[10..];
                let (i, want): (usize, &[u8]) = match suffix.len() {
                    8 => (0, b"trace-id"),
                    9 => (1, b"parent-id"),
                    17 => (2, b"sampling-priority"),
                    6 => (3, b"origin"),
                    4 => (4, b"tags"),
                    _ => return,
                };
                if suffix != want && !suffix.eq_ignore_ascii_case(want) {
                    return;
                }
                slots[i] = match slots[i] {
                    Found::Absent => Found::One(v),
                    Found::One(first) | Found::Many(first) => Found::Many(first),
                };
            });
            slots
        } else {
            [&TRACE_ID, &PARENT_ID, &PRIORITY, &ORIGIN, &TAGS].map(|n| carrier.get(n))
        };
        let [trace, parent, priority, origin, tags] = found;
        let Some(t) = value(trace).map_err(at(&TRACE_ID))? else {
            return Ok(Parts::default());
        };
        let parent = value(parent).map_err(at(&PARENT_ID))?;
        let priority = value(priority).map_err(at(&PRIORITY))?;
        let origin = value(origin).ok().flatten();
        // Several tag headers are not a list Datadog defines: dropped, as malformed.
        let tags = value(tags).ok().flatten();
        Self::decode_values(Some(t), parent, priority, origin, tags)
            .map(|trace| Parts::new(trace, None))
    }

    fn encode(&self, parts: &Parts<'_>, carrier: &mut dyn Injector) {
        let Some(trace) = &parts.trace else { return };
        let id = trace.trace_id.to_bytes();
        let mut lower = [0u8; 8];
        lower.copy_from_slice(&id[8..]);
        let lower = u64::from_be_bytes(lower);
        if lower == 0 {
            // Datadog cannot express a trace id whose lower 64 bits are zero.
            return;
        }
        put(carrier, &TRACE_ID, Dec::new(lower).as_bytes());
        if let Some(s) = trace.span_id {
            put(
                carrier,
                &PARENT_ID,
                Dec::new(u64::from_be_bytes(s.to_bytes())).as_bytes(),
            );
        }
        let extras = match &trace.extras {
            Extras::Datadog(x) => *x,
            _ => DatadogExtras::default(),
        };
        let priority = match (trace.sampling, extras.priority) {
            (Sampling::Deferred, _) => None,
            (s, Some(p)) if (p > 0) == s.is_sampled() => Some(i64::from(p)),
            (Sampling::Debug, _) => Some(2),
            (Sampling::Sampled, _) => Some(1),
            (Sampling::NotSampled, _) => Some(0),
        };
        if let Some(p) = priority {
            let mut b = Buf::<24>::new();
            if p < 0 {
                b.push(b"-");
            }
            b.push(Dec::new(p.unsigned_abs()).as_bytes());
            put(carrier, &PRIORITY, b.as_bytes());
        }
        if let Some(o) = extras.origin {
            put(carrier, &ORIGIN, o.as_bytes());
        }
        let mut tags = Encoded::new();
        if id[..8] != [0u8; 8] {
            tags.push(b"_dd.p.tid=");
            let mut h = [0u8; 16];
            hex::encode_into(&id[..8], &mut h);
            tags.push(&h);
        }
        if let Some(t) = extras.tags {
            for tag in t.split(',').filter(|t| !t.starts_with("_dd.p.tid=")) {
                if tags.as_bytes().len() + 1 + tag.len() > DATADOG_TAGS_MAX_BYTES {
                    break;
                }
                if !tags.as_bytes().is_empty() {
                    tags.push(b",");
                }
                tags.push(tag.as_bytes());
            }
        }
        if !tags.as_bytes().is_empty() {
            put(carrier, &TAGS, tags.as_bytes());
        }
    }
}
