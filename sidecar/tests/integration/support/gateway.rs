//! A small test gateway on either tunnel transport, with the mesh's TLS configuration.
//!
//! It does what a gateway does on the wire (SPEC.md §2, §12, §12.1): it accepts mutual-TLS
//! connections from agents (QUIC, or HTTP/2 over TLS/TCP), reads one request envelope per
//! stream, and answers with a response envelope and a payload, as scripted by each test's
//! handler through [`GatewayStream`], which hides the transport.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use aimux_certs::tls::MeshClientVerifier;
use aimux_certs::{IssuedCert, SpiffeId, load_crls, peer_identity};
use aimux_sidecar::Transport;
use aimux_wire::{Limits, RequestEnvelope, ResponseEnvelope, codes, envelope_len};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Connection, Endpoint, VarInt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::Mesh;

pub const RESET_TRAILER: &str = "aimux-reset";

/// How a stream read failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadErr {
    /// The sidecar reset the request with this aimux code.
    Reset(u64),
    Other(String),
}

/// How a connection ended, as the gateway saw it.
#[derive(Debug)]
pub enum Closed {
    Quic(quinn::ConnectionError),
    /// HTTP/2: `closed` when the sidecar closed it in order (GOAWAY), else the error.
    H2(String),
}

/// `mpsc::Receiver` as a stream of body frames.
pub struct ReceiverStream(mpsc::Receiver<Frame<Bytes>>);

impl futures_util::Stream for ReceiverStream {
    type Item = Result<Frame<Bytes>, Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

enum Send {
    Quic(quinn::SendStream),
    H2(Option<mpsc::Sender<Frame<Bytes>>>),
}

enum Recv {
    Quic(quinn::RecvStream),
    H2(Option<Incoming>),
}

/// One request stream as the test gateway sees it.
pub struct GatewayStream {
    pub envelope: RequestEnvelope,
    /// The authenticated peer (from the client certificate).
    pub peer: SpiffeId,
    /// Payload bytes read along with the envelope.
    pub rest: Bytes,
    send: Send,
    recv: Recv,
}

impl GatewayStream {
    /// The next chunk of the request payload; `None` at its end.
    pub async fn read_chunk(&mut self) -> Result<Option<Bytes>, ReadErr> {
        if !self.rest.is_empty() {
            return Ok(Some(std::mem::take(&mut self.rest)));
        }
        read_chunk(&mut self.recv).await
    }

    /// Reads the rest of the request body (bounded by the test's own sizes).
    pub async fn read_body(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        while let Some(chunk) = self.read_chunk().await.unwrap() {
            body.extend_from_slice(&chunk);
        }
        body
    }

    pub async fn respond(&mut self, envelope: &ResponseEnvelope) {
        let bytes = envelope.to_bytes(&Limits::default()).unwrap();
        self.write(bytes).await;
    }

    pub async fn write(&mut self, bytes: impl Into<Bytes>) {
        let bytes = bytes.into();
        match &mut self.send {
            Send::Quic(s) => s.write_chunk(bytes).await.unwrap(),
            Send::H2(tx) => tx
                .as_ref()
                .expect("not finished")
                .send(Frame::data(bytes))
                .await
                .unwrap(),
        }
    }

    /// True over QUIC (which carries STOP_SENDING codes), false over HTTP/2.
    pub fn is_quic(&self) -> bool {
        matches!(self.send, Send::Quic(_))
    }

    pub fn finish(&mut self) {
        match &mut self.send {
            Send::Quic(s) => s.finish().unwrap(),
            Send::H2(tx) => drop(tx.take()),
        }
    }

    /// Abandons the response with an aimux code (QUIC RESET_STREAM; HTTP/2 reset trailer).
    pub async fn reset(&mut self, code: u32) {
        match &mut self.send {
            Send::Quic(s) => s.reset(VarInt::from_u32(code)).unwrap(),
            Send::H2(tx) => {
                let tx = tx.take().expect("not finished");
                let mut trailers = HeaderMap::new();
                trailers.insert(RESET_TRAILER, HeaderValue::from(code));
                tx.send(Frame::trailers(trailers)).await.unwrap();
            }
        }
    }

