//! SPIFFE IDs and trust domains, parsed and validated per the SPIFFE ID specification
//! (<https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md>).
//!
//! AIMux names workloads `spiffe://<trust domain>/agent/<name>` and
//! `spiffe://<trust domain>/gateway/<name>`; the CA itself carries the trust domain ID
//! `spiffe://<trust domain>` (no path).

use std::fmt;
use std::str::FromStr;

use crate::name::WorkloadName;

/// The URI scheme and authority separator of every SPIFFE ID.
//= SPIFFE-ID.md §2: "Valid SPIFFE IDs MUST use the `spiffe` scheme, include a non-zero trust
//= domain name, and MUST NOT include a query or fragment component."
pub const SCHEME_PREFIX: &str = "spiffe://";

//= SPIFFE-ID.md §2.3: "a maximum length of a trust domain name is 255 bytes"
const MAX_TRUST_DOMAIN_LEN: usize = 255;
//= SPIFFE-ID.md §2.3: "SPIFFE implementations MUST support SPIFFE URIs up to 2048 bytes in
//= length and SHOULD NOT generate URIs of length greater than 2048 bytes."
const MAX_ID_LEN: usize = 2048;

/// A SPIFFE trust domain, e.g. `example.org`: the realm one mesh CA vouches for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Validates `name` as a trust domain.
    ///
    // SPIFFE-ID.md §2.1 (current revision) limits trust domain names to lowercase letters,
    // digits, dots, dashes and underscores, `[a-z0-9.-_]`; no userinfo, no port.
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        if name.is_empty() {
            return Err(SpiffeIdError::EmptyTrustDomain);
        }
        if name.len() > MAX_TRUST_DOMAIN_LEN {
            return Err(SpiffeIdError::TrustDomainTooLong { len: name.len() });
        }
        if let Some(ch) = name.chars().find(|&c| !is_trust_domain_char(c)) {
            return Err(SpiffeIdError::BadTrustDomainChar {
                domain: name.to_owned(),
                ch,
            });
        }
        Ok(Self(name.to_owned()))
    }

    /// The trust domain name, e.g. `example.org`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own ID, `spiffe://<name>` (carried by the mesh CA).
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            trust_domain: self.clone(),
            path: String::new(),
        }
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// What an AIMux workload is, from the first segment of its SPIFFE ID path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    /// An agent, behind its sidecar: `spiffe://<td>/agent/<name>`. Presents client certificates.
    Agent,
    /// A gateway: `spiffe://<td>/gateway/<name>`. Presents server certificates.
    Gateway,
}

impl IdentityKind {
    /// The path segment naming this kind: `agent` or `gateway`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Gateway => "gateway",
        }
    }
}

impl fmt::Display for IdentityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated SPIFFE ID: a trust domain and a path (empty, or `/seg/seg...`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    /// Empty (the trust domain ID) or starting with `/`; never ending with `/`.
    path: String,
}

