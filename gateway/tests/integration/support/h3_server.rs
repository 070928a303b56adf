//! A real HTTP/3 upstream (h3 + h3-quinn on a quinn server endpoint at 127.0.0.1) and the
//! test CA that issues its certificate, both made at test time (rcgen; nothing is
//! committed). Paths, by last segment:
//!
//! - `…/stream`: sends the head, then one DATA frame per chunk the test releases through
//!   [`H3Upstream::chunks`], then a trailer, when the test sends `None`;
//! - `…/duplex`: sends the head at once, then echoes each DATA frame as it arrives;
//! - anything else: reads the whole body, then answers with it (`x-body-len` says how
//!   long it was). A body that fails is reported on [`H3Upstream::failures`].
//!
//! Every answer reports what the server saw in `x-seen-*` headers (method, authority,
//! path, `Host`, `x-aimux-identity`, `x-custom`) and carries `x-multi: a` and `x-multi: b`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes};
use h3::server::RequestStream;
use http::{HeaderMap, Request, Response};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;

use super::STEP;

/// A CA for upstream certificates (not the mesh CA: upstreams are not mesh members).
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate (for `localhost` and 127.0.0.1) and its key.
#[derive(Clone)]
pub struct ServerCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn server_cert(&self) -> ServerCert {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ServerCert {
            chain: vec![cert.der().clone()],
            key_der: key.serialize_der(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// The test's handle on the running server.
pub struct H3Upstream {
    pub addr: SocketAddr,
    /// QUIC connections accepted (handshake completed).
    pub connections: Arc<AtomicUsize>,
    /// Each `Some` becomes one DATA frame of the pending `…/stream` response; `None` ends it.
    pub chunks: mpsc::Sender<Option<Bytes>>,
    /// The path of each request, as its head arrives.
    pub requests: mpsc::Receiver<String>,
    /// Why request bodies failed (e.g. `Remote reset: H3_REQUEST_CANCELLED`).
    pub failures: mpsc::Receiver<String>,
    /// How each connection ended, as quinn reports it on the server.
    pub closes: mpsc::Receiver<String>,
    endpoint: quinn::Endpoint,
    tasks: JoinSet<()>,
}

struct Shared {
    chunks: Mutex<mpsc::Receiver<Option<Bytes>>>,
    requests: mpsc::Sender<String>,
    failures: mpsc::Sender<String>,
    closes: mpsc::Sender<String>,
}

/// Starts a server with `cert` on `addr` (port 0 for any), retrying a busy port for a
/// while (a restarted server takes its predecessor's port).
pub async fn start(cert: &ServerCert, addr: SocketAddr) -> H3Upstream {
    start_limited(cert, addr, 100).await
}

/// [`start`], allowing each client at most `max_streams` requests at once (QUIC
/// `initial_max_streams_bidi`, RFC 9000 §4.6).
pub async fn start_limited(cert: &ServerCert, addr: SocketAddr, max_streams: u32) -> H3Upstream {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(cert.chain.clone(), key)
        .unwrap();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(max_streams.into());
    config.transport_config(Arc::new(transport));
    let deadline = tokio::time::Instant::now() + STEP;
    let endpoint = loop {
        match quinn::Endpoint::server(config.clone(), addr) {
            Ok(e) => break e,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("binding {addr} again: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot bind the HTTP/3 test server on {addr}: {e}"),
        }
    };
    let (chunks, chunks_rx) = mpsc::channel(16);
    let (requests_tx, requests) = mpsc::channel(1024);
    let (failures_tx, failures) = mpsc::channel(64);
    let (closes_tx, closes) = mpsc::channel(64);
    let shared = Arc::new(Shared {
        chunks: Mutex::new(chunks_rx),
        requests: requests_tx,
        failures: failures_tx,
        closes: closes_tx,
    });
    let connections = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    tasks.spawn(accept(endpoint.clone(), Arc::clone(&connections), shared));
    H3Upstream {
        addr: endpoint.local_addr().unwrap(),
        connections,
        chunks,
        requests,
        failures,
        closes,
        endpoint,
        tasks,
    }
}

impl H3Upstream {
    /// Closes every connection (CONNECTION_CLOSE, so clients learn at once) and frees
    /// the port.
    pub async fn stop(mut self) {
        self.endpoint.close(0u32.into(), b"restarting");
        let _ = tokio::time::timeout(STEP, self.endpoint.wait_idle()).await;
        self.tasks.shutdown().await;
    }
}

async fn accept(endpoint: quinn::Endpoint, count: Arc<AtomicUsize>, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    while let Some(incoming) = endpoint.accept().await {
        let count = Arc::clone(&count);
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            let Ok(quic) = incoming.await else { return };
            count.fetch_add(1, Ordering::SeqCst);
            serve(quic, shared).await;
        });
    }
    connections.shutdown().await;
}

async fn serve(quic: quinn::Connection, shared: Arc<Shared>) {
    let h3 = h3::server::builder()
        .build::<_, Bytes>(h3_quinn::Connection::new(quic.clone()))
        .await;
    let mut h3 = match h3 {
        Ok(h3) => h3,
        Err(e) => {
            let _ = shared.closes.send(format!("setup failed: {e}")).await;
            return;
        }
    };
    let mut requests = JoinSet::new();
    while let Ok(Some(resolver)) = h3.accept().await {
        let shared = Arc::clone(&shared);
        requests.spawn(async move {
            if let Ok((req, stream)) = resolver.resolve_request().await {
                let _ = shared.requests.try_send(req.uri().path().to_owned());
                let _ = respond(req, stream, &shared).await;
            }
        });
    }
    let reason = quic.closed().await;
    let _ = shared.closes.send(reason.to_string()).await;
    requests.shutdown().await;
}

type Stream = RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

async fn respond(
    req: Request<()>,
    mut stream: Stream,
    shared: &Shared,
) -> Result<(), h3::error::StreamError> {
    let mut head = Response::builder()
        .status(200)
        .header("x-seen-method", req.method().as_str())
        .header(
            "x-seen-authority",
            req.uri().authority().map_or("", |a| a.as_str()),
        )
        .header(
            "x-seen-path",
            req.uri().path_and_query().map_or("", |p| p.as_str()),
        )
        .header(
            "x-seen-host-header",
            if req.headers().contains_key("host") {
                "yes"
            } else {
                "no"
            },
        )
        .header("x-seen-identity", all(req.headers(), "x-aimux-identity"))
        .header("x-seen-custom", all(req.headers(), "x-custom"))
        .header("x-multi", "a")
        .header("x-multi", "b");
    match req.uri().path().rsplit('/').next().unwrap_or("") {
        "stream" => {
            stream
                .send_response(head.header("content-type", "text/plain").body(()).unwrap())
                .await?;
            let mut chunks = shared.chunks.lock().await;
            while let Ok(Some(Some(chunk))) = tokio::time::timeout(STEP, chunks.recv()).await {
                stream.send_data(chunk).await?;
            }
            let mut trailers = HeaderMap::new();
            trailers.insert("x-trailer", "done".parse().unwrap());
            stream.send_trailers(trailers).await?;
            stream.finish().await
        }
        "duplex" => {
            stream.send_response(head.body(()).unwrap()).await?;
            while let Some(mut data) = stream.recv_data().await? {
                let bytes = data.copy_to_bytes(data.remaining());
                stream.send_data(bytes).await?;
            }
            stream.finish().await
        }
        _ => {
            let mut body = Vec::new();
            loop {
                match stream.recv_data().await {
                    Ok(Some(mut data)) => {
                        body.extend_from_slice(&data.copy_to_bytes(data.remaining()))
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = shared.failures.send(e.to_string()).await;
                        return Err(e);
                    }
                }
            }
            head = head.header("x-body-len", body.len().to_string());
            stream.send_response(head.body(()).unwrap()).await?;
            for piece in Bytes::from(body).chunks(16 * 1024) {
                stream.send_data(Bytes::copy_from_slice(piece)).await?;
            }
            stream.finish().await
        }
    }
}

/// Every value of header `name`, comma-joined.
fn all(headers: &HeaderMap, name: &str) -> String {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("?"))
        .collect::<Vec<_>>()
        .join(",")
}
