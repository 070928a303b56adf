//! The two halves of one HTTP/2 tunnel stream on the sidecar (SPEC.md §12.1): the request
//! body fed through a bounded channel ([`SendHalf`] → [`ChannelBody`], which hyper sends as
//! DATA frames), and the response ([`RecvHalf`]): first the gateway's `200`, then its body.
//!
//! Flow control stays end to end: the channel holds at most [`CHANNEL_CHUNKS`] chunks and
//! hyper takes the next one only once HTTP/2 flow control (RFC 9113 §5.2) lets it send the
//! previous, so the upload reads the agent's socket only as fast as the gateway reads.
//!
//! The same body type exists on the gateway (`aimux-gateway`, `h2/stream.rs`) for its
//! responses: the two crates share no runtime code.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aimux_wire::codes;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{mpsc, oneshot};

use super::io::ConnState;
use super::slots::Slot;
use crate::fmt::error_chain;
use crate::tunnel::transport::RecvError;

/// The trailer field that carries an aimux stream code when a payload is abandoned (SPEC.md
/// §12.1): HTTP/2's own RST_STREAM code space is not ours, and hyper does not let us choose
/// it.
pub(crate) const RESET_TRAILER: HeaderName = HeaderName::from_static("aimux-reset");

/// Chunks queued between the upload task and hyper. Each chunk is one frame of the agent's
/// body (hyper reads at most ~400 KB at a time), so this bounds the queue in bytes too.
pub(crate) const CHANNEL_CHUNKS: usize = 4;

/// How a payload ends.
#[derive(Debug)]
enum End {
    /// END_STREAM after the queued data.
    Finish,
    /// The reset trailer with this code, dropping data still queued (as QUIC's RESET_STREAM
    /// discards unsent data, RFC 9000 §3.1).
    Reset(u32),
}

/// The payload ended already, or the gateway no longer reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stream is closed")]
pub(crate) struct Closed;

/// The writing end of an HTTP/2 request body.
///
/// Dropped without [`finish`](SendHalf::finish) or [`reset`](SendHalf::reset), the body
/// fails and hyper resets the stream (RST_STREAM): an abandoned payload must never look
/// complete (SPEC.md §2.3).
#[derive(Debug)]
pub(crate) struct SendHalf {
    data: Option<mpsc::Sender<Bytes>>,
    end: Option<oneshot::Sender<End>>,
    /// The stream's slot, shared with the [`RecvHalf`].
    _slot: Arc<Slot>,
}

/// The request body hyper sends: queued chunks, then END_STREAM or the reset trailer.
#[derive(Debug)]
pub(crate) struct ChannelBody {
    data: mpsc::Receiver<Bytes>,
    end: Option<oneshot::Receiver<End>>,
    finishing: bool,
    done: bool,
}

/// The body was dropped without an end: hyper resets the stream.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the sidecar abandoned the request")]
pub(crate) struct Abandoned;

/// A connected pair for a stream holding `slot`.
pub(crate) fn channel(slot: Arc<Slot>) -> (SendHalf, ChannelBody) {
    let (data_tx, data_rx) = mpsc::channel(CHANNEL_CHUNKS);
    let (end_tx, end_rx) = oneshot::channel();
    let send = SendHalf {
        data: Some(data_tx),
        end: Some(end_tx),
        _slot: slot,
    };
    let body = ChannelBody {
        data: data_rx,
        end: Some(end_rx),
        finishing: false,
        done: false,
    };
    (send, body)
}

impl SendHalf {
    /// Queues one chunk, waiting while the queue is full.
    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<(), Closed> {
        let data = self.data.as_ref().ok_or(Closed)?;
        data.send(chunk).await.map_err(|_| Closed)
    }

    /// Queues one chunk without waiting (the envelope, into a fresh channel).
    pub(crate) fn try_write(&mut self, chunk: Bytes) -> Result<(), Closed> {
        let data = self.data.as_ref().ok_or(Closed)?;
        data.try_send(chunk).map_err(|_| Closed)
    }