impl SpiffeId {
    /// Parses and validates a SPIFFE ID such as `spiffe://example.org/agent/alice`.
    pub fn parse(id: &str) -> Result<Self, SpiffeIdError> {
        if id.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong { len: id.len() });
        }
        let rest = id
            .strip_prefix(SCHEME_PREFIX)
            .ok_or_else(|| SpiffeIdError::MissingScheme(id.to_owned()))?;
        let (domain, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, ""),
        };
        Self::new(TrustDomain::new(domain)?, path)
    }

    /// Builds an ID from a trust domain and a path (`""` or `/seg/seg...`).
    pub fn new(trust_domain: TrustDomain, path: &str) -> Result<Self, SpiffeIdError> {
        let id = || format!("{SCHEME_PREFIX}{trust_domain}{path}");
        if SCHEME_PREFIX.len() + trust_domain.0.len() + path.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong { len: id().len() });
        }
        if !path.is_empty() {
            let Some(segments) = path.strip_prefix('/') else {
                return Err(SpiffeIdError::PathWithoutSlash {
                    path: path.to_owned(),
                });
            };
            // SPIFFE-ID.md §2.2 (current revision): no empty segments, no `.` or `..`
            // segments, no trailing `/`; segment characters are limited to `[a-zA-Z0-9.-_]`.
            for segment in segments.split('/') {
                match segment {
                    "" => return Err(SpiffeIdError::EmptySegment { id: id() }),
                    "." | ".." => return Err(SpiffeIdError::DotSegment { id: id() }),
                    _ => {}
                }
                if let Some(ch) = segment.chars().find(|&c| !is_path_char(c)) {
                    return Err(SpiffeIdError::BadPathChar { id: id(), ch });
                }
            }
        }
        Ok(Self {
            trust_domain,
            path: path.to_owned(),
        })
    }

    /// `spiffe://<td>/agent/<name>`.
    pub fn agent(trust_domain: &TrustDomain, name: &WorkloadName) -> Self {
        Self::workload(trust_domain, IdentityKind::Agent, name)
    }

    /// `spiffe://<td>/gateway/<name>`.
    pub fn gateway(trust_domain: &TrustDomain, name: &WorkloadName) -> Self {
        Self::workload(trust_domain, IdentityKind::Gateway, name)
    }

    /// `spiffe://<td>/<kind>/<name>`. Infallible: a [`WorkloadName`] is always a valid segment.
    pub fn workload(trust_domain: &TrustDomain, kind: IdentityKind, name: &WorkloadName) -> Self {
        Self {
            trust_domain: trust_domain.clone(),
            path: format!("/{kind}/{name}"),
        }
    }

    /// The trust domain, e.g. `example.org`.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path: empty for a trust domain ID, otherwise starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether this is the ID of the trust domain itself (no path).
    pub fn is_trust_domain_id(&self) -> bool {
        self.path.is_empty()
    }

    /// `Agent` for `/agent/<name>`, `Gateway` for `/gateway/<name>`, `None` for any other path.
    pub fn kind(&self) -> Option<IdentityKind> {
        self.split_workload().map(|(kind, _)| kind)
    }

    /// The `<name>` of `/agent/<name>` or `/gateway/<name>`.
    pub fn workload_name(&self) -> Option<&str> {
        self.split_workload().map(|(_, name)| name)
    }

    fn split_workload(&self) -> Option<(IdentityKind, &str)> {
        let (kind, name) = self.path.strip_prefix('/')?.split_once('/')?;
        if name.contains('/') {
            return None;
        }
        let kind = match kind {
            "agent" => IdentityKind::Agent,
            "gateway" => IdentityKind::Gateway,
            _ => return None,
        };
        Some((kind, name))
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME_PREFIX}{}{}", self.trust_domain, self.path)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for SpiffeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl serde::Serialize for TrustDomain {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

