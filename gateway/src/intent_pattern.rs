//! Patterns over intent hints, as written in routes and access rules of the mesh file:
//! `"mcp tools/call search_*"`, `"openai chat gpt-4o*"`, `"a2a"`, `"*"`.
//!
//! An intent hint has three parts: protocol, operation, target. A pattern names the
//! protocol (or `*`) and optionally globs for the operation and the target; parts left out
//! match anything. Globs know two wildcards: `*` (any run of characters, including none)
//! and `?` (exactly one character).

use std::fmt;
use std::str::FromStr;

/// Protocol names a pattern may use; `*` matches every protocol.
pub const PROTOCOLS: &[&str] = &["mcp", "a2a", "openai", "http", "tcp", "unknown"];

/// A parsed intent pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentPattern {
    /// `None` matches every protocol.
    protocol: Option<String>,
    operation: Glob,
    target: Glob,
    source: String,
}

/// Why a pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntentPatternError {
    #[error("empty intent pattern")]
    Empty,
    #[error("unknown protocol `{0}` (expected one of: {list}, or `*`)", list = PROTOCOLS.join(", "))]
    UnknownProtocol(String),
    #[error("intent pattern has {0} words; write `<protocol> [<operation> [<target>]]`")]
    TooManyWords(usize),
    #[error("intent part {0:?} is empty or contains white space")]
    BadPart(String),
}

impl IntentPattern {
    /// Does the hint `(protocol, operation, target)` match? Absent parts of the hint
    /// match only a pattern that leaves that part open (`*`).
    pub fn matches(&self, protocol: &str, operation: Option<&str>, target: Option<&str>) -> bool {
        self.protocol.as_deref().is_none_or(|p| p == protocol)
            && self.operation.matches_opt(operation)
            && self.target.matches_opt(target)
    }

    /// Does the intent hint of a request match? An empty operation or target is an absent
    /// part (SPEC.md §5.2: "Empty means unknown"), and a request without any hint matches
    /// only a pattern that leaves every part open (`*`, or `* * *`).
    pub fn matches_intent(&self, intent: Option<&aimux_wire::Intent>) -> bool {
        match intent {
            Some(i) => self.matches(
                i.protocol.as_str(),
                non_empty(&i.operation),
                non_empty(&i.target),
            ),
            None => self.is_open(),
        }
    }

    /// Like [`matches_intent`](Self::matches_intent), but a hint whose target may be cut
    /// short (flag `PARTIAL`: the sidecar saw only part of the body, or a value longer than
    /// it carries) matches whatever the pattern's target says: deny rules use this, so that
    /// a request cannot slip past one by being too long to read.
    pub fn matches_intent_failing_closed(&self, intent: Option<&aimux_wire::Intent>) -> bool {
        match intent {
            Some(i) if i.flags.contains(aimux_wire::IntentFlags::PARTIAL) => {
                self.protocol
                    .as_deref()
                    .is_none_or(|p| p == i.protocol.as_str())
                    && self.operation.matches_opt(non_empty(&i.operation))
            }
            other => self.matches_intent(other),
        }
    }

    /// True if the pattern matches every intent, including none at all.
    pub fn is_open(&self) -> bool {
        self.protocol.is_none() && self.operation.is_star() && self.target.is_star()
    }

    /// A pattern from its parts, as the mesh file's `protocol`, `operation` and `target`
    /// keys give them (`None` or `"*"` leaves a part open).
    pub fn from_parts(
        protocol: Option<&str>,
        operation: Option<&str>,
        target: Option<&str>,
    ) -> Result<Self, IntentPatternError> {
        let words = [
            protocol.unwrap_or("*"),
            operation.unwrap_or("*"),
            target.unwrap_or("*"),
        ];
        if let Some(part) = words
            .iter()
            .find(|w| w.is_empty() || w.contains(char::is_whitespace))
        {
            return Err(IntentPatternError::BadPart((*part).to_owned()));
        }
        words.join(" ").parse()
    }

    /// The protocol part, `None` for `*`.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The operation glob (`*` when left out).
    pub fn operation(&self) -> &Glob {
        &self.operation
    }

