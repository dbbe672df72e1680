//! The proxy's configuration: [`ProxyConfig`] in code, [`ProxyFile`] for TOML.
//!
//! ```
//! use threadline_proxy::ProxyFile;
//!
//! let file = ProxyFile::from_toml(r#"
//!     listen = "127.0.0.1:8080"
//!     upstream = "http://127.0.0.1:3000"
//!     admin = "127.0.0.1:9901"
//!
//!     [policy.untrusted]          # edge mode: untrusted callers get fresh ids
//!     fresh_trace = true
//!     fresh_correlation_id = true
//!
//!     [[policy.headers]]          # the library's policy keys, under [policy]
//!     name = "x-tenant-id"
//!     trusted_only = true
//!
//!     [trust]
//!     peers = ["10.0.0.0/8"]
//!
//!     [[routes]]
//!     upstream = "http://127.0.0.1:3001"
//!     name = "alice"
//!     header = "x-routing-key"
//!     equals = "alice"
//!
//!     [egress]
//!     listen = "127.0.0.1:8081"
//!     [[egress.allow]]
//!     host = "*.svc.internal"
//! "#).unwrap();
//! let config = file.into_config().unwrap();
//! assert_eq!(config.listen.port(), 8080);
//! assert_eq!(config.rules.len(), 1);
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use threadline::{Policy, PolicyConfig};
use threadline_tower::{Credential, Grant, Target, Targets, TrustPolicy};

use crate::error::Error;
use crate::route::{Rule, Upstream, UpstreamProtocol};

/// Timeouts, each with a default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// Connecting to an upstream (default 5 s): past it, `502`.
    pub connect: Duration,
    /// Reading a request head from a client, which on an idle HTTP/1.1 keep-alive
    /// connection includes the wait for its next request (default 30 s): past it, the
    /// connection is closed (`408` when a head was started).
    pub header: Duration,
    /// Waiting for an upstream's response head (default 60 s): past it, `504`.
    pub upstream: Duration,
    /// How long an idle upstream connection is kept in the pool, and how long an
    /// HTTP/2 client has to answer a keep-alive ping (default 90 s).
    pub idle: Duration,
    /// On shutdown, how long requests in flight get to finish (default 30 s).
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            header: Duration::from_secs(30),
            upstream: Duration::from_secs(60),
            idle: Duration::from_secs(90),
            drain: Duration::from_secs(30),
        }
    }
}

/// Limits on what clients may send, each with a default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Client connections open at once, per listener (default 16,384); further
    /// connections wait in the listen backlog.
    pub max_connections: usize,
    /// Bytes of one request head, HTTP/1.1 read buffer and HTTP/2 header list
    /// (default 64 KiB, at least 8 KiB): past it, `431`.
    pub max_header_bytes: usize,
    /// Header lines of one HTTP/1.1 request (default 100): past it, `431`.
    pub max_headers: usize,
    /// Concurrent HTTP/2 streams per connection (default 256).
    pub max_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 16_384,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_streams: 256,
        }
    }
}

/// The optional forward proxy for the app's outgoing calls.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EgressConfig {
    /// Where it listens (the app's `HTTP_PROXY`).
    pub listen: SocketAddr,
    /// Which destinations receive which context headers and credentials.
    pub targets: Targets,
}

impl EgressConfig {
    /// A forward proxy on `listen` enforcing `targets`.
    pub fn new(listen: SocketAddr, targets: Targets) -> Self {
        EgressConfig { listen, targets }
    }
}

/// A PEM certificate chain and private key: the listener speaks TLS (HTTP/1.1 and
/// HTTP/2 by ALPN). Needs the `tls` feature.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsFiles {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The certificate chain and key at these paths.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsFiles {
            cert: cert.into(),
            key: key.into(),
        }
    }
}