    /// Waits until the sidecar stops reading the response: QUIC STOP_SENDING (with its code),
    /// or over HTTP/2 the stream being reset (no code).
    pub async fn stopped(&mut self) -> Option<u64> {
        match &mut self.send {
            Send::Quic(s) => s.stopped().await.unwrap().map(|c| c.into_inner()),
            Send::H2(tx) => {
                tx.as_ref().expect("not finished").closed().await;
                None
            }
        }
    }
}

async fn read_chunk(recv: &mut Recv) -> Result<Option<Bytes>, ReadErr> {
    match recv {
        Recv::Quic(r) => match r.read_chunk(usize::MAX, true).await {
            Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
            Err(quinn::ReadError::Reset(code)) => Err(ReadErr::Reset(code.into_inner())),
            Err(e) => Err(ReadErr::Other(e.to_string())),
        },
        Recv::H2(body) => loop {
            let Some(b) = body.as_mut() else {
                return Ok(None);
            };
            match b.frame().await {
                None => {
                    *body = None;
                    return Ok(None);
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) => return Ok(Some(data)),
                    Err(frame) => {
                        if let Some(code) = frame.trailers_ref().and_then(|t| t.get(RESET_TRAILER))
                        {
                            *body = None;
                            return Err(ReadErr::Reset(code.to_str().unwrap().parse().unwrap()));
                        }
                    }
                },
                Some(Err(e)) => {
                    *body = None;
                    return Err(ReadErr::Other(e.to_string()));
                }
            }
        },
    }
}

pub type Handler = Arc<
    dyn Fn(GatewayStream) -> Pin<Box<dyn Future<Output = ()> + std::marker::Send>>
        + std::marker::Send
        + Sync,
>;

/// Wraps an async closure as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(GatewayStream) -> Fut + std::marker::Send + Sync + 'static,
    Fut: Future<Output = ()> + std::marker::Send + 'static,
{
    Arc::new(move |stream| Box::pin(f(stream)))
}

/// What the test gateway observed.
#[derive(Debug, Clone)]
pub struct Seen {
    pub envelope: RequestEnvelope,
    pub peer: SpiffeId,
}

/// One live connection, to close from the test.
enum LiveConn {
    Quic(Connection),
    H2 {
        close: CancellationToken,
        done: Arc<AtomicBool>,
    },
}

enum Listener {
    Quic(Endpoint),
    H2 { stop: CancellationToken },
}

pub struct TestGateway {
    pub addr: SocketAddr,
    pub transport: Transport,
    listener: Listener,
    accept: JoinHandle<()>,
    conns: Arc<Mutex<Vec<LiveConn>>>,
    verifier: Arc<MeshClientVerifier>,
    /// Each connection's close reason, as the gateway saw it.
    pub closed: mpsc::UnboundedReceiver<Closed>,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

/// What every stream task needs.
#[derive(Clone)]
struct Sinks {
    handler: Handler,
    seen: mpsc::UnboundedSender<Seen>,
    closed: mpsc::UnboundedSender<Closed>,
    conns: Arc<Mutex<Vec<LiveConn>>>,
}

impl TestGateway {
    /// Starts a test gateway on `addr` (port 0 for any) presenting the mesh gateway's
    /// certificate.
    pub async fn start(
        mesh: &Mesh,
        transport: Transport,
        addr: SocketAddr,
        handler: Handler,
    ) -> TestGateway {
        Self::launch(mesh, &mesh.gateway, transport, addr, 1024, handler).await
    }

    /// Like [`TestGateway::start`], presenting `who`'s certificate.
    pub async fn start_as(
        mesh: &Mesh,
        who: &IssuedCert,
        transport: Transport,
        addr: SocketAddr,
        handler: Handler,
    ) -> TestGateway {
        Self::launch(mesh, who, transport, addr, 1024, handler).await
    }

    /// Like [`TestGateway::start`], allowing at most `streams` concurrent request streams per
    /// connection (QUIC: RFC 9000 §4.6; HTTP/2: SETTINGS_MAX_CONCURRENT_STREAMS).
    pub async fn start_with_streams(
        mesh: &Mesh,
        transport: Transport,
        addr: SocketAddr,
        streams: u32,
        handler: Handler,
    ) -> TestGateway {
        Self::launch(mesh, &mesh.gateway, transport, addr, streams, handler).await
    }

