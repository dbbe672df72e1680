//! The trust boundary: which callers may set `trusted_only` headers.
//!
//! A [`TrustPolicy`] looks at one inbound request and answers [`Trust::Trusted`] or
//! [`Trust::Untrusted`]. Built-ins: [`TrustPolicy::always`], [`TrustPolicy::never`],
//! [`TrustPolicy::peer_in`] (the peer IP in a CIDR list), [`TrustPolicy::shared_secret`]
//! (a header holding a secret); and [`TrustPolicy::custom`] for a closure.
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

/// A trust policy that could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidTrustPolicy(String);

impl fmt::Display for InvalidTrustPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
            .map_err(|e| InvalidTrustPolicy(e.to_string()))?;
        Ok(TrustPolicy::of(Kind::PeerIn(nets.into())))
    }

    /// Callers that send `header` with exactly `secret` (compared in constant time).
    /// Put the header on internal clients; strip it at the edge. The server layer
    /// removes the header from each request once it has decided, so the handler, its
    /// logs and a "capture all" context never see the secret.
    pub fn shared_secret(header: &str, secret: &str) -> Result<Self, InvalidTrustPolicy> {
        let header = HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| InvalidTrustPolicy(format!("{header:?} is not a header name")))?;
        let secret = HeaderValue::from_str(secret)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                InvalidTrustPolicy("the shared secret must be a non-empty header value".into())
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
