//! A real HTTPS upstream for the gateway's TLS tests: hyper behind tokio-rustls, speaking
//! HTTP/2 or HTTP/1.1 as ALPN chose, with a certificate from a test CA made here with rcgen
//! (no certificate is ever a file of the repository).
//!
//! Every answer echoes the request body and reports what the server saw: `x-seen-version`,
//! `x-seen-authority` (the URI's, i.e. `:authority` on HTTP/2), `x-seen-host` (the `Host`
//! header, or `-` without one) and `x-seen-alpn`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aimux_certs::rustls;
use aimux_certs::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use super::upstream::Body;

/// A CA for upstream certificates, unrelated to the mesh CA.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    /// The CA certificate, as a trust anchor.
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// The CA certificate in PEM, as a `tls.ca` file holds it.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses) and its key.
    pub fn leaf(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }
}

/// The test's handle on a running HTTPS upstream.
pub struct TlsUpstream {
    pub addr: SocketAddr,
    /// TCP connections accepted so far.
    pub connections: Arc<AtomicUsize>,
}

/// Serves HTTPS on 127.0.0.1 with a certificate from `ca` for `names`, choosing among
/// `alpn` in the server's order of preference (empty: no ALPN at all, as some servers do).
/// HTTP/2 is spoken when ALPN chose `h2`, else HTTP/1.1.
pub async fn start(ca: &TestCa, names: &[&str], alpn: &[&[u8]]) -> TlsUpstream {
    let (cert, key) = ca.leaf(names);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake (the client did not trust us) just ends here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let alpn = tls
                    .get_ref()
                    .1
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .unwrap_or_else(|| "-".to_owned());
                let h2 = alpn == "h2";
                let service = hyper::service::service_fn(move |req| handle(alpn.clone(), req));
                let io = TokioIo::new(tls);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    TlsUpstream { addr, connections }
}

async fn handle(alpn: String, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let seen = [
        ("x-seen-version", format!("{:?}", req.version())),
        (
            "x-seen-authority",
            req.uri()
                .authority()
                .map_or_else(|| "-".to_owned(), ToString::to_string),
        ),
        (
            "x-seen-host",
            req.headers()
                .get("host")
                .map_or_else(|| "-".to_owned(), |h| h.to_str().unwrap().to_owned()),
        ),
        ("x-seen-alpn", alpn),
    ];
    let body = req
        .into_body()
        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        .boxed();
    let mut response = Response::new(body);
    for (name, value) in seen {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    Ok(response)
}
