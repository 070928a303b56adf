//! The gateway side: a rustls `ServerConfig` that requires an agent certificate from the mesh.

use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};

use super::{ALPN_AIMUX_V1, MeshTrust, PROTOCOL_VERSIONS, crypto_provider, identity_rejected};
use crate::error::Error;
use crate::pem::Identity;
use crate::spiffe::{IdentityKind, SpiffeId, TrustDomain};
use crate::svid;

/// Verifies client certificates for the gateway.
///
/// A client is accepted when:
/// 1. its chain verifies against the mesh CA (rustls's `WebPkiClientVerifier`: signatures,
///    validity period, clientAuth extended key usage);
/// 2. the CRL does not list it. Revocation is checked for the end entity only (the mesh CA
///    signs leaves directly, pathLen 0, and is itself the trust anchor); a certificate whose
///    status the CRLs cannot tell (no CRL from its issuer) is refused; a CRL past its
///    nextUpdate is still used (the CRL is a local file, reloaded with [`Self::update_crls`];
///    see [`crate::CRL_VALIDITY`]);
/// 3. its SPIFFE ID is in the mesh trust domain and of an allowed kind (`agent/...` unless
///    [`Self::with_allowed_kinds`] says otherwise).
///
/// The CRLs can be replaced at runtime ([`Self::update_crls`]) without rebuilding the
/// `ServerConfig` or the QUIC endpoint: handshakes that start afterwards use the new list.
#[derive(Debug)]
pub struct MeshClientVerifier {
    trust: MeshTrust,
    allowed: Vec<IdentityKind>,
    root_hints: Vec<DistinguishedName>,
    provider: Arc<CryptoProvider>,
    inner: RwLock<Arc<dyn ClientCertVerifier>>,
}

impl MeshClientVerifier {
    /// A verifier accepting agents of `trust`'s domain, checking revocation against `crls`
    /// (at least one: the gateway must be able to refuse revoked agents).
    pub fn new(
        trust: MeshTrust,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<Self, Error> {
        let provider = crypto_provider();
        let inner = build_inner(&trust, crls, &provider)?;
        Ok(Self {
            root_hints: trust.roots().subjects(),
            trust,
            allowed: vec![IdentityKind::Agent],
            provider,
            inner: RwLock::new(inner),
        })
    }

    /// Accepts these identity kinds instead of agents only (e.g. gateways too, for a future
    /// gateway-to-gateway link).
    pub fn with_allowed_kinds(mut self, kinds: &[IdentityKind]) -> Self {
        self.allowed = kinds.to_vec();
        self
    }

    /// Replaces the CRLs (e.g. after `crl.pem` changed). Each must be signed by a mesh CA; on
    /// error the previous CRLs stay in force.
    pub fn update_crls(
        &self,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<(), Error> {
        let inner = build_inner(&self.trust, crls, &self.provider)?;
        *self.inner.write().unwrap_or_else(PoisonError::into_inner) = inner;
        Ok(())
    }

    /// The mesh trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        self.trust.trust_domain()
    }

    /// Verifies an already connected peer again, against the current CRLs, and returns its
    /// SPIFFE ID. After [`Self::update_crls`], the gateway calls this for each live connection
    /// (with `peer_certificates()`) and closes those that fail: a revoked agent is then cut
    /// off at once, not only refused on its next connection.
    pub fn recheck_peer(
        &self,
        peer_certs: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<SpiffeId, rustls::Error> {
        let (end_entity, intermediates) = peer_certs
            .split_first()
            .ok_or(rustls::Error::NoCertificatesPresented)?;
        self.verify_client_cert(end_entity, intermediates, now)?;
        svid::leaf_id_of_der(end_entity).map_err(identity_rejected)
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        // A poisoned lock still holds a complete verifier (the write is a single assignment).
        Arc::clone(&self.inner.read().unwrap_or_else(PoisonError::into_inner))
    }
}

fn build_inner(
    trust: &MeshTrust,
    crls: Vec<CertificateRevocationListDer<'static>>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    if crls.is_empty() {
        return Err(Error::NoCrl);
    }
    trust.check_crls(&crls)?;
    Ok(
        WebPkiClientVerifier::builder_with_provider(
            Arc::clone(trust.roots()),
            Arc::clone(provider),
        )
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .build()?,
    )
}

impl ClientCertVerifier for MeshClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.root_hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .current()
            .verify_client_cert(end_entity, intermediates, now)?;
        let id = svid::leaf_id_of_der(end_entity).map_err(identity_rejected)?;
        svid::check_membership(&id, self.trust.trust_domain(), &self.allowed)
            .map_err(identity_rejected)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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

/// The gateway's `ServerConfig`: TLS 1.3 only, *ring*, ALPN [`ALPN_AIMUX_V1`], presenting
/// `identity` (a gateway certificate) and requiring clients to pass `verifier`.
///
/// Session resumption is off (no session cache, no tickets): a resumed TLS session skips the
/// client certificate check, so a revoked agent could come back on an old ticket. Sidecars
/// keep one long-lived connection, so a full handshake per connection costs next to nothing.
///
/// Keep the `Arc<MeshClientVerifier>` to call [`MeshClientVerifier::update_crls`] later.
pub fn server_config(
    identity: &Identity,
    verifier: Arc<MeshClientVerifier>,
) -> Result<ServerConfig, Error> {
    let id = identity.spiffe_id();
    if id.kind() != Some(IdentityKind::Gateway) {
        return Err(Error::WrongKind {
            id: id.to_string(),
            expected: IdentityKind::Gateway,
            hint: "the gateway needs a certificate issued with `aimux certs issue --gateway`",
        });
    }
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&verifier.provider))
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.cert_chain().to_vec(), identity.clone_key())?;
    config.alpn_protocols = vec![ALPN_AIMUX_V1.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}
