//! [`FileRules`]: rules from a TOML file, reloaded when it changes.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::error::{RuleError, RuleErrorKind};
use crate::router::{RuleSource, SourceSink};
use crate::rule::{Rule, RuleSpec};

/// Rules from a TOML file of `[[rule]]` tables (see [`RuleSpec`]), checked every
/// `interval` (default 1 s) and reloaded when its modification time or size changes.
/// A file that does not parse, or whose rules cannot make a table, keeps the last good
/// rules in force and is reported ([`Status`](crate::Status), a warn log line).
/// `ttl_secs` counts from the file's modification time.
///
/// ```toml
/// [[rule]]
/// id = "alice-warehouse"
/// service = "warehouse"
/// key = "alice"
/// upstream = "http://127.0.0.1:9001"
/// ```
#[derive(Clone, Debug)]
pub struct FileRules {
    path: PathBuf,
    interval: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<RuleSpec>,
}

impl FileRules {
    /// Rules from `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileRules {
            path: path.into(),
            interval: Duration::from_secs(1),
        }
    }

    /// How often the file is checked for changes (default 1 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Reads and checks the file once.
    pub fn load(path: &Path) -> Result<Vec<Rule>, RuleError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            RuleError::new(
                RuleErrorKind::Source,
                format!("{}: cannot be read: {e}", path.display()),
            )
        })?;
        let written = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        Self::parse(&text, written)
            .map_err(|e| RuleError::new(e.kind(), format!("{}: {e}", path.display())))
    }

    /// Checks the text of a rule file.
    pub fn parse(text: &str, written: Option<SystemTime>) -> Result<Vec<Rule>, RuleError> {
        let file: RuleFile = toml::from_str(text)
            .map_err(|e| RuleError::new(RuleErrorKind::Syntax, format!("not a rule file: {e}")))?;
        file.rule.iter().map(|s| s.to_rule(written)).collect()
    }
}

/// What tells a file changed: its modification time and its length.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl RuleSource for FileRules {
    fn name(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn run(self: Box<Self>, sink: SourceSink) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut seen: Option<Option<(SystemTime, u64)>> = None;
            let mut tick = tokio::time::interval(self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !sink.is_closed() {
                tick.tick().await;
                let now = stamp(&self.path);
                if seen == Some(now) {
                    continue;
                }
                seen = Some(now);
                match Self::load(&self.path) {
                    Ok(rules) => sink.replace(rules),
                    Err(e) => sink.error(e),
                }
            }
        })
    }
}
