//! Propagation targets: which destinations receive which context headers.
//!
//! Context headers are internal: a tenant id or a correlation id should reach your own
//! services, not a payment provider. [`Targets`] maps destinations (host pattern,
//! optional scheme and port) to a [`Grant`]. Destinations that match no rule get the
//! fallback grant: nothing by default, or only `traceparent`
//! ([`Targets::others_traceparent_only`]). Credentials (`authorization`, `cookie`,
//! `proxy-authorization`, `set-cookie`) are never forwarded unless a grant names them
//! with [`Grant::with_credentials`]. Building a grant from names that are not header
//! names is an error ([`InvalidGrant`]), never a panic.
//!
//! Two starting points fit a developer's laptop and a cluster: [`Targets::local`]
//! (loopback only) and [`Targets::internal`] (loopback, cluster and compose service
//! names, private IP addresses); add your own domains with [`Targets::allow`].
//!
//! ```
//! use threadline_tower::{Credential, Grant, Target, Targets};
//!
//! let targets = Targets::new()
//!     .allow(Target::host("*.svc.internal"))
//!     .grant(
//!         Target::host("auth.internal").scheme("https").port(8443),
//!         Grant::all().with_credentials([Credential::Authorization]),
//!     )
//!     .others_traceparent_only();
//!
//! let tenant = http::HeaderName::from_static("x-tenant-id");
//! let auth = http::header::AUTHORIZATION;
//! let tp = http::HeaderName::from_static("traceparent");
//!
//! let internal = targets.grant_for(Some("http"), Some("orders.svc.internal"), None);
//! assert!(internal.allows(&tenant));
//! assert!(!internal.allows(&auth)); // credentials need naming
//!
//! let auth_svc = targets.grant_for(Some("https"), Some("AUTH.internal"), Some(8443));
//! assert!(auth_svc.allows(&auth));
//!
//! let outside = targets.grant_for(Some("https"), Some("api.example.com"), None);
//! assert!(outside.allows(&tp));
//! assert!(!outside.allows(&tenant));
//! ```

use std::fmt;
use std::sync::Arc;

use http::HeaderName;
use threadline::CREDENTIALS;

