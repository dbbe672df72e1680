//! The journey store and its views: every log event of one correlation id, from every
//! service, in time order, with the hop structure ("which span called which").
//!
//! Events are recorded by [`JourneyLayer`](super::logs::JourneyLayer) with the context
//! current when they were emitted. The store is bounded by bytes: it keeps the newest
//! journeys that fit in `--journey-mib` (default [`DEFAULT_MIB`] MiB, counting every
//! string it holds and the bookkeeping around it) and evicts the oldest journey first.
//! One journey may use at most an eighth of the bound and [`MAX_EVENTS`] events; later
//! events of a journey over its share are counted, not kept. Every value is cut to
//! [`MAX_VALUE`] bytes, and the values repeated on every event of a journey (service,
//! tenant, user, trace and span ids) are kept once per journey and shared.
//!
//! Hops: each span id is one hop. A caller records the parent id it sent on each
//! outgoing call as `call_id` (the HTTP client layer, the queue publisher, the spawn of
//! the audit task); the hop whose `parent_id` is one of those call ids was called by
//! that caller.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::html::{self, esc};

/// The default bound of the journey store, in MiB.
pub const DEFAULT_MIB: usize = 32;
/// How many correlation ids are kept at most, whatever their size.
pub const MAX_JOURNEYS: usize = 10_000;
/// How many events are kept per correlation id.
pub const MAX_EVENTS: usize = 1000;
/// The longest value kept (message, field, tenant, user), in bytes; longer ones are cut
/// and end with `…`.
pub const MAX_VALUE: usize = 512;
/// How many journeys the list shows (the newest).
pub const LIST_LIMIT: usize = 200;
/// What one heap allocation costs beyond its bytes (allocator bookkeeping), counted
/// for every string the store holds.
const ALLOC: usize = 16;
/// How many distinct shared values one journey interns.
const SHARED: usize = 32;

