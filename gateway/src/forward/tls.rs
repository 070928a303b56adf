//! TLS to upstreams: the rustls client configuration of a service's `https://` and HTTP/3
//! upstreams, verifying against the service's CA certificates or the system's roots.

use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::client::ClientConfig;

use crate::config::UpstreamTls;
use crate::error::GatewayError;

/// ALPN protocol identifiers (RFC 7301; registry names from RFC 9113 §3.2, RFC 9114 §3.1).
#[allow(dead_code)] // until TLS-over-TCP upstreams offer them
pub(crate) const ALPN_H2: &[u8] = b"h2";
#[allow(dead_code)] // until TLS-over-TCP upstreams offer them
pub(crate) const ALPN_HTTP11: &[u8] = b"http/1.1";
pub(crate) const ALPN_H3: &[u8] = b"h3";

/// The system's trust store, read once: `rustls-native-certs` reads the platform's store
/// (`/etc/ssl/certs` on Debian, or `SSL_CERT_FILE`/`SSL_CERT_DIR`).
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "the system trust store has no usable CA certificate{}; install the \
                     ca-certificates package, or give the service its CA with tls.ca",
                    if errors.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", errors.join("; "))
                    }
                ));
            }
            Ok(Arc::new(store))
        })
        .clone()
}

/// The client configuration for one service's TLS upstreams, offering `alpn` in order of
/// preference. TLS 1.2 and 1.3 (upstreams are not ours to upgrade); session resumption on,
/// since upstream certificates are not subject to the mesh's revocation.
pub(crate) fn client_config(
    service: &str,
    tls: &UpstreamTls,
    alpn: &[&[u8]],
) -> Result<ClientConfig, GatewayError> {
    let error = |reason: String| GatewayError::UpstreamTls {
        service: service.to_owned(),
        reason,
    };
    let roots = if tls.roots.is_empty() {
        system_roots().map_err(error)?
    } else {
        let mut store = RootCertStore::empty();
        for (i, cert) in tls.roots.iter().enumerate() {
            store.add(cert.clone()).map_err(|e| {
                error(format!(
                    "CA certificate #{} is not a usable trust anchor: {e}",
                    i + 1
                ))
            })?;
        }
        Arc::new(store)
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error(format!("no TLS version available: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_ca_is_the_only_trust_anchor_and_alpn_is_offered_in_order() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let tls = UpstreamTls {
            roots: vec![ca.cert.der().clone()],
            server_name: None,
        };
        let config = client_config("s", &tls, &[ALPN_H2, ALPN_HTTP11]).unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn a_malformed_ca_is_refused_with_its_position() {
        let tls = UpstreamTls {
            roots: vec![rustls_pki_types::CertificateDer::from(vec![1, 2, 3])],
            server_name: None,
        };
        let e = client_config("s", &tls, &[ALPN_H3])
            .unwrap_err()
            .to_string();
        assert!(e.contains("CA certificate #1"), "{e}");
    }
}
