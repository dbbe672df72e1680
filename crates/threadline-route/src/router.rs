//! [`Router`]: the current [`RouteTable`], rebuilt from its sources and swapped in
//! atomically.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use threadline::RoutingKey;

use crate::error::RuleError;
use crate::rule::{RequestHead, Rule};
use crate::table::RouteTable;

/// A source of rules: code, a file, a store. It runs as a task of its own and hands
/// the router its whole current rule set each time it changes ([`SourceSink::replace`])
/// or says why it could not ([`SourceSink::error`]: the router keeps the source's last
/// good rules).
///
/// ```
/// use std::future::Future;
/// use std::pin::Pin;
/// use threadline_route::{Rule, RuleSource, SourceSink, Upstream};
///
/// /// Rules from somewhere of your own, loaded once.
/// struct Mine;
///
/// impl RuleSource for Mine {
///     fn name(&self) -> String {
///         "mine".into()
///     }
///     fn run(self: Box<Self>, sink: SourceSink) -> Pin<Box<dyn Future<Output = ()> + Send>> {
///         Box::pin(async move {
///             let up = Upstream::parse("http://127.0.0.1:9001").unwrap();
///             match Rule::new("alice", "warehouse", ["alice"], up) {
///                 Ok(rule) => sink.replace(vec![rule]),
///                 Err(e) => sink.error(e),
///             }
///         })
///     }
/// }
/// ```
pub trait RuleSource: Send + 'static {
    /// The source's name, in the status and in logs.
    fn name(&self) -> String;

    /// Runs the source until it is done or [`SourceSink::is_closed`]. The router
    /// spawns it on the current Tokio runtime and aborts it when the router is dropped.
    fn run(self: Box<Self>, sink: SourceSink) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Rules given in code, once.
#[derive(Debug)]
pub struct StaticRules {
    name: String,
    rules: Vec<Rule>,
}

impl StaticRules {
    /// `rules` under the source name `name`.
    pub fn new(name: impl Into<String>, rules: Vec<Rule>) -> Self {
        StaticRules {
            name: name.into(),
            rules,
        }
    }
}

impl RuleSource for StaticRules {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn run(self: Box<Self>, sink: SourceSink) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        sink.replace(self.rules);
        Box::pin(async {})
    }
}

#[derive(Debug, Default, Clone)]
struct SourceState {
    name: String,
    rules: Vec<Arc<Rule>>,
    updates: u64,
    last_update: Option<SystemTime>,
    last_error: Option<(SystemTime, RuleError)>,
}

#[derive(Default)]
struct Shared {
    table: ArcSwap<RouteTable>,
    sources: Mutex<Vec<SourceState>>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for t in self
            .tasks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
    }
}

/// The current route table and the sources it is built from. Cheap to clone (one
/// reference count); the clones share the table.
///
/// Each source keeps its own last good rule set; when one changes, the table is
/// rebuilt from all of them (in the order the sources were added, then each source's
/// order; first match wins) and swapped in whole: a lookup sees the old table or the
/// new one, never a mix, and a call in flight keeps the rule it was given. A rule set
/// that cannot make a table (an id used twice across sources) is refused whole and
/// reported, the previous table staying in force.
///
/// ```
/// use threadline::RoutingKey;
/// use threadline_route::{RequestHead, Router, Rule, Upstream};
///
/// let router = Router::new();
/// let up = Upstream::parse("http://127.0.0.1:9001").unwrap();
/// router.set_rules("code", vec![Rule::new("alice", "warehouse", ["alice"], up).unwrap()]);
/// let key = RoutingKey::new("alice").unwrap();
/// let rule = router.route("warehouse", None, &key, &RequestHead::none()).unwrap();
/// assert_eq!(rule.upstream().to_string(), "http://127.0.0.1:9001");
/// ```
#[derive(Clone, Default)]
pub struct Router {
    shared: Arc<Shared>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("rules", &self.shared.table.load().len())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router with an empty table.
    pub fn new() -> Self {
        Router::default()
    }