    async fn launch(
        mesh: &Mesh,
        who: &IssuedCert,
        transport: Transport,
        addr: SocketAddr,
        streams: u32,
        handler: Handler,
    ) -> TestGateway {
        let (mut tls, verifier) = mesh.server_tls(who);
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let sinks = Sinks {
            handler,
            seen: seen_tx,
            closed: closed_tx,
            conns: Arc::clone(&conns),
        };
        let (listener, addr, accept) = match transport {
            Transport::H2 => {
                tls.alpn_protocols = vec![b"h2".to_vec()];
                let listener = bind_tcp(addr).await;
                let addr = listener.local_addr().unwrap();
                let stop = CancellationToken::new();
                let acceptor = TlsAcceptor::from(Arc::new(tls));
                let accept = tokio::spawn(h2_accept_loop(
                    listener,
                    acceptor,
                    streams,
                    sinks,
                    stop.clone(),
                ));
                (Listener::H2 { stop }, addr, accept)
            }
            _ => {
                let quic = QuicServerConfig::try_from(Arc::new(tls)).unwrap();
                let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
                let mut transport = quinn::TransportConfig::default();
                transport.max_concurrent_bidi_streams(VarInt::from_u32(streams));
                transport.max_concurrent_uni_streams(VarInt::from_u32(0));
                config.transport_config(Arc::new(transport));
                let endpoint = bind_udp(config, addr).await;
                let addr = endpoint.local_addr().unwrap();
                let accept = tokio::spawn(quic_accept_loop(endpoint.clone(), sinks));
                (Listener::Quic(endpoint), addr, accept)
            }
        };
        TestGateway {
            addr,
            transport,
            listener,
            accept,
            conns,
            verifier,
            closed,
            seen,
        }
    }

    /// Closes every live connection: QUIC with an application code (SPEC.md §12); HTTP/2
    /// by dropping it (the code cannot be carried).
    pub fn close_all(&self, code: u32, reason: &[u8]) {
        for conn in self.conns.lock().unwrap().drain(..) {
            match conn {
                LiveConn::Quic(c) => c.close(VarInt::from_u32(code), reason),
                LiveConn::H2 { close, .. } => close.cancel(),
            }
        }
    }

    /// Loads the mesh's current CRL into the gateway's verifier, as the real gateway's
    /// watcher does.
    pub fn reload_crl(&self, mesh: &Mesh) {
        self.verifier.update_crls(mesh.crls()).unwrap();
    }

    /// Number of connections accepted so far that are still open.
    pub fn live_connections(&self) -> usize {
        self.conns
            .lock()
            .unwrap()
            .iter()
            .filter(|c| match c {
                LiveConn::Quic(c) => c.close_reason().is_none(),
                LiveConn::H2 { done, .. } => !done.load(Ordering::Relaxed),
            })
            .count()
    }

    /// Stops the gateway (QUIC: closing connections with SHUTDOWN; HTTP/2: GOAWAY) and
    /// releases its port.
    pub async fn stop(self) {
        match &self.listener {
            Listener::Quic(endpoint) => {
                endpoint.close(VarInt::from_u32(codes::CLOSE_SHUTDOWN), b"gateway stopping");
                let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
                self.accept.abort();
            }
            Listener::H2 { stop } => stop.cancel(),
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.accept).await;
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

/// Rebinding the port of a gateway that just stopped can race the release of its socket
/// (quinn's driver task, or a closing TCP listener): retry briefly.
async fn bind_udp(config: quinn::ServerConfig, addr: SocketAddr) -> Endpoint {
    for _ in 0..100 {
        if let Ok(endpoint) = Endpoint::server(config.clone(), addr) {
            return endpoint;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot bind the test gateway on UDP {addr}");
}

async fn bind_tcp(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        if socket.bind(addr).is_ok()
            && let Ok(listener) = socket.listen(128)
        {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot bind the test gateway on TCP {addr}");
}

async fn quic_accept_loop(endpoint: Endpoint, sinks: Sinks) {
    let mut tasks = JoinSet::new();
    while let Some(incoming) = endpoint.accept().await {
        let sinks = sinks.clone();
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
            sinks
                .conns
                .lock()
                .unwrap()
                .push(LiveConn::Quic(conn.clone()));
            let mut streams = JoinSet::new();
            loop {
                match conn.accept_bi().await {
                    Ok((send, recv)) => {
                        let (send, recv) = (Send::Quic(send), Recv::Quic(recv));
                        streams.spawn(serve_stream(send, recv, peer.clone(), sinks.clone()));
                    }
                    Err(e) => {
                        let _ = sinks.closed.send(Closed::Quic(e));
                        break;
                    }
                }
            }
            streams.abort_all();
        });
    }
    tasks.abort_all();
}

async fn h2_accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    max_streams: u32,
    sinks: Sinks,
    stop: CancellationToken,
) {
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, _)) = accepted else { continue };
        tasks.spawn(serve_h2(
            tcp,
            acceptor.clone(),
            max_streams,
            sinks.clone(),
            stop.clone(),
        ));
    }
    drop(listener);
    let drained = tokio::time::timeout(Duration::from_secs(3), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
    }
}