/// The services, in lane order.
pub const LANES: [&str; 3] = ["store", "warehouse", "worker"];

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// `2026-11-22T22:31:05.123456Z` from microseconds since the epoch.
pub fn rfc3339(us: u64) -> String {
    let secs = us / 1_000_000;
    let micros = us % 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `s` cut to at most [`MAX_VALUE`] bytes (on a character boundary), ending with `…`
/// when cut.
pub fn clip(mut s: String) -> String {
    if s.len() > MAX_VALUE {
        let mut end = MAX_VALUE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// A copy of `s` cut as [`clip`] does, copying no more than it keeps.
pub fn clipped(s: &str) -> String {
    if s.len() <= MAX_VALUE {
        return s.to_owned();
    }
    let mut end = MAX_VALUE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + '…'.len_utf8());
    out.push_str(&s[..end]);
    out.push('…');
    out
}

/// One log event with the context it was emitted in.
#[derive(Clone, Debug, Serialize)]
pub struct JourneyEvent {
    /// Order of arrival in the store (ties in time are broken by it).
    pub seq: u64,
    /// When, in microseconds since the Unix epoch.
    pub at_us: u64,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The `service` field (`store`, `warehouse`, `worker`), `-` when unbound.
    pub service: String,
    /// The `task` field (`audit`), when bound.
    pub task: Option<String>,
    /// The `instance` field (`baseline`, `sandbox:<key>`), when bound.
    pub instance: Option<String>,
    /// The event's message.
    pub message: String,
    /// The correlation id.
    pub correlation_id: String,
    /// The trace id.
    pub trace_id: Option<String>,
    /// This hop's span id.
    pub span_id: Option<String>,
    /// The caller's span id (the inbound `traceparent`'s parent id).
    pub parent_id: Option<String>,
    /// The tenant (`tenant.id` field or `x-tenant-id` header).
    pub tenant_id: Option<String>,
    /// The `user.id` field.
    pub user_id: Option<String>,
    /// For an outgoing call: the parent id sent with it.
    pub call_id: Option<String>,
    /// For an outgoing call: where it went.
    pub destination: Option<String>,
    /// The event's other fields, in the order they were logged (a JSON object).
    #[serde(serialize_with = "pairs_as_map")]
    pub fields: Vec<(String, String)>,
}

fn pairs_as_map<S: serde::Serializer>(v: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(v.iter().map(|(k, v)| (k, v)))
}

/// An event as the store keeps it: values shared within the journey, exact sizes.
struct Stored {
    seq: u64,
    at_us: u64,
    level: &'static str,
    service: Arc<str>,
    task: Option<Arc<str>>,
    instance: Option<Arc<str>>,
    message: Box<str>,
    trace_id: Option<Arc<str>>,
    span_id: Option<Arc<str>>,
    parent_id: Option<Arc<str>>,
    tenant_id: Option<Arc<str>>,
    user_id: Option<Arc<str>>,
    call_id: Option<Box<str>>,
    destination: Option<Box<str>>,
    fields: Box<[(Box<str>, Box<str>)]>,
}

fn level_of(level: &str) -> &'static str {
    match level {
        "ERROR" => "ERROR",
        "WARN" => "WARN",
        "INFO" => "INFO",
        "DEBUG" => "DEBUG",
        _ => "TRACE",
    }
}

/// Bytes of a heap string (none when empty: an empty box does not allocate).
fn heap(s: &str) -> usize {
    if s.is_empty() { 0 } else { s.len() + ALLOC }
}

impl Stored {
    fn view(&self, correlation_id: &str) -> JourneyEvent {
        let s = |v: &Option<Arc<str>>| v.as_deref().map(str::to_owned);
        JourneyEvent {
            seq: self.seq,
            at_us: self.at_us,
            level: self.level.to_owned(),
            service: self.service.to_string(),
            task: s(&self.task),
            instance: s(&self.instance),
            message: self.message.to_string(),
            correlation_id: correlation_id.to_owned(),
            trace_id: s(&self.trace_id),
            span_id: s(&self.span_id),
            parent_id: s(&self.parent_id),
            tenant_id: s(&self.tenant_id),
            user_id: s(&self.user_id),
            call_id: self.call_id.as_deref().map(str::to_owned),
            destination: self.destination.as_deref().map(str::to_owned),
            fields: self
                .fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

struct Journey {
    events: Vec<Stored>,
    /// Values shared by the journey's events (each counted once).
    shared: Vec<Arc<str>>,
    /// Bytes of the strings the events own and of the shared values.
    heap: usize,
    dropped: u64,
}

impl Journey {
    /// Everything the journey holds, its slot in the store included.
    fn bytes(&self, id: &str) -> usize {
        heap(id) * 2 // the map's key and the age queue's copy
            + std::mem::size_of::<(String, Journey)>()
            + std::mem::size_of::<String>()
            + self.events.capacity() * std::mem::size_of::<Stored>()
            + self.shared.capacity() * std::mem::size_of::<Arc<str>>()
            + self.heap
    }

    /// The shared copy of `v` (made, and counted, on first use).
    fn intern(&mut self, v: String) -> (Arc<str>, usize) {
        let v = clip(v);
        if let Some(a) = self.shared.iter().find(|a| ***a == *v) {
            return (a.clone(), 0);
        }
        let bytes = v.len() + 2 * std::mem::size_of::<usize>() + ALLOC;
        let a: Arc<str> = Arc::from(v);
        if self.shared.len() < SHARED {
            self.shared.push(a.clone());
            (a, bytes)
        } else {
            (a, bytes)
        }
    }

    /// `event` as stored, and the bytes it adds.
    fn store(&mut self, e: JourneyEvent, seq: u64) -> (Stored, usize) {
        let mut added = 0;
        let mut share = |j: &mut Journey, v: Option<String>| {
            v.map(|v| {
                let (a, b) = j.intern(v);
                added += b;
                a
            })
        };
        let service = share(self, Some(e.service)).unwrap_or_else(|| Arc::from("-"));
        let task = share(self, e.task);
        let instance = share(self, e.instance);
        let trace_id = share(self, e.trace_id);
        let span_id = share(self, e.span_id);
        let parent_id = share(self, e.parent_id);
        let tenant_id = share(self, e.tenant_id);
        let user_id = share(self, e.user_id);
        let own = |v: String| -> Box<str> { clip(v).into_boxed_str() };
        let message = own(e.message);
        let call_id = e.call_id.map(own);
        let destination = e.destination.map(own);
        let fields: Box<[(Box<str>, Box<str>)]> = e
            .fields
            .into_iter()
            .map(|(k, v)| (own(k), own(v)))
            .collect();
        added += heap(&message)
            + call_id.as_deref().map_or(0, heap)
            + destination.as_deref().map_or(0, heap)
            + if fields.is_empty() {
                0
            } else {
                fields.len() * std::mem::size_of::<(Box<str>, Box<str>)>() + ALLOC
            }
            + fields.iter().map(|(k, v)| heap(k) + heap(v)).sum::<usize>();
        (
            Stored {
                seq,
                at_us: e.at_us,
                level: level_of(&e.level),
                service,
                task,
                instance,
                message,
                trace_id,
                span_id,
                parent_id,
                tenant_id,
                user_id,
                call_id,
                destination,
                fields,
            },
            added,
        )
    }
}

struct Inner {
    by_id: HashMap<String, Journey>,
    order: VecDeque<String>,
    seq: u64,
    bytes: usize,
    max_bytes: usize,
    max_journeys: usize,
    max_events: usize,
    evicted: u64,
    dropped: u64,
}

impl Inner {
    fn max_journey_bytes(&self) -> usize {
        (self.max_bytes / 8).max(16 * 1024)
    }

    fn evict_oldest(&mut self) -> bool {
        let Some(old) = self.order.pop_front() else {
            return false;
        };
        if let Some(j) = self.by_id.remove(&old) {
            self.bytes = self.bytes.saturating_sub(j.bytes(&old));
        }
        self.evicted += 1;
        true
    }
}

/// How much the journey store holds, and its bounds (shown on the journeys page).
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Usage {
    /// Bytes held (strings, events and bookkeeping).
    pub bytes: usize,
    /// The bound.
    pub max_bytes: usize,
    /// The most one journey may hold.
    pub max_journey_bytes: usize,
    /// Journeys kept.
    pub journeys: usize,
    /// Events kept.
    pub events: usize,
    /// The most events kept per journey.
    pub max_events: usize,
    /// Journeys evicted (oldest first) so far.
    pub evicted_journeys: u64,
    /// Events not kept because their journey was full.
    pub dropped_events: u64,
}

/// The bounded journey store; cheap to clone (shared).
#[derive(Clone)]
pub struct Journeys {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Journeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journeys")
            .field("usage", &self.usage())
            .finish()
    }
}

impl Default for Journeys {
    fn default() -> Self {
        Self::new(MAX_JOURNEYS, MAX_EVENTS)
    }
}

impl Journeys {
    /// A store keeping at most `max_journeys` correlation ids, `max_events` events
    /// each, within [`DEFAULT_MIB`] MiB (see [`Journeys::set_max_bytes`]).
    pub fn new(max_journeys: usize, max_events: usize) -> Self {
        Journeys {
            inner: Arc::new(Mutex::new(Inner {
                by_id: HashMap::new(),
                order: VecDeque::new(),
                seq: 0,
                bytes: 0,
                max_bytes: DEFAULT_MIB << 20,
                max_journeys: max_journeys.max(1),
                max_events: max_events.max(1),
                evicted: 0,
                dropped: 0,
            })),
        }
    }

    /// Sets the byte bound (at least 64 KiB); the oldest journeys go at once if the
    /// store holds more.
    pub fn set_max_bytes(&self, max_bytes: usize) {
        let mut g = self.lock();
        g.max_bytes = max_bytes.max(64 * 1024);
        while g.bytes > g.max_bytes && g.evict_oldest() {}
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere never takes the journey pages down with it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one event under its correlation id.
    pub fn record(&self, mut event: JourneyEvent) {
        let mut g = self.lock();
        g.seq += 1;
        let seq = g.seq;
        let id = std::mem::take(&mut event.correlation_id);
        let (max_events, max_journey) = (g.max_events, g.max_journey_bytes());
        if !g.by_id.contains_key(&id) {
            while g.order.len() >= g.max_journeys && g.evict_oldest() {}
            let id = clip(id.clone());
            let j = Journey {
                events: Vec::new(),
                shared: Vec::new(),
                heap: 0,
                dropped: 0,
            };
            g.bytes += j.bytes(&id);
            g.order.push_back(id.clone());
            g.by_id.insert(id, j);
        }
        let id = clip(id);
        let Some(j) = g.by_id.get_mut(&id) else {
            return;
        };
        if j.events.len() >= max_events || j.bytes(&id) >= max_journey {
            j.dropped += 1;
            g.dropped += 1;
            return;
        }
        let before = j.bytes(&id);
        let (stored, added) = j.store(event, seq);
        j.heap += added;
        j.events.push(stored);
        let after = j.bytes(&id);
        g.bytes = g.bytes + after - before;
        // Oldest first, never the journey just written to.
        while g.bytes > g.max_bytes && g.order.len() > 1 && g.order.front() != Some(&id) {
            g.evict_oldest();
        }
    }

    /// The journey of `correlation_id`, if it is still kept.
    pub fn get(&self, correlation_id: &str) -> Option<JourneyView> {
        let g = self.lock();
        let j = g.by_id.get(correlation_id)?;
        let events = j.events.iter().map(|e| e.view(correlation_id)).collect();
        Some(JourneyView::build(correlation_id, events, j.dropped))
    }

    /// The newest kept journeys (at most [`LIST_LIMIT`]), most recent first.
    pub fn list(&self) -> Vec<JourneySummary> {
        let g = self.lock();
        g.order
            .iter()
            .rev()
            .take(LIST_LIMIT)
            .filter_map(|id| g.by_id.get(id).map(|j| JourneySummary::of(id, j)))
            .collect()
    }

    /// What the store holds and its bounds.
    pub fn usage(&self) -> Usage {
        let g = self.lock();
        Usage {
            bytes: g.bytes,
            max_bytes: g.max_bytes,
            max_journey_bytes: g.max_journey_bytes(),
            journeys: g.by_id.len(),
            events: g.by_id.values().map(|j| j.events.len()).sum(),
            max_events: g.max_events,
            evicted_journeys: g.evicted,
            dropped_events: g.dropped,
        }
    }
}

/// One line of the journey list.
#[derive(Clone, Debug, Serialize)]
pub struct JourneySummary {
    /// The correlation id.
    pub correlation_id: String,
    /// First event, RFC 3339.
    pub started_at: String,
    /// From the first to the last event, in milliseconds.
    pub duration_ms: f64,
    /// The services seen, in lane order.
    pub services: Vec<String>,
    /// Events kept.
    pub events: usize,
    /// `ok`, `warn` (a warning was logged, e.g. a rejected order) or `error`.
    pub status: String,
    /// The first message of the journey.
    pub first_message: String,
}

impl JourneySummary {
    fn of(id: &str, j: &Journey) -> Self {
        let first = j.events.first();
        let start = first.map_or(0, |e| e.at_us);
        let end = j.events.iter().map(|e| e.at_us).max().unwrap_or(start);
        JourneySummary {
            correlation_id: id.to_owned(),
            started_at: rfc3339(start),
            duration_ms: end.saturating_sub(start) as f64 / 1000.0,
            services: services_of(j.events.iter().map(|e| &*e.service)),
            events: j.events.len(),
            status: status_of(j.events.iter().map(|e| e.level)).to_owned(),
            first_message: first.map(|e| e.message.to_string()).unwrap_or_default(),
        }
    }
}

fn status_of<'a>(levels: impl Iterator<Item = &'a str>) -> &'static str {
    let mut warn = false;
    for l in levels {
        match l {
            "ERROR" => return "error",
            "WARN" => warn = true,
            _ => {}
        }
    }
    if warn { "warn" } else { "ok" }
}

fn services_of<'a>(services: impl Iterator<Item = &'a str>) -> Vec<String> {
    let seen: BTreeSet<&str> = services.collect();
    let mut out: Vec<String> = LANES
        .iter()
        .filter(|l| seen.contains(**l))
        .map(|l| (*l).to_owned())
        .collect();
    out.extend(
        seen.iter()
            .filter(|s| !LANES.contains(s))
            .map(|s| (*s).to_owned()),
    );
    out
}

/// One hop: the events of one span id.
#[derive(Clone, Debug, Serialize)]
pub struct Hop {
    /// The span id (`-` for events without a trace).
    pub span_id: String,
    /// The caller's span id as received.
    pub parent_id: Option<String>,
    /// The service of the hop.
    pub service: String,
    /// The task, for a spawned task (`audit`).
    pub task: Option<String>,
    /// The instance that handled the hop (`baseline`, `sandbox:<key>`).
    pub instance: Option<String>,
    /// The hop that called this one, when the call was seen.
    pub called_by: Option<String>,
    /// How it was called (the caller's `destination`: `POST http://…`, `queue …`).
    pub via: Option<String>,
    /// First event of the hop, milliseconds after the journey's start.
    pub start_ms: f64,
    /// Last event of the hop, milliseconds after the journey's start.
    pub end_ms: f64,
    /// Events of the hop.
    pub events: usize,
    /// Depth in the hop tree (0 for a root).
    pub depth: usize,
}

/// A link between two hops.
#[derive(Clone, Debug, Serialize)]
pub struct Link {
    /// The calling hop's span id.
    pub from: String,
    /// The called hop's span id.
    pub to: String,
    /// The parent id sent with the call.
    pub call_id: String,
    /// Where the call went.
    pub destination: Option<String>,
}

/// Everything the journey page shows, also served as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct JourneyView {
    /// The correlation id.
    pub correlation_id: String,
    /// The trace ids seen (one, unless a service started a new trace).
    pub trace_ids: Vec<String>,
    /// First event, RFC 3339.
    pub started_at: String,
    /// From the first to the last event, in milliseconds.
    pub duration_ms: f64,
    /// `ok`, `warn` or `error`.
    pub status: String,
    /// The services seen, in lane order.
    pub services: Vec<String>,
    /// The events, in time order.
    pub events: Vec<JourneyEvent>,
    /// The hops, depth first in the order they started.
    pub hops: Vec<Hop>,
    /// Who called whom.
    pub links: Vec<Link>,
    /// Events not kept (over the per-journey bound).
    pub dropped_events: u64,
}

