//! The static tables: HTTP header names (and whole name/value pairs), and HTTP methods.
//!
//! A header whose name is in the table costs one byte for the name; a header whose exact
//! name *and* value are in the table costs one byte in all (the idea of the QPACK static
//! table, RFC 9204 Appendix A, with entries chosen for agent traffic: MCP, A2A, OpenAI).
//! Every index fits a one-byte varint (≤ 63). The tables are frozen for envelope version 1:
//! an index outside them is malformed, and adding entries requires a new version (SPEC.md §7).

/// One static header table entry: a name, and for pair entries the exact value.
pub type StaticEntry = (&'static str, Option<&'static str>);

/// The static header table. Index `i` on the wire is `STATIC_TABLE[i - 1]`; index 0 means a
/// literal name follows.
pub const STATIC_TABLE: [StaticEntry; 63] = [
    // 1..=41: names only (the value follows as the rest of the field).
    ("accept", None),
    ("accept-encoding", None),
    ("accept-language", None),
    ("authorization", None),
    ("cache-control", None),
    ("content-encoding", None),
    ("content-length", None),
    ("content-type", None),
    ("cookie", None),
    ("date", None),
    ("etag", None),
    ("host", None),
    ("if-none-match", None),
    ("last-event-id", None),
    ("location", None),
    ("retry-after", None),
    ("server", None),
    ("set-cookie", None),
    ("traceparent", None),
    ("tracestate", None),
    ("user-agent", None),
    ("vary", None),
    ("www-authenticate", None),
    ("x-request-id", None),
    ("x-forwarded-for", None),
    ("mcp-session-id", None),
    ("mcp-protocol-version", None),
    ("mcp-method", None),
    ("mcp-name", None),
    ("a2a-version", None),
    ("a2a-extensions", None),
    ("openai-organization", None),
    ("openai-project", None),
    ("x-api-key", None),
    ("x-stainless-lang", None),
    ("x-stainless-package-version", None),
    ("x-stainless-os", None),
    ("x-stainless-arch", None),
    ("x-stainless-runtime", None),
    ("x-stainless-runtime-version", None),
    ("x-stainless-retry-count", None),
    // 42..=63: whole name/value pairs (nothing follows).
    ("accept", Some("*/*")),
    ("accept", Some("application/json")),
    ("accept", Some("text/event-stream")),
    ("accept", Some("application/json, text/event-stream")),
    ("accept-encoding", Some("gzip, deflate")),
    ("accept-encoding", Some("gzip, deflate, br, zstd")),
    ("cache-control", Some("no-cache")),
    ("content-encoding", Some("gzip")),
    ("content-length", Some("0")),
    ("content-type", Some("application/json")),
    ("content-type", Some("application/json; charset=utf-8")),
    ("content-type", Some("text/event-stream")),
    ("content-type", Some("application/a2a+json")),
    ("mcp-protocol-version", Some("2024-11-05")),
    ("mcp-protocol-version", Some("2025-03-26")),
    ("mcp-protocol-version", Some("2025-06-18")),
    ("mcp-protocol-version", Some("2025-11-25")),
    ("mcp-protocol-version", Some("2026-07-28")),
    ("mcp-method", Some("tools/call")),
    ("mcp-method", Some("tools/list")),
    ("a2a-version", Some("1.0")),
    ("x-stainless-lang", Some("python")),
];

/// The static method table. Index `i` on the wire is `METHODS[i - 1]`; index 0 means a
/// literal method follows. Methods are case-sensitive (RFC 9110 §9.1).
pub const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The entry at wire index `index` (1-based), if any.
#[must_use]
pub fn entry(index: u64) -> Option<StaticEntry> {
    let i = usize::try_from(index.checked_sub(1)?).ok()?;
    STATIC_TABLE.get(i).copied()
}

/// The wire index for a header: a pair entry if name and value both match, else a name
/// entry, else `None` (literal name).
#[must_use]
pub fn index_of(name: &str, value: &[u8]) -> Option<(u64, bool)> {
    let mut by_name = None;
    for (i, (n, v)) in STATIC_TABLE.iter().enumerate() {
        if *n != name {
            continue;
        }
        let index = (i as u64).saturating_add(1);
        match v {
            Some(v) if v.as_bytes() == value => return Some((index, true)),
            Some(_) => {}
            None => by_name = by_name.or(Some((index, false))),
        }
    }
    by_name
}

/// The method at wire index `index` (1-based), if any.
#[must_use]
pub fn method(index: u64) -> Option<&'static str> {
    let i = usize::try_from(index.checked_sub(1)?).ok()?;
    METHODS.get(i).copied()
}

/// The wire index of `method`, or `None` (literal).
#[must_use]
pub fn method_index(method: &str) -> Option<u64> {
    METHODS
        .iter()
        .position(|m| *m == method)
        .map(|i| (i as u64).saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_fits_one_byte() {
        assert!(STATIC_TABLE.len() <= 63);
        assert!(METHODS.len() <= 63);
    }

    #[test]
    fn every_pair_name_also_has_a_name_entry_and_entries_are_unique() {
        for (i, (name, value)) in STATIC_TABLE.iter().enumerate() {
            assert!(
                STATIC_TABLE.iter().any(|(n, v)| n == name && v.is_none()),
                "{name} has no name-only entry"
            );
            assert!(
                !STATIC_TABLE[..i].contains(&(*name, *value)),
                "duplicate entry {name}"
            );
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-' || b.is_ascii_digit()),
                "{name} is not a lower-case token"
            );
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(entry(0), None);
        assert_eq!(entry(1), Some(("accept", None)));
        assert_eq!(entry(41), Some(("x-stainless-retry-count", None)));
        assert_eq!(entry(42), Some(("accept", Some("*/*"))));
        assert_eq!(entry(63), Some(("x-stainless-lang", Some("python"))));
        assert_eq!(entry(64), None);
        assert_eq!(entry(u64::MAX), None);
        assert_eq!(
            index_of("content-type", b"application/json"),
            Some((51, true))
        );
        assert_eq!(index_of("content-type", b"text/html"), Some((8, false)));
        assert_eq!(index_of("x-custom", b"1"), None);
        assert_eq!(method(3), Some("POST"));
        assert_eq!(method(0), None);
        assert_eq!(method(10), None);
        assert_eq!(method_index("POST"), Some(3));
        assert_eq!(method_index("post"), None);
    }
}