fn is_trust_domain_char(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_')
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

/// Why a string is not a SPIFFE ID or trust domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// The string does not start with `spiffe://`.
    #[error(
        "`{0}` is not a SPIFFE ID: it must start with `spiffe://` \
         (e.g. spiffe://example.org/agent/alice)"
    )]
    MissingScheme(String),
    /// The trust domain is empty.
    #[error("the trust domain is empty: give a name such as `example.org`")]
    EmptyTrustDomain,
    /// The trust domain has a character outside `[a-z0-9._-]`.
    #[error(
        "trust domain `{domain}` contains {ch:?}: SPIFFE trust domains use only lowercase \
         letters, digits, `.`, `-` and `_` (e.g. example.org)"
    )]
    BadTrustDomainChar {
        /// The rejected trust domain.
        domain: String,
        /// The first offending character.
        ch: char,
    },
    /// The trust domain is longer than 255 characters.
    #[error("the trust domain is {len} characters long; SPIFFE allows at most 255")]
    TrustDomainTooLong {
        /// Its length.
        len: usize,
    },
    /// The ID is longer than 2048 bytes.
    #[error("the SPIFFE ID is {len} bytes long; SPIFFE allows at most 2048")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// A path given on its own does not start with `/`.
    #[error("SPIFFE ID path `{path}` must start with `/`")]
    PathWithoutSlash {
        /// The rejected path.
        path: String,
    },
    /// The path has an empty segment (`//`) or ends with `/`.
    #[error("SPIFFE ID `{id}` has an empty path segment (a `//` or a trailing `/`)")]
    EmptySegment {
        /// The rejected ID.
        id: String,
    },
    /// The path has a `.` or `..` segment.
    #[error("SPIFFE ID `{id}` has a `.` or `..` path segment, which SPIFFE forbids")]
    DotSegment {
        /// The rejected ID.
        id: String,
    },
    /// The path has a character outside `[A-Za-z0-9._-]`.
    #[error(
        "SPIFFE ID `{id}` contains {ch:?} in its path: path segments use only letters, digits, \
         `.`, `-` and `_`"
    )]
    BadPathChar {
        /// The rejected ID.
        id: String,
        /// The first offending character.
        ch: char,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_workload_ids() {
        let id = SpiffeId::parse("spiffe://example.org/agent/alice").unwrap();
        assert_eq!(id.trust_domain().as_str(), "example.org");
        assert_eq!(id.path(), "/agent/alice");
        assert_eq!(id.kind(), Some(IdentityKind::Agent));
        assert_eq!(id.workload_name(), Some("alice"));
        assert_eq!(id.to_string(), "spiffe://example.org/agent/alice");

        let gw = SpiffeId::parse("spiffe://mesh_1.local/gateway/edge-1").unwrap();
        assert_eq!(gw.kind(), Some(IdentityKind::Gateway));

        let td = SpiffeId::parse("spiffe://example.org").unwrap();
        assert!(td.is_trust_domain_id());
        assert_eq!(td.kind(), None);
        assert_eq!(td, TrustDomain::new("example.org").unwrap().id());
    }

    #[test]
    fn other_paths_have_no_kind() {
        for id in [
            "spiffe://d/agent",
            "spiffe://d/agent/a/b",
            "spiffe://d/service/a",
            "spiffe://d/Agent/a",
        ] {
            assert_eq!(SpiffeId::parse(id).unwrap().kind(), None, "{id}");
        }
    }

    #[test]
    fn rejects_invalid_ids() {
        for (id, want) in [
            ("http://example.org/a", "must start with `spiffe://`"),
            ("SPIFFE://example.org/a", "must start with `spiffe://`"),
            ("spiffe://", "trust domain is empty"),
            ("spiffe:///a", "trust domain is empty"),
            ("spiffe://Example.org/a", "contains 'E'"),
            ("spiffe://example.org:443/a", "contains ':'"),
            ("spiffe://user@example.org/a", "contains '@'"),
            ("spiffe://example.org/", "empty path segment"),
            ("spiffe://example.org//a", "empty path segment"),
            ("spiffe://example.org/a/", "empty path segment"),
            ("spiffe://example.org/a/../b", "`..` path segment"),
            ("spiffe://example.org/./b", "`..` path segment"),
            ("spiffe://example.org/a?x=1", "contains '?'"),
            ("spiffe://example.org/a#f", "contains '#'"),
            ("spiffe://example.org/a%20b", "contains '%'"),
        ] {
            let err = SpiffeId::parse(id).unwrap_err().to_string();
            assert!(err.contains(want), "{id}: {err}");
        }
    }

    #[test]
    fn enforces_length_limits() {
        let long_domain = "a".repeat(256);
        assert!(matches!(
            TrustDomain::new(&long_domain),
            Err(SpiffeIdError::TrustDomainTooLong { len: 256 })
        ));
        assert!(TrustDomain::new(&"a".repeat(255)).is_ok());
        let long_path = format!("spiffe://d/{}", "a".repeat(2048));
        assert!(matches!(
            SpiffeId::parse(&long_path),
            Err(SpiffeIdError::TooLong { .. })
        ));
    }

    #[test]
    fn trust_domain_accepts_spec_charset() {
        assert!(TrustDomain::new("a-b_c.d9").is_ok());
        assert!(TrustDomain::new("").is_err());
        assert!(TrustDomain::new("a/b").is_err());
        assert!(TrustDomain::new("ünï.org").is_err());
    }

    #[test]
    fn helpers_build_expected_paths() {
        let td = TrustDomain::new("example.org").unwrap();
        let name = WorkloadName::new("alice").unwrap();
        assert_eq!(
            SpiffeId::agent(&td, &name).to_string(),
            "spiffe://example.org/agent/alice"
        );
        assert_eq!(
            SpiffeId::gateway(&td, &name).to_string(),
            "spiffe://example.org/gateway/alice"
        );
    }

    #[test]
    fn new_requires_leading_slash() {
        let td = TrustDomain::new("d").unwrap();
        assert!(matches!(
            SpiffeId::new(td.clone(), "agent/a"),
            Err(SpiffeIdError::PathWithoutSlash { .. })
        ));
        assert!(SpiffeId::new(td, "/agent/a").is_ok());
    }
}
