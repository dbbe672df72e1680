//! Header blocks async-nats cannot parse: why it refuses one ([`check`],
//! [`Malformation`]) and a lenient reading of it ([`RawHeaders`]) so that the
//! message's handler can still run in a fresh or partial context.
//!
//! See the crate docs, "Malformed header blocks", for what such a message does to an
//! async-nats client and what survives it.

use std::str::FromStr;

use http::{HeaderMap, HeaderName, HeaderValue};
use threadline::restore::Message;
use threadline::{MessageHeaders, Policy};

use crate::consume::Nats;

/// Why async-nats 0.51 refuses a header block, in the order its parser checks
/// (`async-nats-0.51.0/src/connection.rs`, `Connection::try_read_op`, the `HMSG` branch,
/// lines 334-395).
///
/// The NATS server itself forwards any block whose length matches: each of these can
/// be published by a client in another language or by a raw socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Malformation {
    /// A byte sequence that is not UTF-8 anywhere in the block (a Latin-1 value such as
    /// `caf\xe9`). async-nats: "header isn't valid utf-8"; the connection is dropped.
    NotUtf8,
    /// An empty block: no version line. The connection is dropped.
    NoVersionLine,
    /// The first line does not begin with `NATS/1.0`. The connection is dropped.
    BadVersion,
    /// `NATS/1.0` followed by something that is not a three-digit status (`NATS/1.0
    /// ok`). The connection is dropped.
    BadStatus,
    /// A header line without a `:`. The connection is dropped.
    LineWithoutColon,
    /// A header name with a character other than visible ASCII: a space (`X Tenant`,
    /// or `X-Tenant :` with a space before the colon), a tab, a control character or a
    /// non-ASCII letter. The connection is dropped.
    InvalidName,
    /// A carriage return inside a header value (`X: a\rb`). async-nats builds the value
    /// with a conversion that asserts (`header.rs`, `impl From<String> for
    /// HeaderValue`): its connection task **panics**, and the client is dead for good,
    /// with no reconnect.
    CarriageReturnInValue,
}

impl Malformation {
    /// Whether receiving the block kills the client for good (a panic in its
    /// connection task) rather than dropping the connection, which async-nats
    /// re-establishes by itself.
    pub fn kills_client(self) -> bool {
        matches!(self, Malformation::CarriageReturnInValue)
    }

    /// A short description.
    pub fn as_str(self) -> &'static str {
        match self {
            Malformation::NotUtf8 => "header block is not UTF-8",
            Malformation::NoVersionLine => "no version line",
            Malformation::BadVersion => "version line does not begin with NATS/1.0",
            Malformation::BadStatus => "status after NATS/1.0 is not a status code",
            Malformation::LineWithoutColon => "header line without a colon",
            Malformation::InvalidName => "header name with a space, control or non-ASCII",
            Malformation::CarriageReturnInValue => "carriage return inside a header value",
        }
    }
}

impl std::fmt::Display for Malformation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether async-nats 0.51 can receive a message with this header block (the bytes
/// between `HMSG ...\r\n` and the payload, `NATS/1.0\r\n...\r\n\r\n`), and if not, why.
///
/// Follows the client's own parser step by step and uses its own validators
/// (`async_nats::StatusCode`, `HeaderName` and `HeaderValue` from their `FromStr`), so
/// a block this accepts is one the client accepts. A block it refuses drops the
/// client's connection when received as a message, or kills the client
/// ([`Malformation::kills_client`]).
///
/// ```
/// use threadline_nats::malformed::{Malformation, check};
///
/// assert_eq!(check(b"NATS/1.0\r\nX-Tenant: acme\r\n\r\n"), Ok(()));
/// assert_eq!(check(b"NATS/1.0\r\nX-Tenant: caf\xe9\r\n\r\n"), Err(Malformation::NotUtf8));
/// assert_eq!(check(b"NATS/1.0\r\nX Tenant: acme\r\n\r\n"), Err(Malformation::InvalidName));
/// ```
pub fn check(block: &[u8]) -> Result<(), Malformation> {
    let text = std::str::from_utf8(block).map_err(|_| Malformation::NotUtf8)?;
    // `str::lines`: split at `\n`, one `\r` before it removed, as async-nats does.
    let mut lines = text.lines().peekable();
    let version = lines.next().ok_or(Malformation::NoVersionLine)?;
    let suffix = version
        .strip_prefix("NATS/1.0")
        .map(str::trim)
        .ok_or(Malformation::BadVersion)?;
    let status = suffix.split_once(' ').map_or(suffix, |(s, _)| s.trim());
    if !status.is_empty() && async_nats::StatusCode::from_str(status).is_err() {
        return Err(Malformation::BadStatus);
    }
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(Malformation::LineWithoutColon)?;
        // The name is not trimmed by the client: a space before the colon is refused.
        if async_nats::HeaderName::from_str(name).is_err() {
            return Err(Malformation::InvalidName);
        }
        let mut value = value.trim_start().to_owned();
        while let Some(v) = lines.next_if(|s| s.starts_with(char::is_whitespace)) {
            value.push_str(v);
        }
        value.truncate(value.trim_end().len());
        if async_nats::HeaderValue::from_str(&value).is_err() {
            return Err(Malformation::CarriageReturnInValue);
        }
    }
    Ok(())
}

