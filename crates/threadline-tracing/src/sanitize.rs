//! Log-forging protection: values can never start a second output line.
//!
//! Four tools, all allocation-free on the happy path:
//!
//! - [`write_text_value`]: one value for text output, logfmt style — written as is when
//!   it is a plain token, otherwise quoted with `\"`, `\\`, `\n`, `\r`, `\t` and
//!   `\u{..}` escapes.
//! - [`write_json_string`]: one value as a JSON string literal, with every control
//!   character (and U+2028/U+2029, which some JSON consumers treat as line breaks)
//!   escaped.
//! - [`clean_value`]: one value handed to another layer as text (by
//!   [`ContextFields::visit`](crate::ContextFields::visit), the
//!   [`ContextLayer`](crate::ContextLayer)'s span data and the adapters): dangerous
//!   characters become visible escapes and the value is cut at [`MAX_VALUE_BYTES`],
//!   so a layer that writes it unescaped (a text exporter, a terminal) cannot be
//!   forged either.
//! - [`sanitize_line`]: a whole formatted line; every line break or control character
//!   before the final newline is escaped in place. [`ContextFormat`](crate::ContextFormat)
//!   runs it over what the wrapped formatter wrote, so an event *message* with a newline
//!   (`info!("{}", user_input)`) cannot forge a line either.
//!
//! What counts as dangerous ([`is_dangerous`]): C0 controls (newline, carriage return,
//! escape, …), DEL, C1 controls (including NEL, U+0085), the Unicode line and paragraph
//! separators (U+2028, U+2029) and the bidirectional overrides (U+202A–U+202E,
//! U+2066–U+2069) that make a terminal show text in another order than it was written.
//!
//! ```
//! use threadline_tracing::sanitize::{sanitize_line, write_json_string, write_text_value, LineKind};
//!
//! let forged = "bob\r\n{\"level\":\"ERROR\"}";
//!
//! let mut text = String::new();
//! write_text_value(&mut text, forged).unwrap();
//! assert_eq!(text, r#""bob\r\n{\"level\":\"ERROR\"}""#);
//!
//! let mut json = String::new();
//! write_json_string(&mut json, forged).unwrap();
//! assert_eq!(json, r#""bob\r\n{\"level\":\"ERROR\"}""#);
//! let back: String = serde_json::from_str(&json).unwrap();
//! assert_eq!(back, forged);
//!
//! let mut line = String::from("INFO app: hello\r\n{\"level\":\"ERROR\"}\n");
//! sanitize_line(&mut line, LineKind::Text { keep_ansi: false });
//! assert_eq!(line, "INFO app: hello\\r\\n{\"level\":\"ERROR\"}\n");
//! assert_eq!(line.lines().count(), 1);
//! ```

use std::borrow::Cow;
use std::fmt::{self, Write};

/// The longest value [`clean_value`] passes on, in bytes (threadline's default limit
/// for a captured header value). Longer values are cut at a character boundary and end
/// with `…`.
pub const MAX_VALUE_BYTES: usize = 4096;

/// `value` made safe for a consumer that may write it as is: every
/// [dangerous](is_dangerous) character replaced by a visible escape (`\n`, `\r`,
/// `\t`, `\u{..}`), and at most `max_bytes` bytes of the original kept (cut at a
/// character boundary, `…` appended). Quotes and backslashes are left alone: the
/// consumer's own encoder (JSON, OTLP) deals with those. Borrows, without allocating,
/// when nothing needs changing.
///
/// ```
/// use threadline_tracing::sanitize::{clean_value, MAX_VALUE_BYTES};
///
/// assert_eq!(clean_value("acme", MAX_VALUE_BYTES), "acme");
/// assert_eq!(clean_value("bob\r\nlevel=ERROR", MAX_VALUE_BYTES), r"bob\r\nlevel=ERROR");
/// assert_eq!(clean_value("abcdef", 4), "abcd…");
/// ```
pub fn clean_value(value: &str, max_bytes: usize) -> Cow<'_, str> {
    let cut = if value.len() > max_bytes {
        let mut end = max_bytes;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        Some(end)
    } else {
        None
    };
    let kept = &value[..cut.unwrap_or(value.len())];
    let dangerous =
        kept.bytes().any(|b| line_byte_is_suspect(b, false)) && kept.chars().any(is_dangerous);
    if cut.is_none() && !dangerous {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(kept.len() + 8);
    for c in kept.chars() {
        if is_dangerous(c) {
            // Writing to a String cannot fail.
            let _ = text_escape(&mut out, c);
        } else {
            out.push(c);
        }
    }
    if cut.is_some() {
        out.push('…');
    }
    Cow::Owned(out)
}

