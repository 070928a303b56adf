//! TLS to upstreams: the rustls client configuration of a service's `https://` and HTTP/3
//! upstreams, verifying against the service's CA certificates or the system's roots; the
//! connector of `https://` upstreams (hyper-rustls over the plain TCP connector, plus the
//! ALPN check `protocol = "http2"` needs); and TLS failures in operator terms.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use http::Uri;
use hyper_rustls::{
    DefaultServerNameResolver, FixedServerNameResolver, HttpsConnector, MaybeHttpsStream,
    ResolveServerName,
};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use rustls::client::ClientConfig;
use rustls::{AlertDescription, CertificateError, RootCertStore};
use rustls_pki_types::ServerName;

use crate::config::{UpstreamProtocol, UpstreamTls};
use crate::error::GatewayError;

type BoxError = Box<dyn StdError + Send + Sync>;

/// ALPN protocol identifiers (RFC 7301; registry names from RFC 9113 §3.2, RFC 9114 §3.1).
pub(crate) const ALPN_H2: &[u8] = b"h2";
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

/// The ALPN identifiers to offer for `protocol`, in order of preference (RFC 7301 §3.1).
/// `http2` offers only `h2` (RFC 9113 §3.2), `http1` only `http/1.1`, `auto` both, `h2`
/// first.
pub(crate) fn alpn_for(protocol: UpstreamProtocol) -> &'static [&'static [u8]] {
    match protocol {
        UpstreamProtocol::Http2 => &[ALPN_H2],
        UpstreamProtocol::Auto => &[ALPN_H2, ALPN_HTTP11],
        UpstreamProtocol::Http3 => &[ALPN_H3],
        UpstreamProtocol::Http1 | UpstreamProtocol::H2c => &[ALPN_HTTP11],
    }
}

/// The connector of one service's `https://` upstreams: TCP through `tcp` (which keeps its
/// connect timeout, `TCP_NODELAY` and keep-alive), then TLS by hyper-rustls with the
/// service's roots and server name. hyper-rustls marks a connection whose ALPN chose `h2`
/// as negotiated HTTP/2 (`Connected::negotiated_h2`), which makes hyper-util's client
/// speak HTTP/2 on it; with `require_h2`, a connection that did not choose `h2` is refused
/// instead of being spoken HTTP/2 to regardless.
#[derive(Clone)]
pub(crate) struct TlsConnector {
    https: HttpsConnector<HttpConnector>,
    require_h2: bool,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("require_h2", &self.require_h2)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// The connector for `service`'s `https://` upstreams spoken to with `protocol`.
    pub(crate) fn new(
        service: &str,
        tls: &UpstreamTls,
        protocol: UpstreamProtocol,
        mut tcp: HttpConnector,
    ) -> Result<Self, GatewayError> {
        let config = client_config(service, tls, alpn_for(protocol))?;
        let resolver: Arc<dyn ResolveServerName + Send + Sync> = match &tls.server_name {
            Some(name) => {
                let name =
                    ServerName::try_from(name.clone()).map_err(|e| GatewayError::UpstreamTls {
                        service: service.to_owned(),
                        reason: format!(
                            "tls.server_name `{name}` is neither a DNS name nor an IP \
                             address: {e}"
                        ),
                    })?;
                Arc::new(FixedServerNameResolver::new(name))
            }
            None => Arc::new(DefaultServerNameResolver::default()),
        };
        // The plain connector must accept `https` URIs: TLS is layered on its stream.
        tcp.enforce_http(false);
        Ok(Self {
            https: HttpsConnector::new(tcp, config, true, resolver),
            require_h2: protocol == UpstreamProtocol::Http2,
        })
    }
}

impl tower_service::Service<Uri> for TlsConnector {
    type Response = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.https.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let connecting = self.https.call(dst);
        let require_h2 = self.require_h2;
        Box::pin(async move {
            let stream = connecting.await?;
            if require_h2 && let MaybeHttpsStream::Https(tls) = &stream {
                let (_, session) = tls.inner().get_ref();
                let chosen = session.alpn_protocol();
                if chosen != Some(ALPN_H2) {
                    return Err(Box::new(NotH2 {
                        chosen: chosen.map(|p| String::from_utf8_lossy(p).into_owned()),
                    }) as BoxError);
                }
            }
            Ok(stream)
        })
    }
}

/// An upstream that completed the TLS handshake without choosing `h2` by ALPN, which
/// RFC 9113 §3.2 requires before HTTP/2 may be spoken over TLS.
#[derive(Debug)]
pub(crate) struct NotH2 {
    chosen: Option<String>,
}

impl fmt::Display for NotH2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.chosen {
            Some(p) => write!(f, "the TLS handshake chose ALPN `{p}`, not `h2`"),
            None => f.write_str("the TLS handshake chose no application protocol (ALPN)"),
        }
    }
}

