//! What happened to every order, counted per order number rather than as a difference
//! of totals (a ghost shipment never cancels a lost one).
//!
//! The warehouse gives each order a number from this run's sequence and records how the
//! queue answered its publish: **accepted** (the broker confirmed it), **refused** (the
//! job was certainly not taken: the user was told "not created") or **unknown** (the
//! job was handed to the broker but no confirmation came back: the user was told so,
//! and a retry with the same idempotency key is safe). The worker records each shipment.
//! Retries merge: an order stays accepted once accepted, and an order that was ever of
//! unknown outcome is never reported as refused.
//!
//! Memory: one byte per order of this run, plus the idempotency keys of the last
//! [`KEY_WINDOW`] (at most [`MAX_KEYS`], about 60 bytes each) and the ids of at most
//! [`MAX_EARLIER`] jobs of earlier runs (to recognise a redelivered one).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long an idempotency key is remembered: a retry within this window gets the same
/// order (and the brokers de-duplicate the job over the same window).
pub const KEY_WINDOW: Duration = Duration::from_secs(600);
/// At most this many idempotency keys are remembered (oldest forgotten first).
pub const MAX_KEYS: usize = 100_000;
/// At most this many jobs of earlier runs are remembered as shipped.
pub const MAX_EARLIER: usize = 65_536;

/// The first order number of a run.
pub const FIRST_ORDER: u64 = 1000;

const OPEN: u8 = 0;
const ACCEPTED: u8 = 1;
const REFUSED: u8 = 2;
const UNKNOWN: u8 = 3;
const STATE: u8 = 0b11;
/// A worker is packing it.
const SHIPPING: u8 = 0b100;
/// Packed and handed to the carrier.
const SHIPPED: u8 = 0b1000;

/// How the queue answered one order, as told to the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Not answered yet (a publish is under way).
    Open,
    /// The queue confirmed the job.
    Accepted,
    /// The job was certainly not taken.
    Refused,
    /// The job was handed over but not confirmed.
    Unknown,
}

impl Settled {
    fn bits(self) -> u8 {
        match self {
            Settled::Open => OPEN,
            Settled::Accepted => ACCEPTED,
            Settled::Refused => REFUSED,
            Settled::Unknown => UNKNOWN,
        }
    }

    fn of(bits: u8) -> Self {
        match bits & STATE {
            ACCEPTED => Settled::Accepted,
            REFUSED => Settled::Refused,
            UNKNOWN => Settled::Unknown,
            _ => Settled::Open,
        }
    }

    /// `self` merged with the outcome of a later attempt.
    fn merge(self, later: Settled) -> Settled {
        use Settled::*;
        match (self, later) {
            (Accepted, _) | (_, Accepted) => Accepted,
            (Unknown, _) | (_, Unknown) => Unknown,
            (Refused, _) | (_, Refused) => Refused,
            (Open, Open) => Open,
        }
    }
}

/// What [`Ledger::begin`] found for an idempotency key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Begin {
    /// A new order with this number: publish it.
    New(u64),
    /// The key names an earlier order of this run, in this state.
    Existing(u64, Settled),
    /// The key was used for a different order (item or quantity differ).
    Mismatch,
}

/// What the worker should do with a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Ship it.
    Ship,
    /// It was shipped (or is being shipped) already: acknowledge it without shipping.
    Duplicate,
}

/// The per-order counts of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Order numbers given out.
    pub orders: u64,
    /// Orders whose job the queue confirmed.
    pub accepted: u64,
    /// Orders whose job was certainly not taken (told "not created").
    pub refused: u64,
    /// Orders whose publish was never confirmed nor refused (told "unknown").
    pub unknown: u64,
    /// Orders of this run shipped by this run.
    pub shipped: u64,
    /// Of those, orders the user was told were not created: must be 0.
    pub shipped_after_refusal: u64,
    /// Of those, orders whose outcome the user was told was unknown.
    pub shipped_unknown: u64,
    /// Accepted orders not shipped (yet).
    pub accepted_unshipped: u64,
    /// Orders still being published (no answer yet).
    pub open: u64,
    /// Deliveries of a job already shipped, acknowledged without shipping it again.
    pub duplicates: u64,
    /// Jobs of earlier runs shipped by this run.
    pub earlier_runs: u64,
}

struct Key {
    order_id: u64,
    params: u64,
}

struct Inner {
    /// State bits per order, index = order id - FIRST_ORDER.
    orders: Vec<u8>,
    keys: HashMap<u64, Key>,
    key_order: VecDeque<(u64, Instant)>,
    earlier: HashSet<u64>,
    earlier_order: VecDeque<u64>,
    duplicates: u64,
    earlier_runs: u64,
}