    /// The target glob (`*` when left out).
    pub fn target(&self) -> &Glob {
        &self.target
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

impl FromStr for IntentPattern {
    type Err = IntentPatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let (protocol, operation, target) = match words.as_slice() {
            [] => return Err(IntentPatternError::Empty),
            [p] => (*p, "*", "*"),
            [p, o] => (*p, *o, "*"),
            [p, o, t] => (*p, *o, *t),
            more => return Err(IntentPatternError::TooManyWords(more.len())),
        };
        let protocol = match protocol {
            "*" => None,
            p if PROTOCOLS.contains(&p) => Some(p.to_owned()),
            p => return Err(IntentPatternError::UnknownProtocol(p.to_owned())),
        };
        Ok(Self {
            protocol,
            operation: Glob::new(operation),
            target: Glob::new(target),
            source: words.join(" "),
        })
    }
}

impl fmt::Display for IntentPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A glob with `*` and `?` wildcards, matched without recursion or allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// A glob from its text (every string is a valid glob).
    pub fn new(pattern: &str) -> Self {
        Self(pattern.to_owned())
    }

    /// True for the glob `*`, which matches anything, including an absent value.
    pub fn is_star(&self) -> bool {
        self.0 == "*"
    }

    /// True if the glob has no wildcard: it matches exactly one value.
    pub fn is_literal(&self) -> bool {
        !self.0.contains(['*', '?'])
    }

    /// How many characters of the glob are not wildcards (a tie-breaker between globs:
    /// `search_web_*` says more than `search_*`).
    pub fn literal_len(&self) -> usize {
        self.0.chars().filter(|c| !matches!(c, '*' | '?')).count()
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True if some value matches both globs. Dynamic programming over the two patterns
    /// (a product of the two automata), O(len × len) time and space; patterns come from the
    /// configuration, not from requests.
    pub fn intersects(&self, other: &Glob) -> bool {
        let a: Vec<char> = self.0.chars().collect();
        let b: Vec<char> = other.0.chars().collect();
        // reach[i][j]: the prefixes a[..i] and b[..j] can match one common string.
        let mut reach = vec![vec![false; b.len() + 1]; a.len() + 1];
        reach[0][0] = true;
        for i in 0..=a.len() {
            for j in 0..=b.len() {
                if !reach[i][j] {
                    continue;
                }
                // A star may match the empty string: skip it.
                if a.get(i) == Some(&'*') {
                    reach[i + 1][j] = true;
                }
                if b.get(j) == Some(&'*') {
                    reach[i][j + 1] = true;
                }
                if let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
                    // One common character: a star consumes it and stays.
                    let (x_star, y_star) = (*x == '*', *y == '*');
                    if x_star && !y_star {
                        reach[i][j + 1] = true;
                    } else if y_star && !x_star {
                        reach[i + 1][j] = true;
                    } else if !x_star && (*x == '?' || *y == '?' || x == y) {
                        reach[i + 1][j + 1] = true;
                    }
                }
            }
        }
        reach[a.len()][b.len()]
    }

    /// `*` also matches an absent value; any other pattern needs a value.
    fn matches_opt(&self, value: Option<&str>) -> bool {
        match value {
            Some(v) => self.matches(v),
            None => self.is_star(),
        }
    }

