//! Workload names: the `<name>` in `spiffe://<td>/agent/<name>` and the stem of the
//! `<name>.crt` / `<name>.key` files in the CA directory.

use std::fmt;
use std::str::FromStr;

/// Longest name: 63 characters, like a DNS label, so the name also fits a certificate's
/// common name (RFC 5280 `ub-common-name` is 64).
pub const MAX_NAME_LEN: usize = 63;

/// File stems the CA directory uses for itself (`ca.crt`, `ca.key`, `crl.pem`).
const RESERVED: &[&str] = &["ca", "crl"];

/// A validated agent or gateway name: `[a-z0-9][a-z0-9._-]{0,62}`, not `ca` or `crl`.
///
/// Being a single SPIFFE path segment and a plain file name, it can never escape the CA
/// directory (`../x`, `/etc/passwd` and `a/b` are all rejected).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadName(String);

impl WorkloadName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, NameError> {
        let invalid = |problem| NameError {
            name: name.to_owned(),
            problem,
        };
        let mut chars = name.chars();
        let Some(first) = chars.next() else {
            return Err(invalid(NameProblem::Empty));
        };
        if name.len() > MAX_NAME_LEN {
            return Err(invalid(NameProblem::TooLong));
        }
        if !matches!(first, 'a'..='z' | '0'..='9') {
            return Err(invalid(NameProblem::BadFirstChar(first)));
        }
        if let Some(ch) = chars.find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-')) {
            return Err(invalid(NameProblem::BadChar(ch)));
        }
        if RESERVED.contains(&name) {
            return Err(invalid(NameProblem::Reserved));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkloadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for WorkloadName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A rejected workload name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{name}` is not a valid name ({problem}): names use lowercase letters, digits, `.`, `_` and \
     `-`, start with a letter or digit, are at most 63 characters and are not `ca` or `crl` \
     (e.g. alice, billing-agent)"
)]
pub struct NameError {
    /// The rejected name.
    pub name: String,
    /// What is wrong with it.
    pub problem: NameProblem,
}

/// What is wrong with a rejected name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameProblem {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    TooLong,
    /// The name starts with something other than a lowercase letter or digit.
    BadFirstChar(char),
    /// The name contains a character outside `[a-z0-9._-]`.
    BadChar(char),
    /// The name is one of the CA directory's own files.
    Reserved,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("it is empty"),
            Self::TooLong => write!(f, "it is longer than {MAX_NAME_LEN} characters"),
            Self::BadFirstChar(c) => write!(f, "it starts with {c:?}"),
            Self::BadChar(c) => write!(f, "it contains {c:?}"),
            Self::Reserved => f.write_str("the CA directory uses that name for its own files"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for name in [
            "alice",
            "a",
            "0",
            "billing-agent",
            "a.b_c-d",
            &"a".repeat(63),
        ] {
            assert_eq!(WorkloadName::new(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn rejects_paths_and_reserved_names() {
        for (name, problem) in [
            ("", NameProblem::Empty),
            ("../x", NameProblem::BadFirstChar('.')),
            ("..", NameProblem::BadFirstChar('.')),
            (".hidden", NameProblem::BadFirstChar('.')),
            ("/etc/passwd", NameProblem::BadFirstChar('/')),
            ("a/b", NameProblem::BadChar('/')),
            ("a\\b", NameProblem::BadChar('\\')),
            ("Alice", NameProblem::BadFirstChar('A')),
            ("alice smith", NameProblem::BadChar(' ')),
            ("-x", NameProblem::BadFirstChar('-')),
            ("ca", NameProblem::Reserved),
            ("crl", NameProblem::Reserved),
        ] {
            let err = WorkloadName::new(name).unwrap_err();
            assert_eq!(err.problem, problem, "{name}");
        }
        let long = "a".repeat(64);
        assert_eq!(
            WorkloadName::new(&long).unwrap_err().problem,
            NameProblem::TooLong
        );
    }

    #[test]
    fn error_message_says_what_to_do() {
        let msg = WorkloadName::new("../x").unwrap_err().to_string();
        assert!(msg.contains("`../x` is not a valid name"), "{msg}");
        assert!(msg.contains("e.g. alice"), "{msg}");
    }
}