impl JourneyView {
    fn build(id: &str, mut events: Vec<JourneyEvent>, dropped: u64) -> Self {
        events.sort_by_key(|e| (e.at_us, e.seq));
        let start = events.first().map_or(0, |e| e.at_us);
        let end = events.last().map_or(start, |e| e.at_us);
        let ms = |us: u64| us.saturating_sub(start) as f64 / 1000.0;

        let mut trace_ids: Vec<String> = Vec::new();
        for t in events.iter().filter_map(|e| e.trace_id.as_ref()) {
            if !trace_ids.contains(t) {
                trace_ids.push(t.clone());
            }
        }

        // Hops in order of their first event.
        let mut hops: Vec<Hop> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        // call id -> (caller span, destination)
        let mut calls: HashMap<String, (String, Option<String>)> = HashMap::new();
        for e in &events {
            let span = e.span_id.clone().unwrap_or_else(|| "-".to_owned());
            let i = *index.entry(span.clone()).or_insert_with(|| {
                hops.push(Hop {
                    span_id: span.clone(),
                    parent_id: e.parent_id.clone(),
                    service: e.service.clone(),
                    task: e.task.clone(),
                    instance: e.instance.clone(),
                    called_by: None,
                    via: None,
                    start_ms: ms(e.at_us),
                    end_ms: ms(e.at_us),
                    events: 0,
                    depth: 0,
                });
                hops.len() - 1
            });
            let h = &mut hops[i];
            if h.instance.is_none() {
                h.instance = e.instance.clone();
            }
            h.events += 1;
            h.end_ms = ms(e.at_us);
            if let Some(c) = &e.call_id {
                calls.insert(c.clone(), (span.clone(), e.destination.clone()));
            }
        }
        let mut links = Vec::new();
        for h in &mut hops {
            let Some(p) = &h.parent_id else { continue };
            if let Some((from, dest)) = calls.get(p) {
                if *from != h.span_id {
                    h.called_by = Some(from.clone());
                    h.via = dest.clone();
                    links.push(Link {
                        from: from.clone(),
                        to: h.span_id.clone(),
                        call_id: p.clone(),
                        destination: dest.clone(),
                    });
                }
            } else if index.contains_key(p) && *p != h.span_id {
                // A child span that names its parent hop directly.
                h.called_by = Some(p.clone());
                links.push(Link {
                    from: p.clone(),
                    to: h.span_id.clone(),
                    call_id: p.clone(),
                    destination: None,
                });
            }
        }
        let hops = tree_order(hops);
        JourneyView {
            correlation_id: id.to_owned(),
            trace_ids,
            started_at: rfc3339(start),
            duration_ms: ms(end),
            status: status_of(events.iter().map(|e| e.level.as_str())).to_owned(),
            services: services_of(events.iter().map(|e| e.service.as_str())),
            events,
            hops,
            links,
            dropped_events: dropped,
        }
    }
}

