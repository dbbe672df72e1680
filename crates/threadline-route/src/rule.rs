//! One routing rule: service + key (+ conditions) → alternate upstream, and its
//! serialised form for files and stores.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderName, Method, Uri};
use regex::Regex;
use serde::{Deserialize, Serialize};
use threadline::RoutingKey;

use crate::error::{RuleError, RuleErrorKind};

/// Where a routed call goes instead: a scheme and an authority (`http://10.0.0.7:8080`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
}

impl Upstream {
    /// Parses `scheme://host[:port]` (no path, query or user info).
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let bad = || {
            RuleError::new(
                RuleErrorKind::InvalidRule,
                format!("upstream {text:?} is not scheme://host[:port]"),
            )
        };
        let uri: Uri = text.parse().map_err(|_| bad())?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(bad());
        };
        if authority.as_str().contains('@')
            || uri.query().is_some()
            || !matches!(uri.path(), "" | "/")
        {
            return Err(bad());
        }
        Ok(Upstream {
            scheme: scheme.clone(),
            authority: authority.clone(),
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// The authority (`host:port`).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// `uri` sent to this upstream: same path and query, this scheme and authority.
    pub fn rewrite(&self, uri: &Uri) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(
            uri.path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

/// Which path a rule applies to.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum PathMatch {
    /// Paths starting with this (`/api/`).
    Prefix(String),
    /// Exactly this path.
    Exact(String),
    /// Paths the expression matches (unanchored unless it says `^…$`).
    Regex(Regex),
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

/// The parts of a call a rule's conditions look at.
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'a> {
    /// The method; `None` for a message.
    pub method: Option<&'a Method>,
    /// The path; `None` for a message.
    pub path: Option<&'a str>,
    /// The headers.
    pub headers: Option<&'a HeaderMap>,
}

impl<'a> RequestHead<'a> {
    /// An HTTP request's head.
    pub fn http(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        RequestHead {
            method: Some(method),
            path: Some(uri.path()),
            headers: Some(headers),
        }
    }

    /// No head at all (a message): only rules without conditions apply.
    pub fn none() -> Self {
        RequestHead {
            method: None,
            path: None,
            headers: None,
        }
    }
}

/// One routing rule: calls to `service` whose context carries one of `keys` (and that
/// meet the conditions) go to `upstream`. Cheap to share (held in an `Arc` by tables).
///
/// ```
/// use threadline_route::{Rule, Upstream};
///
/// let rule = Rule::new("alice-warehouse", "warehouse", ["alice"], Upstream::parse("http://127.0.0.1:9001").unwrap())
///     .unwrap()
///     .path_prefix("/stock")
///     .method(http::Method::GET);
/// assert_eq!(rule.id(), "alice-warehouse");
/// ```
#[derive(Clone, Debug)]
pub struct Rule {
    id: Arc<str>,
    service: String,
    port: Option<u16>,
    keys: Vec<RoutingKey>,
    path: Option<PathMatch>,
    method: Option<Method>,
    headers: Vec<(HeaderName, Regex)>,
    upstream: Upstream,
    fallback: bool,
    expires: Option<SystemTime>,
}

impl Rule {
    /// A rule for calls to `service` (a destination host, `host:port`, or a named
    /// upstream; case-insensitive) carrying any of `keys`.
    pub fn new<I, K>(
        id: impl Into<String>,
        service: &str,
        keys: I,
        upstream: Upstream,
    ) -> Result<Self, RuleError>
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        let id: String = id.into();
        let bad =
            |m: String| RuleError::new(RuleErrorKind::InvalidRule, format!("rule {id:?}: {m}"));
        if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_control()) {
            return Err(bad(
                "the id must be 1 to 256 characters without control characters".into(),
            ));
        }
        let (service, port) = split_service(service)
            .ok_or_else(|| bad(format!("service {service:?} is not a host[:port] or name")))?;
        let mut ks = Vec::new();
        for k in keys {
            let k = RoutingKey::decode(
                k.as_ref().as_bytes(),
                threadline::codec::ROUTING_KEY_MAX_BYTES,
            )
            .map_err(|e| bad(format!("key: {e}")))?;
            if !ks.contains(&k) {
                ks.push(k);
            }
        }
        if ks.is_empty() {
            return Err(bad("no key".into()));
        }
        Ok(Rule {
            id: id.into(),
            service,
            port,
            keys: ks,
            path: None,
            method: None,
            headers: Vec::new(),
            upstream,
            fallback: false,
            expires: None,
        })
    }

    /// Only paths starting with `prefix`.
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path = Some(PathMatch::Prefix(prefix.into()));
        self
    }

    /// Only this exact path.
    pub fn path_exact(mut self, path: impl Into<String>) -> Self {
        self.path = Some(PathMatch::Exact(path.into()));
        self
    }

    /// Only paths the regular expression matches.
    pub fn path_regex(mut self, re: &str) -> Result<Self, RuleError> {
        self.path = Some(PathMatch::Regex(regex(&self.id, "path_regex", re)?));
        Ok(self)
    }

    /// Only this method.
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Only calls whose header `name` has a value the expression matches (every
    /// listed header must match).
    pub fn header_regex(mut self, name: &str, re: &str) -> Result<Self, RuleError> {
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            RuleError::new(
                RuleErrorKind::InvalidRule,
                format!("rule {:?}: {name:?} is not a header name", self.id),
            )
        })?;
        let r = regex(&self.id, "header", re)?;
        self.headers.push((n, r));
        Ok(self)
    }

    /// When the upstream refuses the connection, send the call to the original
    /// destination instead of failing it (default `false`: the caller gets the error,
    /// with the route named).
    pub fn fallback(mut self, yes: bool) -> Self {
        self.fallback = yes;
        self
    }

    /// The rule stops applying at `at` (a developer's heartbeat pushes it forward;
    /// when the heartbeat stops, so does the traffic).
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires = Some(at);
        self
    }

    /// The rule's id (`route=` in logs).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The service (lower case, without the port).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The keys the rule claims.
    pub fn keys(&self) -> &[RoutingKey] {
        &self.keys
    }

    /// Where matching calls go.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Whether a refused connection falls back to the original destination.
    pub fn allows_fallback(&self) -> bool {
        self.fallback
    }

    /// When the rule stops applying, if it does.
    pub fn expires(&self) -> Option<SystemTime> {
        self.expires
    }

    /// Whether the rule has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }

    /// The port the rule is limited to (a service written `host:port`).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Whether the conditions (port, path, method, headers) hold for a call.
    pub(crate) fn applies(&self, port: Option<u16>, head: &RequestHead<'_>) -> bool {
        if self.port.is_some() && self.port != port {
            return false;
        }
        if let Some(p) = &self.path
            && !head.path.is_some_and(|path| p.matches(path))
        {
            return false;
        }
        if let Some(m) = &self.method
            && head.method != Some(m)
        {
            return false;
        }
        self.headers.iter().all(|(name, re)| {
            head.headers.is_some_and(|h| {
                h.get_all(name)
                    .iter()
                    .any(|v| v.to_str().is_ok_and(|v| re.is_match(v)))
            })
        })
    }

    /// Whether the rule has conditions beyond service and key.
    pub fn has_conditions(&self) -> bool {
        self.path.is_some() || self.method.is_some() || !self.headers.is_empty()
    }
}

