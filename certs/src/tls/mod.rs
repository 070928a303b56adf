//! rustls configurations for the mesh: mutual TLS 1.3 between sidecars (clients, presenting
//! agent certificates) and the gateway (server, presenting a gateway certificate), both sides
//! authenticated by SPIFFE ID rather than host name.
//!
//! ```text
//! sidecar                                              gateway
//! client_config(agent identity,                        server_config(gateway identity,
//!   MeshServerVerifier: chain to mesh CA,                MeshClientVerifier: chain to mesh CA,
//!   serverAuth EKU, optional CRL,                        clientAuth EKU, CRL (swappable),
//!   SPIFFE ID == expected gateway)                       SPIFFE ID in trust domain, agent/...)
//! ```
//!
//! Both use the *ring* provider explicitly and TLS 1.3 only (QUIC requires it), offer the
//! [`ALPN_AIMUX_V1`] protocol and disable session resumption (a resumed session would skip the
//! certificate and CRL checks).
//!
//! ```
//! # fn main() -> Result<(), aimux_certs::Error> {
//! use std::sync::Arc;
//! use aimux_certs::tls::{self, MeshClientVerifier, MeshServerVerifier, MeshTrust};
//! use aimux_certs::{Authority, CaDir, Identity, SpiffeId, WorkloadName, load_crls};
//! # use aimux_certs::{InitParams, IssueParams, TrustDomain, Validity, time::OffsetDateTime};
//! # let tmp = tempfile::tempdir().unwrap();
//! # let now = OffsetDateTime::now_utc();
//! # let ca = Authority::init(tmp.path(), &InitParams::new(TrustDomain::new("example.org")?, now)?, now)?;
//! # let days = Validity::days_from(now, 30)?;
//! # ca.issue(&IssueParams::gateway(WorkloadName::new("edge")?, vec![], vec![], days))?;
//! # ca.issue(&IssueParams::agent(WorkloadName::new("alice")?, days))?;
//! let dir = CaDir::new(tmp.path()); // written by `aimux certs init` / `issue`
//! let trust = MeshTrust::load(&dir.ca_cert())?; // trust domain from the CA's URI SAN
//!
//! // Gateway: keep the verifier to swap CRLs when crl.pem changes.
//! let edge = WorkloadName::new("edge")?;
//! let verifier = Arc::new(MeshClientVerifier::new(trust.clone(), load_crls(&dir.crl())?)?);
//! let gateway = Identity::load(&dir.cert(&edge), &dir.key(&edge))?;
//! let server = tls::server_config(&gateway, Arc::clone(&verifier))?;
//! verifier.update_crls(load_crls(&dir.crl())?)?; // later, on change
//!
//! // Sidecar: present the agent's certificate, accept only spiffe://<td>/gateway/edge.
//! let alice = WorkloadName::new("alice")?;
//! let expected = SpiffeId::gateway(trust.trust_domain(), &edge);
//! let agent = Identity::load(&dir.cert(&alice), &dir.key(&alice))?;
//! let client = tls::client_config(&agent, Arc::new(MeshServerVerifier::new(trust, expected, vec![])?))?;
//! // Hand `server` / `client` to quinn (QuicServerConfig / QuicClientConfig::try_from), and
//! // read the caller with `aimux_certs::peer_identity(conn.peer_certificates())`.
//! # let _ = (server, client);
//! # Ok(())
//! # }
//! ```

mod client;
mod server;
mod trust;
mod webpki_error;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use self::client::{MeshServerVerifier, client_config};
pub use self::server::{MeshClientVerifier, server_config};
pub use self::trust::MeshTrust;

/// The ALPN protocol of the AIMux tunnel, version 1.
pub const ALPN_AIMUX_V1: &[u8] = b"aimux/1";

/// The TLS versions the mesh speaks: 1.3 only.
pub(crate) static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13];

/// The crypto provider every mesh configuration uses: *ring*, chosen explicitly rather than
/// through a process-wide default, so the choice does not depend on which crates are linked.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reports an identity problem through rustls: the handshake fails with a `certificate_unknown`
/// alert, and the local error carries the [`IdentityError`](crate::IdentityError) (downcast the
/// `OtherError`) with its operator-facing message.
pub(crate) fn identity_rejected(e: crate::svid::IdentityError) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(e),
    )))
}
