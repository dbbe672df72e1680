//! The trust boundary: which callers may set `trusted_only` headers.
//!
//! A [`TrustPolicy`] looks at one inbound request and answers [`Trust::Trusted`] or
//! [`Trust::Untrusted`]. Built-ins: [`TrustPolicy::always`], [`TrustPolicy::never`],
//! [`TrustPolicy::peer_in`] (the peer IP in a CIDR list), [`TrustPolicy::shared_secret`]
//! (a header holding a secret); and [`TrustPolicy::custom`] for a closure. One-liners
//! for the usual networks: [`TrustPolicy::loopback`] (a developer's laptop) and
//! [`TrustPolicy::private_networks`] (loopback and the private ranges of a cluster).
//!
//! # The peer address must reach the layer
//!
//! A policy that reads the peer address ([`TrustPolicy::peer_in`] and the one-liners)
//! trusts nobody when the server does not tell it the address. The server layer says
//! so once, at warn level, naming the fix, and its debug line for each dropped header
//! says "peer address unknown" rather than "untrusted". The fix, per server:
//!
//! | server | how the peer address reaches the layer |
//! |---|---|
//! | axum | threadline-tower's `axum` feature, and `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())` |
//! | hyper | insert [`PeerAddr`] (or the `SocketAddr`) into each request's extensions, per connection (see [`server`](crate::server)) |
//! | tonic | threadline-tower's `tonic` feature (tonic's `TcpConnectInfo`) |
//!
//! ```
//! use std::net::SocketAddr;
//! use threadline::Trust;
//! use threadline_tower::TrustPolicy;
//!
//! let trust = TrustPolicy::peer_in(["10.0.0.0/8", "127.0.0.1/32", "::1/128"]).unwrap();
//!
//! let mut req = http::Request::new(());
//! req.extensions_mut().insert("127.0.0.1:50000".parse::<SocketAddr>().unwrap());
//! assert_eq!(trust.decide(&req), Trust::Trusted);
//!
//! let mut outside = http::Request::new(());
//! outside.extensions_mut().insert("203.0.113.9:443".parse::<SocketAddr>().unwrap());
//! assert_eq!(trust.decide(&outside), Trust::Untrusted);
//! // No peer address known at all: untrusted.
//! assert_eq!(trust.decide(&http::Request::new(())), Trust::Untrusted);
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Request};
use threadline::Trust;

/// The peer address of a connection, for servers that put neither a `SocketAddr` nor
/// a framework-specific type into the request extensions: insert one per connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The peer IP of a request, read from its extensions: [`PeerAddr`], a plain
/// `SocketAddr`, axum's `ConnectInfo<SocketAddr>` (feature `axum`) or tonic's
/// `TcpConnectInfo` (feature `tonic`).
pub fn peer_ip<B>(req: &Request<B>) -> Option<IpAddr> {
    let ext = req.extensions();
    if let Some(p) = ext.get::<PeerAddr>() {
        return Some(p.0.ip());
    }
    if let Some(a) = ext.get::<SocketAddr>() {
        return Some(a.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(c) = ext.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(c.0.ip());
    }
    #[cfg(feature = "tonic")]
    if let Some(c) = ext.get::<tonic::transport::server::TcpConnectInfo>() {
        return c.remote_addr().map(|a| a.ip());
    }
    None
}

/// An IP network (`10.0.0.0/8`, `::1/128`; a bare address is a single host).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is inside the network. IPv4-mapped IPv6 addresses
    /// (`::ffff:10.1.2.3`) match IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Debug for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A string that is not an IP network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidIpNet(String);

impl fmt::Display for InvalidIpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an IP network (expected `10.0.0.0/8`, `::1/128` or an address)",
            self.0
        )
    }
}

impl std::error::Error for InvalidIpNet {}

impl FromStr for IpNet {
    type Err = InvalidIpNet;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidIpNet(s.chars().take(64).collect());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
        };
        Ok(IpNet { addr, prefix })
    }
}

/// Loopback, for [`TrustPolicy::loopback`] (and the start of [`PRIVATE`]).
const LOOPBACK: &[&str] = &["127.0.0.0/8", "::1/128"];

