//! The response side of a request stream: reading the response envelope, then streaming the
//! payload to the agent as an `http_body::Body`.
//!
//! The body yields each chunk as soon as the transport delivers it (no coalescing), which is
//! what lets server-sent events reach the agent one by one. A stream the gateway resets, or a
//! connection lost mid-body, ends the body with an error, so hyper aborts the agent's response
//! instead of ending it cleanly (SPEC.md §2.3: a reset payload is not a complete message). A
//! body dropped early (the agent went away) stops the stream with `CANCELLED` (SPEC.md §12).
//!
//! A framed payload (the envelope says `framed-payload`, SPEC.md §6.3) is decoded on the
//! way: DATA bytes become data frames as they arrive, and the TRAILERS frame becomes the
//! body's trailers, handed out once FIN has confirmed nothing follows them. A malformed or
//! truncated framed payload fails the body like a reset, and the stream is stopped with
//! `MALFORMED`.

use std::fmt;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use aimux_wire::{
    DecodeError, Limits, MAX_PREFACE_LEN, Malformed, PayloadDecoder, PayloadFrame,
    ResponseEnvelope, codes, envelope_len,
};
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame};
use tokio_util::sync::ReusableBoxFuture;
use tracing::warn;

use crate::fmt::app_code_name;
use crate::reply::end_to_end;
use crate::stats::{Counters, InFlight};
use crate::tunnel::transport::{RecvError, StreamRecv};

/// Largest single read while looking for the response envelope. Together with the envelope
/// limit this bounds the head buffer: at most `20 + max_header_block + READ_CHUNK` bytes.
const READ_CHUNK: usize = 16 * 1024;

/// A stream's receiving direction that is stopped with `CANCELLED` if dropped before its
/// end was read.
#[derive(Debug)]
pub(crate) struct RecvGuard {
    stream: StreamRecv,
    done: bool,
}

impl RecvGuard {
    pub(crate) fn new(stream: StreamRecv) -> Self {
        RecvGuard {
            stream,
            done: false,
        }
    }

    /// The next chunk of the stream (at most `max` bytes); `None` at its end (FIN).
    pub(crate) async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, RecvError> {
        let chunk = self.stream.read_chunk(max).await?;
        if chunk.is_none() {
            self.done = true;
        }
        Ok(chunk)
    }

    /// Tells the gateway to stop sending (STOP_SENDING, RFC 9000 §3.5) with `code`; over
    /// HTTP/2 the stream is reset (RST_STREAM) without the code.
    pub(crate) fn stop(&mut self, code: u32) {
        if !self.done {
            self.stream.stop(code);
            self.done = true;
        }
    }
}

impl Drop for RecvGuard {
    fn drop(&mut self) {
        // quinn would send STOP_SENDING with code 0, which SPEC.md §12 reserves for
        // connection shutdown; say what happened instead.
        self.stop(codes::STREAM_CANCELLED);
    }
}

/// Why the response envelope could not be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The stream ended before a complete envelope.
    Truncated { received: usize },
    /// The envelope is malformed (SPEC.md §9).
    Malformed(DecodeError),
    /// The gateway reset the stream (RESET_STREAM, or the reset trailer) with this code.
    Reset(u64),
    /// HTTP/2: the gateway reset the stream without an aimux code (RST_STREAM).
    Aborted(String),
    /// The connection was lost; how, for the agent.
    ConnectionLost(String),
    /// HTTP/2: the gateway refused the stream.
    Refused(String),
    /// Any other read failure.
    Read(String),
}

impl From<RecvError> for HeadError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Reset(code) => HeadError::Reset(code),
            RecvError::Aborted(why) => HeadError::Aborted(why),
            RecvError::ConnectionLost(why) => HeadError::ConnectionLost(why),
            RecvError::Refused(why) => HeadError::Refused(why),
            RecvError::Other(why) => HeadError::Read(why),
        }
    }
}

