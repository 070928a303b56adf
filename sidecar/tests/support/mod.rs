//! Test support: a throwaway mesh CA, a small test gateway on real QUIC with the mesh's TLS
//! configuration, and HTTP clients (hyper, and raw TCP for pipelining).
//!
//! The test gateway does what a gateway does on the wire (SPEC.md §2, §12): it accepts
//! mutual-TLS QUIC connections from agents, reads one request envelope per stream, and
//! answers with a response envelope and a payload, as scripted by each test's handler.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod http_client;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aimux_certs::time::OffsetDateTime;
use aimux_certs::tls::{MeshClientVerifier, MeshTrust};
use aimux_certs::{
    Authority, Identity, InitParams, IssueParams, IssuedCert, SpiffeId, TrustDomain, Validity,
    WorkloadName, load_crls, peer_identity,
};
use aimux_sidecar::{GatewayTarget, ListenerConfig, SidecarConfig, TunnelSettings};
use aimux_wire::{
    HttpResponseHead, Limits, RequestEnvelope, ResponseEnvelope, codes, envelope_len,
};
use bytes::{Bytes, BytesMut};
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub const DOMAIN: &str = "example.org";

/// Logs go to the test output with `RUST_LOG=aimux_sidecar=debug cargo test`.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A CA directory with a gateway `edge`, a second gateway `impostor` and an agent `alice`.
pub struct Mesh {
    dir: tempfile::TempDir,
    ca: Authority,
    pub gateway: IssuedCert,
    pub impostor: IssuedCert,
    pub alice: IssuedCert,
}

fn name(s: &str) -> WorkloadName {
    WorkloadName::new(s).unwrap()
}

impl Mesh {
    pub fn new() -> Mesh {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let params = InitParams::new(TrustDomain::new(DOMAIN).unwrap(), now).unwrap();
        let ca = Authority::init(dir.path(), &params, now).unwrap();
        let days = Validity::days_from(now, 30).unwrap();
        let gateway = ca
            .issue(&IssueParams::gateway(name("edge"), vec![], vec![], days))
            .unwrap();
        let impostor = ca
            .issue(&IssueParams::gateway(
                name("impostor"),
                vec![],
                vec![],
                days,
            ))
            .unwrap();
        let alice = ca.issue(&IssueParams::agent(name("alice"), days)).unwrap();
        Mesh {
            dir,
            ca,
            gateway,
            impostor,
            alice,
        }
    }

    pub fn trust(&self) -> MeshTrust {
        MeshTrust::load(&self.dir.path().join("ca.crt")).unwrap()
    }

    pub fn alice_id(&self) -> SpiffeId {
        self.alice.id.clone()
    }

    pub fn revoke_alice(&self) {
        self.ca
            .revoke(&name("alice"), OffsetDateTime::now_utc())
            .unwrap();
    }

    /// The gateway's QUIC server configuration, with the current CRL; `who` picks the
    /// certificate the gateway presents.
    pub fn server_config(&self, who: &IssuedCert) -> quinn::ServerConfig {
        self.server_config_with_streams(who, 1024)
    }

    /// Like [`Mesh::server_config`], allowing at most `streams` concurrent request streams
    /// per connection (RFC 9000 §4.6).
    pub fn server_config_with_streams(
        &self,
        who: &IssuedCert,
        streams: u32,
    ) -> quinn::ServerConfig {
        let crls = load_crls(&self.dir.path().join("crl.pem")).unwrap();
        let verifier = Arc::new(MeshClientVerifier::new(self.trust(), crls).unwrap());
        let identity = Identity::load(&who.cert_path, &who.key_path).unwrap();
        let tls = aimux_certs::tls::server_config(&identity, verifier).unwrap();
        let quic = QuicServerConfig::try_from(Arc::new(tls)).unwrap();
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
        let mut transport = quinn::TransportConfig::default();
        transport.max_concurrent_bidi_streams(VarInt::from_u32(streams));
        transport.max_concurrent_uni_streams(VarInt::from_u32(0));
        config.transport_config(Arc::new(transport));
        config
    }