/// For [`TrustPolicy::private_networks`].
const PRIVATE: &[&str] = &[
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
];

/// Networks written in this file (valid by construction; a test parses them all).
fn nets(list: &[&str]) -> Arc<[IpNet]> {
    list.iter().filter_map(|n| n.parse().ok()).collect()
}

#[derive(Clone)]
enum Kind {
    Always,
    Never,
    PeerIn(Arc<[IpNet]>),
    Secret {
        header: HeaderName,
        secret: HeaderValue,
    },
    Custom(Arc<CustomFn>),
    Any(Arc<[TrustPolicy]>),
}

/// A closure deciding trust from a request's head (method, URI, headers, extensions).
type CustomFn = dyn Fn(&http::HeaderMap, &http::Extensions, &http::Uri) -> bool + Send + Sync;

/// Decides whether the caller of a request is trusted. Cheap to clone.
#[derive(Clone)]
pub struct TrustPolicy {
    kind: Kind,
    // The headers a shared secret is read from (this policy's own, or its members'),
    // for the server layer to remove once it has decided.
    secret_headers: Arc<[HeaderName]>,
}

impl fmt::Debug for TrustPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Always => f.write_str("TrustPolicy::Always"),
            Kind::Never => f.write_str("TrustPolicy::Never"),
            Kind::PeerIn(nets) => f.debug_tuple("TrustPolicy::PeerIn").field(nets).finish(),
            // The secret itself is never printed.
            Kind::Secret { header, .. } => f
                .debug_struct("TrustPolicy::SharedSecret")
                .field("header", header)
                .finish_non_exhaustive(),
            Kind::Custom(_) => f.write_str("TrustPolicy::Custom(..)"),
            Kind::Any(all) => f.debug_tuple("TrustPolicy::Any").field(all).finish(),
        }
    }
}

impl Default for TrustPolicy {
    /// [`TrustPolicy::never`]: safe by default; `trusted_only` headers need a decision.
    fn default() -> Self {
        Self::never()
    }
}

/// A trust policy that could not be built: which part was wrong
/// ([`InvalidTrustPolicy::kind`]) and a message naming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidTrustPolicy {
    kind: TrustPolicyErrorKind,
    message: String,
}

/// The kinds of [`InvalidTrustPolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TrustPolicyErrorKind {
    /// A network that is not an address or a CIDR block.
    Network,
    /// A header name that is not valid.
    HeaderName,
    /// A shared secret that is empty or not a header value.
    Secret,
}

impl InvalidTrustPolicy {
    fn new(kind: TrustPolicyErrorKind, message: impl Into<String>) -> Self {
        InvalidTrustPolicy {
            kind,
            message: message.into(),
        }
    }

    /// Which part of the trust policy was wrong.
    pub fn kind(&self) -> TrustPolicyErrorKind {
        self.kind
    }
}

impl fmt::Display for InvalidTrustPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InvalidTrustPolicy {}

impl TrustPolicy {
    /// Every caller is trusted (a service only reachable from inside the system).
    pub fn always() -> Self {
        TrustPolicy::of(Kind::Always)
    }

    /// No caller is trusted (an edge service facing the internet). The default.
    pub fn never() -> Self {
        TrustPolicy::of(Kind::Never)
    }