/// Whether `c` could break a log line or disguise it: C0 and C1 controls, DEL, U+2028,
/// U+2029 and the bidirectional overrides.
pub fn is_dangerous(c: char) -> bool {
    matches!(
        c,
        '\0'..='\x1f'
            | '\x7f'..='\u{9f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// Whether a value can be written bare in text output: non-empty, no whitespace, no
/// quote, backslash or `=`, nothing [dangerous](is_dangerous).
fn is_plain(value: &str) -> bool {
    if value.is_empty() {
        return false;
    }
    if value.is_ascii() {
        return value
            .bytes()
            .all(|b| b > b' ' && b < 0x7f && !matches!(b, b'"' | b'\\' | b'='));
    }
    value
        .chars()
        .all(|c| !(c.is_whitespace() || c == '"' || c == '\\' || c == '=' || is_dangerous(c)))
}

/// The next character of `value` at byte `i` that needs an escape (a quote, a
/// backslash or something [dangerous](is_dangerous)), with its position. Printable
/// ASCII and the multi-byte characters that cannot be dangerous are passed over byte
/// by byte.
fn next_escape(value: &str, mut i: usize) -> Option<(usize, char)> {
    let bytes = value.as_bytes();
    while i < bytes.len() {
        match bytes[i] {
            b' '..=0x7e if bytes[i] != b'"' && bytes[i] != b'\\' => i += 1,
            0..=0x7f => return Some((i, bytes[i] as char)),
            // Lead bytes of C1 controls (U+0080..) and of U+2028.. / U+2066..
            0xc2 | 0xe2 => {
                let c = value[i..].chars().next()?;
                if is_dangerous(c) {
                    return Some((i, c));
                }
                i += c.len_utf8();
            }
            _ => i += 1,
        }
    }
    None
}

/// Writes `value` with every character [`next_escape`] finds replaced by `escape`.
fn write_escaped<W: Write>(
    out: &mut W,
    value: &str,
    escape: fn(&mut W, char) -> fmt::Result,
) -> fmt::Result {
    let mut start = 0;
    while let Some((i, c)) = next_escape(value, start) {
        out.write_str(&value[start..i])?;
        escape(out, c)?;
        start = i + c.len_utf8();
    }
    out.write_str(&value[start..])
}

fn text_escape<W: Write>(out: &mut W, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        '"' => out.write_str("\\\""),
        '\\' => out.write_str("\\\\"),
        c => write!(out, "\\u{{{:x}}}", c as u32),
    }
}

fn json_escape<W: Write>(out: &mut W, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        '\u{8}' => out.write_str("\\b"),
        '\u{c}' => out.write_str("\\f"),
        '"' => out.write_str("\\\""),
        '\\' => out.write_str("\\\\"),
        c => write!(out, "\\u{:04x}", c as u32),
    }
}

/// Writes `value` for text output: bare when it is a plain token (`acme`, `user-42`,
/// `4bf92f35…`), otherwise in double quotes with escapes. The result never contains a
/// line break or any other [dangerous](is_dangerous) character.
pub fn write_text_value(out: &mut impl Write, value: &str) -> fmt::Result {
    if is_plain(value) {
        return out.write_str(value);
    }
    out.write_char('"')?;
    write_escaped(out, value, text_escape)?;
    out.write_char('"')
}

/// Writes `value` as a JSON string literal, quotes included. Control characters, DEL,
/// C1 controls, U+2028/U+2029 and the bidirectional overrides are written as escapes,
/// so the literal is plain printable text that any JSON parser reads back unchanged.
pub fn write_json_string(out: &mut impl Write, value: &str) -> fmt::Result {
    out.write_char('"')?;
    write_escaped(out, value, json_escape)?;
    out.write_char('"')
}

/// Writes the inside of a JSON string literal (no quotes), escaped like
/// [`write_json_string`].
pub(crate) fn write_json_content<W: Write>(out: &mut W, value: &str) -> fmt::Result {
    write_escaped(out, value, json_escape)
}

/// A value that formats as [`write_text_value`] does.
///
/// ```
/// use threadline_tracing::sanitize::Escaped;
/// assert_eq!(Escaped("a\nb").to_string(), r#""a\nb""#);
/// assert_eq!(Escaped("plain").to_string(), "plain");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_text_value(f, self.0)
    }
}

