//! The mesh CA directory: create it, issue agent and gateway certificates, revoke and list
//! them. Everything lives in plain files (no database, no state file):
//!
//! | file | what | mode |
//! |---|---|---|
//! | `ca.crt` | CA certificate; its URI SAN `spiffe://<td>` names the trust domain | 0644 |
//! | `ca.key` | CA private key (PKCS#8, ECDSA P-256) | 0600 |
//! | `crl.pem` | X.509 v2 CRL signed by the CA, rewritten on each revocation | 0644 |
//! | `<name>.crt` / `<name>.key` | an agent's or gateway's certificate and key | 0644 / 0600 |

mod issue;
mod list;
mod revoke;

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rustls::crypto::SecureRandom;
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

pub use self::issue::{IssueKind, IssueParams, IssuedCert, Replaced};
pub use self::list::{CaInfo, CertInfo, CrlInfo, Listing, Skipped};
pub use self::revoke::Revocation;
use crate::crl::{self, CrlContents};
use crate::error::Error;
use crate::fsutil::{self, Mode, Overwrite};
use crate::name::WorkloadName;
use crate::pem;
use crate::serial::Serial;
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::svid;

/// Default lifetime of the CA: ten years.
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// Default lifetime of agent and gateway certificates: one year.
pub const DEFAULT_CERT_DAYS: u32 = 365;
/// Certificates start this long before they are issued, so that a peer whose clock is a little
/// behind does not reject a fresh certificate as "not yet valid".
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::minutes(5);

/// The files of a CA directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaDir(PathBuf);

impl CaDir {
    /// The CA directory at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self(dir.into())
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `ca.crt`: the CA certificate every peer trusts.
    pub fn ca_cert(&self) -> PathBuf {
        self.0.join("ca.crt")
    }

    /// `ca.key`: the CA private key.
    pub fn ca_key(&self) -> PathBuf {
        self.0.join("ca.key")
    }

    /// `crl.pem`: the revocation list the gateway loads.
    pub fn crl(&self) -> PathBuf {
        self.0.join("crl.pem")
    }

    /// `<name>.crt`.
    pub fn cert(&self, name: &WorkloadName) -> PathBuf {
        self.0.join(format!("{name}.crt"))
    }

    /// `<name>.key`.
    pub fn key(&self, name: &WorkloadName) -> PathBuf {
        self.0.join(format!("{name}.key"))
    }
}

/// When a certificate is valid: `not_before < not_after`, whole seconds (X.509 times carry no
/// fractions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl Validity {
    /// An explicit period (tests use it for expired or not-yet-valid certificates).
    pub fn new(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Result<Self, Error> {
        let (not_before, not_after) = (whole_seconds(not_before), whole_seconds(not_after));
        if not_after <= not_before {
            return Err(Error::Validity(format!(
                "it ends ({not_after}) before it starts ({not_before})"
            )));
        }
        Ok(Self {
            not_before,
            not_after,
        })
    }

    /// From [`CLOCK_SKEW_ALLOWANCE`] before `now` until `days` days after `now`.
    pub fn days_from(now: OffsetDateTime, days: u32) -> Result<Self, Error> {
        if days == 0 {
            return Err(Error::Validity("it must last at least one day".to_owned()));
        }
        Self::new(
            now - CLOCK_SKEW_ALLOWANCE,
            now + Duration::days(i64::from(days)),
        )
    }

    /// Start of the period.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of the period.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }
}

fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// What `aimux certs init` needs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct InitParams {
    /// The mesh trust domain, written into the CA's URI SAN.
    pub trust_domain: TrustDomain,
    /// The CA's validity.
    pub validity: Validity,
    /// Replace an existing CA (every certificate it issued stops being trusted).
    pub force: bool,
}

impl InitParams {
    /// A CA for `trust_domain`, valid for [`CA_VALIDITY_DAYS`] from `now`, not replacing one.
    pub fn new(trust_domain: TrustDomain, now: OffsetDateTime) -> Result<Self, Error> {
        Ok(Self {
            trust_domain,
            validity: Validity::days_from(now, CA_VALIDITY_DAYS)?,
            force: false,
        })
    }
}