    /// A sidecar configuration for alice: listeners for `echo` and `tools` and a proxy
    /// listener, all on OS-chosen loopback ports, with short waits so tests stay fast.
    pub fn sidecar_config(&self, gateway: SocketAddr) -> SidecarConfig {
        let mut tunnel = TunnelSettings::default();
        tunnel.connect_wait = Duration::from_secs(2);
        tunnel.handshake_timeout = Duration::from_secs(1);
        tunnel.revoked_backoff = Duration::from_secs(20);
        tunnel.shutdown_grace = Duration::from_secs(2);
        let any = |service: &str| ListenerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            service: service.to_owned(),
        };
        SidecarConfig {
            identity: self.alice.identity().unwrap(),
            trust: self.trust(),
            gateway: GatewayTarget {
                addr: gateway,
                server_name: "gateway.test".into(),
                identity: self.gateway.id.clone(),
            },
            listeners: vec![any("echo"), any("tools")],
            proxy: Some("127.0.0.1:0".parse().unwrap()),
            tunnel,
        }
    }
}

/// One request stream as the test gateway sees it.
pub struct GatewayStream {
    pub envelope: RequestEnvelope,
    /// The authenticated peer (from the client certificate).
    pub peer: SpiffeId,
    /// Payload bytes read along with the envelope.
    pub rest: Bytes,
    pub send: SendStream,
    pub recv: RecvStream,
}

impl GatewayStream {
    /// Reads the rest of the request body (bounded by the test's own sizes).
    pub async fn read_body(&mut self) -> Vec<u8> {
        let mut body = self.rest.to_vec();
        self.rest = Bytes::new();
        while let Some(chunk) = self.recv.read_chunk(usize::MAX, true).await.unwrap() {
            body.extend_from_slice(&chunk.bytes);
        }
        body
    }

    pub async fn respond(&mut self, envelope: &ResponseEnvelope) {
        let bytes = envelope.to_bytes(&Limits::default()).unwrap();
        self.send.write_chunk(bytes).await.unwrap();
    }

    pub async fn write(&mut self, bytes: impl Into<Bytes>) {
        self.send.write_chunk(bytes.into()).await.unwrap();
    }

    pub fn finish(&mut self) {
        self.send.finish().unwrap();
    }
}

pub type Handler =
    Arc<dyn Fn(GatewayStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Wraps an async closure as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(GatewayStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |stream| Box::pin(f(stream)))
}

/// What the test gateway observed.
#[derive(Debug, Clone)]
pub struct Seen {
    pub envelope: RequestEnvelope,
    pub peer: SpiffeId,
}

pub struct TestGateway {
    pub addr: SocketAddr,
    endpoint: Endpoint,
    accept: JoinHandle<()>,
    conns: Arc<Mutex<Vec<Connection>>>,
    /// Each connection's close reason, as the gateway saw it.
    pub closed: mpsc::UnboundedReceiver<quinn::ConnectionError>,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

impl TestGateway {
    /// Starts a test gateway on `addr` (port 0 for any), presenting `who`'s certificate.
    pub async fn start(mesh: &Mesh, addr: SocketAddr, handler: Handler) -> TestGateway {
        Self::start_as(mesh, &mesh.gateway, addr, handler).await
    }

    pub async fn start_as(
        mesh: &Mesh,
        who: &IssuedCert,
        addr: SocketAddr,
        handler: Handler,
    ) -> TestGateway {
        Self::start_with_config(mesh.server_config(who), addr, handler).await
    }

    pub async fn start_with_config(
        config: quinn::ServerConfig,
        addr: SocketAddr,
        handler: Handler,
    ) -> TestGateway {
        // Rebinding the port of a gateway that just stopped can race the release of its
        // socket by quinn's driver task: retry briefly.
        let mut tries = 0;
        let endpoint = loop {
            match Endpoint::server(config.clone(), addr) {
                Ok(endpoint) => break endpoint,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot bind the test gateway on {addr}: {e}"),
            }
        };
        let addr = endpoint.local_addr().unwrap();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let accept = tokio::spawn(accept_loop(
            endpoint.clone(),
            handler,
            Arc::clone(&conns),
            seen_tx,
            closed_tx,
        ));
        TestGateway {
            addr,
            endpoint,
            accept,
            conns,
            closed,
            seen,
        }
    }