/// Everything the proxy needs. Build with [`ProxyConfig::new`] and set fields, or load
/// a [`ProxyFile`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// Where the reverse proxy listens (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// The default upstream: where requests go that no rule sends elsewhere.
    pub upstream: Upstream,
    /// Rules tried before the default upstream (see [`RuleTable`](crate::RuleTable)).
    pub rules: Vec<Rule>,
    /// What is captured, validated and forwarded (the library's [`Policy`]).
    pub policy: Policy,
    /// Which callers are trusted (default: none, the edge).
    pub trust: TrustPolicy,
    /// The admin listener (`/healthz`, `/metrics`), off by default.
    pub admin: Option<SocketAddr>,
    /// The forward proxy for the app's outgoing calls, off by default.
    pub egress: Option<EgressConfig>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Limits.
    pub limits: Limits,
    /// A JSON-able access log event per request (`tracing` target
    /// `threadline_proxy::access`), inside the request's context (default on).
    pub access_log: bool,
    /// Add `x-forwarded-for` and `x-forwarded-proto` (default on).
    pub forwarded_headers: bool,
    /// TLS on the reverse proxy's listener.
    pub tls: Option<TlsFiles>,
    /// Routing by the context's routing key: where the rules come from (off by
    /// default; the key is read as the policy's routing section says).
    pub routing: Option<crate::RoutingConfig>,
}

impl ProxyConfig {
    /// Listen on `127.0.0.1:8080`, send everything to `upstream`, with the default
    /// policy, no trusted caller, the default timeouts and limits.
    pub fn new(upstream: Upstream) -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            upstream,
            rules: Vec::new(),
            policy: Policy::default(),
            trust: TrustPolicy::never(),
            admin: None,
            egress: None,
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            access_log: true,
            forwarded_headers: true,
            tls: None,
            routing: None,
        }
    }

    /// Sets the listen address.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Sets the policy.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the trust policy.
    pub fn trust(mut self, trust: TrustPolicy) -> Self {
        self.trust = trust;
        self
    }

    /// Adds a routing rule.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Turns the admin listener on.
    pub fn admin(mut self, addr: SocketAddr) -> Self {
        self.admin = Some(addr);
        self
    }

    /// Turns the forward proxy on.
    pub fn egress(mut self, egress: EgressConfig) -> Self {
        self.egress = Some(egress);
        self
    }
}

/// The proxy's TOML file. Every key is optional; `listen` and `upstream` may come from
/// the command line instead.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ProxyFile {
    /// `listen = "127.0.0.1:8080"`.
    pub listen: Option<SocketAddr>,
    /// `upstream = "http://127.0.0.1:3000"`.
    pub upstream: Option<String>,
    /// `upstream_protocol = "auto" | "http1" | "http2"`.
    pub upstream_protocol: UpstreamProtocol,
    /// `admin = "127.0.0.1:9901"`.
    pub admin: Option<SocketAddr>,
    /// `access_log = true`.
    pub access_log: Option<bool>,
    /// `forwarded_headers = true`.
    pub forwarded_headers: Option<bool>,
    /// `[policy]`: the library's policy keys ([`PolicyConfig`]).
    pub policy: PolicyConfig,
    /// `[trust]`.
    pub trust: TrustFile,
    /// `[timeouts]`.
    pub timeouts: TimeoutsFile,
    /// `[limits]`.
    pub limits: LimitsFile,
    /// `[[routes]]`.
    pub routes: Vec<RouteFile>,
    /// `[egress]`.
    pub egress: Option<EgressFile>,
    /// `[tls]`.
    pub tls: Option<TlsFiles>,
    /// `[routing]`: route rules by routing key ([`RoutingConfig`](crate::RoutingConfig)).
    pub routing: Option<crate::RoutingConfig>,
}

/// `[trust]`: trusted when any given condition holds; nothing given: nobody.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TrustFile {
    /// Trust every caller (a proxy only reachable from inside the system).
    pub always: bool,
    /// Peer networks (`["10.0.0.0/8", "127.0.0.1/32"]`).
    pub peers: Vec<String>,
    /// A shared-secret header (removed before the app sees it).
    pub secret_header: Option<String>,
    /// The secret itself (prefer `secret_env`).
    pub secret: Option<String>,
    /// The environment variable holding the secret.
    pub secret_env: Option<String>,
}