    /// Linear-time wildcard matching with single-star backtracking: a `*` remembers where
    /// it stood, and a later mismatch retries from one character further. Worst case is
    /// O(pattern × value), with no recursion, so a hostile value cannot blow the stack.
    pub fn matches(&self, value: &str) -> bool {
        let pattern: Vec<char> = self.0.chars().collect();
        let value: Vec<char> = value.chars().collect();
        let (mut p, mut v) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while v < value.len() {
            match pattern.get(p) {
                Some('*') => {
                    star = Some((p, v));
                    p += 1;
                }
                Some(c) if *c == '?' || *c == value[v] => {
                    p += 1;
                    v += 1;
                }
                _ => match star {
                    Some((sp, sv)) => {
                        p = sp + 1;
                        v = sv + 1;
                        star = Some((sp, sv + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|c| *c == '*')
    }
}

impl From<&str> for Glob {
    fn from(pattern: &str) -> Self {
        Glob::new(pattern)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> IntentPattern {
        s.parse().unwrap()
    }

    #[test]
    fn globs_match_like_shells() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("search_*", "search_web", true),
            ("search_*", "web_search", false),
            ("*_web", "search_web", true),
            ("gpt-4o*", "gpt-4o-mini", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (glob, value, expected) in cases {
            assert_eq!(
                Glob::new(glob).matches(value),
                expected,
                "{glob} vs {value}"
            );
        }
    }

    #[test]
    fn patterns_match_protocol_operation_and_target() {
        assert!(pat("mcp tools/call search_*").matches(
            "mcp",
            Some("tools/call"),
            Some("search_web")
        ));
        assert!(!pat("mcp tools/call search_*").matches("mcp", Some("tools/list"), None));
        assert!(!pat("mcp tools/call search_*").matches(
            "a2a",
            Some("tools/call"),
            Some("search_web")
        ));
        assert!(pat("mcp").matches("mcp", None, None));
        assert!(pat("* tools/*").matches("mcp", Some("tools/list"), None));
        assert!(!pat("mcp tools/call x").matches("mcp", Some("tools/call"), None));
    }

    #[test]
    fn wire_intents_match_with_empty_parts_as_absent() {
        use aimux_wire::{Intent, Protocol};
        let call = Intent::new(Protocol::Mcp, "tools/call", "search_web");
        assert!(pat("mcp tools/call search_*").matches_intent(Some(&call)));
        assert!(!pat("a2a").matches_intent(Some(&call)));
        let bare = Intent::new(Protocol::Mcp, "", "");
        assert!(pat("mcp").matches_intent(Some(&bare)));
        assert!(!pat("mcp tools/*").matches_intent(Some(&bare)));
        // No hint at all: only fully open patterns match.
        assert!(pat("*").matches_intent(None));
        assert!(pat("* * *").matches_intent(None));
        assert!(!pat("mcp").matches_intent(None));
        assert!(!pat("* tools/call").matches_intent(None));
    }

    #[test]
    fn rejects_unknown_protocols_and_extra_words() {
        assert_eq!("".parse::<IntentPattern>(), Err(IntentPatternError::Empty));
        assert_eq!(
            "grpc x".parse::<IntentPattern>(),
            Err(IntentPatternError::UnknownProtocol("grpc".into()))
        );
        assert_eq!(
            "mcp a b c".parse::<IntentPattern>(),
            Err(IntentPatternError::TooManyWords(4))
        );
    }

    #[test]
    fn glob_intersection() {
        let cases = [
            ("search_*", "fetch_*", false),
            ("search_*", "*_web", true),
            ("search_web", "search_*", true),
            ("a", "b", false),
            ("a?c", "*b*", true),
            ("a?c", "a", false),
            ("*", "", true),
            ("x*", "", false),
            ("**", "abc", true),
            ("a*", "*b", true),
            ("ab*", "ac*", false),
        ];
        for (a, b, expected) in cases {
            assert_eq!(
                Glob::new(a).intersects(&Glob::new(b)),
                expected,
                "{a} ∩ {b}"
            );
            assert_eq!(
                Glob::new(b).intersects(&Glob::new(a)),
                expected,
                "{b} ∩ {a}"
            );
        }
    }

    #[test]
    fn patterns_from_parts() {
        let p = IntentPattern::from_parts(Some("mcp"), Some("tools/call"), None).unwrap();
        assert_eq!(p.to_string(), "mcp tools/call *");
        assert_eq!(p.protocol(), Some("mcp"));
        assert!(p.target().is_star());
        assert!(IntentPattern::from_parts(Some("mcp"), Some("a b"), None).is_err());
        assert!(IntentPattern::from_parts(Some("smtp"), None, None).is_err());
    }

    #[test]
    fn hostile_globs_finish_quickly() {
        let glob = Glob::new(&"*a".repeat(50));
        assert!(!glob.matches(&"a".repeat(49)));
        assert!(glob.matches(&"a".repeat(5000)));
    }
}