/// The per-order record of one run. Shared by the warehouse and the worker.
pub struct Ledger {
    run: String,
    hasher: std::collections::hash_map::RandomState,
    inner: Mutex<Inner>,
    log: Option<ShippedLog>,
}

/// The orders shipped from one broker queue, on disk: a job the broker delivers again
/// after the demo or the broker restarted (an acknowledgement the broker lost when it
/// was killed) is recognised by the next run too, and acknowledged without shipping.
///
/// One line per shipped job, `<run> <order id>`, appended (and written through to the
/// file) before the job is acknowledged; at start the last [`MAX_EARLIER`] are read
/// back and the file is rewritten with only those.
#[derive(Debug)]
pub struct ShippedLog {
    path: std::path::PathBuf,
    out: Mutex<std::fs::File>,
}

impl ShippedLog {
    /// The log of queue `queue` (a checked name: `[A-Za-z0-9_-]`), in the system's temp
    /// directory, with the jobs it already holds.
    pub fn open(queue: &str) -> std::io::Result<(ShippedLog, Vec<(String, u64)>)> {
        let dir = std::env::temp_dir().join("threadline-demo");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{queue}.shipped"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut entries: Vec<(String, u64)> = text
            .lines()
            .filter_map(|l| {
                let (run, id) = l.split_once(' ')?;
                Some((run.to_owned(), id.parse().ok()?))
            })
            .collect();
        if entries.len() > MAX_EARLIER {
            entries.drain(..entries.len() - MAX_EARLIER);
        }
        let mut compact = String::with_capacity(entries.len() * 16);
        for (run, id) in &entries {
            compact.push_str(&format!("{run} {id}\n"));
        }
        let tmp = path.with_extension("shipped.tmp");
        std::fs::write(&tmp, compact)?;
        std::fs::rename(&tmp, &path)?;
        let out = std::fs::OpenOptions::new().append(true).open(&path)?;
        Ok((
            ShippedLog {
                path,
                out: Mutex::new(out),
            },
            entries,
        ))
    }

    /// Where the log is.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn record(&self, run: &str, order_id: u64) {
        use std::io::Write as _;
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = writeln!(out, "{run} {order_id}") {
            tracing::warn!(error = %e, path = %self.path.display(), "could not record a shipped order");
        }
    }
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("run", &self.run)
            .field("counts", &self.counts())
            .finish()
    }
}

impl Ledger {
    /// An empty ledger for the run called `run`.
    pub fn new(run: impl Into<String>) -> Self {
        Ledger {
            run: run.into(),
            hasher: Default::default(),
            inner: Mutex::new(Inner {
                orders: Vec::new(),
                keys: HashMap::new(),
                key_order: VecDeque::new(),
                earlier: HashSet::new(),
                earlier_order: VecDeque::new(),
                duplicates: 0,
                earlier_runs: 0,
            }),
            log: None,
        }
    }

    /// A ledger that records every shipped job in `log` and knows the jobs `shipped`
    /// (read from it) as already shipped.
    pub fn with_log(run: impl Into<String>, log: ShippedLog, shipped: &[(String, u64)]) -> Self {
        let mut ledger = Ledger::new(run);
        {
            let mut g = ledger.lock();
            for (run, id) in shipped {
                let k = ledger.hash(&[run.as_bytes(), &id.to_le_bytes()]);
                if g.earlier.insert(k) {
                    g.earlier_order.push_back(k);
                }
            }
        }
        ledger.log = Some(log);
        ledger
    }

