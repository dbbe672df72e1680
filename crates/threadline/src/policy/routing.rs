//! [`Routing`]: where a policy reads the routing key from, and where it writes it.

use http::HeaderName;

use super::{PolicyError, PolicyErrorKind};
use crate::codec::{ROUTING_KEY_DEFAULT_MAX_BYTES, ROUTING_KEY_MAX_BYTES, TraceState, is_tchar};
use crate::names;

/// One form a routing key travels in. Every form can be read; all but
/// [`RoutingForm::Query`] and [`RoutingForm::Cookie`] (edge-only: a browser's
/// request) can be written on outgoing calls and messages.
///
/// In TOML: `{ header = "x-routing-key" }`, `{ baggage = "sd-routing-key" }`,
/// `{ tracestate = "sd-routing-key" }`, `{ uberctx = "sd-routing-key" }`,
/// `{ ot-baggage = "sd-routing-key" }`, `{ query = "preview" }`, `{ cookie = "preview" }`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
#[non_exhaustive]
pub enum RoutingForm {
    /// A header of its own, `x-routing-key: alice`.
    Header(String),
    /// A W3C baggage member, `baggage: sd-routing-key=alice`.
    Baggage(String),
    /// A W3C tracestate member, `tracestate: sd-routing-key=alice`.
    Tracestate(String),
    /// Jaeger baggage, `uberctx-<key>: alice`.
    Uberctx(String),
    /// OpenTracing baggage, `ot-baggage-<key>: alice`.
    OtBaggage(String),
    /// A query parameter of a browser's request, `?preview=alice`: read by the server
    /// layer's preview links (threadline-tower), never by [`Policy::capture`](crate::Policy::capture).
    Query(String),
    /// A cookie, `cookie: preview=alice`: what a preview link leaves in the browser.
    Cookie(String),
}

impl RoutingForm {
    /// `Header(name)`.
    pub fn header(name: impl Into<String>) -> Self {
        RoutingForm::Header(name.into())
    }

    /// `Baggage(key)`.
    pub fn baggage(key: impl Into<String>) -> Self {
        RoutingForm::Baggage(key.into())
    }

    /// `Tracestate(key)`.
    pub fn tracestate(key: impl Into<String>) -> Self {
        RoutingForm::Tracestate(key.into())
    }

    /// `Uberctx(key)`.
    pub fn uberctx(key: impl Into<String>) -> Self {
        RoutingForm::Uberctx(key.into())
    }

    /// `OtBaggage(key)`.
    pub fn ot_baggage(key: impl Into<String>) -> Self {
        RoutingForm::OtBaggage(key.into())
    }

    /// `Query(param)`.
    pub fn query(param: impl Into<String>) -> Self {
        RoutingForm::Query(param.into())
    }

    /// `Cookie(name)`.
    pub fn cookie(name: impl Into<String>) -> Self {
        RoutingForm::Cookie(name.into())
    }
}

/// Where a policy reads the routing key from (in order) and which forms it writes on
/// every outgoing call and message. Off unless a policy is given one
/// ([`PolicyBuilder::routing`](crate::PolicyBuilder::routing); TOML `[routing]`).
///
/// - **Reading.** Every listed form present is read. The key is taken when all of
///   them agree; a value that is not a [`RoutingKey`](crate::RoutingKey) (alphabet,
///   length), two forms that disagree, or a single-valued form sent twice are each
///   reported in the capture's [`Report`](crate::Report) (the header name and the
///   reason, never the value) and the request has no key: it goes to the baseline,
///   never to a sandbox. The order of [`Routing::read`] is the order of the report.
/// - **Trust.** Only trusted callers and message sources set a key, unless
///   [`Routing::accept_untrusted`]; an untrusted one's key is reported
///   ([`Reason::Untrusted`](crate::Reason::Untrusted)) and dropped.
/// - **Writing.** The key goes out in each form of [`Routing::write`] (redundant
///   copies, so a hop that forwards only one of them still carries it); when none is
///   listed, in every form read but the query parameter and the cookie. Baggage and
///   tracestate members of the routing key names are owned by the routing key: the
///   context's baggage and tracestate hold the accepted key's member, and never a
///   refused one.
///
/// ```
/// use threadline::{Policy, Routing, RoutingForm, Trust};
///
/// let policy = Policy::builder()
///     .routing(Routing::signadot().accept_untrusted(true))
///     .build()
///     .unwrap();
/// let mut req = http::HeaderMap::new();
/// req.insert("baggage", "sd-routing-key=alice,user=7".parse().unwrap());
/// let ctx = policy.capture(&req, Trust::Untrusted).context;
/// assert_eq!(ctx.routing_key().unwrap().as_str(), "alice");
///
/// let mut out = http::HeaderMap::new();
/// ctx.inject(&mut out);
/// assert_eq!(out["uberctx-sd-routing-key"], "alice");
/// assert_eq!(out["ot-baggage-sd-routing-key"], "alice");
/// assert!(out["baggage"].to_str().unwrap().contains("sd-routing-key=alice"));
/// assert!(out["tracestate"].to_str().unwrap().contains("sd-routing-key=alice"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct Routing {
    /// The forms read, in order.
    pub read: Vec<RoutingForm>,
    /// The forms written on outgoing calls and messages; empty: every form read but
    /// the query parameter and the cookie.
    pub write: Vec<RoutingForm>,
    /// Whether untrusted callers and message sources may set the key (default false).
    pub accept_untrusted: bool,
    /// Longest key accepted, in bytes (default 64, at most 128).
    pub max_len: usize,
}

