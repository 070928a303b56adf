//! A sidecar-like tunnel client on either transport (SPEC.md §12): QUIC streams, or HTTP/2
//! streams over TLS/TCP (`POST /`, the envelope and payload as the request body, the
//! response envelope and payload as the response body, resets as an `aimux-reset` trailer).
//! The tests drive both through the same [`Conn`], [`Send`] and [`Recv`].

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aimux_certs::pki_types::ServerName;
use aimux_certs::rustls;
use aimux_certs::tls::ALPN_AIMUX_V1;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use quinn::crypto::rustls::QuicClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::STEP;

/// Which tunnel transport a test uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Quic,
    H2,
}

pub const BOTH: [Transport; 2] = [Transport::Quic, Transport::H2];

pub const RESET_TRAILER: &str = "aimux-reset";
pub const MEDIA_TYPE: &str = "application/aimux-envelope";

type ReqBody = StreamBody<ReceiverStream>;

/// `mpsc::Receiver` as a stream of body frames.
pub struct ReceiverStream(mpsc::Receiver<Frame<Bytes>>);

impl futures_util::Stream for ReceiverStream {
    type Item = Result<Frame<Bytes>, std::convert::Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

/// One tunnel connection.
#[derive(Clone)]
pub enum Conn {
    Quic(quinn::Connection),
    H2 {
        send: http2::SendRequest<ReqBody>,
        /// Set to the end reason once the connection is over.
        done: watch::Receiver<Option<String>>,
    },
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub enum ConnectError {
    /// QUIC: how the connection ended.
    Quic(quinn::ConnectionError),
    /// TLS over TCP: the gateway refused the handshake with this alert (RFC 8446 §6.2).
    Alert(u8),
    /// Anything else.
    Other(String),
}

/// How a read failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadErr {
    /// The gateway reset the stream with this aimux code.
    Reset(u64),
    /// Anything else (connection lost, RST_STREAM without an aimux code...).
    Other(String),
}

/// How a connection ended.
#[derive(Debug)]
pub enum Closed {
    Quic(quinn::ConnectionError),
    H2(String),
}

pub enum Send {
    Quic(quinn::SendStream),
    H2(Option<mpsc::Sender<Frame<Bytes>>>),
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = hyper::Result<http::Response<Incoming>>> + std::marker::Send>>;

pub enum Recv {
    Quic(quinn::RecvStream),
    H2 {
        pending: Option<ResponseFuture>,
        body: Option<Incoming>,
    },
}

/// Connects with `tls` (a mesh client configuration) over `transport`.
pub async fn dial(
    mut tls: rustls::ClientConfig,
    addr: SocketAddr,
    transport: Transport,
) -> Result<Conn, ConnectError> {
    match transport {
        Transport::Quic => {
            tls.alpn_protocols = vec![ALPN_AIMUX_V1.to_vec()];
            let quic = QuicClientConfig::try_from(tls).unwrap();
            let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
            let connecting = endpoint.connect(addr, "localhost").unwrap();
            let conn = tokio::time::timeout(STEP, connecting)
                .await
                .expect("handshake finishes within the bound")
                .map_err(ConnectError::Quic)?;
            Ok(Conn::Quic(conn))
        }
        Transport::H2 => {
            tls.alpn_protocols = vec![b"h2".to_vec()];
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| ConnectError::Other(e.to_string()))?;
            tcp.set_nodelay(true).unwrap();
            let connector = TlsConnector::from(Arc::new(tls));
            let name = ServerName::try_from("localhost").unwrap();
            let mut stream = tokio::time::timeout(STEP, connector.connect(name, tcp))
                .await
                .expect("handshake finishes within the bound")
                .map_err(tls_error)?;
            // TLS 1.3: our handshake is done before the gateway has checked our certificate.
            // Its first bytes are either its HTTP/2 SETTINGS (accepted) or an alert.
            let mut first = vec![0u8; 4096];
            let n = tokio::time::timeout(STEP, stream.read(&mut first))
                .await
                .expect("the gateway answers within the bound")
                .map_err(tls_error)?;
            if n == 0 {
                return Err(ConnectError::Other("closed after the handshake".into()));
            }
            first.truncate(n);
            let io = Prefixed {
                prefix: Bytes::from(first),
                io: stream,
            };
            let (send, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(TokioIo::new(io))
                .await
                .map_err(|e| ConnectError::Other(e.to_string()))?;
            let (done_tx, done) = watch::channel(None);
            tokio::spawn(async move {
                let why = match conn.await {
                    Ok(()) => "closed".to_owned(),
                    Err(e) => e.to_string(),
                };
                let _ = done_tx.send(Some(why));
            });
            Ok(Conn::H2 { send, done })
        }
    }
}

fn tls_error(e: io::Error) -> ConnectError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(alert)) => ConnectError::Alert(u8::from(*alert)),
        _ => ConnectError::Other(e.to_string()),
    }
}

impl Conn {
    pub fn quic(&self) -> &quinn::Connection {
        match self {
            Conn::Quic(c) => c,
            Conn::H2 { .. } => panic!("not a QUIC connection"),
        }
    }