fn regex(id: &str, what: &str, re: &str) -> Result<Regex, RuleError> {
    regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            RuleError::new(
                RuleErrorKind::InvalidRule,
                format!("rule {id:?}: {what} is not a valid regular expression: {e}"),
            )
        })
}

/// `host[:port]`, lower-cased; `None` when it is not one.
pub(crate) fn split_service(s: &str) -> Option<(String, Option<u16>)> {
    let a: Authority = s.parse().ok()?;
    if a.as_str().contains('@') {
        return None;
    }
    Some((a.host().to_ascii_lowercase(), a.port_u16()))
}

/// A rule as written in a file or a store entry.
///
/// ```toml
/// id = "alice-warehouse"
/// service = "warehouse"            # host, host:port, or a named upstream
/// key = "alice"                    # or keys = ["alice", "bob"]
/// upstream = "http://10.0.0.7:8080"
/// path_prefix = "/stock"           # or path = "/exact", or path_regex = "^/v[12]/"
/// method = "GET"
/// headers = { x-feature = "^beta" }
/// fallback = false
/// expires_at = 1767225600          # unix seconds
/// ttl_secs = 30                    # from the entry's write time (NATS KV, file mtime)
/// ```
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RuleSpec {
    /// The rule's id (unique in its source; a store entry's key when omitted there).
    #[serde(default)]
    pub id: String,
    /// The service.
    pub service: String,
    /// One key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Several keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// The upstream, `scheme://host[:port]`.
    pub upstream: String,
    /// Path prefix condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Exact path condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Path regular expression condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// Method condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Header conditions: name → regular expression.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Fall back to the original destination when the upstream refuses.
    #[serde(default)]
    pub fallback: bool,
    /// Unix seconds after which the rule no longer applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Seconds after the entry's write time after which the rule no longer applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

impl RuleSpec {
    /// A spec for `service` + `key` → `upstream`.
    pub fn new(id: &str, service: &str, key: &str, upstream: &str) -> Self {
        RuleSpec {
            id: id.into(),
            service: service.into(),
            key: Some(key.into()),
            upstream: upstream.into(),
            ..RuleSpec::default()
        }
    }

    /// Checks the spec and makes the rule; `written` is when the store says the entry
    /// was written (for `ttl_secs`).
    pub fn to_rule(&self, written: Option<SystemTime>) -> Result<Rule, RuleError> {
        let bad = |m: String| {
            RuleError::new(
                RuleErrorKind::InvalidRule,
                format!("rule {:?}: {m}", self.id),
            )
        };
        let keys: Vec<&str> = self
            .key
            .iter()
            .chain(&self.keys)
            .map(String::as_str)
            .collect();
        let mut rule = Rule::new(
            self.id.clone(),
            &self.service,
            keys,
            Upstream::parse(&self.upstream)?,
        )?;
        let paths = [
            self.path_prefix.is_some(),
            self.path.is_some(),
            self.path_regex.is_some(),
        ];
        if paths.iter().filter(|p| **p).count() > 1 {
            return Err(bad("at most one of path_prefix, path, path_regex".into()));
        }
        if let Some(p) = &self.path_prefix {
            rule = rule.path_prefix(p.clone());
        }
        if let Some(p) = &self.path {
            rule = rule.path_exact(p.clone());
        }
        if let Some(p) = &self.path_regex {
            rule = rule.path_regex(p)?;
        }
        if let Some(m) = &self.method {
            let m = Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map_err(|_| bad(format!("method {m:?} is not a method")))?;
            rule = rule.method(m);
        }
        for (name, re) in &self.headers {
            rule = rule.header_regex(name, re)?;
        }
        rule = rule.fallback(self.fallback);
        let mut expires = self
            .expires_at
            .map(|s| UNIX_EPOCH + Duration::from_secs(s.min(u64::from(u32::MAX) * 4)));
        if let Some(ttl) = self.ttl_secs {
            let Some(written) = written else {
                return Err(bad(
                    "ttl_secs needs a source that records write times".into()
                ));
            };
            let at = written + Duration::from_secs(ttl.min(10 * 365 * 86_400));
            expires = Some(expires.map_or(at, |e| e.min(at)));
        }
        if let Some(e) = expires {
            rule = rule.expires_at(e);
        }
        Ok(rule)
    }
}
