//! The transport seam: a tunnel connection and the two directions of one stream on it,
//! whichever transport carries them. The per-request logic (`exchange.rs`, `upload.rs`,
//! `body.rs`) sees only these types, so QUIC and HTTP/2 share every decision.
//!
//! | operation | QUIC (RFC 9000 §2–§3) | HTTP/2 (RFC 9113 §8.1, SPEC.md §12.1) |
//! |---|---|---|
//! | open a stream | `open_bi` (waits for stream credit) | `POST /` (queued while at SETTINGS_MAX_CONCURRENT_STREAMS) |
//! | write a chunk | STREAM frames | DATA frames through a bounded channel |
//! | finish | FIN | END_STREAM |
//! | reset with a code | RESET_STREAM(code) | trailer `aimux-reset: code`, END_STREAM |
//! | stop the peer's sending | STOP_SENDING(code) | drop the response: RST_STREAM(CANCEL); the code is not carried |

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Uri, header};
use hyper::client::conn::http2::SendRequest;
use quinn::{ConnectionError, ReadError, VarInt, WriteError};
use tokio::time::Instant;

use super::h2::io::ConnState;
use super::h2::slots::Slots;
use super::h2::stream::{self as h2_stream, ChannelBody};
use crate::fmt::app_code_name;

/// The media type of a tunnel stream's request and response bodies (SPEC.md §12.1).
pub(crate) const ENVELOPE_MEDIA_TYPE: &str = "application/aimux-envelope";

/// A live tunnel connection, cheap to clone.
#[derive(Debug, Clone)]
pub(crate) enum TunnelConn {
    Quic(quinn::Connection),
    H2(H2Conn),
}

/// An HTTP/2 tunnel connection: hyper's request handle and what the socket has seen.
#[derive(Debug, Clone)]
pub(crate) struct H2Conn {
    pub(crate) send: SendRequest<ChannelBody>,
    pub(crate) state: Arc<ConnState>,
    /// Stream credit: the gateway's SETTINGS_MAX_CONCURRENT_STREAMS.
    pub(crate) slots: Arc<Slots>,
    pub(crate) id: usize,
    /// `https://SERVER_NAME/`: the `:scheme`, `:authority` and `:path` of every stream.
    pub(crate) uri: Uri,
}

/// Why no stream could be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The connection is gone; nothing of the request was consumed, so another connection
    /// may be tried.
    Lost,
    /// The gateway allowed no new stream before the deadline.
    NoCredit,
    /// The gateway refused the stream at once.
    Refused(String),
}

impl TunnelConn {
    /// Identifies the connection while it lives (quinn's stable id, or our own).
    pub(crate) fn id(&self) -> usize {
        match self {
            TunnelConn::Quic(c) => c.stable_id(),
            TunnelConn::H2(c) => c.id,
        }
    }

    /// Whether the connection is known to be over.
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            TunnelConn::Quic(c) => c.close_reason().is_some(),
            TunnelConn::H2(c) => c.state.is_closing() || c.send.is_closed(),
        }
    }

    /// Opens a stream and sends `envelope` on it, waiting at most until `deadline` for
    /// stream credit.
    ///
    /// QUIC: the envelope is written before this returns. HTTP/2: once a stream slot is
    /// free (see `h2::slots`), the request (envelope first in its body) is handed to hyper
    /// at once; the gateway's `200` is awaited by the first read, so the request body flows
    /// meanwhile instead of waiting a round trip.
    pub(crate) async fn open(
        &self,
        envelope: Bytes,
        deadline: Instant,
    ) -> Result<(StreamSend, StreamRecv), OpenError> {
        match self {
            TunnelConn::Quic(conn) => {
                // `open_bi` waits when the gateway's stream limit is reached (RFC 9000 §4.6).
                let (mut send, mut recv) =
                    match tokio::time::timeout_at(deadline, conn.open_bi()).await {
                        Err(_elapsed) => return Err(OpenError::NoCredit),
                        Ok(Err(_lost)) => return Err(OpenError::Lost),
                        Ok(Ok(streams)) => streams,
                    };
                let written = tokio::time::timeout_at(deadline, send.write_chunk(envelope)).await;
                let failed = match written {
                    Ok(Ok(())) => {
                        return Ok((StreamSend::Quic(send.into()), StreamRecv::Quic(recv)));
                    }
                    Err(_elapsed) => OpenError::NoCredit,
                    Ok(Err(WriteError::ConnectionLost(_))) => OpenError::Lost,
                    Ok(Err(e)) => OpenError::Refused(e.to_string()),
                };
                // quinn's defaults on drop (FIN, STOP_SENDING 0) are not ours (SPEC.md §12).
                let _ = send.reset(VarInt::from_u32(aimux_wire::codes::STREAM_CANCELLED));
                let _ = recv.stop(VarInt::from_u32(aimux_wire::codes::STREAM_CANCELLED));
                Err(failed)
            }
            TunnelConn::H2(conn) => {
                let mut send = conn.send.clone();
                let gone =
                    |send: &SendRequest<ChannelBody>| send.is_closed() || conn.state.is_closing();
                if gone(&send) {
                    return Err(OpenError::Lost);
                }
                let slot = conn
                    .slots
                    .acquire(deadline)
                    .await
                    .map_err(|_| OpenError::NoCredit)?;
                if gone(&send) {
                    return Err(OpenError::Lost);
                }
                let slot = Arc::new(slot);
                let (mut tx, body) = h2_stream::channel(Arc::clone(&slot));
                tx.try_write(envelope).map_err(|_| OpenError::Lost)?;
                let mut request = Request::new(body);
                *request.method_mut() = http::Method::POST;
                *request.uri_mut() = conn.uri.clone();
                request.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(ENVELOPE_MEDIA_TYPE),
                );
                let response = Box::pin(send.send_request(request));
                let recv = h2_stream::RecvHalf::new(response, slot, Arc::clone(&conn.state));
                Ok((StreamSend::H2(tx), StreamRecv::H2(recv)))
            }
        }
    }
}