    /// Callers whose peer IP (see [`peer_ip`]) is in one of `networks`. A request whose
    /// peer address is unknown is untrusted.
    pub fn peer_in<I, S>(networks: I) -> Result<Self, InvalidTrustPolicy>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nets = networks
            .into_iter()
            .map(|s| s.as_ref().parse::<IpNet>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| InvalidTrustPolicy::new(TrustPolicyErrorKind::Network, e.to_string()))?;
        Ok(TrustPolicy::of(Kind::PeerIn(nets.into())))
    }

    /// Callers on this machine: peer IPs in `127.0.0.0/8` and `::1` (IPv4-mapped
    /// `::ffff:127.x.y.z` included). For a developer's laptop, where every service
    /// and the `curl` that calls them run on loopback.
    pub fn loopback() -> Self {
        TrustPolicy::of(Kind::PeerIn(nets(LOOPBACK)))
    }

    /// Callers on this machine or in a private network: [`TrustPolicy::loopback`]
    /// plus `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16` (RFC 1918) and
    /// `fc00::/7` (IPv6 unique local). Fits a laptop and most clusters (pod and
    /// service networks are private ranges).
    ///
    /// Not link-local (`169.254.0.0/16`, `fe80::/10`) nor carrier-grade NAT
    /// (`100.64.0.0/10`, used by some overlays): add those with
    /// `TrustPolicy::any([TrustPolicy::private_networks(), TrustPolicy::peer_in(["100.64.0.0/10"])?])`.
    ///
    /// **Only where the peer is the real caller.** Behind a load balancer, an ingress
    /// or a sidecar proxy in the same private network, every request arrives from a
    /// private address, internet callers' included: there, trust a
    /// [`TrustPolicy::shared_secret`] your own services send (and the edge strips), or
    /// keep the default ([`TrustPolicy::never`]) at the edge.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use threadline::Trust;
    /// use threadline_tower::TrustPolicy;
    ///
    /// let trust = TrustPolicy::private_networks();
    /// let from = |addr: &str| {
    ///     let mut req = http::Request::new(());
    ///     req.extensions_mut().insert(addr.parse::<SocketAddr>().unwrap());
    ///     trust.decide(&req)
    /// };
    /// assert_eq!(from("127.0.0.1:50000"), Trust::Trusted);
    /// assert_eq!(from("10.42.0.17:50000"), Trust::Trusted); // a pod
    /// assert_eq!(from("[fd00::5]:50000"), Trust::Trusted);
    /// assert_eq!(from("203.0.113.9:443"), Trust::Untrusted);
    /// ```
    pub fn private_networks() -> Self {
        TrustPolicy::of(Kind::PeerIn(nets(PRIVATE)))
    }

    /// Callers that send `header` with exactly `secret` (compared in constant time).
    /// Put the header on internal clients; strip it at the edge. The server layer
    /// removes the header from each request once it has decided, so the handler, its
    /// logs and a "capture all" context never see the secret.
    pub fn shared_secret(header: &str, secret: &str) -> Result<Self, InvalidTrustPolicy> {
        let header = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
            InvalidTrustPolicy::new(
                TrustPolicyErrorKind::HeaderName,
                format!("{header:?} is not a header name"),
            )
        })?;
        let secret = HeaderValue::from_str(secret)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                InvalidTrustPolicy::new(
                    TrustPolicyErrorKind::Secret,
                    "the shared secret must be a non-empty header value",
                )
            })?;
        Ok(TrustPolicy::of(Kind::Secret { header, secret }))
    }

    /// A closure of your own over the request head: headers, extensions, URI.
    pub fn custom(
        f: impl Fn(&http::HeaderMap, &http::Extensions, &http::Uri) -> bool + Send + Sync + 'static,
    ) -> Self {
        TrustPolicy::of(Kind::Custom(Arc::new(f)))
    }

    /// Trusted when any of `policies` trusts the caller.
    pub fn any(policies: impl IntoIterator<Item = TrustPolicy>) -> Self {
        TrustPolicy::of(Kind::Any(policies.into_iter().collect::<Vec<_>>().into()))
    }

    fn of(kind: Kind) -> Self {
        let secret_headers = match &kind {
            Kind::Secret { header, .. } => vec![header.clone()],
            Kind::Any(all) => all
                .iter()
                .flat_map(|p| p.secret_headers.iter().cloned())
                .collect(),
            _ => Vec::new(),
        };
        TrustPolicy {
            kind,
            secret_headers: secret_headers.into(),
        }
    }

    /// The headers this policy reads a shared secret from (none for the other kinds).
    pub(crate) fn secret_headers(&self) -> &[HeaderName] {
        &self.secret_headers
    }

    /// Decides for one request.
    pub fn decide<B>(&self, req: &Request<B>) -> Trust {
        if self.is_trusted(req) {
            Trust::Trusted
        } else {
            Trust::Untrusted
        }
    }

    /// Decides for one request, and says why an untrusted one is untrusted.
    pub(crate) fn decide_why<B>(&self, req: &Request<B>) -> Decision {
        match &self.kind {
            Kind::PeerIn(nets) => match peer_ip(req) {
                None => Decision::PeerUnknown,
                Some(ip) if nets.iter().any(|n| n.contains(ip)) => Decision::Trusted,
                Some(_) => Decision::NotTrusted,
            },
            Kind::Any(all) => {
                let mut why = Decision::NotTrusted;
                for p in all.iter() {
                    match p.decide_why(req) {
                        Decision::Trusted => return Decision::Trusted,
                        Decision::PeerUnknown => why = Decision::PeerUnknown,
                        Decision::NotTrusted => {}
                    }
                }
                why
            }
            _ if self.is_trusted(req) => Decision::Trusted,
            _ => Decision::NotTrusted,
        }
    }

    fn is_trusted<B>(&self, req: &Request<B>) -> bool {
        match &self.kind {
            Kind::Always => true,
            Kind::Never => false,
            Kind::PeerIn(nets) => {
                peer_ip(req).is_some_and(|ip| nets.iter().any(|n| n.contains(ip)))
            }
            Kind::Secret { header, secret } => {
                let mut values = req.headers().get_all(header).iter();
                match (values.next(), values.next()) {
                    (Some(v), None) => constant_time_eq(v.as_bytes(), secret.as_bytes()),
                    _ => false,
                }
            }
            Kind::Custom(f) => f(req.headers(), req.extensions(), req.uri()),
            Kind::Any(all) => all.iter().any(|p| p.is_trusted(req)),
        }
    }
}

