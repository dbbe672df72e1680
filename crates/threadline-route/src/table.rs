//! [`RouteTable`]: an immutable set of rules indexed by service and key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use smallvec::SmallVec;
use threadline::RoutingKey;

use crate::error::{RuleError, RuleErrorKind};
use crate::rule::{RequestHead, Rule};

type ByKey = HashMap<Box<str>, SmallVec<[u32; 2]>>;

/// An immutable route table. A lookup is two hash-map reads (service, then key) and
/// the conditions of the few rules found there, whatever the number of rules; a call
/// whose context has no key does no lookup at all.
///
/// Tables are never edited: a [`Router`](crate::Router) builds a new one when a source
/// changes and swaps it in atomically, so a call in flight keeps the table it started
/// with.
#[derive(Debug, Default)]
pub struct RouteTable {
    rules: Vec<Arc<Rule>>,
    index: HashMap<Box<str>, ByKey>,
}

impl RouteTable {
    /// A table of `rules`, first match wins among rules for the same service and key.
    /// Ids must be unique.
    pub fn new(rules: impl IntoIterator<Item = Rule>) -> Result<Self, RuleError> {
        Self::from_shared(rules.into_iter().map(Arc::new))
    }

    pub(crate) fn from_shared(
        rules: impl IntoIterator<Item = Arc<Rule>>,
    ) -> Result<Self, RuleError> {
        let mut t = RouteTable::default();
        let mut ids = std::collections::HashSet::new();
        for rule in rules {
            if !ids.insert(rule.id().to_owned()) {
                return Err(RuleError::new(
                    RuleErrorKind::InvalidRule,
                    format!("rule id {:?} is used twice", rule.id()),
                ));
            }
            let Ok(i) = u32::try_from(t.rules.len()) else {
                return Err(RuleError::new(RuleErrorKind::InvalidRule, "too many rules"));
            };
            let by_key = t.index.entry(rule.service().into()).or_default();
            for k in rule.keys() {
                by_key.entry(k.as_str().into()).or_default().push(i);
            }
            t.rules.push(rule);
        }
        Ok(t)
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the table has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in order.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|r| &**r)
    }

    fn candidates(&self, service: &str, key: &RoutingKey) -> &[u32] {
        let by_key = match self.index.get(service) {
            Some(b) => b,
            None if service.bytes().any(|b| b.is_ascii_uppercase()) => {
                match self.index.get(service.to_ascii_lowercase().as_str()) {
                    Some(b) => b,
                    None => return &[],
                }
            }
            None => return &[],
        };
        by_key.get(key.as_str()).map_or(&[], |v| v.as_slice())
    }

    /// The rule for a call to `service` (a host, or a named upstream) on `port` with
    /// `key`, whose conditions hold for `head` and that has not expired.
    pub fn route(
        &self,
        service: &str,
        port: Option<u16>,
        key: &RoutingKey,
        head: &RequestHead<'_>,
    ) -> Option<&Arc<Rule>> {
        let found = self.candidates(service, key);
        if found.is_empty() {
            return None;
        }
        let now = SystemTime::now();
        found
            .iter()
            .filter_map(|&i| self.rules.get(i as usize))
            .find(|r| !r.is_expired(now) && r.applies(port, head))
    }

    /// Whether a live rule claims `key` for `service`, whatever its conditions: what
    /// a consumer of messages asks (a baseline consumer skips such messages, the
    /// sandbox's takes them).
    pub fn claims(&self, service: &str, key: &RoutingKey) -> bool {
        let found = self.candidates(service, key);
        if found.is_empty() {
            return false;
        }
        let now = SystemTime::now();
        found
            .iter()
            .filter_map(|&i| self.rules.get(i as usize))
            .any(|r| !r.is_expired(now))
    }

    /// The rule with this id.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules().find(|r| r.id() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::Upstream;
    use http::{HeaderMap, Method, Uri};
    use std::time::Duration;

    fn up(p: u16) -> Upstream {
        Upstream::parse(&format!("http://127.0.0.1:{p}")).unwrap()
    }

    fn key(k: &str) -> RoutingKey {
        RoutingKey::new(k).unwrap()
    }

    #[test]
    fn service_key_and_conditions() {
        let t = RouteTable::new([
            Rule::new("a-get", "warehouse", ["alice"], up(1))
                .unwrap()
                .method(Method::GET)
                .path_prefix("/stock"),
            Rule::new("a-any", "Warehouse", ["alice", "amy"], up(2)).unwrap(),
            Rule::new("a-port", "orders:8443", ["alice"], up(3)).unwrap(),
            Rule::new("b-hdr", "orders", ["bob"], up(4))
                .unwrap()
                .header_regex("x-feature", "^beta")
                .unwrap(),
            Rule::new("b-re", "orders", ["bob"], up(5))
                .unwrap()
                .path_regex("^/v[12]/")
                .unwrap(),
            Rule::new("c-exact", "orders", ["carol"], up(6))
                .unwrap()
                .path_exact("/only"),
        ])
        .unwrap();
        let h = HeaderMap::new();
        let mut beta = HeaderMap::new();
        beta.insert("x-feature", "beta-2".parse().unwrap());
        let get = |path: &'static str| Uri::from_static(path);
        let route = |svc: &str, port, k: &str, m: &Method, uri: &Uri, h: &HeaderMap| {
            t.route(svc, port, &key(k), &RequestHead::http(m, uri, h))
                .map(|r| r.id().to_owned())
        };
        let (g, p) = (Method::GET, Method::POST);
        type Case<'a> = (
            &'a str,
            Option<u16>,
            &'a str,
            &'a Method,
            &'static str,
            &'a HeaderMap,
            Option<&'a str>,
            &'a str,
        );
        let cases: &[Case] = &[
            (
                "warehouse",
                None,
                "alice",
                &g,
                "/stock/1",
                &h,
                Some("a-get"),
                "all conditions hold",
            ),
            (
                "warehouse",
                None,
                "alice",
                &p,
                "/stock/1",
                &h,
                Some("a-any"),
                "method differs: next rule",
            ),
            (
                "WAREHOUSE",
                None,
                "amy",
                &g,
                "/",
                &h,
                Some("a-any"),
                "case-insensitive service, key set",
            ),
            (
                "warehouse",
                None,
                "zoe",
                &g,
                "/",
                &h,
                None,
                "no rule for the key",
            ),
            (
                "billing",
                None,
                "alice",
                &g,
                "/",
                &h,
                None,
                "no rule for the service",
            ),
            (
                "orders",
                Some(8443),
                "alice",
                &g,
                "/",
                &h,
                Some("a-port"),
                "port matches",
            ),
            (
                "orders",
                Some(80),
                "alice",
                &g,
                "/",
                &h,
                None,
                "port differs",
            ),
            (
                "orders",
                None,
                "bob",
                &g,
                "/x",
                &beta,
                Some("b-hdr"),
                "header regex",
            ),
            (
                "orders",
                None,
                "bob",
                &g,
                "/v2/x",
                &h,
                Some("b-re"),
                "path regex",
            ),
            ("orders", None, "bob", &g, "/v3/x", &h, None, "neither"),
            (
                "orders",
                None,
                "carol",
                &g,
                "/only",
                &h,
                Some("c-exact"),
                "exact path",
            ),
            ("orders", None, "carol", &g, "/only/", &h, None, "not exact"),
        ];
        for (svc, port, k, m, path, hd, want, reason) in cases {
            assert_eq!(
                route(svc, *port, k, m, &get(path), hd).as_deref(),
                *want,
                "{reason}"
            );
        }
        assert!(t.claims("orders", &key("carol")));
        assert!(!t.claims("orders", &key("zoe")));
    }

    #[test]
    fn expired_rules_do_not_route_or_claim() {
        let past = SystemTime::now() - Duration::from_secs(1);
        let future = SystemTime::now() + Duration::from_secs(3600);
        let t = RouteTable::new([
            Rule::new("old", "svc", ["alice"], up(1))
                .unwrap()
                .expires_at(past),
            Rule::new("live", "svc", ["bob"], up(2))
                .unwrap()
                .expires_at(future),
        ])
        .unwrap();
        let head = RequestHead::none();
        assert!(t.route("svc", None, &key("alice"), &head).is_none());
        assert!(!t.claims("svc", &key("alice")));
        assert_eq!(
            t.route("svc", None, &key("bob"), &head).unwrap().id(),
            "live"
        );
    }

    #[test]
    fn messages_see_only_rules_without_conditions() {
        let t = RouteTable::new([Rule::new("p", "svc", ["alice"], up(1))
            .unwrap()
            .path_prefix("/x")])
        .unwrap();
        assert!(
            t.route("svc", None, &key("alice"), &RequestHead::none())
                .is_none()
        );
        assert!(t.claims("svc", &key("alice")));
    }

    #[test]
    fn ids_are_unique() {
        let e = RouteTable::new([
            Rule::new("same", "a", ["k"], up(1)).unwrap(),
            Rule::new("same", "b", ["k"], up(2)).unwrap(),
        ])
        .unwrap_err();
        assert_eq!(e.kind(), RuleErrorKind::InvalidRule);
    }

    #[test]
    fn a_thousand_rules_index_by_service_and_key() {
        let rules = (0..1000).map(|i| {
            Rule::new(
                format!("r{i}"),
                &format!("svc{}", i % 50),
                [format!("dev{i}")],
                up(1),
            )
            .unwrap()
        });
        let t = RouteTable::new(rules).unwrap();
        assert_eq!(t.len(), 1000);
        assert_eq!(t.candidates("svc7", &key("dev7")), &[7]);
        assert_eq!(t.candidates("svc7", &key("dev8")), &[] as &[u32]);
    }
}
