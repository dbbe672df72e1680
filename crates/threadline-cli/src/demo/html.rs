//! The page shell shared by the store's pages: inline CSS compiled into the binary
//! (no CDN, no external request), and escaping for every value rendered.

use std::fmt::Write as _;

const STYLE: &str = include_str!("assets/style.css");
const LOGO: &str = include_str!("assets/logo.svg");

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes one URL path segment (everything but unreserved characters).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A whole HTML page around `body` (already escaped HTML).
pub fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · threadline demo</title>
<link rel="icon" href="data:image/svg+xml,{icon}">
<style>{STYLE}</style></head>
<body><header class="top"><a class="brand" href="/journeys">{LOGO}<span>threadline</span><em>demo</em></a>
<nav><a href="/orders/new">New order</a><a href="/journeys">Journeys</a></nav></header>
<main>{body}</main></body></html>"#,
        title = esc(title),
        icon = path_segment(LOGO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_controls() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>\n"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;\\u{a}"
        );
        assert_eq!(path_segment("a b/c?"), "a%20b%2Fc%3F");
    }
}
