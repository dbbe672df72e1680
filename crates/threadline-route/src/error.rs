//! [`RuleError`]: a rule, file or store entry that cannot be used.

use std::fmt;

/// A rule, rule file or store entry that cannot be used, or a source that cannot be
/// read. The router keeps its last good table and shows the error in its
/// [`Status`](crate::Status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    kind: RuleErrorKind,
    message: String,
}

/// The kinds of [`RuleError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RuleErrorKind {
    /// Not TOML or JSON, an unknown key, a value of the wrong type.
    Syntax,
    /// A rule that parses but cannot be used: a bad key, service, upstream, regular
    /// expression, or an id used twice.
    InvalidRule,
    /// The source could not be read (a file missing, a store unreachable).
    Source,
}

impl RuleError {
    pub(crate) fn new(kind: RuleErrorKind, message: impl Into<String>) -> Self {
        RuleError {
            kind,
            message: message.into(),
        }
    }

    /// What kind of error it is.
    pub fn kind(&self) -> RuleErrorKind {
        self.kind
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RuleError {}