    /// Opens a stream: the request goes out at once; the response is awaited by the reads.
    pub async fn open(&self) -> Result<(Send, Recv), String> {
        match self {
            Conn::Quic(c) => {
                let (s, r) = c.open_bi().await.map_err(|e| e.to_string())?;
                Ok((Send::Quic(s), Recv::Quic(r)))
            }
            Conn::H2 { send, .. } => {
                let mut send = send.clone();
                send.ready().await.map_err(|e| e.to_string())?;
                let (tx, rx) = mpsc::channel(4);
                let request = http::Request::post("https://localhost/")
                    .header("content-type", MEDIA_TYPE)
                    .body(StreamBody::new(ReceiverStream(rx)))
                    .unwrap();
                let response = send.send_request(request);
                Ok((
                    Send::H2(Some(tx)),
                    Recv::H2 {
                        pending: Some(Box::pin(response)),
                        body: None,
                    },
                ))
            }
        }
    }

    /// Waits until the connection is over.
    pub async fn closed(&self) -> Closed {
        match self {
            Conn::Quic(c) => Closed::Quic(c.closed().await),
            Conn::H2 { done, .. } => {
                let mut done = done.clone();
                let why = done.wait_for(Option::is_some).await.unwrap().clone();
                Closed::H2(why.unwrap_or_default())
            }
        }
    }
}

impl Send {
    pub async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), String> {
        match self {
            Send::Quic(s) => s.write_chunk(chunk).await.map_err(|e| e.to_string()),
            Send::H2(tx) => {
                let tx = tx.as_ref().ok_or("finished")?;
                tx.send(Frame::data(chunk))
                    .await
                    .map_err(|_| "the stream is gone".to_owned())
            }
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.write_chunk(Bytes::copy_from_slice(bytes)).await
    }

    pub fn finish(&mut self) -> Result<(), String> {
        match self {
            Send::Quic(s) => s.finish().map_err(|e| e.to_string()),
            Send::H2(tx) => tx.take().map(drop).ok_or_else(|| "finished".to_owned()),
        }
    }

    /// Abandons the request payload with an aimux code.
    pub async fn reset(&mut self, code: u32) {
        match self {
            Send::Quic(s) => s.reset(code.into()).unwrap(),
            Send::H2(tx) => {
                if let Some(tx) = tx.take() {
                    let mut trailers = HeaderMap::new();
                    trailers.insert(RESET_TRAILER, HeaderValue::from(code));
                    let _ = tx.send(Frame::trailers(trailers)).await;
                }
            }
        }
    }

    /// Waits until the gateway no longer wants the request payload: QUIC STOP_SENDING (with
    /// its code), or over HTTP/2 the stream being reset or closed (no code).
    pub async fn stopped(&mut self) -> Option<u64> {
        match self {
            Send::Quic(s) => s.stopped().await.unwrap().map(|c| c.into_inner()),
            Send::H2(tx) => {
                if let Some(tx) = tx {
                    tx.closed().await;
                }
                None
            }
        }
    }
}

impl Recv {
    /// The next chunk as it arrives, `None` at the end of the payload.
    pub async fn read_chunk(&mut self) -> Result<Option<Bytes>, ReadErr> {
        match self {
            Recv::Quic(r) => match r.read_chunk(usize::MAX, true).await {
                Ok(c) => Ok(c.map(|c| c.bytes)),
                Err(quinn::ReadError::Reset(code)) => Err(ReadErr::Reset(code.into_inner())),
                Err(e) => Err(ReadErr::Other(e.to_string())),
            },
            Recv::H2 { pending, body } => {
                if let Some(response) = pending.take() {
                    let response = response
                        .await
                        .map_err(|e| ReadErr::Other(format!("no response: {e}")))?;
                    if response.status() != 200 {
                        return Err(ReadErr::Other(format!("status {}", response.status())));
                    }
                    assert_eq!(response.headers()["content-type"], MEDIA_TYPE);
                    *body = Some(response.into_body());
                }
                let Some(b) = body.as_mut() else {
                    return Ok(None);
                };
                loop {
                    match b.frame().await {
                        None => {
                            *body = None;
                            return Ok(None);
                        }
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) if data.is_empty() => continue,
                            Ok(data) => return Ok(Some(data)),
                            Err(frame) => {
                                let trailers = frame.into_trailers().unwrap();
                                if let Some(code) = trailers.get(RESET_TRAILER) {
                                    *body = None;
                                    let code = code.to_str().unwrap().parse().unwrap();
                                    return Err(ReadErr::Reset(code));
                                }
                            }
                        },
                        Some(Err(e)) => {
                            *body = None;
                            return Err(ReadErr::Other(e.to_string()));
                        }
                    }
                }
            }
        }
    }

    /// Stops reading: QUIC STOP_SENDING with `code`; HTTP/2 drops the response (RST_STREAM).
    pub fn stop(&mut self, code: u32) {
        match self {
            Recv::Quic(r) => r.stop(code.into()).unwrap(),
            Recv::H2 { pending, body } => {
                *pending = None;
                *body = None;
            }
        }
    }
}

/// An IO that yields `prefix` before reading from `io` (the bytes read to confirm the
/// handshake belong to HTTP/2).
struct Prefixed {
    prefix: Bytes,
    io: TlsStream<TcpStream>,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let chunk = self.prefix.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