    /// Ends the payload after the queued chunks (END_STREAM).
    pub(crate) fn finish(&mut self) {
        self.data = None;
        if let Some(end) = self.end.take() {
            // Fails only if hyper already dropped the body: nobody to tell.
            let _ = end.send(End::Finish);
        }
    }

    /// Abandons the payload with `code`, sent as the [`RESET_TRAILER`].
    pub(crate) fn reset(&mut self, code: u32) {
        self.data = None;
        if let Some(end) = self.end.take() {
            let _ = end.send(End::Reset(code));
        }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Abandoned;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Abandoned>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        // The end signal first: a reset overtakes queued data.
        if let Some(end) = this.end.as_mut() {
            match Pin::new(end).poll(cx) {
                Poll::Ready(Ok(End::Finish)) => {
                    this.end = None;
                    this.finishing = true;
                }
                Poll::Ready(Ok(End::Reset(code))) => {
                    this.end = None;
                    this.done = true;
                    return Poll::Ready(Some(Ok(Frame::trailers(reset_trailers(code)))));
                }
                Poll::Ready(Err(_dropped)) => {
                    this.end = None;
                    this.done = true;
                    return Poll::Ready(Some(Err(Abandoned)));
                }
                Poll::Pending => {}
            }
        }
        match this.data.poll_recv(cx) {
            Poll::Ready(Some(chunk)) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            Poll::Ready(None) if this.finishing => {
                this.done = true;
                Poll::Ready(None)
            }
            // The data sender is gone but the end signal has not arrived yet; its waker is
            // registered above.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// The trailer section that stands for RESET_STREAM(`code`).
pub(crate) fn reset_trailers(code: u32) -> HeaderMap {
    let mut trailers = HeaderMap::with_capacity(1);
    trailers.insert(RESET_TRAILER, HeaderValue::from(code));
    trailers
}

/// The aimux code of a reset trailer section, if it is one. A malformed value still means
/// "reset": an unknown code is INTERNAL (SPEC.md §12).
pub(crate) fn reset_code(trailers: &HeaderMap) -> Option<u64> {
    let value = trailers.get(RESET_TRAILER)?;
    Some(
        value
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::from(codes::INTERNAL)),
    )
}

/// The gateway's answer to a request, as hyper delivers it.
pub(crate) type ResponseFuture =
    Pin<Box<dyn Future<Output = hyper::Result<Response<Incoming>>> + Send>>;

/// Where the response is.
enum State {
    /// Waiting for the gateway's `200`, which it sends as soon as the stream arrives. The
    /// wait is bounded by the caller (the sidecar's response timeout).
    Head(ResponseFuture),
    Body(Incoming),
    Done,
}

/// The response of an HTTP/2 tunnel stream: the gateway's response envelope and payload.
pub(crate) struct RecvHalf {
    state: State,
    /// Bytes of a DATA frame beyond what the last read asked for.
    rest: Bytes,
    conn: Arc<ConnState>,
    /// The stream's slot, shared with the [`SendHalf`].
    _slot: Arc<Slot>,
}

impl std::fmt::Debug for RecvHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Head(_) => "head",
            State::Body(_) => "body",
            State::Done => "done",
        };
        f.debug_struct("RecvHalf")
            .field("state", &state)
            .field("rest", &self.rest.len())
            .finish_non_exhaustive()
    }
}

impl RecvHalf {
    pub(crate) fn new(response: ResponseFuture, slot: Arc<Slot>, conn: Arc<ConnState>) -> Self {
        RecvHalf {
            state: State::Head(response),
            rest: Bytes::new(),
            conn,
            _slot: slot,
        }
    }

