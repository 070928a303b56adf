//! One HTTP/3 request stream (RFC 9114 §4.1): the request body sent frame by frame as the
//! tunnel delivers it, the response head awaited meanwhile, and the response body handed
//! out frame by frame as the caller polls it, flow control passing backpressure both ways.
//! Abandoning either direction cancels the request the way RFC 9114 §4.1.1 asks: the
//! sending part is reset and the receiving part stopped, with H3_REQUEST_CANCELLED.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Either};
use h3::error::{Code, StreamError};
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tracing::debug;

use super::{H3Error, RequestStream, SendRequest};
use crate::forward::body::{BoxError, RequestBody};

type SendStream = h3::client::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
type RecvStream = h3::client::RequestStream<h3_quinn::RecvStream, Bytes>;

/// Most interim (1xx) responses skipped before the final one.
const MAX_INTERIM: usize = 16;

/// The rest of the request body on its way upstream.
type Upload = BoxFuture<'static, Result<(), UploadError>>;

enum UploadError {
    /// The request body failed (the sidecar reset its stream).
    Body(BoxError),
    /// The upstream stopped reading the request, or the connection failed.
    Upstream(StreamError),
}

/// Sends the request body on `stream` (its head is already sent) while waiting for the
/// response head, and returns the response with its body still streaming.
pub(super) async fn exchange(
    conn: SendRequest,
    stream: RequestStream,
    body: RequestBody,
) -> Result<Response<H3Body>, H3Error> {
    let (send, recv) = stream.split();
    let mut recv = RecvHalf {
        stream: recv,
        reading: false,
        ended: false,
    };
    let send = SendHalf {
        stream: send,
        finished: false,
    };
    let mut upload: Option<Upload> = Some(send_body(send, body).boxed());
    // An upstream may answer before it has the whole request (RFC 9114 §4.1), so the head
    // is awaited while the body goes up.
    let head = loop {
        let event = match upload.as_mut() {
            None => Either::Left(recv.head().await),
            Some(up) => tokio::select! {
                head = recv.head() => Either::Left(head),
                done = up => Either::Right(done),
            },
        };
        match event {
            Either::Left(head) => break head,
            Either::Right(done) => {
                upload = None;
                match done {
                    Ok(()) => {}
                    Err(UploadError::Body(e)) => return Err(H3Error::Body(e)),
                    // STOP_SENDING: the upstream may have answered already, or still will
                    // (RFC 9114 §4.1.1); its response head decides.
                    Err(UploadError::Upstream(e)) => {
                        debug!(error = %e, "the HTTP/3 upstream stopped reading the request body");
                    }
                }
            }
        }
    };
    let head = head?;
    let (parts, ()) = head.into_parts();
    Ok(Response::from_parts(
        parts,
        H3Body {
            recv,
            upload,
            state: State::Data,
            _conn: conn,
        },
    ))
}

async fn send_body(mut send: SendHalf, mut body: RequestBody) -> Result<(), UploadError> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(UploadError::Body)?;
        match frame.into_data() {
            Ok(data) if data.is_empty() => {}
            Ok(data) => send
                .stream
                .send_data(data)
                .await
                .map_err(UploadError::Upstream)?,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    // RFC 9114 §4.1: trailers end the message.
                    send.stream
                        .send_trailers(trailers)
                        .await
                        .map_err(UploadError::Upstream)?;
                    break;
                }
            }
        }
    }
    send.stream.finish().await.map_err(UploadError::Upstream)?;
    send.finished = true;
    Ok(())
}

/// The sending part of a request stream; reset unless finished (a dropped quinn stream
/// would otherwise be finished, making a truncated body look whole).
struct SendHalf {
    stream: SendStream,
    finished: bool,
}

impl Drop for SendHalf {
    fn drop(&mut self) {
        if !self.finished {
            self.stream.stop_stream(Code::H3_REQUEST_CANCELLED);
        }
    }
}