use crate::trust::IpNet;

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com` kept as `.example.com`.
    Suffix(String),
    /// IP-literal hosts inside a network.
    Net(IpNet),
    /// Names without a dot (`orders`), not IP literals.
    Unqualified,
}

/// A destination pattern: host (exact, `*.suffix` or `*`), optional scheme and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    host: HostPattern,
    scheme: Option<String>,
    port: Option<u16>,
}

impl Target {
    /// Hosts matching `pattern`: an exact name or IP (`orders.internal`,
    /// `127.0.0.1`), `*.suffix` (any subdomain of `suffix`, not `suffix` itself), or
    /// `*` (any host). Matching ignores case, and a fully qualified name's final dot
    /// (`orders.internal.` is `orders.internal`, on either side).
    pub fn host(pattern: &str) -> Self {
        let p = pattern.trim().to_ascii_lowercase();
        let p = trim_final_dot(&p);
        let host = if p == "*" {
            HostPattern::Any
        } else if let Some(rest) = p.strip_prefix("*.") {
            HostPattern::Suffix(format!(".{rest}"))
        } else {
            HostPattern::Exact(trim_brackets(p).to_owned())
        };
        Target {
            host,
            scheme: None,
            port: None,
        }
    }

    /// Hosts written as an IP address inside `network` (`127.0.0.0/8`, `fc00::/7`).
    /// A name is not resolved: `localhost` is not `127.0.0.1` here.
    ///
    /// ```
    /// use threadline_tower::{IpNet, Target};
    ///
    /// let pods = Target::network("10.0.0.0/8".parse::<IpNet>().unwrap());
    /// assert!(pods.matches(Some("http"), Some("10.42.0.17"), Some(8080)));
    /// assert!(!pods.matches(Some("http"), Some("11.0.0.1"), None));
    /// assert!(!pods.matches(Some("http"), Some("orders"), None));
    /// ```
    pub fn network(network: IpNet) -> Self {
        Target {
            host: HostPattern::Net(network),
            scheme: None,
            port: None,
        }
    }

    /// Host names without a dot (`orders`, `billing:8080`): a Kubernetes service in
    /// the caller's namespace, a Docker Compose service, a name the resolver's search
    /// domains complete. IP literals (`::1`) are not names.
    pub fn unqualified() -> Self {
        Target {
            host: HostPattern::Unqualified,
            scheme: None,
            port: None,
        }
    }

    /// Any host (narrow it with [`Target::scheme`] / [`Target::port`]).
    pub fn any_host() -> Self {
        Target::host("*")
    }

    /// Only this scheme (`http`, `https`; case-insensitive).
    pub fn scheme(mut self, scheme: &str) -> Self {
        self.scheme = Some(scheme.to_ascii_lowercase());
        self
    }

    /// Only this port (the scheme's default port when the URI names none).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Whether a destination matches.
    pub fn matches(&self, scheme: Option<&str>, host: Option<&str>, port: Option<u16>) -> bool {
        if let Some(want) = &self.scheme {
            if !scheme.is_some_and(|s| s.eq_ignore_ascii_case(want)) {
                return false;
            }
        }
        if let Some(want) = self.port {
            let port = port.or(match scheme {
                Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
                Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
                _ => None,
            });
            if port != Some(want) {
                return false;
            }
        }
        let host = host.map(|h| trim_final_dot(trim_brackets(h)));
        match (&self.host, host) {
            (HostPattern::Any, _) => true,
            (_, None) => false,
            (HostPattern::Exact(e), Some(h)) => same_host(h, e),
            (HostPattern::Suffix(s), Some(h)) => {
                h.len() > s.len()
                    && h.is_char_boundary(h.len() - s.len())
                    && same_host(&h[h.len() - s.len()..], s)
            }
            (HostPattern::Net(net), Some(h)) => h
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| net.contains(ip)),
            (HostPattern::Unqualified, Some(h)) => {
                !h.is_empty() && !h.bytes().any(|b| b == b'.' || b == b':')
            }
        }
    }
}

/// Whether a destination host equals a pattern's (lowercase) text, ignoring ASCII case.
/// Hosts almost always arrive in lowercase: one byte compare answers those, and only a
/// mismatch (a miss, or a host with capitals) pays for the case-folding compare, which
/// goes byte by byte.
fn same_host(host: &str, lowercase: &str) -> bool {
    host.len() == lowercase.len()
        && (host.as_bytes() == lowercase.as_bytes() || host.eq_ignore_ascii_case(lowercase))
}

/// `h` without the final dot of a fully qualified name (`a.internal.` names the same
/// host as `a.internal`); a lone `.` is left as it is.
fn trim_final_dot(h: &str) -> &str {
    match h.as_bytes() {
        [_, .., b'.'] => &h[..h.len() - 1],
        _ => h,
    }
}