/// Which escapes [`sanitize_line`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineKind {
    /// A text line: `\n`, `\r`, `\u{1b}`…; tabs are kept. With `keep_ansi`, escape
    /// characters (ESC) are kept too, for the colours of a terminal formatter
    /// (tracing-subscriber already escapes ESC inside messages and field values).
    Text {
        /// Keep ESC for ANSI colours.
        keep_ansi: bool,
    },
    /// A JSON line: `\n`, `\r`, `\u001b`, `\u2028`…, which are equivalent inside a JSON
    /// string, so a parser reads back the same values.
    Json,
}

fn line_byte_is_suspect(b: u8, keep_esc: bool) -> bool {
    match b {
        b'\t' => false,
        0x1b => !keep_esc,
        // C0, DEL; 0xC2 leads C1 controls, 0xE2 leads U+2028.. and U+2066..
        0..=0x1f | 0x7f | 0xc2 | 0xe2 => true,
        _ => false,
    }
}

/// The first byte that may start something dangerous. Scans eight bytes at a time:
/// a chunk of printable ASCII (the usual log line) is passed over with a few
/// arithmetic operations.
fn first_suspect(bytes: &[u8], keep_esc: bool) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // Some byte below 0x20, equal to 0x7f, or at/above 0x80 (the test may report
        // a false positive, never a false negative; the bytes are checked one by one).
        let below_space = x.wrapping_sub(LO * 0x20) & !x & HI;
        let del = {
            let y = x ^ (LO * 0x7f);
            y.wrapping_sub(LO) & !y & HI
        };
        if below_space | del | (x & HI) != 0 {
            if let Some(i) = chunk
                .iter()
                .position(|&b| line_byte_is_suspect(b, keep_esc))
            {
                return Some(at + i);
            }
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| line_byte_is_suspect(b, keep_esc))
        .map(|i| at + i)
}

