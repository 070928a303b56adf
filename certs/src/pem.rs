//! Loading certificates, CRLs and identities from PEM files (via `rustls_pki_types`'s
//! `PemObject`; `rustls-pemfile` is deprecated).

use std::fmt;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::error::Error;
use crate::fsutil;
use crate::spiffe::SpiffeId;
use crate::svid;

/// Every certificate in a PEM file (at least one), in file order.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = fsutil::read(path)?;
    parse_all(path, &bytes, "certificate", "CERTIFICATE")
}

/// Every CRL in a PEM file (at least one), e.g. the mesh `crl.pem`.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, Error> {
    let bytes = fsutil::read(path)?;
    parse_all(path, &bytes, "certificate revocation list", "X509 CRL")
}

/// The first private key (PKCS#8, SEC1 or PKCS#1) in a PEM file.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let bytes = fsutil::read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => Error::NoPemItems {
            path: path.to_owned(),
            what: "private key",
            label: "PRIVATE KEY",
        },
        other => Error::Pem {
            path: path.to_owned(),
            detail: other.to_string(),
        },
    })
}

/// The first certificate in PEM `bytes` (read from `path`, for messages).
pub(crate) fn first_cert(path: &Path, bytes: &[u8]) -> Result<CertificateDer<'static>, Error> {
    parse_all::<CertificateDer<'static>>(path, bytes, "certificate", "CERTIFICATE")?
        .into_iter()
        .next()
        .ok_or_else(|| Error::NoPemItems {
            path: path.to_owned(),
            what: "certificate",
            label: "CERTIFICATE",
        })
}

/// Every `T` in PEM `bytes` (read from `path`, for messages); at least one.
pub(crate) fn parse_all<T: PemObject>(
    path: &Path,
    bytes: &[u8],
    what: &'static str,
    label: &'static str,
) -> Result<Vec<T>, Error> {
    let items = T::pem_slice_iter(bytes)
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| Error::Pem {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if items.is_empty() {
        return Err(Error::NoPemItems {
            path: path.to_owned(),
            what,
            label,
        });
    }
    Ok(items)
}

/// A workload's TLS identity: its certificate chain, private key and SPIFFE ID.
///
/// The sidecar loads `NAME.crt` + `NAME.key` of an agent, the gateway those of a gateway.
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    id: SpiffeId,
}

impl Identity {
    /// Loads a certificate chain (leaf first) and its private key from PEM files, checking that
    /// the key belongs to the certificate and that the certificate carries a SPIFFE ID.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, Error> {
        let chain = load_certs(cert_path)?;
        let key = load_private_key(key_path)?;
        Self::from_parts(chain, key, cert_path, key_path)
    }

    /// Builds an identity from DER values already in memory (e.g. just issued).
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, Error> {
        let here = Path::new("<in-memory certificate>");
        Self::from_parts(chain, key, here, Path::new("<in-memory key>"))
    }

    fn from_parts(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Self, Error> {
        let leaf = chain.first().ok_or_else(|| Error::NoPemItems {
            path: cert_path.to_owned(),
            what: "certificate",
            label: "CERTIFICATE",
        })?;
        let (_, parsed) = X509Certificate::from_der(leaf).map_err(|e| Error::BadCertificate {
            path: cert_path.to_owned(),
            reason: e.to_string(),
        })?;
        let id = svid::leaf_spiffe_id(&parsed).map_err(|source| Error::Identity {
            path: cert_path.to_owned(),
            source,
        })?;
        check_key_matches(parsed.public_key().raw, &key, cert_path, key_path)?;
        Ok(Self { chain, key, id })
    }

    /// The SPIFFE ID of the leaf certificate.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.id
    }

    /// The certificate chain, leaf first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// A copy of the private key (rustls configurations take ownership of one).
    pub fn clone_key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id.to_string())
            .field("chain_len", &self.chain.len())
            .field("key", &"[secret]")
            .finish()
    }
}

/// Fails unless `key`'s public half is the certificate's `spki` (DER SubjectPublicKeyInfo).
fn check_key_matches(
    spki: &[u8],
    key: &PrivateKeyDer<'_>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), Error> {
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| Error::BadKey {
            path: key_path.to_owned(),
            reason: e.to_string(),
        })?;
    match signing_key.public_key() {
        Some(public) if public.as_ref() == spki => Ok(()),
        Some(_) => Err(Error::KeyMismatch {
            cert: PathBuf::from(cert_path),
            key: PathBuf::from(key_path),
        }),
        // The ring provider always knows its public keys; be strict if that ever changes.
        None => Err(Error::BadKey {
            path: key_path.to_owned(),
            reason: "its public key cannot be derived".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::authority::{Authority, InitParams, IssueParams, Validity};
    use crate::name::WorkloadName;
    use crate::spiffe::TrustDomain;

    #[test]
    fn identity_load_checks_the_key_and_reads_the_id() {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let td = TrustDomain::new("example.org").unwrap();
        let ca = Authority::init(tmp.path(), &InitParams::new(td, now).unwrap(), now).unwrap();
        let v = Validity::days_from(now, 1).unwrap();
        let a = ca
            .issue(&IssueParams::agent(WorkloadName::new("a").unwrap(), v))
            .unwrap();
        let b = ca
            .issue(&IssueParams::agent(WorkloadName::new("b").unwrap(), v))
            .unwrap();

        let id = Identity::load(&a.cert_path, &a.key_path).unwrap();
        assert_eq!(id.spiffe_id().to_string(), "spiffe://example.org/agent/a");
        assert!(format!("{id:?}").contains("[secret]"));

        let err = Identity::load(&a.cert_path, &b.key_path).unwrap_err();
        assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
        let err = Identity::load(&a.key_path, &a.key_path).unwrap_err();
        assert!(matches!(err, Error::NoPemItems { .. }), "{err}");
        let err = load_crls(&a.cert_path).unwrap_err();
        assert!(
            err.to_string()
                .contains("holds no certificate revocation list"),
            "{err}"
        );
        let err = Identity::load(&tmp.path().join("missing.crt"), &a.key_path).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert_eq!(load_crls(&tmp.path().join("crl.pem")).unwrap().len(), 1);
    }
}
