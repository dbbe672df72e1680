//! Routing by the context's routing key: [`KeyRoutes`], a [`Route`] over a
//! `threadline_route::Router` (rules from code, a TOML file, a NATS KV bucket or a
//! Redis hash, swapped atomically), and [`RoutingConfig`], its `[routing]` section.
//!
//! The policy decides where the key is read from (`[policy.routing]`: a header,
//! baggage, tracestate, `uberctx-`/`ot-baggage-`, and at the edge a preview-link query
//! parameter and its cookie, which the server layer strips, sets and clears). For a
//! request whose context carries a key, the rule for this proxy's *service* and that
//! key (and whose path, method and header conditions hold) chooses the upstream;
//! everything else goes where the proxy's own rules and default upstream send it. A
//! refused or malformed key never routes: capture treats it as absent.
//!
//! ```
//! use threadline::{Policy, Routing, RoutingKey};
//! use threadline_proxy::{KeyRoutes, RequestHead, Route, Upstream};
//! use threadline_route::{Router, Rule};
//!
//! let router = Router::new();
//! let sandbox = threadline_route::Upstream::parse("http://127.0.0.1:3001").unwrap();
//! router
//!     .set_rules("code", vec![Rule::new("alice", "orders", ["alice"], sandbox).unwrap()])
//!     .unwrap();
//! let baseline = Upstream::new("http://127.0.0.1:3000").unwrap();
//! let routes = KeyRoutes::new(router, "orders", baseline);
//!
//! let req = http::Request::get("/orders").body(()).unwrap();
//! let policy = Policy::builder().routing(Routing::header("x-routing-key")).build().unwrap();
//! let plain = policy.new_root();
//! let keyed = plain.with_routing_key(RoutingKey::new("alice").unwrap());
//! assert_eq!(routes.route(&RequestHead::of(&req), &plain).unwrap().name(), "127.0.0.1:3000");
//! assert_eq!(routes.route(&RequestHead::of(&req), &keyed).unwrap().name(), "alice");
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use threadline::Context;
use threadline_route::{Router, RuleSource};

use crate::error::Error;
use crate::route::{RequestHead, Route, Upstream};

/// At most this many rule upstreams are kept converted; past it the cache is cleared
/// (tables rebuilt from a store with ever-new rule ids cannot grow it without end).
const MAX_CACHED_UPSTREAMS: usize = 4096;

/// A [`Route`] that sends a request whose context carries a routing key to the
/// upstream of the rule for `service` and that key, and every other request to
/// `otherwise` (the proxy's own rules and default upstream).
pub struct KeyRoutes {
    router: Router,
    service: String,
    port: Option<u16>,
    otherwise: Arc<dyn Route>,
    // Rule id → (the rule's upstream text, the proxy's `Upstream` for it): a rule's
    // upstream is parsed once, not per request.
    upstreams: RwLock<HashMap<String, (String, Upstream)>>,
}

impl fmt::Debug for KeyRoutes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRoutes")
            .field("router", &self.router)
            .field("service", &self.service)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl KeyRoutes {
    /// Rules of `router` for `service` (the name rules use for the app behind this
    /// proxy: its host, or a name), falling back to `otherwise`.
    pub fn new(router: Router, service: impl Into<String>, otherwise: impl Route) -> Self {
        KeyRoutes {
            router,
            service: service.into(),
            port: None,
            otherwise: Arc::new(otherwise),
            upstreams: RwLock::default(),
        }
    }

    pub(crate) fn with_fallback(
        router: Router,
        service: String,
        otherwise: Arc<dyn Route>,
    ) -> Self {
        KeyRoutes {
            router,
            service,
            port: None,
            otherwise,
            upstreams: RwLock::default(),
        }
    }

    /// The port rules naming `service:port` match (default: none, so only rules
    /// without a port apply).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The router (for its [`status`](Router::status), or to set rules from code).
    pub fn router(&self) -> &Router {
        &self.router
    }

    fn upstream_of(&self, rule: &threadline_route::Rule) -> Option<Upstream> {
        let origin = rule.upstream().to_string();
        if let Some((o, up)) = self
            .upstreams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(rule.id())
        {
            if *o == origin {
                return Some(up.clone());
            }
        }
        match Upstream::new(&origin) {
            Ok(up) => {
                let up = up.named(rule.id());
                let mut map = self
                    .upstreams
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                if map.len() >= MAX_CACHED_UPSTREAMS {
                    map.clear();
                }
                map.insert(rule.id().to_owned(), (origin, up.clone()));
                Some(up)
            }
            Err(e) => {
                // The route table accepted it, the proxy cannot use it (an https
                // upstream, say): the caller gets the no-route answer, never the
                // baseline in the sandbox's place.
                tracing::warn!(route = rule.id(), upstream = %origin, error = %e, "a routed upstream the proxy cannot use");
                None
            }
        }
    }
}

impl Route for KeyRoutes {
    fn route(&self, head: &RequestHead<'_>, ctx: &Context) -> Option<Upstream> {
        if let Some(key) = ctx.routing_key() {
            let rhead = threadline_route::RequestHead::http(head.method, head.uri, head.headers);
            if let Some(rule) = self.router.route(&self.service, self.port, key, &rhead) {
                return self.upstream_of(&rule);
            }
        }
        self.otherwise.route(head, ctx)
    }
}