impl Default for Routing {
    /// [`Routing::empty`].
    fn default() -> Self {
        Routing::empty()
    }
}

impl Routing {
    /// Nothing read yet: add forms with [`Routing::read`] (and [`Routing::write`]).
    pub fn empty() -> Self {
        Routing {
            read: Vec::new(),
            write: Vec::new(),
            accept_untrusted: false,
            max_len: ROUTING_KEY_DEFAULT_MAX_BYTES,
        }
    }

    /// Reads and writes one header of its own (`x-routing-key`, say).
    pub fn header(name: impl Into<String>) -> Self {
        Routing::empty().read(RoutingForm::Header(name.into()))
    }

    /// Every header form under one key name, read and written: baggage, tracestate,
    /// `uberctx-<key>` and `ot-baggage-<key>` (what Signadot sandboxes use with
    /// `sd-routing-key`).
    pub fn members(key: &str) -> Self {
        let forms = [
            RoutingForm::baggage(key),
            RoutingForm::tracestate(key),
            RoutingForm::uberctx(key),
            RoutingForm::ot_baggage(key),
        ];
        forms.into_iter().fold(Routing::empty(), Routing::read)
    }

    /// [`Routing::members`] with `sd-routing-key`.
    pub fn signadot() -> Self {
        Routing::members("sd-routing-key")
    }

    /// Also read this form (after those already listed).
    pub fn read(mut self, form: RoutingForm) -> Self {
        self.read.push(form);
        self
    }

    /// Also write this form on outgoing calls and messages (once one is listed, only
    /// the listed ones are written).
    pub fn write(mut self, form: RoutingForm) -> Self {
        self.write.push(form);
        self
    }

    /// Let untrusted callers and message sources set the key (default false): for an
    /// edge whose preview links are meant for anyone holding them, in a shared test
    /// environment.
    pub fn accept_untrusted(mut self, yes: bool) -> Self {
        self.accept_untrusted = yes;
        self
    }

    /// Longest key accepted, in bytes (default 64; at most
    /// [`ROUTING_KEY_MAX_BYTES`](crate::codec::ROUTING_KEY_MAX_BYTES)).
    pub fn max_len(mut self, n: usize) -> Self {
        self.max_len = n;
        self
    }

    /// The query parameter of preview links, if a [`RoutingForm::Query`] is read.
    pub fn query_param(&self) -> Option<&str> {
        self.read.iter().find_map(|f| match f {
            RoutingForm::Query(p) => Some(p.as_str()),
            _ => None,
        })
    }

    /// The cookie preview links set, if a [`RoutingForm::Cookie`] is read.
    pub fn cookie_name(&self) -> Option<&str> {
        self.read.iter().find_map(|f| match f {
            RoutingForm::Cookie(c) => Some(c.as_str()),
            _ => None,
        })
    }
}

/// Where a read form is found.
#[derive(Debug)]
pub(crate) enum Source {
    /// A header in the capture lookup, at this slot.
    Header {
        name: HeaderName,
        slot: usize,
    },
    /// `uberctx-*`: percent-decoded, in the capture lookup.
    Uberctx {
        name: HeaderName,
        slot: usize,
    },
    Baggage(String),
    Tracestate(String),
    Cookie(String),
}

/// A [`Routing`] checked and compiled by the policy builder.
#[derive(Debug)]
pub(crate) struct RoutingRules {
    pub(crate) config: Routing,
    pub(crate) sources: Vec<Source>,
    /// Header forms written (`x-routing-key`, `uberctx-*`, `ot-baggage-*`).
    pub(crate) write_headers: Vec<HeaderName>,
    pub(crate) write_baggage: Option<String>,
    pub(crate) write_tracestate: Option<String>,
    /// Baggage and tracestate keys owned by the routing key (read or written).
    pub(crate) baggage_keys: Vec<String>,
    pub(crate) tracestate_keys: Vec<String>,
    /// Every header name of a read or written header form.
    pub(crate) header_names: Vec<HeaderName>,
}

impl RoutingRules {
    /// Whether `name` is one of the routing key's header forms.
    pub(crate) fn owns(&self, name: &HeaderName) -> bool {
        self.header_names.contains(name)
    }