/// `[timeouts]`, in milliseconds.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TimeoutsFile {
    /// [`Timeouts::connect`].
    pub connect_ms: Option<u64>,
    /// [`Timeouts::header`].
    pub header_ms: Option<u64>,
    /// [`Timeouts::upstream`].
    pub upstream_ms: Option<u64>,
    /// [`Timeouts::idle`].
    pub idle_ms: Option<u64>,
    /// [`Timeouts::drain`].
    pub drain_ms: Option<u64>,
}

/// `[limits]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LimitsFile {
    /// [`Limits::max_connections`].
    pub max_connections: Option<usize>,
    /// [`Limits::max_header_bytes`].
    pub max_header_bytes: Option<usize>,
    /// [`Limits::max_headers`].
    pub max_headers: Option<usize>,
    /// [`Limits::max_streams`].
    pub max_streams: Option<u32>,
}

/// One `[[routes]]` entry: every condition given must hold.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RouteFile {
    /// Where matching requests go (required).
    pub upstream: String,
    /// Name in logs and metrics (default: the upstream's `host:port`).
    pub name: Option<String>,
    /// `auto`, `http1` or `http2`.
    pub protocol: UpstreamProtocol,
    /// The header to match.
    pub header: Option<String>,
    /// Its exact value.
    pub equals: Option<String>,
    /// A regex its value matches.
    pub regex: Option<String>,
    /// A path prefix.
    pub path_prefix: Option<String>,
    /// A method (`GET`).
    pub method: Option<String>,
}

/// `[egress]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EgressFile {
    /// Where the forward proxy listens.
    pub listen: SocketAddr,
    /// What destinations matching no rule receive: `nothing` (default) or `traceparent`.
    #[serde(default)]
    pub others: OthersFile,
    /// Destinations and what each receives.
    #[serde(default)]
    pub allow: Vec<TargetFile>,
}

/// What destinations matching no `[[egress.allow]]` rule receive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum OthersFile {
    /// No context header, no credential.
    #[default]
    Nothing,
    /// Only `traceparent`.
    Traceparent,
}

/// One `[[egress.allow]]` destination.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TargetFile {
    /// Host pattern: exact, `*.suffix` or `*`.
    pub host: String,
    /// Only this scheme.
    pub scheme: Option<String>,
    /// Only this port.
    pub port: Option<u16>,
    /// Only these context headers (default: all the policy forwards).
    pub headers: Option<Vec<String>>,
    /// Credentials this destination may receive (`["authorization"]`).
    pub credentials: Vec<String>,
}

fn ms(v: Option<u64>, default: Duration) -> Duration {
    v.map_or(default, Duration::from_millis)
}

impl ProxyFile {
    /// Parses the TOML text (unknown keys are errors).
    pub fn from_toml(text: &str) -> Result<ProxyFile, Error> {
        toml::from_str(text).map_err(|e| Error::config(format!("invalid proxy TOML: {e}")))
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &std::path::Path) -> Result<ProxyFile, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::with_source(
                crate::ErrorKind::Config,
                format!("cannot read {}", path.display()),
                e,
            )
        })?;
        ProxyFile::from_toml(&text)
    }

    /// The configuration this file stands for (`upstream` is required here).
    pub fn into_config(self) -> Result<ProxyConfig, Error> {
        let upstream = self
            .upstream
            .as_deref()
            .ok_or_else(|| Error::config("no upstream: give --upstream or `upstream = ...`"))?;
        let upstream = Upstream::new(upstream)?.protocol(self.upstream_protocol);
        let policy = self
            .policy
            .into_builder()
            .and_then(|b| Ok(b.build()?))
            .map_err(|e| Error::config(format!("[policy]: {e}")))?;
        let mut config = ProxyConfig::new(upstream).policy(policy);
        if let Some(l) = self.listen {
            config.listen = l;
        }
        config.admin = self.admin;
        config.access_log = self.access_log.unwrap_or(true);
        config.forwarded_headers = self.forwarded_headers.unwrap_or(true);
        config.trust = self.trust.into_policy()?;
        let t = &self.timeouts;
        let d = Timeouts::default();
        config.timeouts = Timeouts {
            connect: ms(t.connect_ms, d.connect),
            header: ms(t.header_ms, d.header),
            upstream: ms(t.upstream_ms, d.upstream),
            idle: ms(t.idle_ms, d.idle),
            drain: ms(t.drain_ms, d.drain),
        };
        let l = &self.limits;
        let d = Limits::default();
        config.limits = Limits {
            max_connections: l.max_connections.unwrap_or(d.max_connections).max(1),
            max_header_bytes: l.max_header_bytes.unwrap_or(d.max_header_bytes),
            max_headers: l.max_headers.unwrap_or(d.max_headers).max(1),
            max_streams: l.max_streams.unwrap_or(d.max_streams).max(1),
        };
        for r in self.routes {
            config.rules.push(r.into_rule()?);
        }
        if let Some(e) = self.egress {
            config.egress = Some(e.into_config()?);
        }
        config.tls = self.tls;
        if let Some(r) = &self.routing {
            r.check()?;
        }
        config.routing = self.routing;
        Ok(config)
    }
}

