//! The request side of a request stream: the envelope, then the agent's body copied frame by
//! frame as it arrives (starting with the chunks the look-ahead read), then FIN.
//!
//! Nothing is buffered beyond the chunk in hand (and, over HTTP/2, a few chunks in a bounded
//! channel): a write waits for the transport's flow control, which stops hyper reading from
//! the agent's socket, so a body of any size streams with bounded memory. A body that ends
//! abnormally (the agent disconnected, a malformed chunked encoding) resets the stream
//! instead of finishing it: quinn's default on drop is FIN, which would let the gateway take a
//! truncated body for a complete one (SPEC.md §2.3).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aimux_wire::codes;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::fmt::app_code_name;
use crate::tunnel::transport::{SendError, StreamSend};

/// A stream's sending direction that is reset with `CANCELLED` if dropped before it was
/// finished.
#[derive(Debug)]
pub(crate) struct SendGuard {
    stream: StreamSend,
    done: bool,
}

impl SendGuard {
    pub(crate) fn new(stream: StreamSend) -> Self {
        SendGuard {
            stream,
            done: false,
        }
    }

    /// Writes one chunk in full (waits for flow control).
    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<(), SendError> {
        self.stream.write(chunk).await
    }

    /// Ends the payload (FIN, END_STREAM).
    pub(crate) fn finish(mut self) {
        self.done = true;
        self.stream.finish();
    }

    /// Abandons the payload with `code` (RESET_STREAM, RFC 9000 §3.1; over HTTP/2 the
    /// reset trailer, SPEC.md §12.1).
    pub(crate) fn reset(&mut self, code: u32) {
        if !self.done {
            self.done = true;
            self.stream.reset(code);
        }
    }
}

impl Drop for SendGuard {
    fn drop(&mut self) {
        self.reset(codes::STREAM_CANCELLED);
    }
}

/// Lets the request handler abandon an upload it no longer needs (the gateway refused the
/// request, or its reply was unusable), with the stream error code to use.
#[derive(Debug, Clone)]
pub(crate) struct UploadAbort {
    token: CancellationToken,
    code: Arc<AtomicU32>,
}

impl UploadAbort {
    /// A handle cancelled also when `parent` is (the sidecar's hard stop).
    pub(crate) fn child_of(parent: &CancellationToken) -> Self {
        UploadAbort {
            token: parent.child_token(),
            code: Arc::new(AtomicU32::new(codes::STREAM_CANCELLED)),
        }
    }

    pub(crate) fn abort(&self, code: u32) {
        self.code.store(code, Ordering::Relaxed);
        self.token.cancel();
    }
}

/// Copies the agent's body into the stream and finishes it: first `ahead`, the chunks the
/// look-ahead already read (`lookahead.rs`), then the rest of `body` as it arrives. Runs as
/// its own task (owned by the sidecar's task tracker) so the request body and the response
/// body flow at once.
///
/// `progress` ticks each time a chunk is accepted by the stream and is dropped when the upload
/// ends, however it ends: the response timeout runs from there (see `exchange::head_deadline`).
pub(crate) async fn upload(
    ahead: Vec<Bytes>,
    mut body: Incoming,
    mut send: SendGuard,
    abort: UploadAbort,
    progress: watch::Sender<()>,
    request_id: String,
) {
    let mut sent: u64 = 0;
    let mut ahead = ahead.into_iter();
    loop {
        if let Some(chunk) = ahead.next() {
            match write(&mut send, &abort, chunk, &mut sent, &progress, &request_id).await {
                Written::Yes | Written::Abandoned => continue,
                Written::Over => return,
            }
        }
        let frame = tokio::select! {
            biased;
            () = abort.token.cancelled() => {
                let code = abort.code.load(Ordering::Relaxed);
                send.reset(code);
                debug!(%request_id, sent, "request body abandoned ({})", app_code_name(code.into()));
                return;
            }
            frame = body.frame() => frame,
        };
        let chunk = match frame {
            None => {
                send.finish();
                debug!(%request_id, sent, "request body sent");
                return;
            }
            Some(Err(e)) => {
                send.reset(codes::STREAM_CANCELLED);
                debug!(%request_id, sent, "the agent's request body failed: {e}");
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(chunk) => chunk,
                Err(trailers) => {
                    // Request payloads are never framed in wire version 1 (SPEC.md §6.3): a
                    // gateway that skipped an unknown "framed" field would forward the frames
                    // as body bytes. Dropping is allowed (RFC 9110 §6.5.1) and rare (gRPC has
                    // no request trailers), so it is said, not silent.
                    let names: Vec<&str> = trailers
                        .trailers_ref()
                        .map(|t| t.keys().map(|k| k.as_str()).collect())
                        .unwrap_or_default();
                    warn!(%request_id, ?names, "the agent sent request trailers; they are dropped (the mesh carries only response trailers)");
                    continue;
                }
            },
        };
        if let Written::Over =
            write(&mut send, &abort, chunk, &mut sent, &progress, &request_id).await
        {
            return;
        }
    }
}

/// What became of one chunk.
enum Written {
    /// Accepted by the stream.
    Yes,
    /// Not written: the upload is being abandoned (the body loop resets the stream).
    Abandoned,
    /// The stream is over; the upload ends.
    Over,
}

/// Writes one chunk (waiting for flow control unless the upload is abandoned meanwhile).
async fn write(
    send: &mut SendGuard,
    abort: &UploadAbort,
    chunk: Bytes,
    sent: &mut u64,
    progress: &watch::Sender<()>,
    request_id: &str,
) -> Written {
    if chunk.is_empty() {
        return Written::Yes;
    }
    let len = chunk.len() as u64;
    let written = tokio::select! {
        biased;
        () = abort.token.cancelled() => return Written::Abandoned,
        written = send.write(chunk) => written,
    };
    match written {
        Ok(()) => {
            *sent = sent.saturating_add(len);
            progress.send_replace(());
            Written::Yes
        }
        Err(SendError::Stopped(code)) => {
            // The gateway does not want (the rest of) the body, e.g. it refused the
            // request; its response says why. quinn answers STOP_SENDING with a reset;
            // over HTTP/2 the stream is over already.
            send.done = true;
            debug!(
                %request_id,
                sent,
                "the gateway stopped the request body ({})",
                code.map_or("no code", app_code_name)
            );
            Written::Over
        }
        Err(e) => {
            send.done = true;
            debug!(%request_id, sent, "request body not sent: {e}");
            Written::Over
        }
    }
}