/// Depth-first order of the hop tree, children in the order they started; depth set.
fn tree_order(hops: Vec<Hop>) -> Vec<Hop> {
    let spans: BTreeSet<String> = hops.iter().map(|h| h.span_id.clone()).collect();
    let mut out = Vec::with_capacity(hops.len());
    let mut placed = vec![false; hops.len()];
    fn visit(i: usize, depth: usize, hops: &[Hop], placed: &mut [bool], out: &mut Vec<Hop>) {
        if placed[i] {
            return;
        }
        placed[i] = true;
        let mut h = hops[i].clone();
        h.depth = depth;
        out.push(h);
        for (j, c) in hops.iter().enumerate() {
            if c.called_by.as_deref() == Some(hops[i].span_id.as_str()) {
                visit(j, depth + 1, hops, placed, out);
            }
        }
    }
    for i in 0..hops.len() {
        let root = match &hops[i].called_by {
            None => true,
            Some(p) => !spans.contains(p),
        };
        if root {
            visit(i, 0, &hops, &mut placed, &mut out);
        }
    }
    // Cycles (cannot happen with fresh ids, but never lose a hop).
    for i in 0..hops.len() {
        visit(i, 0, &hops, &mut placed, &mut out);
    }
    out
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn lane_of(service: &str) -> &str {
    if LANES.contains(&service) {
        service
    } else {
        "other"
    }
}

/// The journey page.
pub fn render_journey(v: &JourneyView) -> String {
    let mut b = String::with_capacity(16 * 1024);
    let status = match v.status.as_str() {
        "error" => ("error", "failed"),
        "warn" => ("warn", "finished with a warning"),
        _ => ("ok", "completed"),
    };
    let _ = write!(
        b,
        r#"<section class="hero">
<div class="crumbs"><a href="/journeys">Journeys</a> / <span>this one</span></div>
<h1>Journey <code class="cid" id="correlation-id">{cid}</code></h1>
<p class="meta"><span class="pill {sc}">{st}</span>
<span>started {start}</span><span>{dur:.1} ms end to end</span><span>{n} events</span><span>{h} hops</span></p>
<p class="meta traces">trace {traces}</p>
</section>"#,
        cid = esc(&v.correlation_id),
        sc = status.0,
        st = status.1,
        start = esc(&v.started_at),
        dur = v.duration_ms,
        n = v.events.len(),
        h = v.hops.len(),
        traces = v
            .trace_ids
            .iter()
            .map(|t| format!("<code>{}</code>", esc(t)))
            .collect::<Vec<_>>()
            .join(" "),
    );
    if v.dropped_events > 0 {
        let _ = write!(
            b,
            r#"<p class="notice">{} later events of this journey were not kept (one journey keeps at most {MAX_EVENTS} events and an eighth of the journey store's bound).</p>"#,
            v.dropped_events
        );
    }

    // The hop tree.
    b.push_str(r#"<section class="card"><h2>Hops <small>which span called which</small></h2><ol class="hops">"#);
    let total = v.duration_ms.max(0.001);
    for h in &v.hops {
        let left = (h.start_ms / total * 100.0).clamp(0.0, 100.0);
        let width = ((h.end_ms - h.start_ms) / total * 100.0)
            .max(0.8)
            .min((100.0 - left).max(0.0));
        let mut label = match &h.task {
            Some(t) => format!("{} · {}", esc(&h.service), esc(t)),
            None => esc(&h.service),
        };
        if let Some(i) = &h.instance {
            let sandbox = if i.starts_with("sandbox") {
                " sandbox"
            } else {
                ""
            };
            let _ = write!(
                label,
                r#" <span class="instance{sandbox}" data-instance="{i}">{i}</span>"#,
                i = esc(i)
            );
        }
        let via = match (&h.via, &h.called_by) {
            (Some(d), _) => format!(r#"<span class="via">via {}</span>"#, esc(d)),
            (None, Some(_)) => r#"<span class="via">spawned</span>"#.to_owned(),
            (None, None) => match &h.parent_id {
                Some(p) => format!(
                    r#"<span class="via">from outside · parent <code>{}</code></span>"#,
                    esc(short(p))
                ),
                None => r#"<span class="via">new trace</span>"#.to_owned(),
            },
        };
        let _ = write!(
            b,
            r#"<li class="hop lane-{lane}{root}" style="--depth:{depth}" data-span="{span}"><div class="hop-label"><span class="dot"></span><b>{label}</b> <code title="span id">{sshort}</code> {via}</div><div class="bar"><span style="left:{left:.2}%;width:{width:.2}%"></span></div><div class="hop-time">{s:.1}–{e:.1} ms · {n} ev</div></li>"#,
            lane = lane_of(&h.service),
            root = if h.depth == 0 { " root" } else { "" },
            depth = h.depth.min(8),
            span = esc(&h.span_id),
            sshort = esc(short(&h.span_id)),
            s = h.start_ms,
            e = h.end_ms,
            n = h.events,
        );
    }
    b.push_str("</ol></section>");

    // The timeline: one lane per service.
    let mut lanes: Vec<&str> = LANES.to_vec();
    if v.events
        .iter()
        .any(|e| !LANES.contains(&e.service.as_str()))
    {
        lanes.push("other");
    }
    let _ = write!(
        b,
        r#"<section class="card"><h2>Timeline <small>one lane per service, in time order</small></h2><div class="timeline" style="--lanes:{}"><div class="tl-head"><div class="tl-time">ms</div>"#,
        lanes.len()
    );
    for l in &lanes {
        let present = v.events.iter().any(|e| lane_of(&e.service) == *l);
        let _ = write!(
            b,
            r#"<div class="lane-title lane-{l}{absent}" data-lane="{l}"><span class="dot"></span>{l}</div>"#,
            absent = if present { "" } else { " absent" },
        );
    }
    b.push_str("</div>");
    let start = v.events.first().map_or(0, |e| e.at_us);
    for e in &v.events {
        let lane = lane_of(&e.service);
        let col = lanes.iter().position(|l| *l == lane).unwrap_or(0) + 2;
        let mut extra = String::new();
        if let Some(d) = &e.destination {
            let _ = write!(extra, r#"<span class="kv call">→ {}</span>"#, esc(d));
        }
        for (k, val) in &e.fields {
            let _ = write!(
                extra,
                r#"<span class="kv"><i>{}</i>{}</span>"#,
                esc(k),
                esc(val)
            );
        }
        let mut who = match &e.task {
            Some(t) => format!(r#"<span class="task">{}</span>"#, esc(t)),
            None => String::new(),
        };
        if let Some(i) = e.instance.as_deref().filter(|i| i.starts_with("sandbox")) {
            let _ = write!(who, r#"<span class="instance sandbox">{}</span>"#, esc(i));
        }
        let _ = write!(
            b,
            r#"<div class="tl-row"><div class="tl-time">+{t:.1}</div><div class="event lvl-{lvl} lane-{lane}" style="grid-column:{col}" data-service="{svc}"><div class="ev-top"><span class="lvl">{lvl}</span>{who}<span class="msg">{msg}</span></div><div class="ev-ids"><code title="span id">span {span}</code>{parent}{tenant}{user}</div>{extra_block}</div></div>"#,
            t = e.at_us.saturating_sub(start) as f64 / 1000.0,
            lvl = esc(&e.level),
            svc = esc(&e.service),
            msg = esc(&e.message),
            span = esc(short(e.span_id.as_deref().unwrap_or("-"))),
            parent = e
                .parent_id
                .as_deref()
                .map(|p| format!(r#"<code title="parent id">parent {}</code>"#, esc(short(p))))
                .unwrap_or_default(),
            tenant = e
                .tenant_id
                .as_deref()
                .map(|t| format!(r#"<code title="tenant">tenant {}</code>"#, esc(t)))
                .unwrap_or_default(),
            user = e
                .user_id
                .as_deref()
                .map(|u| format!(r#"<code title="user.id">user {}</code>"#, esc(u)))
                .unwrap_or_default(),
            extra_block = if extra.is_empty() {
                String::new()
            } else {
                format!(r#"<div class="ev-kv">{extra}</div>"#)
            },
        );
    }
    b.push_str("</div></section>");
    let _ = write!(
        b,
        r#"<p class="foot">The same data as JSON: <code>curl -H 'Accept: application/json' …/journeys/{}</code></p>"#,
        esc(&v.correlation_id)
    );
    html::page(&format!("Journey {}", v.correlation_id), &b)
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// The card with the queue's state and the journey store's bound.
pub fn render_status(queue: &super::broker::QueueStatus, usage: &Usage) -> String {
    let mut b = String::with_capacity(2048);
    let (class, state) = if queue.connected {
        ("ok", "connected")
    } else {
        ("error", "disconnected")
    };
    let _ = write!(
        b,
        r#"<section class="card status" id="status"><h2>Queue and memory</h2><dl>
<dt>Queue</dt><dd id="queue-state" data-connected="{connected}"><span class="pill {class}">{state}</span> {name} <span class="muted">since {since} · {n} disconnection(s)</span>{err}</dd>
<dt>Worker</dt><dd id="worker-state">{in_flight} of {conc} jobs in hand (peak {peak}) · {kept}</dd>
<dt>Journeys kept</dt><dd id="journey-bound" data-bytes="{bytes}" data-max-bytes="{max}">{journeys} journeys, {events} events: {used} of {bound} · the oldest journey goes first ({evicted} evicted so far) · one journey keeps at most {max_events} events and {per_journey}{dropped}</dd>
</dl></section>"#,
        connected = queue.connected,
        name = esc(&queue.queue),
        since = esc(queue.since.get(11..19).unwrap_or(&queue.since)),
        n = queue.disconnections,
        err = queue
            .last_error
            .as_deref()
            .map(|e| format!(r#" <span class="muted">last error: {}</span>"#, esc(e)))
            .unwrap_or_default(),
        in_flight = queue.in_flight,
        conc = queue.worker_concurrency,
        peak = queue.peak_in_flight,
        kept = match (queue.waiting, queue.capacity) {
            (Some(w), Some(c)) => format!(
                "{w} of {c} waiting in the embedded queue (full: orders are refused with 503 and Retry-After; all of them are shipped before exit)"
            ),
            _ => "jobs not taken at exit stay in the queue for the next start".to_owned(),
        },
        bytes = usage.bytes,
        max = usage.max_bytes,
        journeys = usage.journeys,
        events = usage.events,
        used = mib(usage.bytes),
        bound = mib(usage.max_bytes),
        evicted = usage.evicted_journeys,
        max_events = usage.max_events,
        per_journey = mib(usage.max_journey_bytes),
        dropped = if usage.dropped_events > 0 {
            format!(" ({} events not kept)", usage.dropped_events)
        } else {
            String::new()
        },
    );
    b
}

/// The list of recent journeys, after the status card.
pub fn render_list(list: &[JourneySummary], status: &str) -> String {
    let mut b = String::with_capacity(8 * 1024);
    b.push_str(
        r#"<section class="hero"><h1>Recent journeys</h1><p class="meta"><span>Every correlation id the services logged, newest first.</span><a class="button" href="/orders/new">Place an order</a></p></section>"#,
    );
    b.push_str(status);
    b.push_str(r#"<section class="card">"#);
    if list.is_empty() {
        b.push_str(r#"<p class="empty">No journeys yet. <a href="/orders/new">Place an order</a> and come back.</p>"#);
    } else {
        b.push_str(r#"<table class="journeys"><thead><tr><th>correlation id</th><th>started (UTC)</th><th>services</th><th>events</th><th>duration</th><th>first event</th></tr></thead><tbody>"#);
        for j in list {
            let services: String = j
                .services
                .iter()
                .map(|s| {
                    format!(
                        r#"<span class="chip lane-{}">{}</span>"#,
                        lane_of(s),
                        esc(s)
                    )
                })
                .collect();
            let _ = write!(
                b,
                r#"<tr><td><span class="pill {st}">{st}</span> <a href="/journeys/{href}"><code>{cid}</code></a></td><td class="when" title="{start}">{clock}</td><td>{services}</td><td>{n}</td><td>{d:.1} ms</td><td class="msg">{msg}</td></tr>"#,
                st = esc(&j.status),
                href = html::path_segment(&j.correlation_id),
                cid = esc(&j.correlation_id),
                start = esc(&j.started_at),
                clock = esc(j.started_at.get(11..23).unwrap_or(&j.started_at)),
                n = j.events,
                d = j.duration_ms,
                msg = esc(&j.first_message),
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("</section>");
    html::page("Journeys", &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(service: &str, span: &str, parent: Option<&str>, call: Option<&str>) -> JourneyEvent {
        JourneyEvent {
            seq: 0,
            at_us: now_micros(),
            level: "INFO".into(),
            service: service.into(),
            task: None,
            instance: None,
            message: format!("{service} <b>&"),
            correlation_id: "c-1".into(),
            trace_id: Some("t".into()),
            span_id: Some(span.into()),
            parent_id: parent.map(Into::into),
            tenant_id: None,
            user_id: None,
            call_id: call.map(Into::into),
            destination: call.map(|_| "POST x".into()),
            fields: vec![],
        }
    }

    #[test]
    fn links_hops_through_call_ids() {
        let j = Journeys::new(10, 10);
        j.record(ev("store", "s1", Some("up"), None));
        j.record(ev("store", "s1", Some("up"), Some("c1")));
        j.record(ev("warehouse", "w1", Some("c1"), Some("c2")));
        j.record(ev("worker", "k1", Some("c2"), None));
        let v = j.get("c-1").unwrap();
        let by: HashMap<_, _> = v
            .hops
            .iter()
            .map(|h| (h.span_id.as_str(), h.called_by.as_deref()))
            .collect();
        assert_eq!(by["s1"], None);
        assert_eq!(by["w1"], Some("s1"));
        assert_eq!(by["k1"], Some("w1"));
        assert_eq!(v.links.len(), 2);
        let depths: Vec<usize> = v.hops.iter().map(|h| h.depth).collect();
        assert_eq!(depths, [0, 1, 2]);
        let page = render_journey(&v);
        assert!(!page.contains("<b>&"), "values are escaped");
        assert!(page.contains("&lt;b&gt;&amp;"));
    }

    #[test]
    fn bounded_in_journeys_and_events() {
        let j = Journeys::new(2, 3);
        for i in 0..5 {
            let mut e = ev("store", "s", None, None);
            e.correlation_id = format!("c{i}");
            j.record(e);
        }
        let ids: Vec<String> = j.list().into_iter().map(|s| s.correlation_id).collect();
        assert_eq!(ids, ["c4", "c3"]);
        for _ in 0..5 {
            let mut e = ev("store", "s", None, None);
            e.correlation_id = "c4".into();
            j.record(e);
        }
        let v = j.get("c4").unwrap();
        assert_eq!((v.events.len(), v.dropped_events), (3, 3));
    }

    /// What the hostile load of issue 14 sent: 4 KB tenant and user values on every
    /// event, a few correlation ids reused over and over.
    fn hostile(cid: &str) -> JourneyEvent {
        let mut e = ev("store", "s", Some("p"), None);
        e.correlation_id = cid.to_owned();
        e.tenant_id = Some("t".repeat(4096));
        e.user_id = Some("u".repeat(4096));
        e.message = "order form refused".into();
        e.fields = vec![("problems".into(), "x".repeat(4096))];
        e
    }

    /// Heap bytes the kept events would take as plain strings, without sharing: a
    /// lower bound of what a store without a byte bound holds.
    fn string_bytes(j: &Journeys) -> usize {
        j.list()
            .iter()
            .filter_map(|s| j.get(&s.correlation_id))
            .flat_map(|v| v.events)
            .map(|e| {
                e.message.len()
                    + e.tenant_id.map_or(0, |t| t.len())
                    + e.user_id.map_or(0, |u| u.len())
                    + e.fields
                        .iter()
                        .map(|(k, v)| k.len() + v.len())
                        .sum::<usize>()
            })
            .sum()
    }

    #[test]
    fn bounded_by_bytes_under_large_values_oldest_journey_evicted_first() {
        let j = Journeys::default();
        j.set_max_bytes(1 << 20);
        for i in 0..20_000 {
            j.record(hostile(&format!("c{}", i % 200)));
        }
        let u = j.usage();
        assert!(u.bytes <= u.max_bytes, "{u:?}");
        assert!(u.events > 500, "a useful number of events is kept: {u:?}");
        // Values are cut and shared: far less than the 12 KB each event was sent with.
        assert!(
            u.bytes / u.events < 2048,
            "bytes per event with 4 KB values: {u:?}"
        );
        // The accounting is not optimistic: it covers at least the distinct strings
        // held (shared values once per journey, the rest per event).
        let held: usize = j
            .list()
            .iter()
            .filter_map(|s| j.get(&s.correlation_id))
            .map(|v| {
                let e0 = &v.events[0];
                e0.tenant_id.as_ref().map_or(0, |t| t.len())
                    + e0.user_id.as_ref().map_or(0, |t| t.len())
                    + v.events
                        .iter()
                        .map(|e| {
                            e.message.len()
                                + e.fields
                                    .iter()
                                    .map(|(k, v)| k.len() + v.len())
                                    .sum::<usize>()
                        })
                        .sum::<usize>()
            })
            .sum();
        assert!(u.bytes >= held, "{u:?} {held}");

        // Newest kept, oldest evicted first.
        let j = Journeys::default();
        j.set_max_bytes(64 * 1024);
        for i in 0..400 {
            j.record(hostile(&format!("n{i}")));
        }
        let ids: Vec<String> = j.list().into_iter().map(|s| s.correlation_id).collect();
        assert_eq!(ids.first().map(String::as_str), Some("n399"));
        let u = j.usage();
        assert!(u.bytes <= u.max_bytes && u.evicted_journeys > 0, "{u:?}");
        assert_eq!(u.evicted_journeys as usize + u.journeys, 400);
        let oldest_kept: usize = ids.last().unwrap()[1..].parse().unwrap();
        assert_eq!(oldest_kept, 400 - ids.len(), "a contiguous newest range");
    }

    #[test]
    fn one_journey_never_takes_the_whole_store() {
        let j = Journeys::default();
        j.set_max_bytes(1 << 20);
        j.record(hostile("other"));
        for _ in 0..5000 {
            j.record(hostile("greedy"));
        }
        let u = j.usage();
        assert!(j.get("other").is_some(), "{u:?}");
        let greedy = j.get("greedy").unwrap();
        assert!(greedy.dropped_events > 0);
        assert!(u.bytes <= u.max_bytes, "{u:?}");
    }

    #[test]
    fn values_are_cut_and_shared_within_a_journey() {
        let j = Journeys::default();
        for _ in 0..10 {
            j.record(hostile("c"));
        }
        let v = j.get("c").unwrap();
        let t = v.events[0].tenant_id.as_deref().unwrap();
        assert!(t.len() <= MAX_VALUE + '…'.len_utf8() && t.ends_with('…'));
        let per_event = j.usage().bytes / 10;
        assert!(
            per_event < 2 * MAX_VALUE + 600,
            "tenant and user are stored once: {per_event}"
        );
        assert!(string_bytes(&j) > j.usage().bytes, "sharing saves bytes");
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        // 2024-02-29T12:34:56.789Z
        assert_eq!(
            rfc3339(1_709_210_096_789_000),
            "2024-02-29T12:34:56.789000Z"
        );
    }
}