/// An opened mesh CA: its certificate, its signing key and its directory.
pub struct Authority {
    dir: CaDir,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    trust_domain: TrustDomain,
    ca_serial: Serial,
    ca_not_after: OffsetDateTime,
    /// The CA's subject key identifier, repeated as the authority key identifier of CRLs.
    ca_key_id: Vec<u8>,
    rng: &'static dyn SecureRandom,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("dir", &self.dir)
            .field("trust_domain", &self.trust_domain)
            .field("ca_serial", &self.ca_serial)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Whether `dir` already holds a CA (a `ca.crt` or a `ca.key`).
    pub fn exists(dir: &Path) -> bool {
        let dir = CaDir::new(dir);
        fsutil::exists(&dir.ca_cert()) || fsutil::exists(&dir.ca_key())
    }

    /// Creates a CA in `dir` (created 0700 if missing): an ECDSA P-256 key, a self-signed CA
    /// certificate for the trust domain and an empty CRL.
    pub fn init(dir: &Path, params: &InitParams, now: OffsetDateTime) -> Result<Self, Error> {
        let paths = CaDir::new(dir);
        if Self::exists(dir) && !params.force {
            return Err(Error::CaExists {
                dir: dir.to_owned(),
            });
        }
        fsutil::create_dir(dir)?;
        let rng = crypto_rng();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let td = &params.trust_domain;

        let mut ca = CertificateParams::default();
        ca.not_before = params.validity.not_before;
        ca.not_after = params.validity.not_after;
        let serial = Serial::random(rng)?;
        ca.serial_number = Some(SerialNumber::from_slice(serial.as_bytes()));
        ca.distinguished_name = ca_name(td, &serial);
        //= X509-SVID.md §3.2: "A signing certificate SHOULD itself be an SVID. If present, the
        //= SPIFFE ID of a signing certificate MUST NOT have a path component"
        // It is also how `aimux certs` learns the trust domain later, without a state file.
        ca.subject_alt_names = vec![SanType::URI(td.id().to_string().try_into()?)];
        //= RFC 5280 §4.2.1.9: pathLenConstraint 0 — this CA signs end entities only.
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        //= X509-SVID.md §4.3: "Signing certificates MUST set keyCertSign. They MAY set cRLSign."
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = ca.self_signed(&key)?;

        let overwrite = if params.force {
            Overwrite::Replace
        } else {
            Overwrite::Refuse
        };
        fsutil::write_atomic(
            &paths.ca_key(),
            key.serialize_pem().as_bytes(),
            Mode::Private,
            overwrite,
        )?;
        fsutil::write_atomic(
            &paths.ca_cert(),
            cert.pem().as_bytes(),
            Mode::Public,
            overwrite,
        )?;
        let authority = Self::from_parts(paths, cert.der().clone(), key)?;
        let empty = crl::sign(1, &[], now, &authority.issuer, &authority.ca_key_id)?;
        fsutil::write_atomic(
            &authority.dir.crl(),
            empty.pem()?.as_bytes(),
            Mode::Public,
            Overwrite::Replace,
        )?;
        Ok(authority)
    }

    /// Opens the CA in `dir`, checking that `ca.key` belongs to `ca.crt` and that `ca.crt` is a
    /// CA naming a trust domain.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let paths = CaDir::new(dir);
        let (cert_path, key_path) = (paths.ca_cert(), paths.ca_key());
        let Some(cert_pem) = fsutil::read_if_exists(&cert_path)? else {
            return Err(Error::NoCa {
                dir: dir.to_owned(),
            });
        };
        let Some(key_pem) = fsutil::read_if_exists(&key_path)? else {
            return Err(Error::CaKeyMissing {
                cert: cert_path,
                key: key_path,
            });
        };
        let ca_der = pem::first_cert(&cert_path, &cert_pem)?;
        let key_pem = String::from_utf8(key_pem).map_err(|_| Error::BadKey {
            path: key_path.clone(),
            reason: "it is not text".to_owned(),
        })?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| Error::BadKey {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        Self::from_parts(paths, ca_der, key)
    }