impl TrustFile {
    fn into_policy(self) -> Result<TrustPolicy, Error> {
        let bad = |e: threadline_tower::InvalidTrustPolicy| Error::config(format!("[trust]: {e}"));
        if self.always {
            return Ok(TrustPolicy::always());
        }
        let mut any = Vec::new();
        if !self.peers.is_empty() {
            any.push(TrustPolicy::peer_in(&self.peers).map_err(bad)?);
        }
        let secret = match (self.secret, self.secret_env) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "[trust]: give `secret` or `secret_env`, not both",
                ));
            }
            (Some(s), None) => Some(s),
            (None, Some(var)) => Some(std::env::var(&var).map_err(|_| {
                Error::config(format!("[trust]: environment variable {var:?} is not set"))
            })?),
            (None, None) => None,
        };
        match (self.secret_header, secret) {
            (Some(h), Some(s)) => any.push(TrustPolicy::shared_secret(&h, &s).map_err(bad)?),
            (None, None) => {}
            _ => {
                return Err(Error::config(
                    "[trust]: a shared secret needs both `secret_header` and a secret",
                ));
            }
        }
        Ok(match any.len() {
            0 => TrustPolicy::never(),
            1 => any.remove(0),
            _ => TrustPolicy::any(any),
        })
    }
}

impl RouteFile {
    fn into_rule(self) -> Result<Rule, Error> {
        let mut up = Upstream::new(&self.upstream)?.protocol(self.protocol);
        if let Some(n) = self.name {
            up = up.named(n);
        }
        let mut rule = Rule::new(up);
        match (self.header, self.equals, self.regex) {
            (Some(h), Some(v), None) => rule = rule.header_equals(&h, &v)?,
            (Some(h), None, Some(re)) => rule = rule.header_regex(&h, &re)?,
            (None, None, None) => {}
            _ => {
                return Err(Error::config(format!(
                    "route to {}: `header` needs exactly one of `equals` or `regex`",
                    self.upstream
                )));
            }
        }
        if let Some(p) = self.path_prefix {
            rule = rule.path_prefix(p);
        }
        if let Some(m) = self.method {
            let m = http::Method::from_bytes(m.as_bytes())
                .map_err(|_| Error::config(format!("{m:?} is not a method")))?;
            rule = rule.method(m);
        }
        Ok(rule)
    }
}

