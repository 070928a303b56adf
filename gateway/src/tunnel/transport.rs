//! The transport seam: the two directions of one tunnel stream, whichever transport carries
//! them. The per-stream logic (`stream.rs`, `envelope.rs`, `forward::body`) sees only these
//! enums, so QUIC and HTTP/2 share every decision and every byte of envelope handling.
//!
//! | operation | QUIC (RFC 9000 §2–§3) | HTTP/2 (RFC 9113 §8.1, SPEC.md §12.1) |
//! |---|---|---|
//! | write a chunk | STREAM frames, flow-controlled | DATA frames through a bounded channel |
//! | finish | FIN | END_STREAM |
//! | reset with a code | RESET_STREAM(code) | trailer `aimux-reset: code`, END_STREAM |
//! | peer stopped reading | STOP_SENDING | RST_STREAM (or the connection ended) |
//! | stop the peer's sending | STOP_SENDING(code) | RST_STREAM (NO_ERROR once answered, else CANCEL); the code is not carried |

use std::fmt;
use std::future::Future;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::Either;
use quinn::{ReadError, StoppedError, VarInt, WriteError};

use crate::h2::stream::{RecvHalf, SendHalf};
use crate::metrics::Transport;

/// The sending direction of a tunnel stream (the gateway's response).
#[derive(Debug)]
pub(crate) enum StreamSend {
    Quic(QuicSend),
    H2(SendHalf),
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

/// The receiving direction of a tunnel stream (the sidecar's request).
#[derive(Debug)]
pub(crate) enum StreamRecv {
    Quic(quinn::RecvStream),
    H2(RecvHalf),
}

/// Why a chunk could not be sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The sidecar asked us to stop (STOP_SENDING, or RST_STREAM over HTTP/2).
    #[error("the sidecar stopped reading the stream")]
    Stopped,
    /// The connection is gone, or the stream was already finished or reset.
    #[error("{0}")]
    Closed(String),
}

/// Why the request payload could not be read. Request bodies that fail with this error are
/// the sidecar's doing, not the upstream's (see `forward::client::is_request_body_error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecvError {
    /// The sidecar reset its direction of the stream with this code (SPEC.md §12).
    #[error("the sidecar reset the stream with code {0:#x}")]
    Reset(u64),
    /// The stream ended abnormally without an aimux code: an HTTP/2 RST_STREAM, or the
    /// connection went away.
    #[error("the stream was aborted: {0}")]
    Aborted(String),
}

/// How a stream's sending direction ended for the peer, as [`StreamSend::stopped`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// The peer asked us to stop (QUIC STOP_SENDING with this code).
    Code(u64),
    /// Everything was delivered (QUIC: acknowledged; HTTP/2: handed to the connection).
    Done,
    /// HTTP/2: the stream is gone (RST_STREAM, connection closed, or fully sent).
    Gone,
    /// The connection was lost.
    Lost(String),
}

/// A stream number for logs: QUIC's stream ID, or a per-connection counter over HTTP/2
/// (hyper does not expose HTTP/2 stream identifiers).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamId(pub(crate) u64);

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl StreamSend {
    pub(crate) fn transport(&self) -> Transport {
        match self {
            Self::Quic(_) => Transport::Quic,
            Self::H2(_) => Transport::H2,
        }
    }

    pub(crate) fn id(&self) -> StreamId {
        match self {
            Self::Quic(s) => StreamId(u64::from(s.stream.id())),
            Self::H2(s) => StreamId(s.id()),
        }
    }

    /// Sends one chunk, waiting for flow control.
    pub(crate) async fn write_chunk(&mut self, chunk: Bytes) -> Result<(), SendError> {
        match self {
            Self::Quic(s) => s.write_chunk(chunk).await.map_err(|e| match e {
                WriteError::Stopped(_) => SendError::Stopped,
                other => SendError::Closed(other.to_string()),
            }),
            Self::H2(s) => s.write(chunk).await.map_err(|_| SendError::Stopped),
        }
    }

    /// Ends the payload cleanly (FIN / END_STREAM). Fails if the stream is already over.
    pub(crate) fn finish(&mut self) -> Result<(), SendError> {
        match self {
            Self::Quic(s) => s
                .stream
                .finish()
                .map_err(|e| SendError::Closed(e.to_string())),
            Self::H2(s) => s.finish().map_err(|_| SendError::Stopped),
        }
    }

    /// Abandons the payload with an aimux stream code (SPEC.md §12): the peer must not take
    /// what it received for a complete message.
    pub(crate) fn reset(&mut self, code: u32) {
        match self {
            // Fails only if the stream is already finished or reset: nothing left to say.
            Self::Quic(s) => drop(s.stream.reset(VarInt::from_u32(code))),
            Self::H2(s) => s.reset(code),
        }
    }

    /// Resolves when the peer no longer reads this direction or it has been delivered whole.
    /// The future owns what it needs, so the stream can be written meanwhile.
    pub(crate) fn stopped(&self) -> impl Future<Output = Stopped> + Send + 'static {
        match self {
            Self::Quic(s) => Either::Left(s.stream.stopped().map(|r| match r {
                Ok(Some(code)) => Stopped::Code(code.into_inner()),
                Ok(None) => Stopped::Done,
                Err(StoppedError::ConnectionLost(e)) => Stopped::Lost(e.to_string()),
                Err(e) => Stopped::Lost(e.to_string()),
            })),
            Self::H2(s) => Either::Right(s.stopped().map(|()| Stopped::Gone)),
        }
    }
}

impl StreamRecv {
    /// The next chunk of at most `max` bytes, as it arrives; `None` at the end of the payload.
    pub(crate) async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, RecvError> {
        match self {
            Self::Quic(r) => match r.read_chunk(max, true).await {
                Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
                Err(ReadError::Reset(code)) => Err(RecvError::Reset(code.into_inner())),
                Err(e) => Err(RecvError::Aborted(e.to_string())),
            },
            Self::H2(r) => r.read_chunk(max).await,
        }
    }

    /// Asks the sidecar to stop sending (SPEC.md §12 STOP_SENDING). Over HTTP/2 the request
    /// body is dropped; h2 then resets the stream once the response is complete (RFC 9113
    /// §8.1: RST_STREAM with NO_ERROR after a complete response), so `code` is not carried.
    pub(crate) fn stop(&mut self, code: u32) {
        match self {
            // Fails only if the stream is already stopped or gone: nothing left to say.
            Self::Quic(r) => drop(r.stop(VarInt::from_u32(code))),
            Self::H2(r) => r.stop(),
        }
    }
}