/// `h` without its leading `[`s and trailing `]`s (an IPv6 literal's brackets), by
/// bytes: a `char` pattern goes through the general string searcher, on every call.
fn trim_brackets(h: &str) -> &str {
    let b = h.as_bytes();
    if b.first() != Some(&b'[') && b.last() != Some(&b']') {
        return h;
    }
    let start = b.iter().position(|&c| c != b'[').unwrap_or(b.len());
    let end = b[start..]
        .iter()
        .rposition(|&c| c != b']')
        .map_or(start, |i| start + i + 1);
    // Both ends sit next to an ASCII byte or at the ends: char boundaries.
    h.get(start..end).unwrap_or_default()
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Headers {
    All,
    Only(Vec<HeaderName>),
    TraceparentOnly,
    Nothing,
}

/// What one destination may receive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    headers: Headers,
    credentials: Vec<HeaderName>,
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

impl Grant {
    /// Every context header the policy forwards (credentials only when named).
    pub fn all() -> Self {
        Grant {
            headers: Headers::All,
            credentials: Vec::new(),
        }
    }

    /// Only these outbound header names (any case; surrounding spaces ignored).
    ///
    /// ```
    /// use threadline_tower::Grant;
    ///
    /// let grant = Grant::only(["x-tenant-id", "traceparent"])?;
    /// assert!(grant.allows(&http::HeaderName::from_static("x-tenant-id")));
    /// assert!(Grant::only(["x tenant"]).is_err());
    /// # Ok::<(), threadline_tower::InvalidGrant>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`InvalidGrant`] naming the first entry that is not a valid header name.
    pub fn only<I, S>(names: I) -> Result<Self, InvalidGrant>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let names = names
            .into_iter()
            .map(|n| parse_name(n.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Grant {
            headers: Headers::Only(names),
            credentials: Vec::new(),
        })
    }

    /// Only these outbound header names, already typed (cannot fail).
    pub fn only_names<I: IntoIterator<Item = HeaderName>>(names: I) -> Self {
        Grant {
            headers: Headers::Only(names.into_iter().collect()),
            credentials: Vec::new(),
        }
    }

    /// Only `traceparent`: lets an outside service join the trace, nothing internal.
    pub fn traceparent_only() -> Self {
        Grant {
            headers: Headers::TraceparentOnly,
            credentials: Vec::new(),
        }
    }

    /// Nothing at all.
    pub fn nothing() -> Self {
        Grant {
            headers: Headers::Nothing,
            credentials: Vec::new(),
        }
    }

    /// Also forward these credential headers, when the policy captured them, to this
    /// destination. A grant of [`Grant::nothing`] stays nothing.
    ///
    /// ```
    /// use threadline_tower::{Credential, Grant};
    ///
    /// let grant = Grant::all().with_credentials([Credential::Authorization]);
    /// assert!(grant.allows(&http::header::AUTHORIZATION));
    /// assert!(!grant.allows(&http::header::COOKIE));
    /// ```
    pub fn with_credentials<I: IntoIterator<Item = Credential>>(mut self, credentials: I) -> Self {
        for c in credentials {
            let name = c.header_name();
            if !self.credentials.contains(&name) {
                self.credentials.push(name);
            }
        }
        self
    }

    /// `true` when every header (credentials aside) may be sent.
    pub fn allows_everything(&self) -> bool {
        self.headers == Headers::All
    }

    /// `true` when nothing at all may be sent.
    pub fn is_nothing(&self) -> bool {
        self.headers == Headers::Nothing
    }

    /// Whether an outbound header may be sent under this grant.
    pub fn allows(&self, name: &HeaderName) -> bool {
        if is_credential(name) {
            return !self.is_nothing() && self.credentials.contains(name);
        }
        match &self.headers {
            Headers::All => true,
            Headers::Only(list) => list.contains(name),
            Headers::TraceparentOnly => *name == TRACEPARENT,
            Headers::Nothing => false,
        }
    }
}

/// `threadline::CREDENTIALS` as header names: all four are standard names, so checking
/// a custom header against them compares a tag, not bytes (this runs for every header
/// of every outgoing call).
fn is_credential(name: &HeaderName) -> bool {
    use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, SET_COOKIE};
    debug_assert_eq!(CREDENTIALS.len(), 4);
    *name == AUTHORIZATION || *name == COOKIE || *name == SET_COOKIE || *name == PROXY_AUTHORIZATION
}

/// A network written in this file (a test checks every one parses).
fn net_of(net: &str) -> IpNet {
    net.parse()
        .unwrap_or_else(|_| panic!("{net:?} is a network written in this file"))
}

fn parse_name(n: &str) -> Result<HeaderName, InvalidGrant> {
    HeaderName::from_bytes(n.trim().to_ascii_lowercase().as_bytes()).map_err(|_| InvalidGrant {
        message: format!("{n:?} is not a valid header name"),
    })
}

/// A credential header a [`Grant`] may name ([`threadline::CREDENTIALS`]): never
/// forwarded unless named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Credential {
    /// `authorization`
    Authorization,
    /// `cookie`
    Cookie,
    /// `proxy-authorization`
    ProxyAuthorization,
    /// `set-cookie`
    SetCookie,
}

