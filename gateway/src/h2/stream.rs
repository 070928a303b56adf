//! The two halves of one HTTP/2 tunnel stream on the gateway (SPEC.md §12.1): the request
//! body arriving as hyper's `Incoming` ([`RecvHalf`]), and the response body fed through a
//! bounded channel ([`SendHalf`] → [`ChannelBody`], which hyper sends as DATA frames).
//!
//! Flow control stays end to end: the channel holds at most [`CHANNEL_CHUNKS`] chunks, and
//! hyper takes the next one only once HTTP/2 flow control (RFC 9113 §5.2) lets it send the
//! previous, so a sidecar that reads slowly slows the upstream read, as over QUIC.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::error::error_chain;
use crate::tunnel::transport::RecvError;

/// The trailer field that carries an aimux stream code when a payload is abandoned (SPEC.md
/// §12.1): HTTP/2's own RST_STREAM code space is not ours, and hyper does not let us choose
/// it.
pub(crate) const RESET_TRAILER: HeaderName = HeaderName::from_static("aimux-reset");

/// Chunks queued between the stream task and hyper. Each chunk is one upstream body frame
/// (hyper reads at most ~400 KB at a time), so this bounds the queue in bytes too.
pub(crate) const CHANNEL_CHUNKS: usize = 4;

/// How a payload ends.
#[derive(Debug)]
enum End {
    /// END_STREAM after the queued data.
    Finish,
    /// The trailer with this code, dropping data still queued (as QUIC's RESET_STREAM
    /// discards unsent data, RFC 9000 §3.1).
    Reset(u32),
}

/// The payload ended already, or the peer no longer reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stream is closed")]
pub(crate) struct Closed;

/// The writing end of an HTTP/2 response body.
///
/// Dropped without [`finish`](SendHalf::finish) or [`reset`](SendHalf::reset), the body
/// fails and hyper resets the stream (RST_STREAM): an abandoned payload must never look
/// complete (SPEC.md §2.3), whereas a dropped quinn stream would send FIN.
#[derive(Debug)]
pub(crate) struct SendHalf {
    id: u64,
    data: Option<mpsc::Sender<Bytes>>,
    end: Option<oneshot::Sender<End>>,
    gone: CancellationToken,
}

/// The response body hyper sends: queued chunks, then END_STREAM or the reset trailer.
#[derive(Debug)]
pub(crate) struct ChannelBody {
    data: mpsc::Receiver<Bytes>,
    end: Option<oneshot::Receiver<End>>,
    finishing: bool,
    done: bool,
    /// Tells the [`SendHalf`] when hyper drops the body: the stream was reset by the peer,
    /// the connection ended, or the body was sent whole.
    _gone: DropGuard,
}

/// The body was dropped without an end: hyper resets the stream.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the gateway abandoned the response")]
pub(crate) struct Abandoned;

/// A connected pair; `id` names the stream in logs.
pub(crate) fn channel(id: u64) -> (SendHalf, ChannelBody) {
    let (data_tx, data_rx) = mpsc::channel(CHANNEL_CHUNKS);
    let (end_tx, end_rx) = oneshot::channel();
    let gone = CancellationToken::new();
    let send = SendHalf {
        id,
        data: Some(data_tx),
        end: Some(end_tx),
        gone: gone.clone(),
    };
    let body = ChannelBody {
        data: data_rx,
        end: Some(end_rx),
        finishing: false,
        done: false,
        _gone: gone.drop_guard(),
    };
    (send, body)
}

impl SendHalf {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Queues one chunk, waiting while the queue is full.
    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<(), Closed> {
        let data = self.data.as_ref().ok_or(Closed)?;
        data.send(chunk).await.map_err(|_| Closed)
    }

    /// Ends the payload after the queued chunks (END_STREAM).
    pub(crate) fn finish(&mut self) -> Result<(), Closed> {
        self.data = None;
        let end = self.end.take().ok_or(Closed)?;
        end.send(End::Finish).map_err(|_| Closed)
    }

