//! A wrapper around the mesh's gateway verifier that remembers why it refused a certificate.
//!
//! When the sidecar refuses the gateway's certificate, quinn reports only a QUIC
//! `TransportError` whose reason is rustls's `Debug`-style text. The supervisor wants the
//! structured cause (e.g. `IdentityError::UnexpectedPeer`) to tell the operator what to fix,
//! so the verifier records it. The checks themselves are entirely
//! `aimux_certs::tls::MeshServerVerifier`'s.

use std::sync::{Arc, Mutex, PoisonError};

use aimux_certs::pki_types::{CertificateDer, ServerName, UnixTime};
use aimux_certs::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use aimux_certs::rustls::{self, DigitallySignedStruct, SignatureScheme};
use aimux_certs::tls::MeshServerVerifier;

use super::classify::Rejection;

/// Delegates to [`MeshServerVerifier`] and keeps the last refusal.
#[derive(Debug)]
pub(crate) struct RecordingVerifier {
    inner: Arc<MeshServerVerifier>,
    last: Mutex<Option<Rejection>>,
}

impl RecordingVerifier {
    pub(crate) fn new(inner: Arc<MeshServerVerifier>) -> Self {
        RecordingVerifier {
            inner,
            last: Mutex::new(None),
        }
    }

    /// The refusal recorded since the last call, if any. The supervisor makes one attempt at
    /// a time, so the slot always belongs to the current attempt.
    pub(crate) fn take(&self) -> Option<Rejection> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        if let Err(e) = &verdict {
            *self.last.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(Rejection::from_tls(e));
        }
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}