    /// This run's name (carried by every job it publishes).
    pub fn run(&self) -> &str {
        &self.run
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hash(&self, parts: &[&[u8]]) -> u64 {
        let mut h = self.hasher.build_hasher();
        for p in parts {
            h.write_usize(p.len());
            h.write(p);
        }
        h.finish()
    }

    /// Starts (or resumes) the order named by the idempotency `key` for `item` ×
    /// `quantity`.
    pub fn begin(&self, key: &str, item: &str, quantity: u32) -> Begin {
        self.begin_at(key, item, quantity, Instant::now())
    }

    fn begin_at(&self, key: &str, item: &str, quantity: u32, now: Instant) -> Begin {
        let k = self.hash(&[key.as_bytes()]);
        let params = self.hash(&[item.as_bytes(), &quantity.to_le_bytes()]);
        let mut g = self.lock();
        // Forget keys older than the window, and the oldest beyond the count bound.
        while let Some(&(old, at)) = g.key_order.front() {
            if now.duration_since(at) < KEY_WINDOW && g.key_order.len() < MAX_KEYS {
                break;
            }
            g.key_order.pop_front();
            g.keys.remove(&old);
        }
        if let Some(existing) = g.keys.get(&k) {
            if existing.params != params {
                return Begin::Mismatch;
            }
            let id = existing.order_id;
            let state = g
                .orders
                .get((id - FIRST_ORDER) as usize)
                .map_or(Settled::Open, |b| Settled::of(*b));
            return Begin::Existing(id, state);
        }
        let id = FIRST_ORDER + g.orders.len() as u64;
        g.orders.push(OPEN);
        g.keys.insert(
            k,
            Key {
                order_id: id,
                params,
            },
        );
        g.key_order.push_back((k, now));
        Begin::New(id)
    }

    /// Records how the queue answered one attempt of order `id`; answers the merged
    /// state, which is what the user is told.
    pub fn settle(&self, id: u64, outcome: Settled) -> Settled {
        let mut g = self.lock();
        let Some(bits) = id
            .checked_sub(FIRST_ORDER)
            .and_then(|i| g.orders.get_mut(i as usize))
        else {
            return outcome;
        };
        let merged = Settled::of(*bits).merge(outcome);
        *bits = (*bits & !STATE) | merged.bits();
        merged
    }

    /// The worker is about to ship order `order_id` of run `run`.
    pub fn claim(&self, run: &str, order_id: u64) -> Claim {
        let mut g = self.lock();
        if run == self.run {
            let Some(bits) = order_id
                .checked_sub(FIRST_ORDER)
                .and_then(|i| g.orders.get_mut(i as usize))
            else {
                // A number this run never gave out: treat it as a job of its own.
                return Claim::Ship;
            };
            if *bits & (SHIPPING | SHIPPED) != 0 {
                g.duplicates += 1;
                return Claim::Duplicate;
            }
            *bits |= SHIPPING;
            return Claim::Ship;
        }
        let k = self.hash(&[run.as_bytes(), &order_id.to_le_bytes()]);
        if g.earlier.contains(&k) {
            g.duplicates += 1;
            return Claim::Duplicate;
        }
        if g.earlier_order.len() >= MAX_EARLIER
            && let Some(old) = g.earlier_order.pop_front()
        {
            g.earlier.remove(&old);
        }
        g.earlier.insert(k);
        g.earlier_order.push_back(k);
        Claim::Ship
    }

    /// The worker shipped order `order_id` of run `run` (after [`Ledger::claim`]): also
    /// recorded in the queue's log, before the job is acknowledged.
    pub fn shipped(&self, run: &str, order_id: u64) {
        if let Some(log) = &self.log {
            log.record(run, order_id);
        }
        let mut g = self.lock();
        if run == self.run
            && let Some(bits) = order_id
                .checked_sub(FIRST_ORDER)
                .and_then(|i| g.orders.get_mut(i as usize))
        {
            *bits = (*bits & !SHIPPING) | SHIPPED;
            return;
        }
        g.earlier_runs += 1;
    }

    /// The worker could not finish shipping (it was stopped): the job stays unshipped.
    pub fn unclaim(&self, run: &str, order_id: u64) {
        let mut g = self.lock();
        if run == self.run
            && let Some(bits) = order_id
                .checked_sub(FIRST_ORDER)
                .and_then(|i| g.orders.get_mut(i as usize))
        {
            *bits &= !SHIPPING;
            return;
        }
        let k = self.hash(&[run.as_bytes(), &order_id.to_le_bytes()]);
        g.earlier.remove(&k);
    }

    /// Counts every order by what happened to it.
    pub fn counts(&self) -> Counts {
        let g = self.lock();
        let mut c = Counts {
            orders: g.orders.len() as u64,
            duplicates: g.duplicates,
            earlier_runs: g.earlier_runs,
            ..Counts::default()
        };
        for &bits in &g.orders {
            let shipped = bits & SHIPPED != 0;
            match Settled::of(bits) {
                Settled::Accepted => {
                    c.accepted += 1;
                    if !shipped {
                        c.accepted_unshipped += 1;
                    }
                }
                Settled::Refused => {
                    c.refused += 1;
                    if shipped {
                        c.shipped_after_refusal += 1;
                    }
                }
                Settled::Unknown => {
                    c.unknown += 1;
                    if shipped {
                        c.shipped_unknown += 1;
                    }
                }
                Settled::Open => c.open += 1,
            }
            if shipped {
                c.shipped += 1;
            }
        }
        c
    }

    /// Bytes held by the ledger (for the status page).
    pub fn bytes(&self) -> usize {
        let g = self.lock();
        g.orders.capacity()
            + g.keys.capacity() * (std::mem::size_of::<(u64, Key)>() + 8)
            + g.key_order.capacity() * std::mem::size_of::<(u64, Instant)>()
            + g.earlier.capacity() * 16
            + g.earlier_order.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ghost_shipment_never_cancels_a_lost_order() {
        // Today's arithmetic (enqueued - handled) would say 0 lost here.
        let l = Ledger::new("run-a");
        let Begin::New(lost) = l.begin("k1", "Kettle", 1) else {
            panic!("new")
        };
        let Begin::New(ghost) = l.begin("k2", "Teapot", 1) else {
            panic!("new")
        };
        assert_eq!(l.settle(lost, Settled::Accepted), Settled::Accepted);
        assert_eq!(l.settle(ghost, Settled::Refused), Settled::Refused);
        assert_eq!(l.claim("run-a", ghost), Claim::Ship);
        l.shipped("run-a", ghost);
        let c = l.counts();
        assert_eq!(
            (
                c.orders,
                c.accepted,
                c.refused,
                c.shipped,
                c.shipped_after_refusal,
                c.accepted_unshipped
            ),
            (2, 1, 1, 1, 1, 1),
            "{c:?}"
        );
    }

    #[test]
    fn retries_with_the_same_key_resume_the_same_order_and_merge_outcomes() {
        let l = Ledger::new("r");
        let Begin::New(id) = l.begin("key-1", "Kettle", 2) else {
            panic!("new")
        };
        assert_eq!(l.settle(id, Settled::Unknown), Settled::Unknown);
        assert_eq!(
            l.begin("key-1", "Kettle", 2),
            Begin::Existing(id, Settled::Unknown)
        );
        // A refused retry of an order of unknown outcome is still unknown.
        assert_eq!(l.settle(id, Settled::Refused), Settled::Unknown);
        assert_eq!(l.settle(id, Settled::Accepted), Settled::Accepted);
        assert_eq!(l.settle(id, Settled::Refused), Settled::Accepted);
        assert_eq!(l.begin("key-1", "Teapot", 2), Begin::Mismatch);
        assert_eq!(l.begin("key-1", "Kettle", 3), Begin::Mismatch);
        let c = l.counts();
        assert_eq!((c.orders, c.accepted), (1, 1));
    }

    #[test]
    fn a_job_is_shipped_once_whatever_the_redeliveries() {
        let l = Ledger::new("now");
        let Begin::New(id) = l.begin("k", "Kettle", 1) else {
            panic!("new")
        };
        l.settle(id, Settled::Accepted);
        assert_eq!(l.claim("now", id), Claim::Ship);
        assert_eq!(
            l.claim("now", id),
            Claim::Duplicate,
            "being shipped already"
        );
        l.shipped("now", id);
        assert_eq!(l.claim("now", id), Claim::Duplicate);
        // A job of an earlier run, delivered twice.
        assert_eq!(l.claim("before", 1000), Claim::Ship);
        l.shipped("before", 1000);
        assert_eq!(l.claim("before", 1000), Claim::Duplicate);
        // A stopped worker gives its claim back.
        assert_eq!(l.claim("before", 1001), Claim::Ship);
        l.unclaim("before", 1001);
        assert_eq!(l.claim("before", 1001), Claim::Ship);
        let c = l.counts();
        assert_eq!(
            (
                c.shipped,
                c.duplicates,
                c.earlier_runs,
                c.accepted_unshipped
            ),
            (1, 3, 1, 0)
        );
    }

    #[test]
    fn keys_are_forgotten_after_the_window() {
        let l = Ledger::new("r");
        let t0 = Instant::now();
        let Begin::New(a) = l.begin_at("k", "Kettle", 1, t0) else {
            panic!("new")
        };
        assert_eq!(
            l.begin_at("k", "Kettle", 1, t0 + Duration::from_secs(1)),
            Begin::Existing(a, Settled::Open)
        );
        let later = t0 + KEY_WINDOW + Duration::from_secs(1);
        assert!(matches!(
            l.begin_at("other", "Kettle", 1, later),
            Begin::New(_)
        ));
        assert!(
            matches!(l.begin_at("k", "Kettle", 1, later), Begin::New(b) if b != a),
            "a key older than the window starts a new order"
        );
    }

    #[test]
    fn a_job_shipped_by_an_earlier_run_is_known_from_the_queues_log() {
        let queue = format!("ledger-test-{}-{}", std::process::id(), fastrand::u32(..));
        let (log, old) = ShippedLog::open(&queue).unwrap();
        assert!(old.is_empty());
        let first = Ledger::with_log("run-1", log, &old);
        let Begin::New(id) = first.begin("k1", "Kettle", 1) else {
            panic!("a new order")
        };
        assert_eq!(first.claim("run-1", id), Claim::Ship);
        first.shipped("run-1", id);
        drop(first);
        // The broker lost the acknowledgement and delivers the job to the next run.
        let (log, shipped) = ShippedLog::open(&queue).unwrap();
        assert_eq!(shipped, vec![("run-1".to_owned(), id)]);
        let path = log.path().to_owned();
        let second = Ledger::with_log("run-2", log, &shipped);
        assert_eq!(second.claim("run-1", id), Claim::Duplicate);
        assert_eq!(second.counts().duplicates, 1);
        std::fs::remove_file(path).unwrap();
    }
}