impl Credential {
    /// The header's name.
    pub fn header_name(self) -> HeaderName {
        use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, SET_COOKIE};
        match self {
            Credential::Authorization => AUTHORIZATION,
            Credential::Cookie => COOKIE,
            Credential::ProxyAuthorization => PROXY_AUTHORIZATION,
            Credential::SetCookie => SET_COOKIE,
        }
    }
}

impl std::str::FromStr for Credential {
    type Err = InvalidGrant;

    /// A credential header's name, any case (`Authorization`, `cookie`).
    fn from_str(s: &str) -> Result<Self, InvalidGrant> {
        let s = s.trim();
        [
            Credential::Authorization,
            Credential::Cookie,
            Credential::ProxyAuthorization,
            Credential::SetCookie,
        ]
        .into_iter()
        .find(|c| c.header_name().as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| InvalidGrant {
            message: format!(
                "{s:?} is not a credential header (authorization, cookie, proxy-authorization, set-cookie)"
            ),
        })
    }
}

/// A [`Grant`] named something that is not a header name, or a credential that is
/// not one of [`Credential`]'s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidGrant {
    message: String,
}

impl fmt::Display for InvalidGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InvalidGrant {}

/// Destinations and what each may receive. Cheap to clone. The first matching rule
/// wins; no match gets the fallback (default [`Grant::nothing`]).
#[derive(Clone)]
pub struct Targets {
    rules: Arc<[(Target, Grant)]>,
    otherwise: Grant,
    /// Some rule names a port.
    any_port: bool,
}

impl fmt::Debug for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Targets")
            .field("rules", &self.rules)
            .field("otherwise", &self.otherwise)
            .finish()
    }
}

impl Default for Targets {
    fn default() -> Self {
        Self::new()
    }
}

impl Targets {
    /// No destination receives anything until allowed.
    pub fn new() -> Self {
        Targets {
            any_port: false,
            rules: Arc::from(Vec::new()),
            otherwise: Grant::nothing(),
        }
    }

    /// Every destination receives every context header (credentials excluded). For
    /// clients that only ever talk to your own services.
    pub fn everywhere() -> Self {
        Targets::new().otherwise(Grant::all())
    }

    /// Your machine: `localhost`, `*.localhost`, IP literals in `127.0.0.0/8` and
    /// `::1`, any scheme and port, receive every context header (credentials only if
    /// named). Nothing else does until allowed. For a developer's laptop.
    pub fn local() -> Self {
        let mut t = Targets::new()
            .allow(Target::host("localhost"))
            .allow(Target::host("*.localhost"));
        for net in ["127.0.0.0/8", "::1/128"] {
            t = t.allow(Target::network(net_of(net)));
        }
        t
    }