/// The receiving part of a request stream; stopped unless read to its end.
struct RecvHalf {
    stream: RecvStream,
    /// A read is in progress: h3-quinn has moved the quinn stream into its read future,
    /// where it cannot be stopped (quinn then stops it with code 0 when it is dropped).
    reading: bool,
    ended: bool,
}

impl RecvHalf {
    /// The final response head. Interim (1xx) responses are skipped (RFC 9114 §4.1: any
    /// number may precede the final one; the envelope carries only the final one), at
    /// most [`MAX_INTERIM`] of them.
    async fn head(&mut self) -> Result<Response<()>, H3Error> {
        self.reading = true;
        let mut interim = 0;
        let head = loop {
            match self.stream.recv_response().await {
                Ok(head) if head.status().is_informational() => {
                    interim += 1;
                    if interim > MAX_INTERIM {
                        break Err(H3Error::Interim(MAX_INTERIM));
                    }
                }
                Ok(head) => break Ok(head),
                Err(e) => break Err(H3Error::Head(e)),
            }
        };
        self.reading = false;
        head
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, StreamError>> {
        let polled = self.stream.poll_recv_data(cx);
        self.reading = polled.is_pending();
        polled.map_ok(|data| data.map(|mut buf| buf.copy_to_bytes(buf.remaining())))
    }

    fn poll_trailers(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<http::HeaderMap>, StreamError>> {
        let polled = self.stream.poll_recv_trailers(cx);
        self.reading = polled.is_pending();
        if let Poll::Ready(Ok(_)) = polled {
            self.ended = true;
        }
        polled
    }
}

impl Drop for RecvHalf {
    fn drop(&mut self) {
        if !self.ended && !self.reading {
            self.stream.stop_sending(Code::H3_REQUEST_CANCELLED);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    Trailers,
    Done,
}

/// An HTTP/3 response body: DATA frames as they arrive, then the trailers, if any, as a
/// trailers frame. Polling it also sends whatever is left of the request body.
pub(crate) struct H3Body {
    recv: RecvHalf,
    upload: Option<Upload>,
    state: State,
    /// Keeps the connection open while the body streams: h3 closes a connection once no
    /// request sender is left (after a reload dropped the service, say).
    _conn: SendRequest,
}

impl std::fmt::Debug for H3Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Body")
            .field("state", &self.state)
            .field("uploading", &self.upload.is_some())
            .finish_non_exhaustive()
    }
}

impl Body for H3Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(upload) = this.upload.as_mut()
            && let Poll::Ready(done) = upload.poll_unpin(cx)
        {
            this.upload = None;
            match done {
                Ok(()) => {}
                Err(UploadError::Body(e)) => {
                    // The request is cancelled upstream (the send part was reset as the
                    // upload ended); the error tells the caller it was the body's fault.
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(e)));
                }
                Err(UploadError::Upstream(e)) => {
                    debug!(error = %e, "the HTTP/3 upstream stopped reading the request body");
                }
            }
        }
        loop {
            match this.state {
                State::Data => match this.recv.poll_data(cx) {
                    Poll::Ready(Ok(Some(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Poll::Ready(Ok(None)) => this.state = State::Trailers,
                    Poll::Ready(Err(e)) => {
                        this.state = State::Done;
                        return Poll::Ready(Some(Err(Box::new(H3Error::Response(e)))));
                    }
                    Poll::Pending => return Poll::Pending,
                },
                State::Trailers => {
                    let polled = match this.recv.poll_trailers(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(polled) => polled,
                    };
                    this.state = State::Done;
                    return Poll::Ready(match polled {
                        Ok(Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
                        Ok(None) => None,
                        Err(e) => Some(Err(Box::new(H3Error::Response(e)))),
                    });
                }
                State::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done
    }

    fn size_hint(&self) -> SizeHint {
        if self.is_end_stream() {
            SizeHint::with_exact(0)
        } else {
            SizeHint::default()
        }
    }
}