/// Makes one formatted log line safe in place: every line break and control character
/// before the final newline (if any) is replaced by an escape, so the line stays one
/// line. Tabs are kept; see [`LineKind`] for ESC. Does nothing (and does not allocate)
/// when the line is already clean.
pub fn sanitize_line(line: &mut String, kind: LineKind) {
    let body_len = line.strip_suffix('\n').map_or(line.len(), str::len);
    let body = &line[..body_len];
    let keep_esc = matches!(kind, LineKind::Text { keep_ansi: true });
    let Some(first) = first_suspect(body.as_bytes(), keep_esc) else {
        return;
    };
    // A suspect lead byte may be a harmless character (é, €): check by characters.
    let keep =
        |c: char| c == '\t' || (c == '\x1b' && matches!(kind, LineKind::Text { keep_ansi: true }));
    if !body[first..].chars().any(|c| is_dangerous(c) && !keep(c)) {
        return;
    }
    let mut out = String::with_capacity(line.len() + 16);
    out.push_str(&body[..first]);
    for c in body[first..].chars() {
        if is_dangerous(c) && !keep(c) {
            // Writing to a String cannot fail.
            let _ = match kind {
                LineKind::Text { .. } => text_escape(&mut out, c),
                LineKind::Json => json_escape(&mut out, c),
            };
        } else {
            out.push(c);
        }
    }
    out.push_str(&line[body_len..]);
    *line = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_table() {
        let cases = [
            ("acme", "acme", "plain token stays bare"),
            (
                "user-42.x_y:z/1",
                "user-42.x_y:z/1",
                "punctuation that logfmt allows",
            ),
            ("", "\"\"", "empty is quoted so the field stays visible"),
            ("a b", "\"a b\"", "space needs quotes"),
            ("a=b", "\"a=b\"", "= would confuse logfmt parsers"),
            ("say \"hi\"", r#""say \"hi\"""#, "quotes are escaped"),
            ("a\\b", r#""a\\b""#, "backslash is escaped"),
            ("x\r\ny", r#""x\r\ny""#, "CR LF escaped"),
            ("x\u{1b}[31m", r#""x\u{1b}[31m""#, "ESC escaped"),
            ("x\u{85}y", r#""x\u{85}y""#, "NEL escaped"),
            ("x\u{2028}y", r#""x\u{2028}y""#, "line separator escaped"),
            ("x\u{202e}y", r#""x\u{202e}y""#, "bidi override escaped"),
            ("café", "café", "non-ASCII letters are fine"),
        ];
        for (input, expected, reason) in cases {
            let mut out = String::new();
            write_text_value(&mut out, input).unwrap();
            assert_eq!(out, expected, "{reason}");
            assert!(!out.contains(['\n', '\r']), "{reason}");
        }
    }

    #[test]
    fn json_strings_round_trip_and_stay_on_one_line() {
        let inputs = [
            "plain",
            "bob\r\n{\"level\":\"ERROR\"}",
            "tab\there",
            "\u{0}\u{7}\u{8}\u{c}\u{1b}\u{7f}\u{85}\u{9f}",
            "\u{2028}\u{2029}\u{202a}\u{2066}",
            "quote \" backslash \\ slash /",
            "日本語 émoji 🎉",
        ];
        for input in inputs {
            let mut out = String::new();
            write_json_string(&mut out, input).unwrap();
            assert!(out.chars().all(|c| !is_dangerous(c)), "{out:?}");
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, input);
        }
    }

    #[test]
    fn sanitize_line_text() {
        let cases = [
            ("clean line\n", "clean line\n", "untouched"),
            (
                "no newline",
                "no newline",
                "untouched without final newline",
            ),
            (
                "a\r\n{\"level\":\"ERROR\"}\n",
                "a\\r\\n{\"level\":\"ERROR\"}\n",
                "CR LF",
            ),
            ("a\nb\nc\n", "a\\nb\\nc\n", "several newlines"),
            ("tab\tkept\n", "tab\tkept\n", "tabs kept"),
            ("é € ✓\n", "é € ✓\n", "non-ASCII without danger"),
            ("nel\u{85}x\n", "nel\\u{85}x\n", "NEL"),
            ("ls\u{2028}x\n", "ls\\u{2028}x\n", "U+2028"),
            ("esc\u{1b}[2Jx\n", "esc\\u{1b}[2Jx\n", "ESC without ANSI"),
            ("\n\n", "\\n\n", "only the last newline ends the line"),
        ];
        for (input, expected, reason) in cases {
            let mut line = input.to_owned();
            sanitize_line(&mut line, LineKind::Text { keep_ansi: false });
            assert_eq!(line, expected, "{reason}");
            assert!(line.trim_end_matches('\n').lines().count() <= 1, "{reason}");
        }
        let mut coloured = String::from("\u{1b}[32mINFO\u{1b}[0m msg\r\n");
        sanitize_line(&mut coloured, LineKind::Text { keep_ansi: true });
        assert_eq!(coloured, "\u{1b}[32mINFO\u{1b}[0m msg\\r\n");
    }

    #[test]
    fn word_scan_agrees_with_the_byte_scan() {
        for keep_esc in [false, true] {
            for len in 0..20 {
                for pos in 0..len {
                    for b in 0..=255u8 {
                        let mut buf = vec![b'a'; len];
                        buf[pos] = b;
                        let naive = buf.iter().position(|&b| line_byte_is_suspect(b, keep_esc));
                        assert_eq!(first_suspect(&buf, keep_esc), naive, "{buf:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn clean_values() {
        let cases = [
            ("acme", "acme", "clean text is borrowed as is"),
            (
                "say \"hi\" \\",
                "say \"hi\" \\",
                "quotes are the encoder's business",
            ),
            ("a\nb", "a\\nb", "newline"),
            ("a\tb\r", "a\\tb\\r", "tab and CR"),
            ("x\u{1b}[2J", "x\\u{1b}[2J", "ESC"),
            (
                "x\u{85}\u{2028}\u{202e}",
                "x\\u{85}\\u{2028}\\u{202e}",
                "NEL, line separator, bidi",
            ),
            ("café €", "café €", "harmless non-ASCII"),
        ];
        for (input, expected, reason) in cases {
            let out = clean_value(input, MAX_VALUE_BYTES);
            assert_eq!(out, expected, "{reason}");
            assert!(!out.chars().any(is_dangerous), "{reason}");
            if input == expected {
                assert!(matches!(out, Cow::Borrowed(_)), "{reason}");
            }
        }
        assert_eq!(clean_value("abcdef", 6), "abcdef");
        assert_eq!(clean_value("abcdef", 5), "abcde…");
        // Cut at a character boundary, never inside one.
        assert_eq!(clean_value("aé", 2), "a…");
        assert_eq!(clean_value("a\nbcd", 2), "a\\n…");
        let long = "x".repeat(MAX_VALUE_BYTES + 10);
        assert_eq!(
            clean_value(&long, MAX_VALUE_BYTES).len(),
            MAX_VALUE_BYTES + '…'.len_utf8()
        );
    }

    #[test]
    fn sanitize_line_json_stays_valid() {
        let mut line = String::from("{\"message\":\"a\u{2028}b\u{85}c\u{1b}\"}\n");
        sanitize_line(&mut line, LineKind::Json);
        assert_eq!(line, "{\"message\":\"a\\u2028b\\u0085c\\u001b\"}\n");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["message"], "a\u{2028}b\u{85}c\u{1b}");
    }
}
