//! Header hygiene shared by the reverse and the forward proxy: hop-by-hop headers,
//! and the context headers a policy reads.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use smallvec_lite::SmallNames;
use threadline::{Policy, names};

/// Names that belong to one connection and never cross a proxy (RFC 9110 §7.6.1),
/// besides those a `Connection` header lists. `te` is handled apart (`te: trailers`
/// is kept: gRPC needs it).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TRAILER,
];

/// Removes the hop-by-hop headers of a message: the fixed list, every header the
/// `Connection` header names, `proxy-authorization` / `proxy-authenticate` (meant for
/// this proxy) and a `te` other than `trailers`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Names listed in `Connection` (a handful at most).
    let mut listed = SmallNames::new();
    for v in headers.get_all(header::CONNECTION) {
        let Ok(v) = v.to_str() else { continue };
        for token in v.split(',') {
            let token = token.trim();
            if token.is_empty() {
                continue;
            }
            if let Ok(n) = HeaderName::from_bytes(token.as_bytes()) {
                listed.push(n);
            }
        }
    }
    for n in listed.iter() {
        headers.remove(n);
    }
    for n in &HOP_BY_HOP {
        if headers.contains_key(n) {
            headers.remove(n);
        }
    }
    if headers.contains_key(header::PROXY_AUTHORIZATION) {
        headers.remove(header::PROXY_AUTHORIZATION);
    }
    if headers.contains_key(header::PROXY_AUTHENTICATE) {
        headers.remove(header::PROXY_AUTHENTICATE);
    }
    if let Some(te) = headers.get(header::TE) {
        let trailers_only = headers.get_all(header::TE).iter().count() == 1
            && te.as_bytes().eq_ignore_ascii_case(b"trailers");
        if !trailers_only {
            headers.remove(header::TE);
        }
    }
}

/// The context headers a policy reads and writes: what the proxy removes from a
/// forwarded request before writing the captured context back.
#[derive(Clone, Debug)]
pub(crate) struct ContextNames {
    names: Vec<HeaderName>,
    field_prefix: String,
}

impl ContextNames {
    pub(crate) fn of(policy: &Policy) -> Self {
        let mut names: Vec<HeaderName> = vec![
            names::TRACEPARENT,
            names::TRACESTATE,
            names::BAGGAGE,
            names::B3,
            names::B3_TRACE_ID,
            names::B3_SPAN_ID,
            names::B3_PARENT_SPAN_ID,
            names::B3_SAMPLED,
            names::B3_FLAGS,
            policy.correlation_header().clone(),
        ];
        for (inbound, outbound, _) in policy.rules() {
            for n in [inbound, outbound] {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
        ContextNames {
            names,
            field_prefix: policy.field_prefix().to_ascii_lowercase(),
        }
    }

    /// Whether `name` is a context header of the policy (or a local-field key).
    pub(crate) fn contains(&self, name: &HeaderName) -> bool {
        self.names.iter().any(|n| n == name)
            || (!self.field_prefix.is_empty() && name.as_str().starts_with(&self.field_prefix))
    }

    /// Removes every context header, and `extra` names (those a capture dropped).
    pub(crate) fn strip<'a>(
        &self,
        headers: &mut HeaderMap,
        extra: impl Iterator<Item = &'a HeaderName>,
    ) {
        let mut doomed = SmallNames::new();
        for name in headers.keys() {
            if self.contains(name) {
                doomed.push(name.clone());
            }
        }
        for n in extra {
            doomed.push(n.clone());
        }
        for n in doomed.iter() {
            headers.remove(n);
        }
    }
}

/// `connection: upgrade` and the `upgrade` value, put back on a forwarded upgrade.
pub(crate) fn set_upgrade(headers: &mut HeaderMap, upgrade: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, upgrade);
}

/// The `upgrade` header of an HTTP/1.1 request asking for one (`connection: upgrade`).
pub(crate) fn wants_upgrade<B>(req: &http::Request<B>) -> Option<HeaderValue> {
    if req.version() != http::Version::HTTP_11 {
        return None;
    }
    let upgrade = req.headers().get(header::UPGRADE)?;
    let asked = req.headers().get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    asked.then(|| upgrade.clone())
}

mod smallvec_lite {
    use http::HeaderName;

    /// A few header names without a heap allocation in the usual case (no or few).
    pub(crate) struct SmallNames {
        inline: [Option<HeaderName>; 8],
        len: usize,
        spill: Vec<HeaderName>,
    }

    impl SmallNames {
        pub(crate) fn new() -> Self {
            SmallNames {
                inline: Default::default(),
                len: 0,
                spill: Vec::new(),
            }
        }

        pub(crate) fn push(&mut self, n: HeaderName) {
            if self.len < self.inline.len() {
                self.inline[self.len] = Some(n);
                self.len += 1;
            } else {
                self.spill.push(n);
            }
        }

        pub(crate) fn iter(&self) -> impl Iterator<Item = &HeaderName> {
            self.inline[..self.len]
                .iter()
                .flatten()
                .chain(self.spill.iter())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut m = map(&[
            ("connection", "keep-alive, x-private, Upgrade"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("upgrade", "websocket"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic eA=="),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("trailer", "x-checksum"),
            ("x-kept", "1"),
            ("authorization", "Bearer t"),
        ]);
        strip_hop_by_hop(&mut m);
        let left: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept", "authorization"]);
        let mut grpc = map(&[("te", "trailers")]);
        strip_hop_by_hop(&mut grpc);
        assert_eq!(grpc["te"], "trailers");
    }

    #[test]
    fn context_names_of_a_policy() {
        let policy = Policy::builder()
            .header_rule(threadline::HeaderRule::new("x-client").rename("x-upstream-client"))
            .build()
            .unwrap();
        let names = ContextNames::of(&policy);
        let mut m = map(&[
            ("traceparent", "x"),
            ("x-client", "x"),
            ("x-upstream-client", "x"),
            ("tl-field-user.id", "x"),
            ("x-correlation-id", "x"),
            ("x-junk", "x"),
            ("b3", "x"),
            ("accept", "*/*"),
        ]);
        let junk = HeaderName::from_static("x-junk");
        names.strip(&mut m, std::iter::once(&junk));
        let left: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn upgrade_requests_are_recognised() {
        let ws = http::Request::get("/")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert_eq!(wants_upgrade(&ws).unwrap(), "websocket");
        let no_connection = http::Request::get("/")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(wants_upgrade(&no_connection).is_none());
    }
}
