//! Reading the SPIFFE ID out of an X.509 certificate (an X509-SVID,
//! <https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md>).

use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::spiffe::{IdentityKind, SpiffeId, SpiffeIdError, TrustDomain};

/// The SPIFFE ID of a peer, from the end-entity certificate of its (already verified) chain:
/// `certs[0]` as rustls and quinn hand it out (`peer_certificates()`).
///
/// This only reads the identity; the mesh verifiers have already checked the chain, the
/// revocation status and the trust domain during the handshake.
pub fn peer_identity(certs: &[CertificateDer<'_>]) -> Result<SpiffeId, IdentityError> {
    let leaf = certs.first().ok_or(IdentityError::NoCertificate)?;
    leaf_id_of_der(leaf)
}

/// The SPIFFE ID in a DER certificate's URI SAN, whether leaf or CA (no leaf checks).
pub fn spiffe_id_of_der(der: &[u8]) -> Result<SpiffeId, IdentityError> {
    spiffe_id_of(&parse(der)?)
}

/// The SPIFFE ID of a DER leaf SVID, checked with [`leaf_spiffe_id`].
pub(crate) fn leaf_id_of_der(der: &[u8]) -> Result<SpiffeId, IdentityError> {
    leaf_spiffe_id(&parse(der)?)
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::Unparseable(e.to_string()))?;
    Ok(cert)
}

/// The SPIFFE ID of a leaf SVID, with the checks the spec asks of validators on top of path
/// validation.
//= X509-SVID.md §5.2: "the validator MUST ensure that the `CA` field in the basic constraints
//= extension is set to `false`, and that `keyCertSign` and `cRLSign` are not set in the key
//= usage extension. The validator MUST also ensure that the scheme of the SPIFFE ID is set to
//= `spiffe`, and MUST ensure that the SPIFFE ID has a non-root path component"
pub(crate) fn leaf_spiffe_id(cert: &X509Certificate<'_>) -> Result<SpiffeId, IdentityError> {
    let not_leaf = |why| Err(IdentityError::NotALeaf(why));
    let constraints = cert
        .basic_constraints()
        .map_err(|e| IdentityError::Unparseable(format!("basic constraints: {e}")))?;
    if constraints.is_some_and(|bc| bc.value.ca) {
        return not_leaf("it is a CA certificate");
    }
    let usage = cert
        .key_usage()
        .map_err(|e| IdentityError::Unparseable(format!("key usage: {e}")))?;
    if usage.is_some_and(|ku| ku.value.key_cert_sign() || ku.value.crl_sign()) {
        return not_leaf("its key usage allows signing certificates or CRLs");
    }
    let id = spiffe_id_of(cert)?;
    if id.is_trust_domain_id() {
        return not_leaf("its SPIFFE ID has no path");
    }
    Ok(id)
}

/// The SPIFFE ID in a parsed certificate's URI SAN.
//= X509-SVID.md §2: "An X.509 SVID MUST contain exactly one URI SAN, and by extension,
//= exactly one SPIFFE ID."
pub(crate) fn spiffe_id_of(cert: &X509Certificate<'_>) -> Result<SpiffeId, IdentityError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::Unparseable(format!("subject alternative name: {e}")))?
        .ok_or(IdentityError::NoSpiffeId)?;
    let mut uris = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    let uri = uris.next().ok_or(IdentityError::NoSpiffeId)?;
    let extra = uris.count();
    if extra > 0 {
        return Err(IdentityError::MultipleUris { count: extra + 1 });
    }
    SpiffeId::parse(uri).map_err(IdentityError::InvalidSpiffeId)
}

/// Checks that `id` is in `trust_domain` and is of one of the `allowed` kinds.
pub(crate) fn check_membership(
    id: &SpiffeId,
    trust_domain: &TrustDomain,
    allowed: &[IdentityKind],
) -> Result<(), IdentityError> {
    if id.trust_domain() != trust_domain {
        return Err(IdentityError::WrongTrustDomain {
            id: id.clone(),
            expected: trust_domain.clone(),
        });
    }
    match id.kind() {
        Some(kind) if allowed.contains(&kind) => Ok(()),
        _ => Err(IdentityError::KindNotAllowed {
            id: id.clone(),
            allowed: allowed.to_vec(),
        }),
    }
}

