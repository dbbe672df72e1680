//! Store entries (key → JSON rule) as rules.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::error::{RuleError, RuleErrorKind};
use crate::rule::{Rule, RuleSpec};

/// The entries of a store (key → JSON rule), as rules: an entry that does not parse
/// keeps the rule it last gave (`last_good`), and is reported.
pub(crate) fn rules_from_entries(
    entries: &BTreeMap<String, (Vec<u8>, Option<SystemTime>)>,
    last_good: &mut BTreeMap<String, Rule>,
) -> (Vec<Rule>, Vec<RuleError>) {
    let mut errors = Vec::new();
    let mut rules = Vec::new();
    last_good.retain(|k, _| entries.contains_key(k));
    for (key, (value, written)) in entries {
        match parse_entry(key, value, *written) {
            Ok(rule) => {
                last_good.insert(key.clone(), rule.clone());
                rules.push(rule);
            }
            Err(e) => {
                if let Some(rule) = last_good.get(key) {
                    rules.push(rule.clone());
                }
                errors.push(e);
            }
        }
    }
    (rules, errors)
}

/// One store entry: a JSON [`RuleSpec`]; its id is the entry's key when it names none.
pub(crate) fn parse_entry(
    key: &str,
    value: &[u8],
    written: Option<SystemTime>,
) -> Result<Rule, RuleError> {
    let mut spec: RuleSpec = serde_json::from_slice(value).map_err(|e| {
        RuleError::new(
            RuleErrorKind::Syntax,
            format!("entry {key:?} is not a JSON rule: {e}"),
        )
    })?;
    if spec.id.is_empty() {
        spec.id = key.to_owned();
    }
    spec.to_rule(written)
}

/// Several entries' errors as one, naming each.
pub(crate) fn join_errors(errors: Vec<RuleError>) -> Option<RuleError> {
    let kind = errors.first()?.kind();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Some(RuleError::new(kind, text.join("; ")))
}