    /// Checks `config`; the header forms read take lookup slots from `first_slot` on
    /// (their names are returned, in slot order).
    pub(crate) fn compile(
        config: Routing,
        first_slot: usize,
    ) -> Result<(RoutingRules, Vec<HeaderName>), PolicyError> {
        let bad = |m: String| PolicyError::new(PolicyErrorKind::InvalidRouting, m);
        if config.max_len == 0 || config.max_len > ROUTING_KEY_MAX_BYTES {
            return Err(bad(format!(
                "routing max_len must be 1 to {ROUTING_KEY_MAX_BYTES}"
            )));
        }
        let header = |what: &str, n: &str| -> Result<HeaderName, PolicyError> {
            let name = HeaderName::from_bytes(n.as_bytes())
                .map(names::interned)
                .map_err(|_| bad(format!("routing {what} {n:?} is not a valid header name")))?;
            if super::is_hop_by_hop(name.as_str())
                || names::is_reserved(&name)
                || name == http::header::COOKIE
            {
                return Err(bad(format!(
                    "routing {what} {name} is a header Threadline or HTTP handles otherwise"
                )));
            }
            Ok(name)
        };
        let baggage_key = |k: &str| {
            if k.is_empty() || !k.bytes().all(is_tchar) {
                Err(bad(format!("routing baggage key {k:?} is not a token")))
            } else {
                Ok(k.to_owned())
            }
        };
        let tracestate_key = |k: &str| {
            if k.is_empty() || TraceState::validate(format!("{k}=x").as_bytes()).is_err() {
                Err(bad(format!(
                    "routing tracestate key {k:?} is not a tracestate key"
                )))
            } else {
                Ok(k.to_owned())
            }
        };
        let header_of = |form: &RoutingForm| -> Result<Option<(HeaderName, bool)>, PolicyError> {
            Ok(match form {
                RoutingForm::Header(n) => Some((header("header", n)?, false)),
                RoutingForm::Uberctx(k) => {
                    Some((header("uberctx key", &format!("uberctx-{k}"))?, true))
                }
                RoutingForm::OtBaggage(k) => {
                    Some((header("ot-baggage key", &format!("ot-baggage-{k}"))?, false))
                }
                _ => None,
            })
        };
        let mut rules = RoutingRules {
            config: Routing::empty(),
            sources: Vec::new(),
            write_headers: Vec::new(),
            write_baggage: None,
            write_tracestate: None,
            baggage_keys: Vec::new(),
            tracestate_keys: Vec::new(),
            header_names: Vec::new(),
        };
        let mut slots = Vec::new();
        for form in &config.read {
            if config.read.iter().filter(|f| *f == form).count() > 1 {
                return Err(bad(format!("routing form {form:?} is read twice")));
            }
            let source = match form {
                RoutingForm::Baggage(k) => Source::Baggage(baggage_key(k)?),
                RoutingForm::Tracestate(k) => Source::Tracestate(tracestate_key(k)?),
                RoutingForm::Cookie(c) => {
                    if c.is_empty() || !c.bytes().all(is_tchar) {
                        return Err(bad(format!("routing cookie {c:?} is not a cookie name")));
                    }
                    Source::Cookie(c.clone())
                }
                RoutingForm::Query(q) => {
                    if q.is_empty()
                        || !q.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
                        })
                    {
                        return Err(bad(format!(
                            "routing query parameter {q:?} must be 1 or more of A-Z a-z 0-9 - _ . ~"
                        )));
                    }
                    continue;
                }
                RoutingForm::Header(_) | RoutingForm::Uberctx(_) | RoutingForm::OtBaggage(_) => {
                    let Some((name, decode)) = header_of(form)? else {
                        continue;
                    };
                    let slot = first_slot + slots.len();
                    slots.push(name.clone());
                    rules.header_names.push(name.clone());
                    if decode {
                        Source::Uberctx { name, slot }
                    } else {
                        Source::Header { name, slot }
                    }
                }
            };
            match &source {
                Source::Baggage(k) => rules.baggage_keys.push(k.clone()),
                Source::Tracestate(k) => rules.tracestate_keys.push(k.clone()),
                _ => {}
            }
            rules.sources.push(source);
        }
        let written: Vec<RoutingForm> = if config.write.is_empty() {
            config
                .read
                .iter()
                .filter(|f| !matches!(f, RoutingForm::Query(_) | RoutingForm::Cookie(_)))
                .cloned()
                .collect()
        } else {
            config.write.clone()
        };
        for form in &written {
            match form {
                RoutingForm::Query(_) | RoutingForm::Cookie(_) => {
                    return Err(bad(format!(
                        "routing form {form:?} can be read, not written (it is a browser's)"
                    )));
                }
                RoutingForm::Baggage(k) => {
                    let k = baggage_key(k)?;
                    if rules.write_baggage.replace(k.clone()).is_some() {
                        return Err(bad("routing writes two baggage members".into()));
                    }
                    rules.baggage_keys.push(k);
                }
                RoutingForm::Tracestate(k) => {
                    let k = tracestate_key(k)?;
                    if rules.write_tracestate.replace(k.clone()).is_some() {
                        return Err(bad("routing writes two tracestate members".into()));
                    }
                    rules.tracestate_keys.push(k);
                }
                _ => {
                    if let Some((name, _)) = header_of(form)? {
                        if rules.write_headers.contains(&name) {
                            return Err(bad(format!("routing writes {name} twice")));
                        }
                        rules.write_headers.push(name.clone());
                        if !rules.header_names.contains(&name) {
                            rules.header_names.push(name);
                        }
                    }
                }
            }
        }
        rules.config = config;
        Ok((rules, slots))
    }
}