    /// The next at most `max` bytes; `None` at END_STREAM. A reset trailer or a stream
    /// error fails the read, so a truncated payload is never taken for a complete one.
    pub(crate) async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, RecvError> {
        let max = max.max(1);
        if !self.rest.is_empty() {
            let n = max.min(self.rest.len());
            return Ok(Some(self.rest.split_to(n)));
        }
        if let State::Head(response) = &mut self.state {
            let answered = response.await;
            self.state = State::Done;
            let response = match answered {
                Err(e) => return Err(self.aborted(&e)),
                Ok(response) => response,
            };
            if response.status() != StatusCode::OK {
                return Err(RecvError::Refused(format!(
                    "it answered the HTTP/2 stream with status {}",
                    response.status()
                )));
            }
            self.state = State::Body(response.into_body());
        }
        let State::Body(body) = &mut self.state else {
            return Ok(None);
        };
        loop {
            match body.frame().await {
                None => {
                    self.state = State::Done;
                    return Ok(None);
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        if data.is_empty() {
                            continue;
                        }
                        if data.len() > max {
                            self.rest = data.split_off(max);
                        }
                        return Ok(Some(data));
                    }
                    Err(frame) => {
                        if let Some(code) = frame.trailers_ref().and_then(reset_code) {
                            self.state = State::Done;
                            return Err(RecvError::Reset(code));
                        }
                        // Other trailers have no meaning in the tunnel; END_STREAM follows.
                    }
                },
                Some(Err(e)) => {
                    self.state = State::Done;
                    return Err(self.aborted(&e));
                }
            }
        }
    }

    /// Stops reading: drops the response, which makes h2 reset the stream (RST_STREAM with
    /// CANCEL) once the request side is done too. The aimux code is not carried.
    pub(crate) fn stop(&mut self) {
        self.state = State::Done;
        self.rest = Bytes::new();
    }

    /// A stream that failed without an aimux code: the connection went away, or the gateway
    /// reset the stream (RST_STREAM).
    fn aborted(&self, e: &hyper::Error) -> RecvError {
        // After a GOAWAY, h2 fails the streams the gateway will not process (RFC 9113
        // §6.8): for the agent, the gateway went away before answering.
        if self.conn.ended() || self.conn.goaway().is_some() {
            RecvError::ConnectionLost(self.conn.describe_lost())
        } else {
            RecvError::Aborted(error_chain(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::super::slots::Slots;
    use super::*;

    async fn slot() -> Arc<Slot> {
        Arc::new(Slots::new(None).acquire(Instant::now()).await.unwrap())
    }

    #[tokio::test]
    async fn data_then_end_stream() {
        let (mut send, mut body) = channel(slot().await);
        send.try_write(Bytes::from_static(b"envelope")).unwrap();
        send.write(Bytes::from_static(b"body")).await.unwrap();
        send.finish();
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert_eq!(got, b"envelopebody");
        assert!(body.is_end_stream());
        assert_eq!(send.write(Bytes::from_static(b"late")).await, Err(Closed));
    }

    #[tokio::test]
    async fn a_reset_overtakes_queued_data_and_carries_its_code() {
        let (mut send, mut body) = channel(slot().await);
        send.write(Bytes::from_static(b"queued")).await.unwrap();
        send.reset(codes::STREAM_CANCELLED);
        let trailers = body
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_trailers()
            .unwrap();
        assert_eq!(reset_code(&trailers), Some(0x10));
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn dropping_the_sender_abandons_the_body() {
        let (send, mut body) = channel(slot().await);
        drop(send);
        assert!(body.frame().await.unwrap().is_err());
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn the_writer_learns_when_hyper_drops_the_body() {
        let (mut send, body) = channel(slot().await);
        drop(body);
        assert_eq!(send.write(Bytes::from_static(b"x")).await, Err(Closed));
    }

    #[test]
    fn reset_trailers_round_trip_and_garbage_is_internal() {
        assert_eq!(reset_code(&reset_trailers(0x12)), Some(0x12));
        assert_eq!(reset_code(&HeaderMap::new()), None);
        let mut odd = HeaderMap::new();
        odd.insert(RESET_TRAILER, HeaderValue::from_static("x"));
        assert_eq!(reset_code(&odd), Some(0x1f));
    }
}