/// The sending direction of a stream (the request).
#[derive(Debug)]
pub(crate) enum StreamSend {
    Quic(QuicSend),
    H2(h2_stream::SendHalf),
}

/// A QUIC send stream that counts what it has sent, for size-based scheduling.
#[derive(Debug)]
pub(crate) struct QuicSend {
    stream: quinn::SendStream,
    sent: u64,
}

/// Past this many bytes a stream is scheduled after streams that have sent less.
const DEMOTE_AFTER: u64 = 64 * 1024;
/// quinn sends higher priorities first; every stream starts at 0.
const BULK_PRIORITY: i32 = -1;

impl From<quinn::SendStream> for QuicSend {
    fn from(stream: quinn::SendStream) -> Self {
        Self { stream, sent: 0 }
    }
}

impl QuicSend {
    /// Size-based scheduling: quinn serves streams of equal priority round robin, so during
    /// loss recovery a bulk transfer competes with every small response for each
    /// congestion-window slot. A stream that has sent more than `DEMOTE_AFTER` drops one
    /// priority level, so new and small messages go first (shortest first, the idea behind
    /// RFC 9218's incremental priorities). Measured in bench/RESULTS.md: at 2 % loss with a
    /// bulk download alongside, small requests' p50 fell from 282 ms to 113 ms.
    async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), WriteError> {
        let before = self.sent;
        self.sent = self.sent.saturating_add(chunk.len() as u64);
        if before <= DEMOTE_AFTER && self.sent > DEMOTE_AFTER {
            // Fails only on a stream that is already closed, which the write reports.
            let _ = self.stream.set_priority(BULK_PRIORITY);
        }
        self.stream.write_chunk(chunk).await
    }
}

/// The receiving direction of a stream (the response).
#[derive(Debug)]
pub(crate) enum StreamRecv {
    Quic(quinn::RecvStream),
    H2(h2_stream::RecvHalf),
}

/// Why a chunk could not be sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The gateway does not want (the rest of) the payload: QUIC STOP_SENDING with its
    /// code, or an HTTP/2 stream that is over (no code).
    #[error("the gateway stopped the request body ({})", .0.map_or("no code", app_code_name))]
    Stopped(Option<u64>),
    /// The connection is gone, or the stream already ended.
    #[error("{0}")]
    Failed(String),
}

/// Why the response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecvError {
    /// The gateway reset the stream with this aimux code (SPEC.md §12).
    #[error("the gateway reset the stream (code {0:#x}, {name})", name = app_code_name(*.0))]
    Reset(u64),
    /// HTTP/2: the gateway reset the stream without an aimux code (RST_STREAM).
    #[error("the gateway aborted the stream (HTTP/2 RST_STREAM: {0})")]
    Aborted(String),
    /// The connection was lost.
    #[error("the connection to the gateway was lost: {0}")]
    ConnectionLost(String),
    /// HTTP/2: the gateway answered the stream with something other than `200`.
    #[error("{0}")]
    Refused(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl StreamSend {
    /// Sends one chunk in full, waiting for flow control.
    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<(), SendError> {
        match self {
            StreamSend::Quic(s) => s.write_chunk(chunk).await.map_err(|e| match e {
                WriteError::Stopped(code) => SendError::Stopped(Some(code.into_inner())),
                other => SendError::Failed(other.to_string()),
            }),
            StreamSend::H2(s) => s.write(chunk).await.map_err(|_| SendError::Stopped(None)),
        }
    }

    /// Ends the payload (FIN / END_STREAM).
    pub(crate) fn finish(&mut self) {
        match self {
            // Fails only if already finished or reset.
            StreamSend::Quic(s) => drop(s.stream.finish()),
            StreamSend::H2(s) => s.finish(),
        }
    }

    /// Abandons the payload with an aimux stream code (RESET_STREAM, or the reset trailer).
    pub(crate) fn reset(&mut self, code: u32) {
        match self {
            StreamSend::Quic(s) => drop(s.stream.reset(VarInt::from_u32(code))),
            StreamSend::H2(s) => s.reset(code),
        }
    }
}

impl StreamRecv {
    /// The next chunk of at most `max` bytes as it arrives; `None` at the end of the payload.
    pub(crate) async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, RecvError> {
        match self {
            StreamRecv::Quic(r) => match r.read_chunk(max, true).await {
                Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
                Err(ReadError::Reset(code)) => Err(RecvError::Reset(code.into_inner())),
                Err(ReadError::ConnectionLost(e)) => Err(RecvError::ConnectionLost(lost(&e))),
                Err(e) => Err(RecvError::Other(e.to_string())),
            },
            StreamRecv::H2(r) => r.read_chunk(max).await,
        }
    }

    /// Asks the gateway to stop sending (QUIC STOP_SENDING with `code`; HTTP/2 drops the
    /// response, see `h2::stream::RecvHalf::stop`).
    pub(crate) fn stop(&mut self, code: u32) {
        match self {
            // Fails only if the stream is already finished or reset: nothing left to stop.
            StreamRecv::Quic(r) => drop(r.stop(VarInt::from_u32(code))),
            StreamRecv::H2(r) => r.stop(),
        }
    }
}

/// How a lost QUIC connection is described to the agent.
fn lost(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ApplicationClosed(close) => {
            let code = close.error_code.into_inner();
            format!(
                "closed by the gateway with code {code:#x} ({})",
                app_code_name(code)
            )
        }
        other => other.to_string(),
    }
}
