//! The sidecar side: a rustls `ClientConfig` that presents the agent's certificate and accepts
//! only the expected gateway.

use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

use super::webpki_error::to_rustls;
use super::{ALPN_AIMUX_V1, MeshTrust, PROTOCOL_VERSIONS, crypto_provider, identity_rejected};
use crate::error::Error;
use crate::pem::Identity;
use crate::spiffe::{IdentityKind, SpiffeId};
use crate::svid::{self, IdentityError};

/// id-kp-serverAuth (1.3.6.1.5.5.7.3.1), DER value bytes.
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

/// Verifies the gateway's certificate for a sidecar.
///
/// The server is accepted when:
/// 1. its chain verifies against the mesh CA (webpki: signatures, validity period) and the
///    certificate *has* the serverAuth extended key usage (required, not merely "if present":
///    mesh certificates always carry one, and an agent certificate must never pass as a
///    gateway);
/// 2. if CRLs were given, they do not list it (end entity only, unknown status refused, as on
///    the gateway);
/// 3. its SPIFFE ID equals the expected gateway ID exactly.
///
/// The server name the connection was opened with (and the DNS/IP SANs of the certificate)
/// are deliberately **not** checked, as in Istio's ztunnel: the SPIFFE ID is the gateway's
/// identity, signed by the mesh CA; pinning it is stronger than a host-name match (any
/// certificate of the mesh could carry a given DNS name, only the gateway's carries its ID),
/// and it keeps working when the gateway is reached through an IP address, NAT or a name that
/// is not in its certificate. DNS/IP SANs exist for non-mesh clients (curl, openssl).
#[derive(Debug)]
pub struct MeshServerVerifier {
    trust: MeshTrust,
    expected: SpiffeId,
    provider: Arc<CryptoProvider>,
    crls: RwLock<Arc<Vec<CertRevocationList<'static>>>>,
}

impl MeshServerVerifier {
    /// A verifier accepting only the gateway `expected` (which must be in `trust`'s domain),
    /// checking revocation against `crls` if any are given.
    pub fn new(
        trust: MeshTrust,
        expected: SpiffeId,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<Self, Error> {
        if expected.trust_domain() != trust.trust_domain() {
            return Err(Error::OutsideTrustDomain {
                id: expected.to_string(),
                trust_domain: trust.trust_domain().to_string(),
            });
        }
        let crls = parse_crls(&trust, &crls)?;
        Ok(Self {
            trust,
            expected,
            provider: crypto_provider(),
            crls: RwLock::new(Arc::new(crls)),
        })
    }

    /// Replaces the CRLs (an empty list turns revocation checking off). Each must be signed by
    /// a mesh CA; on error the previous CRLs stay in force.
    pub fn update_crls(
        &self,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<(), Error> {
        let parsed = parse_crls(&self.trust, &crls)?;
        *self.crls.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(parsed);
        Ok(())
    }

    /// The gateway identity this verifier accepts.
    pub fn expected_identity(&self) -> &SpiffeId {
        &self.expected
    }

    fn current_crls(&self) -> Arc<Vec<CertRevocationList<'static>>> {
        Arc::clone(&self.crls.read().unwrap_or_else(PoisonError::into_inner))
    }
}

fn parse_crls(
    trust: &MeshTrust,
    crls: &[CertificateRevocationListDer<'static>],
) -> Result<Vec<CertRevocationList<'static>>, Error> {
    trust.check_crls(crls)?;
    crls.iter()
        .map(|der| {
            OwnedCertRevocationList::from_der(der)
                .map(CertRevocationList::from)
                .map_err(|e| Error::CrlRejected {
                    reason: format!("webpki cannot use it: {e}"),
                })
        })
        .collect()
}

impl ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = EndEntityCert::try_from(end_entity).map_err(to_rustls)?;
        let crls = self.current_crls();
        let crl_refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
        let revocation = RevocationOptionsBuilder::new(&crl_refs)
            .ok()
            .map(|builder| {
                builder
                    .with_depth(RevocationCheckDepth::EndEntity)
                    .with_status_policy(UnknownStatusPolicy::Deny)
                    .with_expiration_policy(ExpirationPolicy::Ignore)
                    .build()
            });
        cert.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &self.trust.roots().roots,
            intermediates,
            now,
            KeyUsage::required(EKU_SERVER_AUTH),
            revocation,
            None,
        )
        .map_err(to_rustls)?;

        let presented = svid::leaf_id_of_der(end_entity).map_err(identity_rejected)?;
        if presented != self.expected {
            return Err(identity_rejected(IdentityError::UnexpectedPeer {
                presented,
                expected: self.expected.clone(),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The sidecar's `ClientConfig`: TLS 1.3 only, *ring*, ALPN [`ALPN_AIMUX_V1`], presenting
/// `identity` (an agent certificate) and accepting only the server `verifier` expects.
///
/// Any server name may be passed to `connect` (quinn needs one); it is sent as SNI but not
/// checked against the certificate (see [`MeshServerVerifier`]).
///
/// Session resumption is off: a resumed session would skip the gateway certificate check, and
/// with it the CRL given to the verifier.
pub fn client_config(
    identity: &Identity,
    verifier: Arc<MeshServerVerifier>,
) -> Result<ClientConfig, Error> {
    let id = identity.spiffe_id();
    if id.kind() != Some(IdentityKind::Agent) {
        return Err(Error::WrongKind {
            id: id.to_string(),
            expected: IdentityKind::Agent,
            hint: "the sidecar needs an agent certificate (`aimux certs issue --name NAME`)",
        });
    }
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&verifier.provider))
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(identity.cert_chain().to_vec(), identity.clone_key())?;
    config.alpn_protocols = vec![ALPN_AIMUX_V1.to_vec()];
    config.resumption = Resumption::disabled();
    Ok(config)
}