    /// Adds a source and spawns it on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn add_source(&self, source: impl RuleSource) -> &Self {
        let source = Box::new(source);
        let sink = self.sink(source.name());
        let task = tokio::spawn(source.run(sink));
        self.shared
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task.abort_handle());
        self
    }

    /// Sets the rules of the source `name` from code (adding the source if new),
    /// without a task. Answers the error when the rules cannot make a table.
    pub fn set_rules(&self, name: &str, rules: Vec<Rule>) -> Result<(), RuleError> {
        self.sink(name.to_owned()).apply(rules)
    }

    fn sink(&self, name: String) -> SourceSink {
        let mut sources = self
            .shared
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let index = match sources.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => {
                sources.push(SourceState {
                    name,
                    ..SourceState::default()
                });
                sources.len() - 1
            }
        };
        SourceSink {
            shared: Arc::downgrade(&self.shared),
            index,
        }
    }

    /// The rule for a call (see [`RouteTable::route`]), from the table in force.
    pub fn route(
        &self,
        service: &str,
        port: Option<u16>,
        key: &RoutingKey,
        head: &RequestHead<'_>,
    ) -> Option<Arc<Rule>> {
        self.shared
            .table
            .load()
            .route(service, port, key, head)
            .cloned()
    }

    /// Whether a live rule claims `key` for `service` (see [`RouteTable::claims`]).
    pub fn claims(&self, service: &str, key: &RoutingKey) -> bool {
        self.shared.table.load().claims(service, key)
    }

    /// The table in force.
    pub fn table(&self) -> Arc<RouteTable> {
        self.shared.table.load_full()
    }

    /// What each source last did: for logs, an admin page, `threadline inspect`.
    pub fn status(&self) -> Status {
        let sources = self
            .shared
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Status {
            rules: self.shared.table.load().len(),
            sources: sources
                .iter()
                .map(|s| SourceStatus {
                    name: s.name.clone(),
                    rules: s.rules.len(),
                    updates: s.updates,
                    last_update: s.last_update,
                    last_error: s.last_error.clone(),
                })
                .collect(),
        }
    }
}

/// What a [`RuleSource`] hands its rules to.
#[derive(Clone, Debug)]
pub struct SourceSink {
    shared: Weak<Shared>,
    index: usize,
}

impl SourceSink {
    /// The source's whole current rule set: replaces what it gave before. A set that
    /// cannot make a table is refused and reported as by [`SourceSink::error`].
    pub fn replace(&self, rules: Vec<Rule>) {
        // Refused sets are reported in `apply`.
        let _ = self.apply(rules);
    }

    fn apply(&self, rules: Vec<Rule>) -> Result<(), RuleError> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        let rules: Vec<Arc<Rule>> = rules.into_iter().map(Arc::new).collect();
        let mut sources = shared
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let all = sources.iter().enumerate().flat_map(|(i, s)| {
            if i == self.index {
                rules.as_slice()
            } else {
                s.rules.as_slice()
            }
        });
        match RouteTable::from_shared(all.cloned()) {
            Ok(table) => {
                // Stored while the sources are locked: two sources updating at once
                // store their tables in the order they were built.
                shared.table.store(Arc::new(table));
                if let Some(s) = sources.get_mut(self.index) {
                    s.rules = rules;
                    s.updates += 1;
                    s.last_update = Some(SystemTime::now());
                    s.last_error = None;
                }
                Ok(())
            }
            Err(e) => {
                if let Some(s) = sources.get_mut(self.index) {
                    report(s, e.clone());
                }
                Err(e)
            }
        }
    }

    /// The source could not give a new rule set (a file or entry that does not parse,
    /// a store unreachable): its last good rules stay in force; the error is logged
    /// at warn level and kept in the [`Status`] until the next good set.
    pub fn error(&self, error: RuleError) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut sources = shared
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = sources.get_mut(self.index) {
            report(s, error);
        }
    }

    /// Whether the router is gone (a source's task may stop).
    pub fn is_closed(&self) -> bool {
        self.shared.strong_count() == 0
    }
}

fn report(s: &mut SourceState, error: RuleError) {
    tracing::warn!(
        target: "threadline_route",
        source = %s.name,
        error = %error,
        "route rules not applied; the last good rules stay in force"
    );
    s.last_error = Some((SystemTime::now(), error));
}

/// What a [`Router`]'s sources last did. Its `Display` is the inspect-style summary.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Status {
    /// Rules in the table in force.
    pub rules: usize,
    /// Each source, in order.
    pub sources: Vec<SourceStatus>,
}

/// One source's part of a [`Status`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SourceStatus {
    /// The source's name.
    pub name: String,
    /// Its rules in force (its last good set).
    pub rules: usize,
    /// Rule sets applied so far.
    pub updates: u64,
    /// When the last good set was applied.
    pub last_update: Option<SystemTime>,
    /// The last error since then, and when.
    pub last_error: Option<(SystemTime, RuleError)>,
}

impl Status {
    /// Whether any source's last attempt failed.
    pub fn has_errors(&self) -> bool {
        self.sources.iter().any(|s| s.last_error.is_some())
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "route table: {} rule(s) in force", self.rules)?;
        for s in &self.sources {
            write!(
                f,
                "  source {}: {} rule(s), {} update(s)",
                s.name, s.rules, s.updates
            )?;
            match &s.last_error {
                Some((_, e)) => writeln!(f, "; last update refused, last good rules kept: {e}")?,
                None => writeln!(f)?,
            }
        }
        Ok(())
    }
}