    /// Abandons the payload with `code`, sent as the [`RESET_TRAILER`].
    pub(crate) fn reset(&mut self, code: u32) {
        self.data = None;
        if let Some(end) = self.end.take() {
            // Fails only if hyper already dropped the body: nobody to tell.
            let _ = end.send(End::Reset(code));
        }
    }

    /// Resolves once hyper has dropped the body (see [`ChannelBody`]).
    pub(crate) fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        self.gone.clone().cancelled_owned()
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
            .unwrap_or(u64::from(aimux_wire::codes::INTERNAL)),
    )
}

/// The request body of an HTTP/2 tunnel stream: the sidecar's request envelope and payload.
#[derive(Debug)]
pub(crate) struct RecvHalf {
    body: Option<Incoming>,
    /// Bytes of a DATA frame beyond what the last read asked for.
    rest: Bytes,
}

impl RecvHalf {
    pub(crate) fn new(body: Incoming) -> Self {
        Self {
            body: Some(body),
            rest: Bytes::new(),
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
        let Some(body) = self.body.as_mut() else {
            return Ok(None);
        };
        loop {
            match body.frame().await {
                None => {
                    self.body = None;
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
                        let code = frame.trailers_ref().and_then(reset_code);
                        if let Some(code) = code {
                            self.body = None;
                            return Err(RecvError::Reset(code));
                        }
                        // Other trailers have no meaning in the tunnel; END_STREAM follows.
                    }
                },
                Some(Err(e)) => {
                    self.body = None;
                    return Err(RecvError::Aborted(error_chain(&e)));
                }
            }
        }
    }

    /// Stops reading: drops the body (see `StreamRecv::stop`).
    pub(crate) fn stop(&mut self) {
        self.body = None;
        self.rest = Bytes::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn data_then_end_stream() {
        let (mut send, mut body) = channel(1);
        send.write(Bytes::from_static(b"a")).await.unwrap();
        send.write(Bytes::from_static(b"b")).await.unwrap();
        send.finish().unwrap();
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert_eq!(got, b"ab");
        assert!(body.is_end_stream());
        assert_eq!(send.write(Bytes::from_static(b"c")).await, Err(Closed));
    }

    #[tokio::test]
    async fn a_reset_overtakes_queued_data_and_carries_its_code() {
        let (mut send, mut body) = channel(1);
        send.write(Bytes::from_static(b"queued")).await.unwrap();
        send.reset(0x12);
        let frame = body.frame().await.unwrap().unwrap();
        let trailers = frame.into_trailers().unwrap();
        assert_eq!(reset_code(&trailers), Some(0x12));
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn dropping_the_sender_abandons_the_body() {
        let (mut send, mut body) = channel(1);
        send.write(Bytes::from_static(b"x")).await.unwrap();
        drop(send);
        // Queued data may or may not come first; the body must end in an error, never
        // cleanly.
        let mut ended_in_error = false;
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                ended_in_error = true;
            }
        }
        assert!(ended_in_error);
    }

    #[tokio::test]
    async fn the_sender_learns_when_the_body_is_dropped() {
        let (mut send, body) = channel(1);
        let stopped = send.stopped();
        drop(body);
        tokio::time::timeout(std::time::Duration::from_secs(5), stopped)
            .await
            .unwrap();
        assert_eq!(send.write(Bytes::from_static(b"x")).await, Err(Closed));
    }

    #[test]
    fn reset_trailers_round_trip_and_garbage_is_internal() {
        assert_eq!(reset_code(&reset_trailers(0x10)), Some(0x10));
        assert_eq!(reset_code(&HeaderMap::new()), None);
        let mut odd = HeaderMap::new();
        odd.insert(RESET_TRAILER, HeaderValue::from_static("nope"));
        assert_eq!(reset_code(&odd), Some(0x1f));
    }
}
