//! Making peer-supplied strings safe to carry as an operation or target: bounded length, no
//! control characters, and the MCP 2026-07-28 header encoding of non-ASCII values.

use std::borrow::Cow;

/// Longest operation or target carried, in bytes. Tool names, skills and model names are far
/// shorter; resource URIs may not be, and a cut one still says what it starts with.
pub const MAX_TEXT: usize = 256;

/// A value fit for the envelope, and whether it had to be degraded to get there.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Clean {
    pub(super) text: String,
    /// The value was cut at [`MAX_TEXT`] or dropped for control characters (flag `partial`).
    pub(super) degraded: bool,
}

/// `s` cut to [`MAX_TEXT`] bytes on a character boundary; empty if it contains a control
/// character (C0, DEL, C1: they would corrupt logs and have no place in names).
pub(super) fn clean(s: &str) -> Clean {
    if s.chars().any(char::is_control) {
        return Clean {
            text: String::new(),
            degraded: true,
        };
    }
    let cut = prefix(s, MAX_TEXT);
    Clean {
        text: cut.to_owned(),
        degraded: cut.len() < s.len(),
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(super) fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// A header value as MCP 2026-07-28 writes it: plain ASCII, or a non-ASCII value as
/// `=?base64?<standard base64 of the UTF-8>?=`. `None` if the encoding is broken.
pub(super) fn mcp_header_value(raw: &str) -> Option<Cow<'_, str>> {
    match raw
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    {
        Some(encoded) => {
            let bytes = base64_decode(encoded.as_bytes())?;
            String::from_utf8(bytes).ok().map(Cow::Owned)
        }
        None => Some(Cow::Borrowed(raw)),
    }
}

/// Standard base64 (RFC 4648 §4), padding optional. Bounded by the header value it reads.
fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    let input = input
        .strip_suffix(b"==")
        .or_else(|| input.strip_suffix(b"="))
        .unwrap_or(input);
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Six leftover bits cannot come from whole bytes.
    (bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_cut_on_a_char_boundary_and_control_characters_drop_them() {
        assert_eq!(clean("get_weather").text, "get_weather");
        assert!(!clean("get_weather").degraded);
        let long = "é".repeat(200); // 400 bytes
        let c = clean(&long);
        assert_eq!(c.text.len(), 256);
        assert!(c.degraded && c.text.chars().all(|ch| ch == 'é'));
        let c = clean(&format!("{}é", "a".repeat(255)));
        assert_eq!(c.text.len(), 255);
        for bad in ["a\nb", "a\u{7f}", "\u{85}", "\0"] {
            assert_eq!(
                clean(bad),
                Clean {
                    text: String::new(),
                    degraded: true
                }
            );
        }
    }

    #[test]
    fn mcp_header_values_decode_base64() {
        assert_eq!(
            mcp_header_value("get_weather").as_deref(),
            Some("get_weather")
        );
        // "météo" in UTF-8, with and without padding.
        assert_eq!(
            mcp_header_value("=?base64?bcOpdMOpbw==?=").as_deref(),
            Some("météo")
        );
        assert_eq!(
            mcp_header_value("=?base64?bcOpdMOpbw?=").as_deref(),
            Some("météo")
        );
        assert_eq!(mcp_header_value("=?base64?b!==?="), None);
        assert_eq!(mcp_header_value("=?base64?/w==?="), None, "not UTF-8");
        assert_eq!(mcp_header_value("=?base64?QUJDR?="), None, "dangling bits");
        assert_eq!(mcp_header_value("=?base64??=").as_deref(), Some(""));
    }
}