/// `[routing]`: where the proxy's route table comes from. The key itself is read as
/// `[policy.routing]` says.
///
/// ```toml
/// [routing]
/// service = "orders"                  # default: the upstream's host
/// file = "routes.toml"                # [[rule]] tables, reloaded on change
/// nats = { url = "127.0.0.1:4222", bucket = "routes" }   # feature `nats`
/// redis = { url = "redis://127.0.0.1:6379", hash = "routes" }  # feature `redis`
/// ```
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RoutingConfig {
    /// The service name rules use for this proxy's app (default: the upstream's host).
    pub service: Option<String>,
    /// A TOML file of `[[rule]]` tables, checked every second and reloaded on change.
    pub file: Option<PathBuf>,
    /// How often the file is checked, in milliseconds (default 1000).
    pub file_interval_ms: Option<u64>,
    /// A NATS JetStream key-value bucket of rules (one JSON rule per key), watched.
    pub nats: Option<NatsRules>,
    /// A Redis hash of rules (one JSON rule per field), reloaded on
    /// `<hash>:changed`.
    pub redis: Option<RedisRulesConfig>,
}

/// `[routing.nats]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NatsRules {
    /// The server (default `127.0.0.1:4222`).
    pub url: Option<String>,
    /// The bucket (required).
    pub bucket: String,
}

/// `[routing.redis]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisRulesConfig {
    /// The server (default `redis://127.0.0.1:6379`).
    pub url: Option<String>,
    /// The hash (required).
    pub hash: String,
}

impl RoutingConfig {
    /// Checks what can be checked before the sources start (names given, features
    /// built in).
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.file.is_none() && self.nats.is_none() && self.redis.is_none() {
            return Err(Error::config(
                "[routing]: give at least one of `file`, `nats`, `redis`",
            ));
        }
        if let Some(n) = &self.nats {
            if n.bucket.trim().is_empty() {
                return Err(Error::config("[routing.nats]: `bucket` is required"));
            }
            #[cfg(not(feature = "nats"))]
            return Err(Error::config(
                "[routing.nats] is configured but the proxy was built without the `nats` feature",
            ));
        }
        if let Some(r) = &self.redis {
            if r.hash.trim().is_empty() {
                return Err(Error::config("[routing.redis]: `hash` is required"));
            }
            #[cfg(not(feature = "redis"))]
            return Err(Error::config(
                "[routing.redis] is configured but the proxy was built without the `redis` feature",
            ));
        }
        Ok(())
    }

    /// Starts the sources on the current Tokio runtime and answers the router. A store
    /// that cannot be reached at start is an error (a proxy that silently routes
    /// nothing would hide every sandbox); once started, a store that goes away keeps
    /// the last good rules and reconnects.
    pub async fn start(&self) -> Result<Router, Error> {
        self.check()?;
        let router = Router::new();
        if let Some(path) = &self.file {
            // Read once now: a file that does not parse fails the start, and the
            // first request already sees its rules.
            let loaded = threadline_route::FileRules::load(path)
                .map_err(|e| Error::config(format!("[routing] file: {e}")))?;
            let mut rules = threadline_route::FileRules::new(path.clone());
            if let Some(ms) = self.file_interval_ms {
                rules = rules.interval(Duration::from_millis(ms));
            }
            router
                .set_rules(&RuleSource::name(&rules), loaded)
                .map_err(|e| Error::config(format!("[routing] file: {e}")))?;
            router.add_source(rules);
        }
        #[cfg(feature = "nats")]
        if let Some(n) = &self.nats {
            let url = n.url.as_deref().unwrap_or("127.0.0.1:4222");
            let client = tokio::time::timeout(Duration::from_secs(5), async_nats::connect(url))
                .await
                .map_err(|_| Error::config(format!("[routing.nats]: {url}: no answer in 5 s")))?
                .map_err(|e| Error::config(format!("[routing.nats]: {url}: {e}")))?;
            let js = async_nats::jetstream::new(client);
            let store = js.get_key_value(&n.bucket).await.map_err(|e| {
                Error::config(format!("[routing.nats]: bucket {:?}: {e}", n.bucket))
            })?;
            let source = threadline_route::source::nats::NatsKvRules::new(store);
            let name = RuleSource::name(&source);
            router.add_source(source);
            first_read(&router, &name).await?;
        }
        #[cfg(feature = "redis")]
        if let Some(r) = &self.redis {
            let url = r.url.as_deref().unwrap_or("redis://127.0.0.1:6379");
            let client = redis::Client::open(url)
                .map_err(|e| Error::config(format!("[routing.redis]: {url}: {e}")))?;
            let source = threadline_route::source::redis::RedisRules::new(client, r.hash.clone());
            let name = RuleSource::name(&source);
            router.add_source(source);
            first_read(&router, &name).await?;
        }
        Ok(router)
    }
}

/// Waits (at most 5 s) until the store source `name` has read its rules once, so the
/// first request already sees them; a store that answers with an error, or not at
/// all, fails the start.
#[cfg(any(feature = "nats", feature = "redis"))]
async fn first_read(router: &Router, name: &str) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = router.status();
        if let Some(s) = status.sources.iter().find(|s| s.name == name) {
            if s.updates > 0 {
                return Ok(());
            }
            if let Some((_, e)) = &s.last_error {
                return Err(Error::config(format!("[routing] {name}: {e}")));
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::config(format!(
                "[routing] {name}: no rules read within 5 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