/// At most this many header lines are read from one block; the rest are counted as
/// skipped (an `http::HeaderMap` holds a bounded number of entries).
pub const MAX_HEADER_LINES: usize = 1024;

/// A NATS header block read leniently: every line that makes a valid HTTP header is
/// kept, the others are skipped and counted. Restores through [`threadline::Restorer`]
/// like a received message (it implements [`threadline::restore::Message`]), the
/// policy then validating each value as usual (a non-ASCII value is dropped and
/// reported, the rest of the context kept).
///
/// ```
/// use threadline::{Context, Policy, Restorer, Trust};
/// use threadline_nats::malformed::RawHeaders;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let block = b"NATS/1.0\r\nX Bad: 1\r\nx-correlation-id: order-42\r\nx-tenant-id: caf\xe9\r\n\r\n";
/// let headers = RawHeaders::parse(block);
/// assert_eq!(headers.skipped_lines(), 1); // `X Bad`: not a header name
/// let policy = Policy::builder().header("x-tenant-id").build().unwrap();
/// let restorer = Restorer::new(policy).trust(Trust::Trusted);
/// restorer.handle(&headers, |_| async {
///     let ctx = Context::current();
///     assert_eq!(ctx.correlation_id().unwrap().as_str(), "order-42");
///     assert_eq!(ctx.get("x-tenant-id"), None); // not ASCII: dropped and reported
/// }).await;
/// assert_eq!(restorer.stats().with_rejections(), 1);
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct RawHeaders {
    headers: HeaderMap,
    status: Option<u16>,
    description: Option<String>,
    skipped: usize,
    verdict: Option<Malformation>,
}

impl RawHeaders {
    /// Reads a header block (`NATS/1.0[ status[ description]]\r\n` then `name: value`
    /// lines). Never fails: a first line that is not a version line is skipped, a line
    /// that is not `name: value` with an HTTP token name and a value without control
    /// characters is skipped, continuation lines (starting with a space or a tab) are
    /// joined to the previous value with one space, lines past [`MAX_HEADER_LINES`]
    /// are skipped. Values are kept as bytes (a Latin-1 value stays one, for the
    /// policy to judge).
    pub fn parse(block: &[u8]) -> RawHeaders {
        let mut out = RawHeaders {
            verdict: check(block).err(),
            ..RawHeaders::default()
        };
        let mut lines = block
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .peekable();
        if let Some(first) = lines.next() {
            match first.strip_prefix(b"NATS/1.0") {
                Some(rest) => out.read_status(rest),
                None if first.is_empty() => {}
                None => out.skipped += 1,
            }
        }
        let mut kept = 0;
        while let Some(line) = lines.next() {
            if line.is_empty() {
                continue;
            }
            let mut value: Vec<u8>;
            let name = match line.iter().position(|&b| b == b':') {
                Some(colon) => {
                    value = line[colon + 1..].trim_ascii().to_vec();
                    &line[..colon]
                }
                None => {
                    value = Vec::new();
                    b"".as_slice()
                }
            };
            while let Some(more) =
                lines.next_if(|l| l.first().is_some_and(|&b| b == b' ' || b == b'\t'))
            {
                let more = more.trim_ascii();
                if !more.is_empty() {
                    if !value.is_empty() {
                        value.push(b' ');
                    }
                    value.extend_from_slice(more);
                }
            }
            if kept >= MAX_HEADER_LINES {
                out.skipped += 1;
                continue;
            }
            match (
                HeaderName::from_bytes(name),
                HeaderValue::from_bytes(&value),
            ) {
                (Ok(name), Ok(value)) => {
                    out.headers.append(name, value);
                    kept += 1;
                }
                _ => out.skipped += 1,
            }
        }
        out
    }

    fn read_status(&mut self, rest: &[u8]) {
        let rest = rest.trim_ascii();
        let (status, description) = match rest.iter().position(|&b| b == b' ') {
            Some(i) => (&rest[..i], rest[i + 1..].trim_ascii()),
            None => (rest, &b""[..]),
        };
        if status.len() == 3 && status.iter().all(u8::is_ascii_digit) {
            self.status = std::str::from_utf8(status)
                .ok()
                .and_then(|s| s.parse().ok());
        }
        if !description.is_empty() {
            self.description = Some(String::from_utf8_lossy(description).into_owned());
        }
    }

    /// The headers that could be read, names in lower case.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The status code of the version line (`NATS/1.0 503`), if it has one.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The description after the status code, if any (lossily decoded).
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Lines that were not headers (or were past [`MAX_HEADER_LINES`]).
    pub fn skipped_lines(&self) -> usize {
        self.skipped
    }

    /// Why async-nats refuses this block ([`check`]); `None` when it accepts it.
    pub fn malformation(&self) -> Option<Malformation> {
        self.verdict
    }
}

