//! The journey store and its views: every log event of one correlation id, from every
//! service, in time order, with the hop structure ("which span called which").
//!
//! Events are recorded by [`JourneyLayer`](super::logs::JourneyLayer) with the context
//! current when they were emitted. The store is bounded: the most recent
//! [`MAX_JOURNEYS`] correlation ids, [`MAX_EVENTS`] events each (later ones are counted,
//! not kept).
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

/// How many correlation ids are kept.
pub const MAX_JOURNEYS: usize = 200;
/// How many events are kept per correlation id.
pub const MAX_EVENTS: usize = 1000;

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

struct Journey {
    events: Vec<JourneyEvent>,
    dropped: u64,
}

struct Inner {
    by_id: HashMap<String, Journey>,
    order: VecDeque<String>,
    seq: u64,
    max_journeys: usize,
    max_events: usize,
}

/// The bounded journey store; cheap to clone (shared).
#[derive(Clone)]
pub struct Journeys {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Journeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journeys").finish_non_exhaustive()
    }
}

impl Default for Journeys {
    fn default() -> Self {
        Self::new(MAX_JOURNEYS, MAX_EVENTS)
    }
}

impl Journeys {
    /// A store keeping `max_journeys` correlation ids, `max_events` events each.
    pub fn new(max_journeys: usize, max_events: usize) -> Self {
        Journeys {
            inner: Arc::new(Mutex::new(Inner {
                by_id: HashMap::new(),
                order: VecDeque::new(),
                seq: 0,
                max_journeys: max_journeys.max(1),
                max_events: max_events.max(1),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere never takes the journey pages down with it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one event under its correlation id.
    pub fn record(&self, mut event: JourneyEvent) {
        let mut g = self.lock();
        g.seq += 1;
        event.seq = g.seq;
        let max_events = g.max_events;
        if let Some(j) = g.by_id.get_mut(&event.correlation_id) {
            if j.events.len() < max_events {
                j.events.push(event);
            } else {
                j.dropped += 1;
            }
            return;
        }
        while g.order.len() >= g.max_journeys {
            if let Some(old) = g.order.pop_front() {
                g.by_id.remove(&old);
            }
        }
        g.order.push_back(event.correlation_id.clone());
        g.by_id.insert(
            event.correlation_id.clone(),
            Journey {
                events: vec![event],
                dropped: 0,
            },
        );
    }

    /// The journey of `correlation_id`, if it is still kept.
    pub fn get(&self, correlation_id: &str) -> Option<JourneyView> {
        let g = self.lock();
        let j = g.by_id.get(correlation_id)?;
        Some(JourneyView::build(
            correlation_id,
            j.events.clone(),
            j.dropped,
        ))
    }

    /// The kept journeys, most recent first.
    pub fn list(&self) -> Vec<JourneySummary> {
        let g = self.lock();
        g.order
            .iter()
            .rev()
            .filter_map(|id| g.by_id.get(id).map(|j| JourneySummary::of(id, j)))
            .collect()
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
            services: services_of(&j.events),
            events: j.events.len(),
            status: status_of(&j.events).to_owned(),
            first_message: first.map(|e| e.message.clone()).unwrap_or_default(),
        }
    }
}

fn status_of(events: &[JourneyEvent]) -> &'static str {
    if events.iter().any(|e| e.level == "ERROR") {
        "error"
    } else if events.iter().any(|e| e.level == "WARN") {
        "warn"
    } else {
        "ok"
    }
}

fn services_of(events: &[JourneyEvent]) -> Vec<String> {
    let seen: BTreeSet<&str> = events.iter().map(|e| e.service.as_str()).collect();
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
            status: status_of(&events).to_owned(),
            services: services_of(&events),
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
            r#"<p class="notice">{} later events of this journey were not kept (at most {MAX_EVENTS} per journey).</p>"#,
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
        let label = match &h.task {
            Some(t) => format!("{} · {}", esc(&h.service), esc(t)),
            None => esc(&h.service),
        };
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
        let who = match &e.task {
            Some(t) => format!(r#"<span class="task">{}</span>"#, esc(t)),
            None => String::new(),
        };
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

/// The list of recent journeys.
pub fn render_list(list: &[JourneySummary]) -> String {
    let mut b = String::with_capacity(8 * 1024);
    b.push_str(
        r#"<section class="hero"><h1>Recent journeys</h1><p class="meta"><span>Every correlation id the services logged, newest first.</span><a class="button" href="/orders/new">Place an order</a></p></section><section class="card">"#,
    );
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