/// Why a request was or was not trusted, for the server layer's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Trusted,
    /// The policy looked and said no.
    NotTrusted,
    /// The policy (or one of its members) reads the peer address, and the request
    /// carries none: nobody could have been trusted that way.
    PeerUnknown,
}

impl Decision {
    pub(crate) fn trust(self) -> Trust {
        match self {
            Decision::Trusted => Trust::Trusted,
            Decision::NotTrusted | Decision::PeerUnknown => Trust::Untrusted,
        }
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req_from(addr: &str) -> Request<()> {
        let mut r = Request::new(());
        r.extensions_mut()
            .insert(addr.parse::<SocketAddr>().unwrap());
        r
    }

    #[test]
    fn cidr_table() {
        let cases: &[(&str, &str, bool, &str)] = &[
            ("10.0.0.0/8", "10.200.3.4:1", true, "inside /8"),
            ("10.0.0.0/8", "11.0.0.1:1", false, "outside /8"),
            ("127.0.0.1", "127.0.0.1:9", true, "bare address is /32"),
            (
                "127.0.0.1",
                "127.0.0.2:9",
                false,
                "bare address, other host",
            ),
            ("0.0.0.0/0", "203.0.113.1:9", true, "everything"),
            ("::1/128", "[::1]:9", true, "v6 loopback"),
            ("fd00::/8", "[fd12::1]:9", true, "v6 ula"),
            ("fd00::/8", "[fe80::1]:9", false, "v6 outside"),
            ("10.0.0.0/8", "[::ffff:10.1.2.3]:9", true, "v4-mapped v6"),
            ("10.0.0.0/8", "[::1]:9", false, "family mismatch"),
        ];
        for (net, addr, want, why) in cases {
            let p = TrustPolicy::peer_in([net]).unwrap();
            assert_eq!(p.is_trusted(&req_from(addr)), *want, "{why}");
        }
    }

    #[test]
    fn bad_networks_are_errors() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "nope",
            "10.0.0.0/",
            "/8",
            "1.2.3.4/-1",
        ] {
            assert!(TrustPolicy::peer_in([bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn shared_secret_rules() {
        let p = TrustPolicy::shared_secret("x-internal", "s3cret").unwrap();
        let mut r = Request::new(());
        assert!(!p.is_trusted(&r), "absent");
        r.headers_mut()
            .insert("x-internal", "s3cre".parse().unwrap());
        assert!(!p.is_trusted(&r), "prefix");
        r.headers_mut()
            .insert("x-internal", "s3cret".parse().unwrap());
        assert!(p.is_trusted(&r), "exact");
        r.headers_mut()
            .append("x-internal", "s3cret".parse().unwrap());
        assert!(!p.is_trusted(&r), "duplicate header");
        assert!(!format!("{p:?}").contains("s3cret"), "secret never printed");
        assert!(TrustPolicy::shared_secret("bad header", "x").is_err());
        assert!(TrustPolicy::shared_secret("x-a", "").is_err());
    }

    #[test]
    fn one_liner_networks() {
        assert_eq!(nets(PRIVATE).len(), PRIVATE.len(), "every network parses");
        assert_eq!(nets(LOOPBACK).len(), LOOPBACK.len());
        // (peer, loopback, private, reason)
        let cases: &[(&str, bool, bool, &str)] = &[
            ("127.0.0.1:1", true, true, "loopback"),
            ("127.8.9.10:1", true, true, "all of 127/8"),
            ("[::1]:1", true, true, "v6 loopback"),
            ("[::ffff:127.0.0.1]:1", true, true, "v4-mapped loopback"),
            ("10.42.0.17:1", false, true, "10/8"),
            ("172.16.0.1:1", false, true, "start of 172.16/12"),
            ("172.31.255.255:1", false, true, "end of 172.16/12"),
            ("172.32.0.1:1", false, false, "past 172.16/12"),
            ("192.168.1.20:1", false, true, "192.168/16"),
            ("[fd12:3456::1]:1", false, true, "v6 unique local"),
            ("[fc00::1]:1", false, true, "fc00::/7 starts at fc00"),
            ("[fe80::1]:1", false, false, "link-local is not private"),
            (
                "169.254.169.254:80",
                false,
                false,
                "link-local v4 (metadata)",
            ),
            ("100.64.0.1:1", false, false, "carrier-grade NAT"),
            ("8.8.8.8:53", false, false, "public"),
            ("[2001:db8::1]:1", false, false, "public v6"),
        ];
        for (peer, lo, private, why) in cases {
            let r = req_from(peer);
            assert_eq!(
                TrustPolicy::loopback().is_trusted(&r),
                *lo,
                "loopback: {why}"
            );
            assert_eq!(
                TrustPolicy::private_networks().is_trusted(&r),
                *private,
                "private: {why}"
            );
        }
    }

    #[test]
    fn decisions_say_why() {
        let peer = TrustPolicy::loopback();
        let known_outside = req_from("203.0.113.9:1");
        let unknown = Request::new(());
        assert_eq!(peer.decide_why(&req_from("127.0.0.1:1")), Decision::Trusted);
        assert_eq!(peer.decide_why(&known_outside), Decision::NotTrusted);
        assert_eq!(peer.decide_why(&unknown), Decision::PeerUnknown);
        // Policies that never read the peer never blame it.
        assert_eq!(
            TrustPolicy::never().decide_why(&unknown),
            Decision::NotTrusted
        );
        let secret = TrustPolicy::shared_secret("x-internal", "s").unwrap();
        assert_eq!(secret.decide_why(&unknown), Decision::NotTrusted);
        // In `any`, another member trusting wins; else an unread peer is the reason.
        let any = TrustPolicy::any([secret, TrustPolicy::private_networks()]);
        assert_eq!(any.decide_why(&unknown), Decision::PeerUnknown);
        assert_eq!(any.decide_why(&known_outside), Decision::NotTrusted);
        let mut with_secret = Request::new(());
        with_secret
            .headers_mut()
            .insert("x-internal", "s".parse().unwrap());
        assert_eq!(any.decide_why(&with_secret), Decision::Trusted);
        for d in [Decision::NotTrusted, Decision::PeerUnknown] {
            assert_eq!(d.trust(), Trust::Untrusted);
        }
    }

    #[test]
    fn combinators() {
        let r = req_from("192.0.2.1:1");
        assert!(TrustPolicy::always().is_trusted(&r));
        assert!(!TrustPolicy::never().is_trusted(&r));
        assert!(!TrustPolicy::default().is_trusted(&r));
        let custom = TrustPolicy::custom(|_, _, uri| uri.path().starts_with("/internal"));
        assert!(!custom.is_trusted(&r));
        let any = TrustPolicy::any([
            TrustPolicy::never(),
            TrustPolicy::peer_in(["192.0.2.0/24"]).unwrap(),
        ]);
        assert!(any.is_trusted(&r));
    }
}
