//! The page shell shared by the store's pages: inline CSS compiled into the binary
//! (no CDN, no external request), and escaping for every value rendered.

use std::fmt::Write as _;

const STYLE: &str = include_str!("assets/style.css");
const LOGO: &str = include_str!("assets/logo.svg");

/// Whether `c` is invisible when rendered yet changes what is shown: a Unicode format
/// character (category Cf: bidirectional overrides and isolates such as U+202E, zero
/// width spaces and joiners, the byte order mark, tag characters), a line or paragraph
/// separator, or a Hangul filler. Form input with one is refused; [`esc`] shows them
/// as `\u{…}`.
pub(super) fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// The `Content-Security-Policy` of every page: nothing but the page itself (inline
/// styles, the inline logo, `data:` icons); no script at all; forms post to the store.
pub(super) const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                       form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Escapes text for HTML element content and double-quoted attribute values; control
/// and [`invisible`] characters are shown as `\u{…}`.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() || invisible(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes one URL path segment (everything but unreserved characters).
pub(super) fn path_segment(s: &str) -> String {
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
pub(super) fn page(title: &str, body: &str) -> String {
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
        assert_eq!(esc("Kettle\u{202e}gpj.exe"), "Kettle\\u{202e}gpj.exe");
    }

    #[test]
    fn bidi_controls_and_format_characters_are_invisible() {
        for c in [
            '\u{202E}',
            '\u{202A}',
            '\u{2066}',
            '\u{2069}',
            '\u{200B}',
            '\u{200D}',
            '\u{200E}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{061C}',
            '\u{2028}',
            '\u{E0041}',
            '\u{2060}',
        ] {
            assert!(invisible(c), "U+{:04X}", c as u32);
        }
        for c in ['a', 'é', 'Ж', '中', '🙂', ' ', '-', '\u{2010}', '\u{3000}'] {
            assert!(!invisible(c), "U+{:04X}", c as u32);
        }
    }
}