/// Reads the response envelope from the front of the stream. Returns it and the payload
/// bytes that were read along with it (they start the body and must not be lost).
///
/// Framing follows SPEC.md §4: the preface (at most [`MAX_PREFACE_LEN`] bytes) gives the
/// envelope's total length, checked against `limits` before the header block is awaited.
pub(crate) async fn read_head(
    recv: &mut RecvGuard,
    limits: &Limits,
) -> Result<(ResponseEnvelope, Bytes), HeadError> {
    let mut buf = BytesMut::with_capacity(MAX_PREFACE_LEN.max(512));
    loop {
        match envelope_len(&buf, limits) {
            Ok(total) if buf.len() >= total => {
                let envelope =
                    ResponseEnvelope::decode(&mut buf, limits).map_err(HeadError::Malformed)?;
                return Ok((envelope, buf.freeze()));
            }
            Ok(_) => {}
            Err(e) if e.is_incomplete() => {}
            Err(e) => return Err(HeadError::Malformed(e)),
        }
        match recv.stream.read_chunk(READ_CHUNK).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) => {
                recv.done = true;
                return Err(HeadError::Truncated {
                    received: buf.len(),
                });
            }
            Err(e) => {
                recv.done = true;
                return Err(e.into());
            }
        }
    }
}

/// Why a response body ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// The gateway reset the stream: the upstream failed mid-body, or the gateway gave up.
    #[error("the gateway reset the response stream (code {code:#x}, {}): the response is incomplete", app_code_name(*code))]
    Reset { code: u64 },
    /// HTTP/2: the gateway reset the stream without an aimux code (RST_STREAM).
    #[error(
        "the gateway aborted the response stream (HTTP/2 RST_STREAM: {0}): the response is incomplete"
    )]
    Aborted(String),
    /// The connection to the gateway was lost.
    #[error("the connection to the gateway was lost mid-response: {0}")]
    ConnectionLost(String),
    /// The framed payload is malformed, or ended (FIN) inside a frame (SPEC.md §6.3).
    #[error("the gateway's framed payload is malformed: {0}; the response is incomplete")]
    Malformed(Malformed),
    /// Any other read failure.
    #[error("reading the response stream failed: {0}")]
    Read(String),
}

/// What `poll_frame` returns.
type Polled = Poll<Option<Result<Frame<Bytes>, BodyError>>>;

type ReadFuture = ReusableBoxFuture<'static, (RecvGuard, Result<Option<Bytes>, RecvError>)>;

/// The agent-facing response body: payload bytes already read with the envelope, then the
/// rest of the stream chunk by chunk.
pub(crate) struct RecvBody {
    first: Bytes,
    /// The stream while no read is in flight.
    stream: Option<RecvGuard>,
    /// The read in flight, which owns the stream meanwhile.
    read: Option<ReadFuture>,
    done: bool,
    request_id: String,
    counters: Arc<Counters>,
    /// Keeps the request counted in flight until its body ends.
    in_flight: Option<InFlight>,
    /// A framed payload's decoder (SPEC.md §6.3); `None` for raw bytes.
    framing: Option<Framing>,
}

/// The decoding state of a framed payload.
#[derive(Debug)]
struct Framing {
    decoder: PayloadDecoder,
    /// The trailers, held until FIN shows that the payload is complete.
    trailers: Option<HeaderMap>,
}

impl RecvBody {
    pub(crate) fn new(
        first: Bytes,
        stream: RecvGuard,
        request_id: String,
        counters: Arc<Counters>,
        in_flight: Option<InFlight>,
    ) -> Self {
        RecvBody {
            first,
            stream: Some(stream),
            read: None,
            done: false,
            request_id,
            counters,
            in_flight,
            framing: None,
        }
    }

    /// Reads the payload as a framed payload (SPEC.md §6.3), with `limits`.
    #[must_use]
    pub(crate) fn framed(mut self, limits: &Limits) -> Self {
        self.framing = Some(Framing {
            decoder: PayloadDecoder::new(limits),
            trailers: None,
        });
        self
    }