    fn from_parts(
        dir: CaDir,
        ca_der: CertificateDer<'static>,
        key: KeyPair,
    ) -> Result<Self, Error> {
        let cert_path = dir.ca_cert();
        let not_a_ca = |reason: String| Error::NotACa {
            path: cert_path.clone(),
            reason,
        };
        let (_, ca) = X509Certificate::from_der(&ca_der).map_err(|e| not_a_ca(e.to_string()))?;
        if !ca.is_ca() {
            return Err(not_a_ca("its basic constraints do not say CA".to_owned()));
        }
        let usage = ca.key_usage().map_err(|e| not_a_ca(e.to_string()))?;
        if !usage.is_some_and(|u| u.value.key_cert_sign() && u.value.crl_sign()) {
            return Err(not_a_ca(
                "its key usage lacks keyCertSign or cRLSign".to_owned(),
            ));
        }
        let id = svid::spiffe_id_of(&ca).map_err(|e| not_a_ca(e.to_string()))?;
        if !id.is_trust_domain_id() {
            return Err(not_a_ca(format!(
                "its SPIFFE ID {id} has a path; a mesh CA carries spiffe://<trust domain> only"
            )));
        }
        let ca_key_id = ca
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(kid) => Some(kid.0.to_vec()),
                _ => None,
            })
            .ok_or_else(|| not_a_ca("it has no subject key identifier".to_owned()))?;
        if ca.public_key().subject_public_key.data.as_ref() != rcgen::PublicKeyData::der_bytes(&key)
        {
            return Err(Error::KeyMismatch {
                cert: cert_path,
                key: dir.ca_key(),
            });
        }
        let ca_serial = Serial::from_be_bytes(ca.raw_serial());
        let ca_not_after = ca.validity().not_after.to_datetime();
        let trust_domain = id.trust_domain().clone();
        let issuer = Issuer::from_ca_cert_der(&ca_der, key)?;
        Ok(Self {
            dir,
            ca_der,
            issuer,
            trust_domain,
            ca_serial,
            ca_not_after,
            ca_key_id,
            rng: crypto_rng(),
        })
    }

    /// The mesh trust domain (from the CA certificate's URI SAN).
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The CA directory.
    pub fn dir(&self) -> &CaDir {
        &self.dir
    }

    /// The CA certificate.
    pub fn ca_cert(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// The CA certificate's serial number.
    pub fn ca_serial(&self) -> &Serial {
        &self.ca_serial
    }

    /// When the CA certificate expires; no certificate it issues may outlive it.
    pub fn ca_not_after(&self) -> OffsetDateTime {
        self.ca_not_after
    }

    /// The trust domain ID `spiffe://<td>`.
    pub fn ca_id(&self) -> SpiffeId {
        self.trust_domain.id()
    }

    fn parsed_ca(&self) -> Result<X509Certificate<'_>, Error> {
        X509Certificate::from_der(&self.ca_der)
            .map(|(_, ca)| ca)
            .map_err(|e| Error::NotACa {
                path: self.dir.ca_cert(),
                reason: e.to_string(),
            })
    }

    /// Reads and verifies `crl.pem`.
    fn read_crl(&self) -> Result<CrlContents, Error> {
        let path = self.dir.crl();
        let Some(bytes) = fsutil::read_if_exists(&path)? else {
            return Err(Error::CrlMissing { path });
        };
        let crls = pem::parse_all::<rustls_pki_types::CertificateRevocationListDer<'static>>(
            &path,
            &bytes,
            "certificate revocation list",
            "X509 CRL",
        )?;
        if crls.len() > 1 {
            return Err(Error::CrlInvalid {
                path,
                reason: format!("it holds {} CRLs; the mesh keeps exactly one", crls.len()),
            });
        }
        let ca = self.parsed_ca()?;
        let verified = match crls.first() {
            Some(der) => crl::parse_verified(der, &ca),
            None => Err("it holds no CRL".to_owned()),
        };
        verified.map_err(|reason| Error::CrlInvalid { path, reason })
    }

    /// Reads `<name>.crt` at `path` (`Ok(None)` if missing) and checks that this CA issued it
    /// and that it carries a SPIFFE ID.
    fn read_leaf(&self, path: &Path) -> Result<Option<LeafFacts>, Error> {
        let Some(bytes) = fsutil::read_if_exists(path)? else {
            return Ok(None);
        };
        let der = pem::first_cert(path, &bytes)?;
        let (_, cert) = X509Certificate::from_der(&der).map_err(|e| Error::BadCertificate {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        self.check_issued_here(&cert, path)?;
        let id = svid::leaf_spiffe_id(&cert).map_err(|source| Error::Identity {
            path: path.to_owned(),
            source,
        })?;
        Ok(Some(LeafFacts {
            serial: Serial::from_be_bytes(cert.raw_serial()),
            id,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
        }))
    }

    /// Checks that `cert` was signed by this CA.
    fn check_issued_here(&self, cert: &X509Certificate<'_>, path: &Path) -> Result<(), Error> {
        let ca = self.parsed_ca()?;
        let issued_here = cert.issuer().as_raw() == ca.subject().as_raw()
            && cert.verify_signature(Some(ca.public_key())).is_ok();
        if issued_here {
            Ok(())
        } else {
            Err(Error::NotIssuedByCa {
                path: path.to_owned(),
                dir: self.dir.path().to_owned(),
            })
        }
    }
}

/// What a certificate of this CA says.
struct LeafFacts {
    serial: Serial,
    id: SpiffeId,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

/// The CA's subject: O=AIMux, OU=<trust domain> (when it fits RFC 5280's 64-character
/// bound), CN=AIMux CA <serial prefix>. The serial prefix makes every CA's name unique, so that
/// verifiers looking up an issuer by name never confuse two meshes of the same trust domain
/// (they would find the wrong key and report a bad signature instead of an unknown issuer).
fn ca_name(td: &TrustDomain, serial: &Serial) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "AIMux");
    if td.as_str().len() <= 64 {
        name.push(DnType::OrganizationalUnitName, td.as_str());
    }
    let hex = serial.to_hex();
    let prefix = hex.get(..8).unwrap_or(&hex);
    name.push(DnType::CommonName, format!("AIMux CA {prefix}"));
    name
}

