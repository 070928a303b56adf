//! What a mesh peer trusts: the mesh CA certificate(s) and the trust domain they vouch for.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};

use crate::crl;
use crate::error::Error;
use crate::pem;
use crate::spiffe::TrustDomain;
use crate::svid;

/// The mesh CA certificates as a rustls root store, and the mesh trust domain.
///
/// Several CA certificates are allowed (to rotate the CA: trust old and new for a while), but
/// they must all belong to the same trust domain.
#[derive(Clone, Debug)]
pub struct MeshTrust {
    ca_certs: Vec<CertificateDer<'static>>,
    roots: Arc<RootCertStore>,
    trust_domain: TrustDomain,
}

impl MeshTrust {
    /// Loads `ca.crt` and reads the trust domain from its URI SAN (`spiffe://<td>`).
    pub fn load(ca_path: &Path) -> Result<Self, Error> {
        let certs = pem::load_certs(ca_path)?;
        Self::from_ca_certs_at(certs, ca_path)
    }

    /// Trusts `ca_certs`, reading the trust domain from their URI SANs.
    pub fn from_ca_certs(ca_certs: Vec<CertificateDer<'static>>) -> Result<Self, Error> {
        Self::from_ca_certs_at(ca_certs, Path::new("<CA certificate>"))
    }

    fn from_ca_certs_at(
        ca_certs: Vec<CertificateDer<'static>>,
        path: &Path,
    ) -> Result<Self, Error> {
        let mut domain: Option<TrustDomain> = None;
        for ca in &ca_certs {
            let id = svid::spiffe_id_of_der(ca).map_err(|e| Error::NotACa {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            match &domain {
                None => domain = Some(id.trust_domain().clone()),
                Some(first) if first != id.trust_domain() => {
                    return Err(Error::TrustDomainMismatch {
                        first: first.to_string(),
                        other: id.trust_domain().to_string(),
                    });
                }
                Some(_) => {}
            }
        }
        let trust_domain = domain.ok_or_else(|| Error::NoPemItems {
            path: path.to_owned(),
            what: "CA certificate",
            label: "CERTIFICATE",
        })?;
        Self::with_trust_domain(ca_certs, trust_domain)
    }

    /// Trusts `ca_certs` for an explicitly given trust domain (for CAs without a SPIFFE ID).
    pub fn with_trust_domain(
        ca_certs: Vec<CertificateDer<'static>>,
        trust_domain: TrustDomain,
    ) -> Result<Self, Error> {
        let mut roots = RootCertStore::empty();
        for ca in &ca_certs {
            roots.add(ca.clone())?;
        }
        if roots.is_empty() {
            return Err(Error::NoPemItems {
                path: "<CA certificate>".into(),
                what: "CA certificate",
                label: "CERTIFICATE",
            });
        }
        Ok(Self {
            ca_certs,
            roots: Arc::new(roots),
            trust_domain,
        })
    }

    /// The mesh trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The CA certificates as a rustls root store.
    pub fn roots(&self) -> &Arc<RootCertStore> {
        &self.roots
    }

    /// The CA certificates.
    pub fn ca_certs(&self) -> &[CertificateDer<'static>] {
        &self.ca_certs
    }

    /// Checks that every CRL was issued and signed by one of the mesh CAs, so that a CRL from
    /// elsewhere is refused when loaded rather than failing every later handshake.
    pub(crate) fn check_crls(
        &self,
        crls: &[CertificateRevocationListDer<'_>],
    ) -> Result<(), Error> {
        for (i, der) in crls.iter().enumerate() {
            crl::check_signed_by_any(der, &self.ca_certs).map_err(|reason| Error::CrlRejected {
                reason: format!("CRL #{}: {reason}", i + 1),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::authority::{Authority, InitParams};

    fn ca(dir: &Path, td: &str) -> CertificateDer<'static> {
        let now = OffsetDateTime::now_utc();
        let params = InitParams::new(TrustDomain::new(td).unwrap(), now).unwrap();
        Authority::init(dir, &params, now)
            .unwrap()
            .ca_cert()
            .clone()
    }

    #[test]
    fn reads_the_trust_domain_and_refuses_mixed_bundles() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let one = ca(a.path(), "example.org");
        let rotated = ca(b.path(), "example.org");
        let other = ca(c.path(), "other.org");

        let trust = MeshTrust::load(&a.path().join("ca.crt")).unwrap();
        assert_eq!(trust.trust_domain().as_str(), "example.org");
        let both = MeshTrust::from_ca_certs(vec![one.clone(), rotated]).unwrap();
        assert_eq!(both.roots().len(), 2);
        let err = MeshTrust::from_ca_certs(vec![one, other]).unwrap_err();
        assert!(matches!(err, Error::TrustDomainMismatch { .. }), "{err}");
        assert!(MeshTrust::from_ca_certs(vec![]).is_err());
    }
}
