//! Issuing agent and gateway certificates (X509-SVIDs).

use std::net::IpAddr;
use std::path::PathBuf;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use super::{Authority, Validity};
use crate::error::Error;
use crate::fsutil::{self, Mode, Overwrite};
use crate::name::WorkloadName;
use crate::pem::Identity;
use crate::serial::Serial;
use crate::spiffe::{IdentityKind, SpiffeId};

/// What kind of certificate to issue.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssueKind {
    /// An agent (client) certificate: `spiffe://<td>/agent/<name>`, clientAuth.
    Agent,
    /// A gateway (server) certificate: `spiffe://<td>/gateway/<name>` plus DNS and IP SANs for
    /// clients that check host names, serverAuth.
    Gateway {
        /// DNS names the gateway is reached at.
        dns_names: Vec<String>,
        /// IP addresses the gateway is reached at.
        ip_addresses: Vec<IpAddr>,
    },
}

impl IssueKind {
    /// The identity kind this certificate carries.
    pub fn identity_kind(&self) -> IdentityKind {
        match self {
            Self::Agent => IdentityKind::Agent,
            Self::Gateway { .. } => IdentityKind::Gateway,
        }
    }
}

/// What `aimux certs issue` needs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct IssueParams {
    /// The agent or gateway name (`<name>.crt`, `spiffe://<td>/<kind>/<name>`).
    pub name: WorkloadName,
    /// Agent or gateway.
    pub kind: IssueKind,
    /// When the certificate is valid; must end before the CA expires.
    pub validity: Validity,
    /// Replace an existing certificate of that name.
    pub force: bool,
}

impl IssueParams {
    /// An agent certificate, not replacing one.
    pub fn agent(name: WorkloadName, validity: Validity) -> Self {
        Self {
            name,
            kind: IssueKind::Agent,
            validity,
            force: false,
        }
    }

    /// A gateway certificate, not replacing one.
    pub fn gateway(
        name: WorkloadName,
        dns_names: Vec<String>,
        ip_addresses: Vec<IpAddr>,
        validity: Validity,
    ) -> Self {
        Self {
            name,
            kind: IssueKind::Gateway {
                dns_names,
                ip_addresses,
            },
            validity,
            force: false,
        }
    }
}

/// A certificate just issued and written to the CA directory.
#[non_exhaustive]
pub struct IssuedCert {
    /// Its name.
    pub name: WorkloadName,
    /// Its SPIFFE ID.
    pub id: SpiffeId,
    /// Agent or gateway.
    pub kind: IdentityKind,
    /// Its serial number.
    pub serial: Serial,
    /// When it is valid.
    pub validity: Validity,
    /// Where the certificate was written.
    pub cert_path: PathBuf,
    /// Where the private key was written (mode 0600).
    pub key_path: PathBuf,
    /// The certificate.
    pub cert_der: CertificateDer<'static>,
    /// The certificate this one replaced (with `force`).
    pub replaced: Option<Replaced>,
    key_der: PrivatePkcs8KeyDer<'static>,
}

/// A certificate overwritten by `issue` with `force`. Unless it was revoked, it stays valid
/// until it expires; [`Authority::revoke_serial`] can still revoke it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Replaced {
    /// Its serial number.
    pub serial: Serial,
    /// When it expires.
    pub not_after: OffsetDateTime,
    /// Whether `crl.pem` already lists it.
    pub revoked: bool,
}