    /// Closes every live connection with an application code (SPEC.md §12).
    pub fn close_all(&self, code: u32, reason: &[u8]) {
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.close(VarInt::from_u32(code), reason);
        }
    }

    /// Number of connections accepted so far that are still open.
    pub fn live_connections(&self) -> usize {
        self.conns
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.close_reason().is_none())
            .count()
    }

    /// Stops the gateway (closing connections with SHUTDOWN) and releases its port.
    pub async fn stop(self) {
        self.endpoint
            .close(VarInt::from_u32(codes::CLOSE_SHUTDOWN), b"gateway stopping");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        self.accept.abort();
        let _ = self.accept.await;
        self.conns.lock().unwrap().clear();
    }

    /// The next envelope the gateway saw (bounded wait).
    pub async fn next_seen(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("the gateway saw no request in time")
            .expect("gateway gone")
    }
}

async fn accept_loop(
    endpoint: Endpoint,
    handler: Handler,
    conns: Arc<Mutex<Vec<Connection>>>,
    seen: mpsc::UnboundedSender<Seen>,
    closed: mpsc::UnboundedSender<quinn::ConnectionError>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(incoming) = endpoint.accept().await {
        let handler = Arc::clone(&handler);
        let conns = Arc::clone(&conns);
        let seen = seen.clone();
        let closed = closed.clone();
        tasks.spawn(async move {
            // Refused handshakes (revoked agents) end here.
            let Ok(conn) = incoming.await else { return };
            let certs = conn
                .peer_identity()
                .and_then(|any| {
                    any.downcast::<Vec<aimux_certs::pki_types::CertificateDer<'static>>>()
                        .ok()
                })
                .expect("a verified client certificate");
            let peer = peer_identity(&certs).unwrap();
            conns.lock().unwrap().push(conn.clone());
            let mut streams = tokio::task::JoinSet::new();
            loop {
                match conn.accept_bi().await {
                    Ok((send, recv)) => {
                        let handler = Arc::clone(&handler);
                        let seen = seen.clone();
                        let peer = peer.clone();
                        streams.spawn(serve_stream(send, recv, peer, handler, seen));
                    }
                    Err(e) => {
                        let _ = closed.send(e);
                        break;
                    }
                }
            }
            streams.abort_all();
        });
    }
    tasks.abort_all();
}

async fn serve_stream(
    send: SendStream,
    mut recv: RecvStream,
    peer: SpiffeId,
    handler: Handler,
    seen: mpsc::UnboundedSender<Seen>,
) {
    let limits = Limits::default();
    let mut buf = BytesMut::new();
    let envelope = loop {
        match envelope_len(&buf, &limits) {
            Ok(total) if buf.len() >= total => {
                break RequestEnvelope::decode(&mut buf, &limits)
                    .expect("a valid request envelope");
            }
            Ok(_) => {}
            Err(e) => assert!(e.is_incomplete(), "bad envelope from the sidecar: {e}"),
        }
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            _ => return,
        }
    };
    let _ = seen.send(Seen {
        envelope: envelope.clone(),
        peer: peer.clone(),
    });
    handler(GatewayStream {
        envelope,
        peer,
        rest: buf.freeze(),
        send,
        recv,
    })
    .await;
}

/// Echoes the request body back, streaming, under a `forwarded` 200 whose headers report
/// what the envelope said. A request `content-length` is echoed too.
pub fn echo() -> Handler {
    handler(|mut s: GatewayStream| async move {
        let env = &s.envelope;
        let http = env.http.clone().expect("an HTTP request");
        let intent = env.intent.clone().expect("an intent");
        let names: Vec<&str> = http.headers.iter().map(|h| h.name.as_ref()).collect();
        let mut head = HttpResponseHead::new(200)
            .with_header("x-echo-destination", env.destination.clone())
            .with_header("x-echo-identity", env.identity.clone().unwrap_or_default())
            .with_header("x-echo-peer", s.peer.to_string())
            .with_header(
                "x-echo-intent",
                format!(
                    "{} {} {}",
                    intent.protocol.as_str(),
                    intent.operation,
                    intent.target
                ),
            )
            .with_header("x-echo-method", http.method.to_string())
            .with_header("x-echo-authority", http.authority.clone())
            .with_header("x-echo-path", http.path.clone())
            .with_header("x-echo-headers", names.join(","))
            .with_header(
                "x-echo-trace",
                env.trace
                    .as_ref()
                    .map(|t| t.traceparent())
                    .unwrap_or_default(),
            );
        if let Some(len) = http.header("content-length") {
            head = head.with_header("content-length", len.clone());
        }
        s.respond(&ResponseEnvelope::forwarded(head)).await;
        let rest = std::mem::take(&mut s.rest);
        if !rest.is_empty() {
            s.write(rest).await;
        }
        while let Some(chunk) = s.recv.read_chunk(usize::MAX, true).await.unwrap() {
            s.write(chunk.bytes).await;
        }
        s.finish();
    })
}

