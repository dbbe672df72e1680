//! Choosing the upstream of a request: the [`Route`] seam, the [`Upstream`] type, and
//! a small rule table ([`RuleTable`]) matching a header (exact value or regex), a path
//! prefix and a method.
//!
//! The proxy asks its [`Route`] once per request, after the context was captured, with
//! the request head and the [`Context`]. A route table richer than [`RuleTable`]
//! (routing keys read from baggage, tracestate, `uberctx-`/`ot-baggage-`, query
//! parameters and cookies; tables from a file, NATS KV or Redis swapped atomically)
//! plugs in here by implementing [`Route`] and handing it to
//! [`Proxy::with_route`](crate::Proxy::with_route).
//!
//! ```
//! use threadline::Policy;
//! use threadline_proxy::{RequestHead, Route, Rule, RuleTable, Upstream};
//!
//! let table = RuleTable::new(Some(Upstream::new("http://127.0.0.1:3000").unwrap()))
//!     .rule(Rule::new(Upstream::new("http://127.0.0.1:3001").unwrap().named("alice"))
//!         .header_equals("x-routing-key", "alice").unwrap());
//!
//! let req = http::Request::get("/orders").header("x-routing-key", "alice").body(()).unwrap();
//! let ctx = Policy::default().new_root();
//! let up = table.route(&RequestHead::of(&req), &ctx).unwrap();
//! assert_eq!(up.name(), "alice");
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderName, Method, Uri};
use threadline::Context;

use crate::error::Error;
use crate::metrics::Metrics;

/// Which HTTP version the proxy speaks to an upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum UpstreamProtocol {
    /// The caller's: HTTP/2 (h2c) for a request that came over HTTP/2 (gRPC, say),
    /// HTTP/1.1 otherwise. The default.
    #[default]
    Auto,
    /// Always HTTP/1.1.
    Http1,
    /// Always HTTP/2 with prior knowledge (h2c).
    Http2,
}

/// Where a request is sent: an `http://host:port` origin, a name (for logs and
/// metrics) and the protocol. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<UpstreamInner>,
}

struct UpstreamInner {
    name: String,
    scheme: Scheme,
    authority: Authority,
    protocol: UpstreamProtocol,
    // The `routes taken` counter, shared by every upstream of the same name.
    taken: OnceLock<Arc<AtomicU64>>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.inner.name)
            .field(
                "origin",
                &format_args!("{}://{}", self.inner.scheme, self.inner.authority),
            )
            .field("protocol", &self.inner.protocol)
            .finish()
    }
}