fn crypto_rng() -> &'static dyn SecureRandom {
    rustls::crypto::ring::default_provider().secure_random
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn init(dir: &Path, td: &str) -> Authority {
        let params = InitParams::new(TrustDomain::new(td).unwrap(), now()).unwrap();
        Authority::init(dir, &params, now()).unwrap()
    }

    #[test]
    fn init_then_open_agrees() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let created = init(&dir, "example.org");
        let opened = Authority::open(&dir).unwrap();
        assert_eq!(opened.trust_domain().as_str(), "example.org");
        assert_eq!(opened.ca_serial(), created.ca_serial());
        assert_eq!(opened.ca_key_id, created.ca_key_id);
        let crl = opened.read_crl().unwrap();
        assert_eq!((crl.number, crl.entries.len()), (1, 0));
    }

    #[test]
    fn init_refuses_to_replace_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        let first = init(tmp.path(), "example.org");
        let mut params = InitParams::new(TrustDomain::new("example.org").unwrap(), now()).unwrap();
        let err = Authority::init(tmp.path(), &params, now()).unwrap_err();
        assert!(matches!(err, Error::CaExists { .. }), "{err}");
        params.force = true;
        let second = Authority::init(tmp.path(), &params, now()).unwrap();
        assert_ne!(first.ca_serial(), second.ca_serial());
    }

    #[test]
    fn open_explains_missing_pieces() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Authority::open(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("run `aimux certs init --dir"), "{err}");

        init(tmp.path(), "example.org");
        std::fs::remove_file(tmp.path().join("ca.key")).unwrap();
        let err = Authority::open(tmp.path()).unwrap_err();
        assert!(matches!(err, Error::CaKeyMissing { .. }), "{err}");
    }

    #[test]
    fn open_detects_a_key_from_another_ca() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        init(a.path(), "example.org");
        init(b.path(), "example.org");
        std::fs::copy(b.path().join("ca.key"), a.path().join("ca.key")).unwrap();
        let err = Authority::open(a.path()).unwrap_err();
        assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn validity_rejects_empty_periods() {
        let t = now();
        assert!(Validity::new(t, t).is_err());
        assert!(Validity::days_from(t, 0).is_err());
        let v = Validity::days_from(t, 1).unwrap();
        assert_eq!(v.not_before().nanosecond(), 0);
        assert!(v.not_after() > v.not_before());
    }

    #[test]
    fn ca_names_are_unique_and_bounded() {
        let rng = crypto_rng();
        let long = TrustDomain::new(&"a".repeat(100)).unwrap();
        let short = TrustDomain::new("example.org").unwrap();
        let (s1, s2) = (Serial::random(rng).unwrap(), Serial::random(rng).unwrap());
        assert_ne!(ca_name(&short, &s1), ca_name(&short, &s2));
        assert!(
            ca_name(&long, &s1)
                .get(&DnType::OrganizationalUnitName)
                .is_none()
        );
        assert!(
            ca_name(&short, &s1)
                .get(&DnType::OrganizationalUnitName)
                .is_some()
        );
    }
}