async fn serve_h2(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    max_streams: u32,
    sinks: Sinks,
    stop: CancellationToken,
) {
    let tls = match acceptor.accept(tcp).into_fallible().await {
        Ok(tls) => tls,
        Err((_refused, tcp)) => {
            // Let the alert reach the sidecar before the socket closes (see the gateway's
            // `h2::connection::linger`).
            linger(tcp).await;
            return;
        }
    };
    let certs = tls.get_ref().1.peer_certificates().unwrap().to_vec();
    let peer = peer_identity(&certs).unwrap();
    let close = CancellationToken::new();
    let done = Arc::new(AtomicBool::new(false));
    sinks.conns.lock().unwrap().push(LiveConn::H2 {
        close: close.clone(),
        done: Arc::clone(&done),
    });
    let (accepted_tx, mut accepted) = mpsc::unbounded_channel();
    let service = service_fn(move |request: Request<Incoming>| {
        let (tx, rx) = mpsc::channel(4);
        let _ = accepted_tx.send((tx, request.into_body()));
        let mut response = Response::new(StreamBody::new(ReceiverStream(rx)));
        response.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("application/aimux-envelope"),
        );
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(max_streams);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(tls), service));
    let mut streams = JoinSet::new();
    let mut stopping = false;
    let reason = loop {
        tokio::select! {
            () = close.cancelled() => break "closed by the test".to_owned(),
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            Some((tx, body)) = accepted.recv() => {
                let (send, recv) = (Send::H2(Some(tx)), Recv::H2(Some(body)));
                streams.spawn(serve_stream(send, recv, peer.clone(), sinks.clone()));
            }
            result = conn.as_mut() => break match result {
                Ok(()) => "closed".to_owned(),
                Err(e) => e.to_string(),
            },
        }
    };
    done.store(true, Ordering::Relaxed);
    streams.abort_all();
    let _ = sinks.closed.send(Closed::H2(reason));
}

async fn linger(mut tcp: TcpStream) {
    let _ = tcp.shutdown().await;
    let mut scratch = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while matches!(tcp.read(&mut scratch).await, Ok(n) if n > 0) {}
    })
    .await;
}

async fn serve_stream(send: Send, mut recv: Recv, peer: SpiffeId, sinks: Sinks) {
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
        match read_chunk(&mut recv).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => return,
        }
    };
    let _ = sinks.seen.send(Seen {
        envelope: envelope.clone(),
        peer: peer.clone(),
    });
    (sinks.handler)(GatewayStream {
        envelope,
        peer,
        rest: buf.freeze(),
        send,
        recv,
    })
    .await;
}

impl Mesh {
    /// The gateway's TLS configuration for `who`'s certificate, with the current CRL, and
    /// its verifier (to reload the CRL later).
    pub fn server_tls(
        &self,
        who: &IssuedCert,
    ) -> (aimux_certs::rustls::ServerConfig, Arc<MeshClientVerifier>) {
        let verifier = Arc::new(MeshClientVerifier::new(self.trust(), self.crls()).unwrap());
        let identity = who.identity().unwrap();
        let tls = aimux_certs::tls::server_config(&identity, Arc::clone(&verifier)).unwrap();
        (tls, verifier)
    }

    pub fn crls(&self) -> Vec<aimux_certs::pki_types::CertificateRevocationListDer<'static>> {
        load_crls(&self.dir.path().join("crl.pem")).unwrap()
    }
}