impl Upstream {
    /// An upstream at `origin` (`http://127.0.0.1:3000`; a path, query or `https`
    /// origin is refused), named after its origin.
    pub fn new(origin: &str) -> Result<Upstream, Error> {
        let uri: Uri = origin
            .parse()
            .map_err(|_| Error::config(format!("upstream {origin:?} is not a URI")))?;
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        if scheme != Scheme::HTTP {
            return Err(Error::config(format!(
                "upstream {origin:?}: only http:// upstreams are supported (TLS ends at the proxy)"
            )));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| Error::config(format!("upstream {origin:?} has no host")))?;
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(Error::config(format!(
                "upstream {origin:?}: give an origin only (no path or query)"
            )));
        }
        Ok(Upstream {
            inner: Arc::new(UpstreamInner {
                name: authority.to_string(),
                scheme,
                authority,
                protocol: UpstreamProtocol::Auto,
                taken: OnceLock::new(),
            }),
        })
    }

    fn edit(self, f: impl FnOnce(&mut UpstreamInner)) -> Self {
        let i = &*self.inner;
        let mut copy = UpstreamInner {
            name: i.name.clone(),
            scheme: i.scheme.clone(),
            authority: i.authority.clone(),
            protocol: i.protocol,
            taken: OnceLock::new(),
        };
        f(&mut copy);
        Upstream {
            inner: Arc::new(copy),
        }
    }

    /// The name used in the access log and the `routes taken` metric.
    pub fn named(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.edit(|i| i.name = name)
    }

    /// The HTTP version spoken to this upstream (default [`UpstreamProtocol::Auto`]).
    pub fn protocol(self, protocol: UpstreamProtocol) -> Self {
        self.edit(|i| i.protocol = protocol)
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// `host:port`.
    pub fn authority(&self) -> &Authority {
        &self.inner.authority
    }

    pub(crate) fn scheme(&self) -> &Scheme {
        &self.inner.scheme
    }

    pub(crate) fn http2_for(&self, inbound: http::Version) -> bool {
        match self.inner.protocol {
            UpstreamProtocol::Auto => inbound == http::Version::HTTP_2,
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::Http2 => true,
        }
    }

    /// Counts one request taken by this upstream's route.
    pub(crate) fn count(&self, metrics: &Metrics) {
        self.inner
            .taken
            .get_or_init(|| metrics.route_counter(&self.inner.name))
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// The head of a request, as a [`Route`] sees it.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI (origin form for HTTP/1.1: path and query).
    pub uri: &'a Uri,
    /// The headers, as the caller sent them (minus a trust secret, already removed).
    pub headers: &'a HeaderMap,
}

impl<'a> RequestHead<'a> {
    /// The head of `req`.
    pub fn of<B>(req: &'a http::Request<B>) -> Self {
        RequestHead {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
        }
    }
}

/// Chooses the upstream of a request from its head and its captured [`Context`]: the
/// seam through which route tables plug into the proxy. `None` answers the caller
/// `502` (no route), with the correlation id.
///
/// Called on every request: keep it to lookups (swap whole tables behind an
/// `Arc` rather than locking per request).
pub trait Route: Send + Sync + 'static {
    /// The upstream for this request, or `None` when no route matches.
    fn route(&self, head: &RequestHead<'_>, ctx: &Context) -> Option<Upstream>;
}

/// One fixed upstream: every request goes there (the proxy's default route).
impl Route for Upstream {
    fn route(&self, _: &RequestHead<'_>, _: &Context) -> Option<Upstream> {
        Some(self.clone())
    }
}

impl<F> Route for F
where
    F: Fn(&RequestHead<'_>, &Context) -> Option<Upstream> + Send + Sync + 'static,
{
    fn route(&self, head: &RequestHead<'_>, ctx: &Context) -> Option<Upstream> {
        self(head, ctx)
    }
}

#[derive(Clone, Debug)]
enum HeaderMatch {
    Equals(HeaderName, String),
    Regex(HeaderName, regex::Regex),
}

/// One rule of a [`RuleTable`]: every condition given must hold (none given: always).
#[derive(Clone, Debug)]
pub struct Rule {
    upstream: Upstream,
    header: Option<HeaderMatch>,
    path_prefix: Option<String>,
    method: Option<Method>,
}

fn header_name(name: &str) -> Result<HeaderName, Error> {
    HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| Error::config(format!("{name:?} is not a header name")))
}

impl Rule {
    /// A rule sending matching requests to `upstream`.
    pub fn new(upstream: Upstream) -> Self {
        Rule {
            upstream,
            header: None,
            path_prefix: None,
            method: None,
        }
    }

    /// Matches when `header` is present once with exactly `value` (`map
    /// $http_x_routing_key` in nginx terms).
    pub fn header_equals(mut self, header: &str, value: &str) -> Result<Self, Error> {
        self.header = Some(HeaderMatch::Equals(header_name(header)?, value.to_owned()));
        Ok(self)
    }

    /// Matches when `header` is present once and its value matches `regex` (unanchored,
    /// as in Telepresence and mirrord filters: write `^…$` for a whole-value match).
    pub fn header_regex(mut self, header: &str, regex: &str) -> Result<Self, Error> {
        let re = regex::Regex::new(regex)
            .map_err(|e| Error::config(format!("header regex {regex:?}: {e}")))?;
        self.header = Some(HeaderMatch::Regex(header_name(header)?, re));
        Ok(self)
    }

    /// Matches paths starting with `prefix`.
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// Matches this method only.
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    fn matches(&self, head: &RequestHead<'_>) -> bool {
        if let Some(m) = &self.method {
            if m != head.method {
                return false;
            }
        }
        if let Some(p) = &self.path_prefix {
            if !head.uri.path().starts_with(p.as_str()) {
                return false;
            }
        }
        match &self.header {
            None => true,
            Some(HeaderMatch::Equals(name, want)) => {
                single(head.headers, name).is_some_and(|v| v == want.as_bytes())
            }
            Some(HeaderMatch::Regex(name, re)) => single(head.headers, name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .is_some_and(|v| re.is_match(v)),
        }
    }
}

/// The value of a header sent exactly once (a repeated routing header matches nothing).
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h [u8]> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    all.next().is_none().then(|| first.as_bytes())
}

/// Rules tried in order; the first that matches wins; otherwise the default upstream.
/// Loaded from the proxy's TOML (`[[routes]]`) or built in code.
#[derive(Clone, Debug)]
pub struct RuleTable {
    rules: Vec<Rule>,
    default: Option<Upstream>,
}

impl RuleTable {
    /// A table with no rules yet, sending everything to `default` (`None`: requests
    /// no rule matches get `502`).
    pub fn new(default: Option<Upstream>) -> Self {
        RuleTable {
            rules: Vec::new(),
            default,
        }
    }

    /// Adds a rule after the others.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// `true` without rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl Route for RuleTable {
    fn route(&self, head: &RequestHead<'_>, _: &Context) -> Option<Upstream> {
        self.rules
            .iter()
            .find(|r| r.matches(head))
            .map(|r| r.upstream.clone())
            .or_else(|| self.default.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use threadline::Policy;

    fn up(port: u16, name: &str) -> Upstream {
        Upstream::new(&format!("http://127.0.0.1:{port}"))
            .unwrap()
            .named(name)
    }

    #[test]
    fn upstream_origins_are_checked() {
        for (bad, why) in [
            ("https://127.0.0.1:1", "https"),
            ("http://127.0.0.1:1/path", "path"),
            ("/just/a/path", "no host"),
            ("not a uri", "garbage"),
        ] {
            let e = Upstream::new(bad).unwrap_err();
            assert!(e.is_config(), "{why}");
        }
        let u = Upstream::new("http://127.0.0.1:3000/").unwrap();
        assert_eq!(u.name(), "127.0.0.1:3000");
        assert!(!u.http2_for(http::Version::HTTP_11));
        assert!(u.http2_for(http::Version::HTTP_2));
        let h1 = u.protocol(UpstreamProtocol::Http1);
        assert!(!h1.http2_for(http::Version::HTTP_2));
    }

    #[test]
    fn rules_in_order_then_default() {
        let table = RuleTable::new(Some(up(1, "baseline")))
            .rule(
                Rule::new(up(2, "alice"))
                    .header_equals("x-routing-key", "alice")
                    .unwrap(),
            )
            .rule(
                Rule::new(up(3, "previews"))
                    .header_regex("x-routing-key", "^pr-[0-9]+$")
                    .unwrap()
                    .method(Method::GET),
            )
            .rule(Rule::new(up(4, "admin")).path_prefix("/admin/"));
        let ctx = Policy::default().new_root();
        let cases: &[(&str, &str, &[&str], &str)] = &[
            ("GET", "/", &[], "baseline"),
            ("GET", "/", &["alice"], "alice"),
            ("GET", "/", &["ALICE"], "baseline"),
            ("GET", "/", &["alice", "alice"], "baseline"),
            ("GET", "/", &["pr-12"], "previews"),
            ("POST", "/", &["pr-12"], "baseline"),
            ("GET", "/", &["pr-12x"], "baseline"),
            ("GET", "/admin/x", &[], "admin"),
            ("GET", "/admin", &[], "baseline"),
        ];
        for (method, path, keys, want) in cases {
            let mut b = http::Request::builder().method(*method).uri(*path);
            for k in *keys {
                b = b.header("x-routing-key", *k);
            }
            let req = b.body(()).unwrap();
            let got = table.route(&RequestHead::of(&req), &ctx).unwrap();
            assert_eq!(got.name(), *want, "{method} {path} {keys:?}");
        }
        let none = RuleTable::new(None);
        let req = http::Request::new(());
        assert!(none.route(&RequestHead::of(&req), &ctx).is_none());
    }

    #[test]
    fn bad_rules_are_config_errors() {
        assert!(
            Rule::new(up(1, "a"))
                .header_regex("x-k", "(")
                .unwrap_err()
                .is_config()
        );
        assert!(
            Rule::new(up(1, "a"))
                .header_equals("bad name", "x")
                .unwrap_err()
                .is_config()
        );
    }
}