impl Message<Nats> for RawHeaders {
    type Carrier<'a> = MessageHeaders<&'a HeaderMap>;

    fn carrier<'a>(&'a self, _: &'a Policy) -> Option<Self::Carrier<'a>> {
        (!self.headers.is_empty()).then_some(MessageHeaders(&self.headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_each_variant_as_the_client_does() {
        let cases: &[(&[u8], Result<(), Malformation>)] = &[
            (b"NATS/1.0\r\nA: b\r\n\r\n", Ok(())),
            (b"NATS/1.0\r\nA: b\r\n", Ok(())),
            (b"NATS/1.0 503\r\n\r\n", Ok(())),
            (b"NATS/1.0 408 Request Timeout\r\n\r\n", Ok(())),
            (b"NATS/1.0\r\n: empty name\r\n\r\n", Ok(())),
            (b"NATS/1.0\r\nX: a\x01b\r\n\r\n", Ok(())),
            (b"NATS/1.0\r\nX: a\r\r\n\r\n", Ok(())),
            (b"NATS/1.0\r\nX: a\r\n  continued\r\n\r\n", Ok(())),
            (
                b"NATS/1.0\r\nX: caf\xe9\r\n\r\n",
                Err(Malformation::NotUtf8),
            ),
            (b"", Err(Malformation::NoVersionLine)),
            (b"NATS/2.0\r\nX: a\r\n\r\n", Err(Malformation::BadVersion)),
            (b"NATS/1.0 ok\r\n\r\n", Err(Malformation::BadStatus)),
            (b"NATS/1.0 99\r\n\r\n", Err(Malformation::BadStatus)),
            (
                b"NATS/1.0\r\nnocolon\r\n\r\n",
                Err(Malformation::LineWithoutColon),
            ),
            (
                b"NATS/1.0\r\nX: a\nb\r\n\r\n",
                Err(Malformation::LineWithoutColon),
            ),
            (
                b"NATS/1.0\r\nX Tenant: a\r\n\r\n",
                Err(Malformation::InvalidName),
            ),
            (
                b"NATS/1.0\r\nX-Tenant : a\r\n\r\n",
                Err(Malformation::InvalidName),
            ),
            (
                b"NATS/1.0\r\nX\tT: a\r\n\r\n",
                Err(Malformation::InvalidName),
            ),
            (
                b"NATS/1.0\r\nX-T\xc3\xa9: a\r\n\r\n",
                Err(Malformation::InvalidName),
            ),
            (
                b"NATS/1.0\r\n folded: a\r\n\r\n",
                Err(Malformation::InvalidName),
            ),
            (
                b"NATS/1.0\r\nX: a\rb\r\n\r\n",
                Err(Malformation::CarriageReturnInValue),
            ),
        ];
        for (block, want) in cases {
            assert_eq!(check(block), *want, "{:?}", String::from_utf8_lossy(block));
        }
        assert!(Malformation::CarriageReturnInValue.kills_client());
        assert!(!Malformation::NotUtf8.kills_client());
    }

    #[test]
    fn lenient_parse_keeps_what_it_can() {
        let h = RawHeaders::parse(
            b"NATS/1.0\r\nX Bad: 1\r\nX-Correlation-Id:  order-42 \r\nx-tenant-id: caf\xe9\r\n\
              baggage: a=1,\r\n b=2\r\nnocolon\r\nX: a\rb\r\nx-tenant-id: second\r\n\r\n",
        );
        assert_eq!(h.malformation(), Some(Malformation::NotUtf8));
        assert_eq!(
            h.skipped_lines(),
            3,
            "`X Bad`, `nocolon`, the value with a CR"
        );
        assert_eq!(h.headers()["x-correlation-id"], "order-42");
        let tenants: Vec<_> = h.headers().get_all("x-tenant-id").iter().collect();
        assert_eq!(tenants, [&b"caf\xe9"[..], b"second"]);
        assert_eq!(h.headers()["baggage"], "a=1, b=2");
        assert_eq!((h.status(), h.description()), (None, None));

        let h = RawHeaders::parse(b"NATS/1.0 503 No Responders\r\n\r\n");
        assert_eq!(
            (h.status(), h.description()),
            (Some(503), Some("No Responders"))
        );
        assert!(h.headers().is_empty());
        assert_eq!(h.malformation(), None);

        let h = RawHeaders::parse(b"HTTP/1.1\r\nA: b\r\n\r\n");
        assert_eq!((h.skipped_lines(), h.headers().len()), (1, 1));
        assert_eq!(h.malformation(), Some(Malformation::BadVersion));
        let h = RawHeaders::parse(b"");
        assert_eq!((h.skipped_lines(), h.headers().len()), (0, 0));
    }

    #[test]
    fn lines_past_the_bound_are_skipped_not_a_panic() {
        let mut block = b"NATS/1.0\r\n".to_vec();
        for i in 0..(MAX_HEADER_LINES + 5) {
            block.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        let h = RawHeaders::parse(&block);
        assert_eq!(h.headers().len(), MAX_HEADER_LINES);
        assert_eq!(h.skipped_lines(), 5);
    }
}
