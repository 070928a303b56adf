//! Translating `webpki` errors into rustls errors (rustls's own translation is private), so
//! that the TLS alert sent to the peer is the precise one (`certificate_expired`,
//! `certificate_revoked`, `unknown_ca`...).

use std::sync::Arc;

use rustls::{CertRevocationListError, CertificateError, OtherError};

pub(crate) fn to_rustls(error: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    let cert = match error {
        E::BadDer | E::BadDerTime | E::TrailingData(_) => CertificateError::BadEncoding,
        E::CertNotValidYet { time, not_before } => {
            CertificateError::NotValidYetContext { time, not_before }
        }
        E::CertExpired { time, not_after } => CertificateError::ExpiredContext { time, not_after },
        E::InvalidCertValidity => CertificateError::Expired,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::CertRevoked => CertificateError::Revoked,
        E::UnknownRevocationStatus => CertificateError::UnknownRevocationStatus,
        E::CrlExpired { time, next_update } => {
            CertificateError::ExpiredRevocationListContext { time, next_update }
        }
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        #[allow(deprecated)]
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => {
            CertificateError::InvalidPurpose
        }
        E::IssuerNotCrlSigner => {
            return rustls::Error::InvalidCertRevocationList(
                CertRevocationListError::IssuerInvalidForCrl,
            );
        }
        E::InvalidCrlSignatureForPublicKey => {
            return rustls::Error::InvalidCertRevocationList(CertRevocationListError::BadSignature);
        }
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_errors_that_matter_to_operators() {
        assert_eq!(
            to_rustls(webpki::Error::CertRevoked),
            rustls::Error::InvalidCertificate(CertificateError::Revoked)
        );
        assert_eq!(
            to_rustls(webpki::Error::UnknownIssuer),
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
        assert!(matches!(
            to_rustls(webpki::Error::CaUsedAsEndEntity),
            rustls::Error::InvalidCertificate(CertificateError::Other(_))
        ));
    }
}