/// Answers every request with `outcome` and `reason`, without an HTTP head.
pub fn outcome(outcome: aimux_wire::Outcome, reason: &'static str) -> Handler {
    handler(move |mut s: GatewayStream| async move {
        s.respond(&ResponseEnvelope::new(outcome, reason)).await;
        s.finish();
    })
}

/// A running sidecar for alice, connected to a test gateway.
pub struct Harness {
    pub mesh: Mesh,
    pub gateway: TestGateway,
    pub stats: aimux_sidecar::StatsHandle,
    pub listeners: Vec<(SocketAddr, Option<String>)>,
    pub shutdown: tokio_util::sync::CancellationToken,
    pub run: JoinHandle<Result<(), aimux_sidecar::SidecarError>>,
}

impl Harness {
    /// Starts a test gateway with `handler` and a sidecar connected to it.
    pub async fn start(handler: Handler) -> Harness {
        Self::start_with(handler, |_| {}).await
    }

    /// Like [`Harness::start`], letting the test adjust the sidecar configuration.
    pub async fn start_with(handler: Handler, tweak: impl FnOnce(&mut SidecarConfig)) -> Harness {
        init_tracing();
        let mesh = Mesh::new();
        let gateway = TestGateway::start(&mesh, "127.0.0.1:0".parse().unwrap(), handler).await;
        let mut config = mesh.sidecar_config(gateway.addr);
        tweak(&mut config);
        let sidecar = aimux_sidecar::Sidecar::bind(config).await.unwrap();
        let stats = sidecar.stats_handle();
        let listeners = sidecar.listener_addrs();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let run = tokio::spawn(sidecar.run(shutdown.clone()));
        let harness = Harness {
            mesh,
            gateway,
            stats,
            listeners,
            shutdown,
            run,
        };
        harness
            .wait_for(aimux_sidecar::ConnectionState::Connected)
            .await;
        harness
    }

    /// The listener standing in for `service`.
    pub fn listener(&self, service: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(_, s)| s.as_deref() == Some(service))
            .map(|(a, _)| *a)
            .expect("no such listener")
    }

    /// The generic proxy listener.
    pub fn proxy(&self) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(_, s)| s.is_none())
            .map(|(a, _)| *a)
            .expect("no proxy listener")
    }

    /// Waits (bounded) until the connection state is `state`.
    pub async fn wait_for(
        &self,
        state: aimux_sidecar::ConnectionState,
    ) -> aimux_sidecar::SidecarStats {
        tokio::time::timeout(
            Duration::from_secs(15),
            self.stats.wait_for_state(|s| s == state),
        )
        .await
        .unwrap_or_else(|_| panic!("never reached {state}: {:?}", self.stats.snapshot()))
    }

    /// Waits until the gateway has seen a request for `path` (skipping others).
    pub async fn gateway_seen_path(&mut self, path: &str) {
        loop {
            let seen = self.gateway.next_seen().await;
            if seen.envelope.http.as_ref().is_some_and(|h| h.path == path) {
                return;
            }
        }
    }

    /// Shuts the sidecar down and checks that it stops in bounded time.
    pub async fn stop(self) -> (Mesh, TestGateway) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.run)
            .await
            .expect("the sidecar did not stop in time")
            .unwrap()
            .unwrap();
        (self.mesh, self.gateway)
    }
}
