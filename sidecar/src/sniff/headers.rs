//! What the request headers say about the protocol, read in one pass over the header map.

use std::borrow::Cow;

use http::HeaderMap;

use super::text::mcp_header_value;

/// A header that should appear at most once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) enum One<'a> {
    #[default]
    Absent,
    /// Exactly one line, decoded.
    Value(Cow<'a, str>),
    /// Repeated, not text, or badly encoded: no value can be trusted.
    Bad,
}

impl<'a> One<'a> {
    fn set(&mut self, value: Option<Cow<'a, str>>) {
        *self = match (&*self, value) {
            (One::Absent, Some(v)) => One::Value(v),
            _ => One::Bad,
        };
    }

    pub(super) fn value(&self) -> Option<&str> {
        match self {
            One::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// The protocol-relevant facts of a header map.
#[derive(Debug, Default)]
pub(super) struct Hints<'a> {
    /// An MCP header is present: `Mcp-Session-Id`, `MCP-Protocol-Version`, `Mcp-Method` or
    /// `Mcp-Name` (MCP 2025-03-26 §Transports, 2025-06-18 §Protocol Version Header,
    /// 2026-07-28 §Standard Headers).
    pub(super) mcp: bool,
    /// A well-formed `MCP-Protocol-Version` (`YYYY-MM-DD`, so revisions compare as strings).
    pub(super) revision: Option<&'a str>,
    /// `Mcp-Method` and `Mcp-Name` (MCP 2026-07-28), `=?base64?...?=` decoded.
    pub(super) mcp_method: One<'a>,
    pub(super) mcp_name: One<'a>,
    /// An A2A header is present: `A2A-Version`, `A2A-Extensions` (A2A 1.0 §3.2), the 0.3
    /// `X-A2A-Extensions`, or the REST media type `application/a2a+json`.
    pub(super) a2a: bool,
    /// The body is not the payload's bytes: a `Content-Encoding` other than `identity`, or
    /// a transfer coding other than `chunked` (which hyper has already removed).
    pub(super) encoded: bool,
    /// `Accept` lists `text/event-stream`.
    pub(super) accepts_sse: bool,
    /// `Last-Event-ID` is present (an SSE stream being resumed).
    pub(super) last_event_id: bool,
}

impl<'a> Hints<'a> {
    pub(super) fn read(headers: &'a HeaderMap) -> Hints<'a> {
        let mut h = Hints::default();
        for (name, value) in headers {
            let text = value.to_str().ok();
            match name.as_str() {
                "mcp-session-id" => h.mcp = true,
                "mcp-protocol-version" => {
                    h.mcp = true;
                    h.revision = text.map(str::trim).filter(|v| is_revision(v));
                }
                "mcp-method" => {
                    h.mcp = true;
                    h.mcp_method.set(text.and_then(mcp_header_value));
                }
                "mcp-name" => {
                    h.mcp = true;
                    h.mcp_name.set(text.and_then(mcp_header_value));
                }
                "a2a-version" | "a2a-extensions" | "x-a2a-extensions" => h.a2a = true,
                "content-type" => {
                    h.a2a |=
                        text.is_some_and(|t| starts_with_ignore_case(t, "application/a2a+json"));
                }
                "content-encoding" => {
                    h.encoded |= text.is_none_or(|t| has_token_other_than(t, "identity"));
                }
                "transfer-encoding" => {
                    h.encoded |= text.is_none_or(|t| has_token_other_than(t, "chunked"));
                }
                "accept" => {
                    h.accepts_sse |= contains_ignore_case(value.as_bytes(), b"text/event-stream");
                }
                "last-event-id" => h.last_event_id = true,
                _ => {}
            }
        }
        h
    }

    /// The revision is 2026-07-28 or later: the one whose servers validate `Mcp-Method` and
    /// `Mcp-Name` against the body (and answer a mismatch with -32020), which is what makes
    /// the headers worth believing when the body itself cannot be read.
    pub(super) fn validated_mcp_headers(&self) -> bool {
        self.revision.is_some_and(|r| r >= "2026-07-28")
    }
}

fn is_revision(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, &c)| {
            if i == 4 || i == 7 {
                c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

fn has_token_other_than(list: &str, token: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|t| !t.is_empty() && !t.eq_ignore_ascii_case(token))
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.trim_start()
        .as_bytes()
        .get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn map(pairs: &[(&'static str, &'static [u8])]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(*n, HeaderValue::from_bytes(v).unwrap());
        }
        m
    }

    #[test]
    fn mcp_headers() {
        let m = map(&[
            ("mcp-protocol-version", b"2026-07-28"),
            ("mcp-method", b"tools/call"),
            ("mcp-name", b"=?base64?bcOpdMOpbw==?="),
        ]);
        let h = Hints::read(&m);
        assert!(h.mcp && h.validated_mcp_headers());
        assert_eq!(h.mcp_method.value(), Some("tools/call"));
        assert_eq!(h.mcp_name.value(), Some("météo"));

        let m = map(&[
            ("mcp-protocol-version", b"2025-06-18"),
            ("mcp-method", b"a"),
            ("mcp-method", b"b"),
            ("mcp-name", b"\xff"),
        ]);
        let h = Hints::read(&m);
        assert!(h.mcp && !h.validated_mcp_headers());
        assert_eq!((&h.mcp_method, &h.mcp_name), (&One::Bad, &One::Bad));

        let m = map(&[("mcp-protocol-version", b"latest")]);
        let h = Hints::read(&m);
        assert!(h.mcp && h.revision.is_none() && !h.validated_mcp_headers());
    }

    #[test]
    fn encodings_a2a_and_sse() {
        assert!(!Hints::read(&map(&[("content-encoding", b"identity")])).encoded);
        for (n, v) in [
            ("content-encoding", &b"gzip"[..]),
            ("content-encoding", b"identity, br"),
            ("transfer-encoding", b"gzip, chunked"),
        ] {
            assert!(Hints::read(&map(&[(n, v)])).encoded, "{n}: {v:?}");
        }
        assert!(!Hints::read(&map(&[("transfer-encoding", b"chunked")])).encoded);
        assert!(
            Hints::read(&map(&[(
                "content-type",
                b"Application/A2A+json; charset=utf-8"
            )]))
            .a2a
        );
        assert!(Hints::read(&map(&[("x-a2a-extensions", b"u")])).a2a);
        let m = map(&[("accept", b"application/json, Text/Event-Stream")]);
        let h = Hints::read(&m);
        assert!(h.accepts_sse && !h.mcp && !h.a2a);
    }
}