impl EgressFile {
    fn into_config(self) -> Result<EgressConfig, Error> {
        let mut targets = Targets::new().otherwise(match self.others {
            OthersFile::Nothing => Grant::nothing(),
            OthersFile::Traceparent => Grant::traceparent_only(),
        });
        for t in self.allow {
            if t.host.trim().is_empty() {
                return Err(Error::config("[[egress.allow]]: `host` is required"));
            }
            let mut target = Target::host(&t.host);
            if let Some(s) = &t.scheme {
                target = target.scheme(s);
            }
            if let Some(p) = t.port {
                target = target.port(p);
            }
            let credentials = t
                .credentials
                .iter()
                .map(|c| c.parse::<Credential>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::config(format!("[[egress.allow]] credentials: {e}")))?;
            let grant = match &t.headers {
                Some(h) => Grant::only(h)
                    .map_err(|e| Error::config(format!("[[egress.allow]] headers: {e}")))?,
                None => Grant::all(),
            }
            .with_credentials(credentials);
            targets = targets.grant(target, grant);
        }
        Ok(EgressConfig::new(self.listen, targets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_file_needs_an_upstream() {
        let e = ProxyFile::from_toml("").unwrap().into_config().unwrap_err();
        assert!(e.is_config());
        let c = ProxyFile::from_toml("upstream = \"http://127.0.0.1:3000\"")
            .unwrap()
            .into_config()
            .unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.timeouts, Timeouts::default());
        assert_eq!(c.limits, Limits::default());
        assert!(c.access_log && c.forwarded_headers);
    }

    #[test]
    fn bad_files_are_config_errors_with_the_reason() {
        for (text, why) in [
            ("upstream = 3", "type"),
            ("upstrem = \"http://x\"", "unknown key"),
            ("upstream = \"https://x\"", "https upstream"),
            (
                "upstream = \"http://x\"\n[trust]\npeers = [\"10.0.0.0/33\"]",
                "cidr",
            ),
            (
                "upstream = \"http://x\"\n[trust]\nsecret = \"s\"",
                "secret without header",
            ),
            (
                "upstream = \"http://x\"\n[trust]\nsecret_header = \"x-s\"\nsecret_env = \"THREADLINE_PROXY_TEST_UNSET_VAR\"",
                "unset env",
            ),
            (
                "upstream = \"http://x\"\n[[routes]]\nupstream = \"http://y\"\nheader = \"x-k\"",
                "header without value",
            ),
            (
                "upstream = \"http://x\"\n[[routes]]\nupstream = \"http://y\"\nheader = \"x-k\"\nregex = \"(\"",
                "bad regex",
            ),
            (
                "upstream = \"http://x\"\n[[routes]]\nupstream = \"http://y\"\nmethod = \"G T\"",
                "bad method",
            ),
            (
                "upstream = \"http://x\"\n[egress]\nlisten = \"127.0.0.1:0\"\n[[egress.allow]]\nhost = \"a\"\ncredentials = [\"bad name\"]",
                "bad credential name",
            ),
            (
                "upstream = \"http://x\"\n[egress]\nlisten = \"127.0.0.1:0\"\n[[egress.allow]]\nhost = \"a\"\ncredentials = [\"authorisation\"]",
                "not a credential header",
            ),
            (
                "upstream = \"http://x\"\n[egress]\nlisten = \"127.0.0.1:0\"\n[[egress.allow]]\nhost = \"a\"\nheaders = [\"x tenant\"]",
                "bad header name",
            ),
            (
                "upstream = \"http://x\"\n[[policy.headers]]\nname = \"connection\"",
                "policy error",
            ),
        ] {
            let r = ProxyFile::from_toml(text).and_then(ProxyFile::into_config);
            let e = r.expect_err(why);
            assert!(e.is_config(), "{why}: {e}");
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn trust_and_egress_sections() {
        let c = ProxyFile::from_toml(
            r#"
            upstream = "http://127.0.0.1:3000"
            [trust]
            peers = ["127.0.0.1/32"]
            secret_header = "x-proxy-secret"
            secret = "s3cret"
            [egress]
            listen = "127.0.0.1:0"
            others = "traceparent"
            [[egress.allow]]
            host = "127.0.0.1"
            port = 9000
            credentials = ["authorization"]
            "#,
        )
        .unwrap()
        .into_config()
        .unwrap();
        let mut req = http::Request::new(());
        req.headers_mut()
            .insert("x-proxy-secret", "s3cret".parse().unwrap());
        assert_eq!(c.trust.decide(&req), threadline::Trust::Trusted);
        let e = c.egress.unwrap();
        let auth = http::header::AUTHORIZATION;
        assert!(
            e.targets
                .grant_for(Some("http"), Some("127.0.0.1"), Some(9000))
                .allows(&auth)
        );
        let other = e
            .targets
            .grant_for(Some("http"), Some("127.0.0.1"), Some(9001));
        assert!(!other.allows(&auth));
        assert!(other.allows(&http::HeaderName::from_static("traceparent")));
    }
}