    fn start_read(&mut self, mut guard: RecvGuard) {
        let next = async move {
            // Chunks come as the transport delivers them; their boundaries are not framing.
            let result = guard.stream.read_chunk(usize::MAX).await;
            (guard, result)
        };
        match &mut self.read {
            Some(read) => read.set(next),
            None => self.read = Some(ReusableBoxFuture::new(next)),
        }
    }

    fn end(&mut self) {
        self.done = true;
        self.in_flight = None;
    }

    /// Fails the body with `error`, counted and logged once.
    fn fail(&mut self, error: BodyError) -> Polled {
        self.end();
        Counters::incr(&self.counters.failures);
        warn!(request_id = %self.request_id, "payload cut off: {error}");
        Poll::Ready(Some(Err(error)))
    }

    /// A framed payload that proved malformed: the gateway is told to stop (SPEC.md §6.3).
    fn malformed(&mut self, e: Malformed) -> Polled {
        if let Some(mut guard) = self.stream.take() {
            guard.stop(codes::STREAM_MALFORMED);
        }
        self.first = Bytes::new();
        self.fail(BodyError::Malformed(e))
    }

    /// The next frame a framed payload's decoder can give: data, or (once trailers have
    /// been decoded) nothing until FIN. `None`: more bytes are needed.
    fn poll_decoded(&mut self) -> Option<Polled> {
        let framing = self.framing.as_mut()?;
        loop {
            match framing.decoder.next_frame() {
                Ok(Some(PayloadFrame::Data(data))) => {
                    return Some(Poll::Ready(Some(Ok(Frame::data(data)))));
                }
                Ok(Some(PayloadFrame::Trailers(trailers))) => {
                    // Fields HTTP cannot carry, and hop-by-hop ones, are left out. They
                    // go out at FIN; anything before it is malformed (next turn).
                    let map: HeaderMap = end_to_end(&trailers).collect();
                    framing.trailers = Some(map);
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Some(self.malformed(e)),
            }
            if self.first.is_empty() {
                return None;
            }
            framing.decoder.push(mem::take(&mut self.first));
        }
    }

    /// FIN: the end of the body, with the trailers of a complete framed payload.
    fn at_fin(&mut self) -> Polled {
        let Some(framing) = self.framing.as_mut() else {
            self.end();
            return Poll::Ready(None);
        };
        if let Err(e) = framing.decoder.finish() {
            return self.malformed(e);
        }
        let trailers = framing.trailers.take();
        self.end();
        Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))))
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(decoded) = this.poll_decoded() {
                return decoded;
            }
            if !this.first.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(mem::take(&mut this.first)))));
            }
            if let Some(guard) = this.stream.take() {
                this.start_read(guard);
            }
            let Some(read) = this.read.as_mut() else {
                // Not reachable: the stream is either here or inside the read.
                this.end();
                return Poll::Ready(None);
            };
            let (mut guard, result) = ready!(read.poll(cx));
            match result {
                Ok(Some(chunk)) => {
                    this.stream = Some(guard);
                    match this.framing.as_mut() {
                        // Decoded on the next turn of the loop.
                        Some(framing) => framing.decoder.push(chunk),
                        None => return Poll::Ready(Some(Ok(Frame::data(chunk)))),
                    }
                }
                Ok(None) => {
                    guard.done = true;
                    return this.at_fin();
                }
                Err(e) => {
                    guard.done = true;
                    let error = match e {
                        RecvError::Reset(code) => BodyError::Reset { code },
                        RecvError::Aborted(why) => BodyError::Aborted(why),
                        RecvError::ConnectionLost(why) => BodyError::ConnectionLost(why),
                        other => BodyError::Read(other.to_string()),
                    };
                    return this.fail(error);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.first.is_empty()
    }
}

impl fmt::Debug for RecvBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBody")
            .field("request_id", &self.request_id)
            .field("buffered", &self.first.len())
            .field("reading", &self.stream.is_none())
            .field("done", &self.done)
            .field("framed", &self.framing.is_some())
            .finish_non_exhaustive()
    }
}
