//! Path matching for the sniffer: the origin-form target split into segments and compared
//! from the end, never matched with patterns.
//!
//! Protocols are recognised by the *tail* of the path because every one of them may be mounted
//! under a prefix: OpenAI-compatible servers under `/api/v1/...` or `/openai/v1/...`, A2A REST
//! interfaces under their interface URL plus an optional `/{tenant}` segment (A2A 1.0 §5.3,
//! `a2a.proto` `additional_bindings`), MCP endpoints wherever the server put them.
//!
//! Servers route on the percent-decoded path (Starlette, Express, axum all decode before
//! matching), so a client could write `message%3Asend` and still reach `message:send`; the
//! segments are compared decoded. Empty segments (`//`, a trailing `/`) are skipped.

use std::borrow::Cow;

/// A request target split into path and query.
#[derive(Debug)]
pub(super) struct Path<'a> {
    /// The path, percent-decoded (borrowed when it has no `%`).
    decoded: Cow<'a, str>,
    /// The query, without `?`, as sent.
    query: &'a str,
}

impl<'a> Path<'a> {
    /// Splits an origin-form target (`/mcp?x=1`).
    pub(super) fn new(target: &'a str) -> Path<'a> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Path {
            decoded: percent_decode(path),
            query,
        }
    }

    /// The last `N` non-empty segments, in order, if there are at least `N`.
    pub(super) fn tail<const N: usize>(&self) -> Option<[&str; N]> {
        let mut out = [""; N];
        let mut segments = self.decoded.rsplit('/').filter(|s| !s.is_empty());
        for slot in out.iter_mut().rev() {
            *slot = segments.next()?;
        }
        Some(out)
    }

    /// The last non-empty segment, or `""`.
    pub(super) fn last(&self) -> &str {
        self.tail::<1>().map_or("", |[s]| s)
    }

    /// True if the query has a parameter called `name` (`name=...` or a bare `name`).
    pub(super) fn has_query_param(&self, name: &str) -> bool {
        self.query
            .split('&')
            .any(|pair| pair.split_once('=').map_or(pair, |(k, _)| k) == name)
    }
}

/// `%XX` sequences decoded; anything else (including malformed escapes) kept as is. Bytes that
/// do not form UTF-8 after decoding become U+FFFD, which matches no protocol path.
fn percent_decode(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = match (b, bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_skip_empty_segments_and_ignore_the_query() {
        let p = Path::new("/api//v1/chat/completions/?x=/a/b");
        assert_eq!(p.tail::<3>(), Some(["v1", "chat", "completions"]));
        assert_eq!(p.last(), "completions");
        assert_eq!(Path::new("/").last(), "");
        assert_eq!(Path::new("/a").tail::<2>(), None);
        assert_eq!(Path::new("*").last(), "*");
    }

    #[test]
    fn segments_are_compared_decoded() {
        let p = Path::new("/t1/message%3Asend");
        assert_eq!(p.tail::<2>(), Some(["t1", "message:send"]));
        // Malformed escapes stay as they are; invalid UTF-8 becomes U+FFFD.
        assert_eq!(Path::new("/a%2").last(), "a%2");
        assert_eq!(Path::new("/a%zz").last(), "a%zz");
        assert_eq!(Path::new("/%ff").last(), "\u{fffd}");
    }

    #[test]
    fn query_parameters() {
        let p = Path::new("/messages/?session_id=abc&x");
        assert!(p.has_query_param("session_id"));
        assert!(p.has_query_param("x"));
        assert!(!p.has_query_param("sessionId"));
        assert!(!Path::new("/messages").has_query_param("session_id"));
    }
}