/// Why a certificate does not carry an acceptable SPIFFE identity.
///
/// The mesh verifiers report these inside `rustls::Error::InvalidCertificate(
/// CertificateError::Other(..))`; downcast the `OtherError` to this type to log it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The peer sent no certificate.
    #[error("the peer presented no certificate")]
    NoCertificate,
    /// The certificate could not be parsed.
    #[error("the certificate could not be parsed: {0}")]
    Unparseable(String),
    /// The certificate has no URI SAN.
    #[error(
        "the certificate has no SPIFFE ID (URI subject alternative name): it was not issued by \
         `aimux certs`"
    )]
    NoSpiffeId,
    /// The certificate has more than one URI SAN.
    #[error(
        "the certificate has {count} URI subject alternative names; an X509-SVID has exactly one"
    )]
    MultipleUris {
        /// How many.
        count: usize,
    },
    /// The certificate is a CA or signing certificate, or names a trust domain only.
    #[error("the certificate is not a leaf SVID: {0}")]
    NotALeaf(&'static str),
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("the certificate's URI subject alternative name is not a valid SPIFFE ID: {0}")]
    InvalidSpiffeId(SpiffeIdError),
    /// The identity belongs to another trust domain.
    #[error(
        "{id} belongs to trust domain `{}`, but this mesh is `{expected}`: it was issued by \
         another mesh's CA",
        id.trust_domain()
    )]
    WrongTrustDomain {
        /// The identity presented.
        id: SpiffeId,
        /// The mesh trust domain.
        expected: TrustDomain,
    },
    /// The identity is of a kind that may not connect here.
    #[error(
        "{id} may not connect here: only {} identities are accepted",
        KindList(allowed)
    )]
    KindNotAllowed {
        /// The identity presented.
        id: SpiffeId,
        /// The kinds accepted.
        allowed: Vec<IdentityKind>,
    },
    /// The server is not the gateway the client expected.
    #[error(
        "the server presented {presented}, but this sidecar expects {expected}: check the \
         gateway address and the expected gateway identity in the sidecar configuration"
    )]
    UnexpectedPeer {
        /// The identity presented.
        presented: SpiffeId,
        /// The identity expected.
        expected: SpiffeId,
    },
}

struct KindList<'a>(&'a [IdentityKind]);

impl std::fmt::Display for KindList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no");
        }
        for (i, kind) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" or ")?;
            }
            write!(f, "`{kind}/...`")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair, SanType};

    use super::*;

    fn cert_with_sans(sans: Vec<SanType>) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.self_signed(&key).unwrap().der().clone()
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().unwrap())
    }

    #[test]
    fn reads_the_single_uri_san() {
        let der = cert_with_sans(vec![
            SanType::DnsName("gw.example.org".try_into().unwrap()),
            uri("spiffe://example.org/gateway/edge"),
        ]);
        let id = peer_identity(&[der]).unwrap();
        assert_eq!(id.to_string(), "spiffe://example.org/gateway/edge");
    }

    #[test]
    fn rejects_missing_multiple_and_invalid_uris() {
        assert_eq!(peer_identity(&[]), Err(IdentityError::NoCertificate));
        let none = cert_with_sans(vec![SanType::DnsName("a.example".try_into().unwrap())]);
        assert_eq!(peer_identity(&[none]), Err(IdentityError::NoSpiffeId));
        let two = cert_with_sans(vec![uri("spiffe://d/agent/a"), uri("spiffe://d/agent/b")]);
        assert_eq!(
            spiffe_id_of_der(&two),
            Err(IdentityError::MultipleUris { count: 2 })
        );
        let bad = cert_with_sans(vec![uri("https://example.org/agent/a")]);
        assert!(matches!(
            spiffe_id_of_der(&bad),
            Err(IdentityError::InvalidSpiffeId(_))
        ));
        assert!(matches!(
            spiffe_id_of_der(b"not a certificate"),
            Err(IdentityError::Unparseable(_))
        ));
    }

    #[test]
    fn leaf_rules_refuse_ca_certificates_and_root_ids() {
        let key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.subject_alt_names = vec![uri("spiffe://d")];
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&key).unwrap();
        assert_eq!(
            peer_identity(&[ca.der().clone()]),
            Err(IdentityError::NotALeaf("it is a CA certificate"))
        );
        assert!(spiffe_id_of_der(ca.der()).is_ok());

        let mut signer = CertificateParams::default();
        signer.subject_alt_names = vec![uri("spiffe://d/agent/a")];
        signer.key_usages = vec![rcgen::KeyUsagePurpose::CrlSign];
        let signer = signer.self_signed(&key).unwrap();
        assert!(matches!(
            peer_identity(&[signer.der().clone()]),
            Err(IdentityError::NotALeaf(_))
        ));

        let root_id = cert_with_sans(vec![uri("spiffe://d")]);
        assert_eq!(
            peer_identity(&[root_id]),
            Err(IdentityError::NotALeaf("its SPIFFE ID has no path"))
        );
    }

    #[test]
    fn membership_checks_domain_and_kind() {
        let td = TrustDomain::new("example.org").unwrap();
        let agent = SpiffeId::parse("spiffe://example.org/agent/a").unwrap();
        let gateway = SpiffeId::parse("spiffe://example.org/gateway/g").unwrap();
        let foreign = SpiffeId::parse("spiffe://other.org/agent/a").unwrap();
        assert!(check_membership(&agent, &td, &[IdentityKind::Agent]).is_ok());
        let err = check_membership(&gateway, &td, &[IdentityKind::Agent]).unwrap_err();
        assert!(
            err.to_string().contains("only `agent/...` identities"),
            "{err}"
        );
        let err = check_membership(&foreign, &td, &[IdentityKind::Agent]).unwrap_err();
        assert!(
            err.to_string().contains("trust domain `other.org`"),
            "{err}"
        );
    }
}