    /// Your own services, on a laptop and in a cluster: everything [`Targets::local`]
    /// allows, plus
    ///
    /// - names without a dot ([`Target::unqualified`]: `orders`, `billing:8080`, a
    ///   Kubernetes service in the same namespace, a Compose service),
    /// - `*.internal` (`host.docker.internal`, cloud-internal DNS), `*.svc` and
    ///   `*.cluster.local` (Kubernetes: `orders.shop.svc`,
    ///   `orders.shop.svc.cluster.local`),
    /// - IP literals in the private ranges `10.0.0.0/8`, `172.16.0.0/12`,
    ///   `192.168.0.0/16` and `fc00::/7`.
    ///
    /// Each receives every context header (credentials only if named); any other
    /// destination (a payment provider, `api.example.com`) receives nothing until
    /// allowed. Add your own domains, or a fallback for the rest:
    ///
    /// ```
    /// use threadline_tower::{Target, Targets};
    ///
    /// let targets = Targets::internal()
    ///     .allow(Target::host("*.corp.example"))
    ///     .others_traceparent_only();
    /// let tenant = http::HeaderName::from_static("x-tenant-id");
    /// let sent = |url: &str| {
    ///     let uri: http::Uri = url.parse().unwrap();
    ///     targets.grant_for_uri(&uri).allows(&tenant)
    /// };
    /// assert!(sent("http://127.0.0.1:3001/orders")); // laptop
    /// assert!(sent("http://localhost:3001/orders"));
    /// assert!(sent("http://billing:8080/invoices")); // compose / same namespace
    /// assert!(sent("http://billing.shop.svc.cluster.local/invoices"));
    /// assert!(sent("http://10.42.0.17:8080/")); // a pod IP
    /// assert!(sent("https://ledger.corp.example/"));
    /// assert!(!sent("https://api.stripe.com/v1/charges"));
    /// assert!(!sent("http://203.0.113.9/"));
    /// ```
    ///
    /// A private IP or a `.internal` name that is not one of your services (a
    /// vendor's appliance on the VPN) gets the context too: when that matters, build
    /// the list yourself from [`Targets::local`] and [`Targets::allow`].
    pub fn internal() -> Self {
        let mut t = Targets::local().allow(Target::unqualified());
        for suffix in ["*.internal", "*.svc", "*.cluster.local"] {
            t = t.allow(Target::host(suffix));
        }
        for net in ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"] {
            t = t.allow(Target::network(net_of(net)));
        }
        t
    }

    /// Destinations matching `target` receive everything (credentials only if named
    /// with [`Targets::grant`]).
    pub fn allow(self, target: Target) -> Self {
        self.grant(target, Grant::all())
    }

    /// Destinations matching `target` receive what `grant` says.
    pub fn grant(self, target: Target, grant: Grant) -> Self {
        let mut rules: Vec<_> = self.rules.iter().cloned().collect();
        rules.push((target, grant));
        Targets {
            any_port: rules.iter().any(|(t, _)| t.port.is_some()),
            rules: rules.into(),
            otherwise: self.otherwise,
        }
    }

    /// What destinations matching no rule receive.
    pub fn otherwise(mut self, grant: Grant) -> Self {
        self.otherwise = grant;
        self
    }

    /// Shortcut for `.otherwise(Grant::traceparent_only())`.
    pub fn others_traceparent_only(self) -> Self {
        self.otherwise(Grant::traceparent_only())
    }

    /// Whether any rule names a destination (without rules, every call gets the
    /// fallback).
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    /// The grant of destinations no rule names.
    pub fn fallback(&self) -> &Grant {
        &self.otherwise
    }

    /// The grant for one destination.
    pub fn grant_for(&self, scheme: Option<&str>, host: Option<&str>, port: Option<u16>) -> &Grant {
        self.rules
            .iter()
            .find(|(t, _)| t.matches(scheme, host, port))
            .map_or(&self.otherwise, |(_, g)| g)
    }

    /// The grant for a destination given by scheme and authority, as `http` parsed it
    /// (userinfo is not part of the host: `http://orders.internal@evil.example/` goes
    /// to `evil.example`). With no rules the fallback is the answer and the authority
    /// is not read.
    pub fn grant_for_authority(
        &self,
        scheme: Option<&str>,
        authority: Option<&http::uri::Authority>,
    ) -> &Grant {
        if self.rules.is_empty() {
            return &self.otherwise;
        }
        match authority {
            // The port is read only when some rule names one.
            Some(a) => self.grant_for(
                scheme,
                Some(a.host()),
                if self.any_port { a.port_u16() } else { None },
            ),
            None => self.grant_for(scheme, None, None),
        }
    }

    /// The grant for a request to `uri` (scheme and authority; a relative URI has
    /// neither and gets what a rule for no host gives, usually the fallback).
    pub fn grant_for_uri(&self, uri: &http::Uri) -> &Grant {
        self.grant_for_authority(uri.scheme_str(), uri.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_the_core_list() {
        for c in CREDENTIALS {
            assert!(is_credential(&HeaderName::from_static(c)), "{c}");
        }
        assert_eq!(CREDENTIALS.len(), 4);
        assert!(!is_credential(&HeaderName::from_static("x-tenant-id")));
    }

    /// The host a destination names, as a reader of the URL would take it: the text
    /// between `//` (or any userinfo's last `@`) and the port, lowercased, without a
    /// final dot. Independent of `http`'s parser, for the properties below.
    fn expected_host(host: &str) -> String {
        let h = host.to_ascii_lowercase();
        match h.strip_suffix('.') {
            Some(rest) if !rest.is_empty() => rest.to_owned(),
            _ => h,
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whatever surrounds it (userinfo naming the allowed host, `@`s, ports, look-alike
        /// prefixes and suffixes), a destination gets the context only when its own host
        /// is the allowed one; `http` refusing the URL is fine, a grant to the wrong
        /// host is not.
        #[test]
        fn only_the_named_host_gets_the_context(
            userinfo in proptest::option::of("(orders\\.internal|[a-z:.%]{0,12})(@(orders\\.internal)?)?"),
            host in "(orders\\.internal|ORDERS\\.Internal|orders\\.internal\\.|orders\\.internal\\.evil\\.example|evil-orders\\.internal|orders\\.internal[a-z%.-]{1,6}|[a-z]{1,8}\\.orders\\.internal|[a-z.%-]{0,16})",
            port in proptest::option::of(0u32..70_000),
            rest in "(/[a-z@#?:.]{0,12})?",
        ) {
            let targets = Targets::new().allow(Target::host("orders.internal"));
            let tenant = HeaderName::from_static("x-tenant-id");
            let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
            let port_text = port.map(|p| format!(":{p}")).unwrap_or_default();
            let url = format!("http://{userinfo}{host}{port_text}{rest}");
            if let Ok(uri) = url.parse::<http::Uri>() {
                let granted = targets.grant_for_uri(&uri).allows(&tenant);
                // The destination's host, by `http`: it must be what the URL was built
                // with (after the last `@`, the userinfo is never the host).
                let host_of = uri.host().map(expected_host);
                if granted {
                    proptest::prop_assert_eq!(host_of.as_deref(), Some("orders.internal"), "{}", url);
                }
                if !userinfo.contains('@') || userinfo.matches('@').count() == 1 {
                    let want = expected_host(&host) == "orders.internal";
                    if uri.host() == Some(host.as_str()) {
                        proptest::prop_assert_eq!(granted, want, "{}", url);
                    }
                }
            }
        }

        /// Long and hostile authorities (any characters, control bytes, kilobytes of
        /// labels, brackets, many `@` and `:`) never panic, and are granted only when
        /// their host is one the targets name.
        #[test]
        fn hostile_authorities_never_panic_nor_widen(
            a in "[\\x00-\\x7f\\u{80}-\\u{10ffff}]{0,64}",
            label in "[a-z0-9-]{1,63}",
            repeat in 1usize..2_000,
        ) {
            let targets = Targets::internal().grant(
                Target::host("auth.internal").port(8443),
                Grant::all().with_credentials([Credential::Authorization]),
            );
            let long = format!("{}internal", format!("{label}.").repeat(repeat));
            for text in [a.clone(), long, format!("{a}@auth.internal:8443"), format!("auth.internal:8443@{a}")] {
                if let Ok(authority) = text.parse::<http::uri::Authority>() {
                    let g = targets.grant_for_authority(Some("https"), Some(&authority));
                    if g.allows(&http::header::AUTHORIZATION) {
                        proptest::prop_assert_eq!(expected_host(authority.host()), "auth.internal");
                        proptest::prop_assert_eq!(authority.port_u16(), Some(8443));
                    }
                    if !g.is_nothing() {
                        let h = expected_host(authority.host());
                        let h = h.trim_start_matches('[').trim_end_matches(']');
                        let internal = h == "localhost"
                            || h.ends_with(".localhost")
                            || h.ends_with(".internal")
                            || h.ends_with(".svc")
                            || h.ends_with(".cluster.local")
                            || (!h.is_empty() && !h.contains(['.', ':']))
                            || h.parse::<std::net::IpAddr>().is_ok_and(|ip| match ip {
                                std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
                                std::net::IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
                            });
                        proptest::prop_assert!(internal, "{:?} granted", authority.as_str());
                    }
                }
            }
        }
    }

    #[test]
    fn userinfo_is_never_the_host() {
        let targets = Targets::new().allow(Target::host("orders.internal"));
        let tenant = HeaderName::from_static("x-tenant-id");
        for url in [
            "http://orders.internal@evil.example/",
            "http://orders.internal:80@evil.example/",
            "http://user@orders.internal@evil.example/",
            "http://orders.internal.evil.example/",
            "http://evil.example/orders.internal",
            "http://evil.example/?h=orders.internal",
            "http://evil.example#@orders.internal",
        ] {
            if let Ok(uri) = url.parse::<http::Uri>() {
                assert!(!targets.grant_for_uri(&uri).allows(&tenant), "{url}");
            }
        }
        for url in [
            "http://orders.internal/",
            "http://evil.example@orders.internal/",
            "http://ORDERS.internal.:8080/x",
        ] {
            let uri: http::Uri = url.parse().unwrap();
            assert!(targets.grant_for_uri(&uri).allows(&tenant), "{url}");
        }
    }

    #[test]
    fn grant_names_are_checked() {
        assert!(Grant::only(["x tenant"]).is_err());
        assert!(Grant::only(["x-tenant-id", ""]).is_err());
        let e = Grant::only(["x-ok", "bad\nname"]).unwrap_err();
        assert!(e.to_string().contains("\\n"), "{e}");
        assert_eq!(
            "Proxy-Authorization".parse::<Credential>().unwrap(),
            Credential::ProxyAuthorization
        );
        assert!("authorisation".parse::<Credential>().is_err());
        assert!("x-tenant-id".parse::<Credential>().is_err());
        for c in CREDENTIALS {
            let parsed: Credential = c.parse().unwrap();
            assert_eq!(parsed.header_name().as_str(), *c);
        }
    }

    #[test]
    fn brackets_trimmed_like_the_char_patterns() {
        for h in [
            "[::1]", "::1", "[[a]]", "[", "]", "[]", "", "a]", "[a", "é]", "[é",
        ] {
            assert_eq!(
                trim_brackets(h),
                h.trim_start_matches('[').trim_end_matches(']'),
                "{h}"
            );
        }
    }

    #[test]
    fn host_patterns() {
        let cases: &[(&str, &str, bool)] = &[
            ("orders.internal", "orders.internal", true),
            ("orders.internal", "ORDERS.Internal", true),
            ("orders.internal", "evil-orders.internal", false),
            ("*.internal", "a.b.internal", true),
            ("*.internal", "internal", false),
            ("*.internal", "notinternal", false),
            ("*.internal", "x.internal.evil.com", false),
            ("*", "anything", true),
            ("127.0.0.1", "127.0.0.1", true),
            ("[::1]", "[::1]", true),
            ("::1", "[::1]", true),
            ("orders.internal", "orders.internal.", true),
            ("orders.internal.", "orders.internal", true),
            ("*.internal", "a.internal.", true),
            ("*.internal.", "a.internal", true),
            ("*.internal", "internal.", false),
            ("orders.internal", "orders.internal..", false),
            ("orders.internal", "orders.internal.evil.", false),
        ];
        for (pat, host, want) in cases {
            assert_eq!(
                Target::host(pat).matches(Some("http"), Some(host), None),
                *want,
                "{pat} vs {host}"
            );
        }
        assert!(
            !Target::host("a").matches(Some("http"), None, None),
            "no host"
        );
    }

    #[test]
    fn local_and_internal() {
        let tenant = HeaderName::from_static("x-tenant-id");
        let auth = http::header::AUTHORIZATION;
        // (destination, local, internal, reason)
        let cases: &[(&str, bool, bool, &str)] = &[
            ("http://127.0.0.1:3001/", true, true, "loopback v4"),
            ("http://127.0.0.53/", true, true, "all of 127/8"),
            ("http://[::1]:3001/", true, true, "loopback v6"),
            ("http://localhost:3001/", true, true, "localhost"),
            ("http://LOCALHOST./", true, true, "case and final dot"),
            ("http://api.localhost/", true, true, "*.localhost"),
            (
                "http://billing:8080/",
                false,
                true,
                "compose or same-namespace name",
            ),
            ("http://orders/", false, true, "unqualified, default port"),
            ("http://orders.shop.svc/", false, true, "kubernetes short"),
            (
                "http://orders.shop.svc.cluster.local:80/",
                false,
                true,
                "kubernetes full",
            ),
            ("http://host.docker.internal/", false, true, "*.internal"),
            ("http://10.42.0.17:8080/", false, true, "10/8"),
            ("http://172.20.0.3/", false, true, "172.16/12"),
            ("http://192.168.1.20/", false, true, "192.168/16"),
            ("http://[fd00::17]/", false, true, "v6 unique local"),
            ("https://api.stripe.com/", false, false, "a provider"),
            ("http://203.0.113.9/", false, false, "public v4"),
            ("http://172.32.0.1/", false, false, "past 172.16/12"),
            (
                "http://169.254.169.254/",
                false,
                false,
                "link-local metadata",
            ),
            ("http://[2001:db8::1]/", false, false, "public v6"),
            (
                "http://localhost.example.com/",
                false,
                false,
                "not *.localhost",
            ),
            (
                "http://internal/",
                false,
                true,
                "unqualified, though named internal",
            ),
            (
                "http://evil.internal.example.com/",
                false,
                false,
                "suffix in the middle",
            ),
        ];
        let (local_targets, internal_targets) = (Targets::local(), Targets::internal());
        for (url, local, internal, why) in cases {
            let uri: http::Uri = url.parse().unwrap();
            let l = local_targets.grant_for_uri(&uri);
            let i = internal_targets.grant_for_uri(&uri);
            assert_eq!(l.allows(&tenant), *local, "local: {why} ({url})");
            assert_eq!(i.allows(&tenant), *internal, "internal: {why} ({url})");
            assert!(!i.allows(&auth), "credentials never by default: {url}");
        }
    }

    #[test]
    fn scheme_and_port() {
        let t = Target::host("a").scheme("https").port(443);
        assert!(t.matches(Some("https"), Some("a"), None), "default port");
        assert!(t.matches(Some("HTTPS"), Some("a"), Some(443)));
        assert!(!t.matches(Some("http"), Some("a"), Some(443)), "scheme");
        assert!(!t.matches(Some("https"), Some("a"), Some(8443)), "port");
        assert!(!t.matches(None, Some("a"), None), "no scheme");
    }

    #[test]
    fn grants() {
        let tenant = HeaderName::from_static("x-tenant-id");
        let auth = http::header::AUTHORIZATION;
        let cookie = http::header::COOKIE;
        assert!(Grant::all().allows(&tenant));
        assert!(!Grant::all().allows(&auth));
        assert!(!Grant::all().allows(&cookie));
        let g = Grant::all().with_credentials(["Authorization".parse().unwrap()]);
        assert!(g.allows(&auth) && !g.allows(&cookie));
        assert!(
            !Grant::nothing()
                .with_credentials([Credential::Authorization])
                .allows(&auth)
        );
        assert!(Grant::only(["x-tenant-id"]).unwrap().allows(&tenant));
        assert!(!Grant::only(["x-tenant-id"]).unwrap().allows(&TRACEPARENT));
        assert!(Grant::traceparent_only().allows(&TRACEPARENT));
        assert!(!Grant::traceparent_only().allows(&HeaderName::from_static("tracestate")));
    }

    #[test]
    fn first_rule_wins_then_fallback() {
        let t = Targets::new()
            .grant(Target::host("a.internal"), Grant::only(["x-a"]).unwrap())
            .allow(Target::host("*.internal"));
        let xa = HeaderName::from_static("x-a");
        let xb = HeaderName::from_static("x-b");
        assert!(
            !t.grant_for(Some("http"), Some("a.internal"), None)
                .allows(&xb)
        );
        assert!(
            t.grant_for(Some("http"), Some("b.internal"), None)
                .allows(&xb)
        );
        assert!(
            t.grant_for(Some("http"), Some("example.com"), None)
                .is_nothing()
        );
        assert!(
            !Targets::everywhere()
                .grant_for(None, None, None)
                .allows(&http::header::COOKIE)
        );
        assert!(
            Targets::everywhere()
                .grant_for(None, None, None)
                .allows(&xa)
        );
    }
}