impl IssuedCert {
    /// The private key.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone_key())
    }

    /// The certificate and key as a TLS [`Identity`].
    pub fn identity(&self) -> Result<Identity, Error> {
        Identity::from_der(vec![self.cert_der.clone()], self.key_der())
    }
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("id", &self.id.to_string())
            .field("serial", &self.serial)
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// The certificate about to be replaced at `path`, if it is a readable one of this CA.
    fn previous(&self, path: &std::path::Path) -> Option<Replaced> {
        let leaf = self.read_leaf(path).ok()??;
        let revoked = self
            .read_crl()
            .is_ok_and(|crl| crl.is_revoked(&leaf.serial));
        Some(Replaced {
            serial: leaf.serial,
            not_after: leaf.not_after,
            revoked,
        })
    }

    /// Issues a certificate and key for `params.name` and writes them to `<name>.crt` and
    /// `<name>.key` (0600). Refuses to replace an existing name unless `params.force`.
    ///
    /// Holds the CA directory's lock throughout: two concurrent `--force` issues of one name
    /// could otherwise leave one run's key next to the other's certificate.
    pub fn issue(&self, params: &IssueParams) -> Result<IssuedCert, Error> {
        let _lock = fsutil::lock_dir(self.dir.path())?;
        let name = &params.name;
        let kind = params.kind.identity_kind();
        let (cert_path, key_path) = (self.dir.cert(name), self.dir.key(name));
        if !params.force {
            for path in [&cert_path, &key_path] {
                if fsutil::exists(path) {
                    return Err(Error::AlreadyIssued {
                        name: name.to_string(),
                        path: path.clone(),
                    });
                }
            }
        }
        if params.validity.not_after() > self.ca_not_after {
            return Err(Error::Validity(format!(
                "the certificate would end after the CA does ({}): ask for fewer days",
                self.ca_not_after.date()
            )));
        }
        let replaced = if params.force {
            self.previous(&cert_path)
        } else {
            None
        };

        let id = SpiffeId::workload(&self.trust_domain, kind, name);
        let serial = Serial::random(self.rng)?;
        let cert_params = leaf_params(params, &id, &serial)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = cert_params.signed_by(&key, &self.issuer)?;

        let overwrite = if params.force {
            Overwrite::Replace
        } else {
            Overwrite::Refuse
        };
        // The key first: a certificate on disk always has its key next to it.
        fsutil::write_atomic(
            &key_path,
            key.serialize_pem().as_bytes(),
            Mode::Private,
            overwrite,
        )?;
        fsutil::write_atomic(&cert_path, cert.pem().as_bytes(), Mode::Public, overwrite)?;
        Ok(IssuedCert {
            name: name.clone(),
            id,
            kind,
            serial,
            validity: params.validity,
            cert_path,
            key_path,
            cert_der: cert.der().clone(),
            replaced,
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }
}

/// The X.509 profile of agent and gateway certificates.
fn leaf_params(
    params: &IssueParams,
    id: &SpiffeId,
    serial: &Serial,
) -> Result<CertificateParams, Error> {
    let kind = params.kind.identity_kind();
    let mut cert = CertificateParams::default();
    cert.not_before = params.validity.not_before();
    cert.not_after = params.validity.not_after();
    cert.serial_number = Some(SerialNumber::from_slice(serial.as_bytes()));
    cert.distinguished_name = DistinguishedName::new();
    cert.distinguished_name
        .push(DnType::OrganizationName, "AIMux");
    cert.distinguished_name
        .push(DnType::OrganizationalUnitName, kind.as_str());
    cert.distinguished_name
        .push(DnType::CommonName, params.name.as_str());

    //= X509-SVID.md §2: "An X.509 SVID MUST contain exactly one URI SAN" and "MAY contain any
    //= number of other SAN field types, including DNS SANs."
    cert.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
    if let IssueKind::Gateway {
        dns_names,
        ip_addresses,
    } = &params.kind
    {
        for dns in dns_names {
            if rustls_pki_types::DnsName::try_from(dns.as_str()).is_err() {
                return Err(Error::InvalidDnsName(dns.clone()));
            }
            cert.subject_alt_names
                .push(SanType::DnsName(dns.as_str().try_into()?));
        }
        cert.subject_alt_names
            .extend(ip_addresses.iter().copied().map(SanType::IpAddress));
    }

    //= X509-SVID.md §4.1: leaf certificates "MUST set the cA field to false" (the extension is
    //= written, with cA absent = FALSE).
    cert.is_ca = IsCa::ExplicitNoCa;
    //= X509-SVID.md §4.3: "Leaf SVIDs MUST set digitalSignature. ... MUST NOT set keyCertSign
    //= or cRLSign." ECDSA keys need nothing else for TLS 1.3.
    cert.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // X509-SVID §4.4 asks for both serverAuth and clientAuth when the EKU is present; AIMux
    // deliberately issues one role per certificate so that an agent's key can never serve as a
    // gateway (rejected by the chain check, before any SPIFFE ID check) and vice versa.
    cert.extended_key_usages = vec![match kind {
        IdentityKind::Agent => ExtendedKeyUsagePurpose::ClientAuth,
        IdentityKind::Gateway => ExtendedKeyUsagePurpose::ServerAuth,
    }];
    //= RFC 5280 §4.2.1.1: "The keyIdentifier field of the authorityKeyIdentifier extension MUST
    //= be included in all certificates generated by conforming CAs".
    cert.use_authority_key_identifier_extension = true;
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::FromDer;

    use super::*;
    use crate::authority::InitParams;
    use crate::spiffe::TrustDomain;

    fn setup() -> (tempfile::TempDir, Authority) {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let params = InitParams::new(TrustDomain::new("example.org").unwrap(), now).unwrap();
        let ca = Authority::init(tmp.path(), &params, now).unwrap();
        (tmp, ca)
    }

    fn days(n: u32) -> Validity {
        Validity::days_from(OffsetDateTime::now_utc(), n).unwrap()
    }

    #[test]
    fn concurrent_forced_issues_leave_a_matching_key_and_certificate() {
        let (tmp, _ca) = setup();
        let name = WorkloadName::new("alice").unwrap();
        std::thread::scope(|scope| {
            for _ in 0..8 {
                let (dir, name) = (tmp.path(), name.clone());
                scope.spawn(move || {
                    let ca = Authority::open(dir).unwrap();
                    let mut params = IssueParams::agent(name, days(30));
                    params.force = true;
                    ca.issue(&params).unwrap();
                });
            }
        });
        // `Identity::load` checks that the key belongs to the certificate.
        let dir = tmp.path();
        crate::pem::Identity::load(&dir.join("alice.crt"), &dir.join("alice.key")).unwrap();
    }

    #[test]
    fn agent_certificate_profile() {
        let (_tmp, ca) = setup();
        let name = WorkloadName::new("alice").unwrap();
        let issued = ca.issue(&IssueParams::agent(name, days(30))).unwrap();
        assert_eq!(issued.id.to_string(), "spiffe://example.org/agent/alice");
        let (_, cert) = X509Certificate::from_der(&issued.cert_der).unwrap();
        assert!(!cert.is_ca());
        assert_eq!(Serial::from_be_bytes(cert.raw_serial()), issued.serial);
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_cert_sign() && !ku.crl_sign());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(cert.basic_constraints().unwrap().is_some());
        let identity = issued.identity().unwrap();
        assert_eq!(identity.spiffe_id(), &issued.id);
    }

    #[test]
    fn gateway_certificate_profile() {
        let (_tmp, ca) = setup();
        let name = WorkloadName::new("edge").unwrap();
        let params = IssueParams::gateway(
            name,
            vec!["gw.example.org".to_owned()],
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            days(30),
        );
        let issued = ca.issue(&params).unwrap();
        let (_, cert) = X509Certificate::from_der(&issued.cert_der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let sans = &cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names;
        assert!(sans.contains(&GeneralName::URI("spiffe://example.org/gateway/edge")));
        assert!(sans.contains(&GeneralName::DNSName("gw.example.org")));
        assert!(sans.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])));
    }

    #[test]
    fn refuses_overwrite_bad_dns_and_outliving_the_ca() {
        let (_tmp, ca) = setup();
        let name = WorkloadName::new("bob").unwrap();
        let first = ca
            .issue(&IssueParams::agent(name.clone(), days(1)))
            .unwrap();
        let err = ca
            .issue(&IssueParams::agent(name.clone(), days(1)))
            .unwrap_err();
        assert!(matches!(err, Error::AlreadyIssued { .. }), "{err}");
        let mut params = IssueParams::agent(name, days(1));
        params.force = true;
        let second = ca.issue(&params).unwrap();
        assert_eq!(
            second.replaced.as_ref().map(|r| &r.serial),
            Some(&first.serial)
        );

        let gw = IssueParams::gateway(
            WorkloadName::new("gw").unwrap(),
            vec!["not a host".to_owned()],
            vec![],
            days(1),
        );
        assert!(matches!(ca.issue(&gw), Err(Error::InvalidDnsName(_))));

        let too_long = IssueParams::agent(WorkloadName::new("old").unwrap(), days(20 * 365));
        assert!(matches!(ca.issue(&too_long), Err(Error::Validity(_))));
    }
}