impl StdError for NotH2 {}

/// A TLS failure (of the handshake, or the ALPN check) somewhere in `error`'s chain, said
/// for operators as the rest of "upstream URL of service `NAME` ...", with what to do; `None`
/// if the failure was not TLS's.
pub(crate) fn describe_failure(
    error: &(dyn StdError + 'static),
    protocol: UpstreamProtocol,
) -> Option<String> {
    if let Some(not_h2) = find::<NotH2>(error) {
        return Some(format!(
            "did not agree to HTTP/2 (ALPN h2, RFC 9113 §3.2): {not_h2}; use protocol = \
             \"auto\" (HTTP/2 when offered, else HTTP/1.1) or \"http1\" for this service"
        ));
    }
    let tls = find::<rustls::Error>(error)?;
    Some(match tls {
        rustls::Error::InvalidCertificate(cert) => describe_certificate(cert),
        rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol) => {
            let (wanted, instead) = match protocol {
                UpstreamProtocol::Http2 => (
                    "did not agree to HTTP/2 (ALPN h2, RFC 9113 §3.2)",
                    "protocol = \"auto\" (HTTP/2 when offered, else HTTP/1.1) or \"http1\"",
                ),
                UpstreamProtocol::Http1 => (
                    "did not agree to HTTP/1.1 (ALPN http/1.1)",
                    "protocol = \"auto\" or \"http2\"",
                ),
                _ => (
                    "did not agree to any protocol offered (ALPN h2, http/1.1)",
                    "the protocol it speaks",
                ),
            };
            format!(
                "{wanted}: it answered the TLS handshake with the no_application_protocol \
                 alert (RFC 7301 §3.2); use {instead} for this service"
            )
        }
        rustls::Error::InvalidMessage(_) => format!(
            "did not complete a TLS handshake: {tls}; if it serves plain HTTP, use an \
             http:// URL"
        ),
        other => format!("refused the TLS handshake: {other}"),
    })
}

fn describe_certificate(error: &CertificateError) -> String {
    match error {
        CertificateError::UnknownIssuer => "sent a certificate that is not trusted: \
             UnknownIssuer; give the service its CA with tls.ca (a PEM file), or add that CA \
             to the system trust store"
            .to_owned(),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!(
                "sent a certificate for another name: {error}; set tls.server_name to a name \
                 the certificate carries, or address the upstream by that name"
            )
        }
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => format!(
            "sent a certificate outside its validity period: {error}; renew it, or check \
             this host's clock"
        ),
        other => format!("sent a certificate that was refused: {other:?}"),
    }
}

/// The first `T` in `error`'s chain, looking inside `io::Error`s too: tokio-rustls and
/// hyper-rustls wrap TLS errors in `io::Error`s, whose `source()` skips the error they
/// wrap.
fn find<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            let inner: &(dyn StdError + 'static) = inner;
            if let Some(found) = find::<T>(inner) {
                return Some(found);
            }
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_errors_are_found_inside_io_errors_and_explained() {
        let rustls_error = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        // As tokio-rustls and hyper-rustls wrap it.
        let wrapped = io::Error::other(io::Error::new(io::ErrorKind::InvalidData, rustls_error));
        let said = describe_failure(&wrapped, UpstreamProtocol::Auto).unwrap();
        assert!(said.contains("not trusted: UnknownIssuer"), "{said}");
        assert!(said.contains("tls.ca"), "{said}");

        let alert = io::Error::other(rustls::Error::AlertReceived(
            AlertDescription::NoApplicationProtocol,
        ));
        let said = describe_failure(&alert, UpstreamProtocol::Http2).unwrap();
        assert!(
            said.starts_with("did not agree to HTTP/2 (ALPN h2"),
            "{said}"
        );

        let not_h2 = NotH2 {
            chosen: Some("http/1.1".into()),
        };
        let said = describe_failure(&not_h2, UpstreamProtocol::Http2).unwrap();
        assert!(said.contains("chose ALPN `http/1.1`"), "{said}");

        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(describe_failure(&refused, UpstreamProtocol::Http2), None);
    }

    #[test]
    fn each_protocol_offers_its_alpn() {
        assert_eq!(alpn_for(UpstreamProtocol::Http2), [b"h2"]);
        assert_eq!(alpn_for(UpstreamProtocol::Http1), [b"http/1.1"]);
        assert_eq!(alpn_for(UpstreamProtocol::Auto), [&b"h2"[..], b"http/1.1"]);
    }

    #[test]
    fn a_bad_server_name_is_a_configuration_error() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let tls = UpstreamTls {
            roots: vec![ca.cert.der().clone()],
            server_name: Some("not a name!".into()),
        };
        let e = TlsConnector::new("s", &tls, UpstreamProtocol::Http2, HttpConnector::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls.server_name `not a name!`"), "{e}");
    }

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
