//! One agent request over one tunnel stream (SPEC.md §2), QUIC or HTTP/2 alike (the
//! transport seam is `tunnel::transport`):
//!
//! 1. resolve the destination (pure: `proxy.rs`);
//! 2. read a bounded look-ahead of the body (`lookahead.rs`), classify the request from it
//!    (pure: `sniff/`) and build the envelope with that intent (pure: `request.rs`);
//! 3. take the connection (bounded wait) and open a stream (bounded wait for credit), send
//!    the envelope followed by the look-ahead bytes (one write when they are the whole body);
//!    a connection found dead before the gateway took anything of the request is skipped for
//!    the next one, within the same bounded wait (the look-ahead is held until then);
//! 4. copy the rest of the body in its own task (`upload.rs`) while reading the response
//!    envelope here (bounded by the envelope limits and a timeout);
//! 5. answer: the upstream's head and a streaming body for `forwarded` (with the upstream's
//!    trailers when the agent sent `TE: trailers`, SPEC.md §6.3), a short text answer for
//!    any other outcome or failure.
//!
//! Every failure is logged once, with the request id, and answered with a status and a text
//! body that says what went wrong.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aimux_wire::{EncodeError, Malformed, Outcome, RequestId, codes};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Either;
use hyper::body::Incoming;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::body::{HeadError, RecvBody, RecvGuard, read_head};
use crate::config::TunnelSettings;
use crate::fmt::{Secs, app_code_name};
use crate::lookahead;
use crate::proxy::{self, Addressing, TargetError};
use crate::reply::{self, ResponseBody};
use crate::request::{self, FreshIds};
use crate::sniff::{self, SniffRequest};
use crate::stats::{Counters, InFlight};
use crate::tunnel::transport::OpenError;
use crate::tunnel::{Tunnel, Unavailable};
use crate::upload::{SendGuard, UploadAbort, upload};

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The agent's SPIFFE ID, claimed in every envelope.
    pub(crate) identity: String,
    /// `agent/NAME`, for messages.
    pub(crate) label: String,
    pub(crate) gateway: SocketAddr,
    pub(crate) tunnel: Tunnel,
    pub(crate) settings: TunnelSettings,
    pub(crate) counters: Arc<Counters>,
    /// Owns the upload tasks.
    pub(crate) tasks: TaskTracker,
    /// Cancelled when the shutdown grace period is over: in-flight work is cut off.
    pub(crate) hard_stop: CancellationToken,
}

/// The hyper service function of every listener.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    addressing: Arc<Addressing>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let in_flight = shared.counters.start_request();
    let ids = FreshIds::random();
    let request_id = RequestId::from(ids.request_id).to_string();
    match exchange(&shared, &addressing, request, &ids, &request_id, in_flight).await {
        Ok(response) => Ok(response),
        Err(failure) => {
            Counters::incr(&shared.counters.failures);
            let message = failure.message(&shared);
            if failure.is_client_error() {
                info!(%request_id, "request refused by the sidecar: {message}");
            } else {
                warn!(%request_id, "request failed: {message}");
            }
            Ok(failure.into_response(&message))
        }
    }
}

async fn exchange(
    shared: &Shared,
    addressing: &Addressing,
    request: Request<Incoming>,
    ids: &FreshIds,
    request_id: &str,
    in_flight: InFlight,
) -> Result<Response<ResponseBody>, Failed> {
    let (parts, mut body) = request.into_parts();
    let target = proxy::resolve(addressing, &parts.method, &parts.uri, &parts.headers)
        .map_err(Failed::Target)?;
    let settings = &shared.settings;
    let ahead = lookahead::read(
        &mut body,
        settings.sniff_limit,
        settings.sniff_wait,
        sniff::body_readable(&parts.headers),
    )
    .await
    .map_err(Failed::AgentBody)?;
    let intent = sniff::sniff(&SniffRequest {
        method: &parts.method,
        path: &target.path,
        headers: &parts.headers,
        body: &ahead.prefix(settings.sniff_limit),
        complete: ahead.complete(settings.sniff_limit),
    });
    debug!(
        %request_id,
        method = %parts.method,
        destination = %target.destination,
        path = %target.path,
        intent = %format_args!(
            "{} {} {} (flags {:#x})",
            intent.protocol, intent.operation, intent.target, intent.flags.0
        ),
        "forwarding request"
    );
    let envelope = request::build_envelope(
        &shared.identity,
        &target,
        &parts.method,
        &parts.headers,
        intent,
        ids,
    );
    let limits = &settings.limits;
    let envelope_bytes = envelope.to_bytes(limits).map_err(Failed::Unencodable)?;

    // A body that ended within the look-ahead leaves with the envelope, in one write.
    let ended = ahead.ended();
    let first = if ended {
        ahead.joined_after(envelope_bytes)
    } else {
        envelope_bytes
    };
    let (send, mut recv) = open_stream(shared, first).await?;
    let abort = UploadAbort::child_of(&shared.hard_stop);
    let (progress, progress_rx) = watch::channel(());
    if ended {
        send.finish();
        drop(progress);
    } else {
        shared.tasks.spawn(upload(
            ahead.into_chunks(),
            body,
            send,
            abort.clone(),
            progress,
            request_id.to_owned(),
        ));
    }

    let head_timeout = shared.settings.response_head_timeout;
    let head = tokio::select! {
        head = read_head(&mut recv, limits) => Some(head),
        () = head_deadline(progress_rx, head_timeout) => None,
    };
    let (envelope, first) = match head {
        Some(Ok(head)) => head,
        Some(Err(HeadError::Refused(why))) => {
            recv.stop(codes::STREAM_CANCELLED);
            abort.abort(codes::STREAM_CANCELLED);
            return Err(Failed::StreamRefused(why));
        }
        Some(Err(e)) => {
            let code = match e {
                HeadError::Malformed(_) | HeadError::Truncated { .. } => codes::STREAM_MALFORMED,
                _ => codes::STREAM_CANCELLED,
            };
            // SPEC.md §9: a malformed response envelope resets the stream.
            recv.stop(code);
            abort.abort(code);
            return Err(Failed::Head(e));
        }
        None => {
            recv.stop(codes::STREAM_TIMEOUT);
            abort.abort(codes::STREAM_TIMEOUT);
            return Err(Failed::HeadTimeout);
        }
    };

    match (envelope.outcome, &envelope.http) {
        (Outcome::Forwarded, Some(head)) => {
            let (status, headers) = reply::forwarded(head).map_err(|why| {
                recv.stop(codes::STREAM_MALFORMED);
                abort.abort(codes::STREAM_MALFORMED);
                Failed::BadReply(why)
            })?;
            Counters::incr(&shared.counters.forwarded);
            debug!(%request_id, status = status.as_u16(), "forwarded");
            let mut body = RecvBody::new(
                first,
                recv,
                request_id.to_owned(),
                Arc::clone(&shared.counters),
                Some(in_flight),
            );
            if envelope.framed_payload {
                // DATA frames and, at the end, the upstream's trailers (SPEC.md §6.3).
                body = body.framed(limits);
            }
            let mut response = Response::new(Either::Right(body));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            Ok(response)
        }
        (Outcome::Forwarded, None) => {
            recv.stop(codes::STREAM_MALFORMED);
            abort.abort(codes::STREAM_MALFORMED);
            Err(Failed::BadReply(
                "the gateway said `forwarded` but sent no HTTP response head".to_owned(),
            ))
        }
        (outcome, _) => {
            // The request was refused; the rest of its body is not wanted.
            abort.abort(codes::STREAM_CANCELLED);
            Counters::incr(&shared.counters.refused);
            info!(
                %request_id,
                outcome = outcome.as_str(),
                destination = %target.destination,
                "the gateway did not forward the request: {}",
                if envelope.reason.is_empty() { "no reason given" } else { &envelope.reason }
            );
            Ok(reply::refusal(&envelope))
        }
    }
}

/// Completes when the gateway has had `limit` to answer: `limit` after the request body was
/// sent in full (or abandoned), or after `limit` without any upload progress. An upstream
/// typically answers only after reading the whole body, so a clock started when the stream
/// opened would cut off large uploads over slow links; one that waited for the body without
/// bound would hang on a gateway that stopped reading.
async fn head_deadline(mut progress: watch::Receiver<()>, limit: Duration) {
    loop {
        match tokio::time::timeout(limit, progress.changed()).await {
            // The body moved: the clock starts over.
            Ok(Ok(())) => {}
            // The upload is over (the sender is gone): one last full wait.
            Ok(Err(_closed)) => break,
            // No progress for the whole limit.
            Err(_elapsed) => return,
        }
    }
    tokio::time::sleep(limit).await;
}

/// Opens a stream on the live connection and sends the envelope, within `connect_wait`
/// (stream credit included: QUIC's stream limit, HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS;
/// see `TunnelConn::open`).
///
/// Nothing of the agent's request has been consumed yet, so if the connection turns out to
/// be dead (the gateway restarted and the supervisor has not noticed), the next connection is
/// awaited and the stream opened there instead.
pub(crate) async fn open_stream(
    shared: &Shared,
    envelope: Bytes,
) -> Result<(SendGuard, RecvGuard), Failed> {
    let deadline = Instant::now() + shared.settings.connect_wait;
    let mut failed = None;
    loop {
        let conn = shared
            .tunnel
            .connection(deadline, failed)
            .await
            .map_err(Failed::Unavailable)?;
        match conn.open(envelope.clone(), deadline).await {
            Ok((send, recv)) => return Ok((SendGuard::new(send), RecvGuard::new(recv))),
            Err(OpenError::Lost) => failed = Some(conn.id()),
            Err(OpenError::NoCredit) => return Err(Failed::NoStreamCredit),
            Err(OpenError::Refused(why)) => return Err(Failed::StreamRefused(why)),
        }
    }
}

/// Why a request could not be completed.
#[derive(Debug)]
pub(crate) enum Failed {
    /// No usable destination (proxy listener) or a CONNECT.
    Target(TargetError),
    /// Reading the look-ahead of the agent's body failed (it disconnected, or sent a
    /// malformed chunked encoding); nothing was sent to the gateway.
    AgentBody(hyper::Error),
    /// The request head cannot be put in an envelope (over a limit, invalid value).
    Unencodable(EncodeError),
    /// No connection to the gateway.
    Unavailable(Unavailable),
    /// The gateway allowed no new stream in time.
    NoStreamCredit,
    /// The gateway refused the stream at once.
    StreamRefused(String),
    /// The response envelope could not be read.
    Head(HeadError),
    /// No response envelope in time.
    HeadTimeout,
    /// The response envelope cannot be relayed.
    BadReply(String),
}

impl Failed {
    fn is_client_error(&self) -> bool {
        matches!(
            self,
            Failed::Target(_) | Failed::AgentBody(_) | Failed::Unencodable(_)
        )
    }

    fn status(&self) -> StatusCode {
        match self {
            Failed::Target(t) => t.status(),
            Failed::AgentBody(_) => StatusCode::BAD_REQUEST,
            Failed::Unencodable(EncodeError::Invalid(
                Malformed::FieldTooLarge { .. }
                | Malformed::TooManyHeaders { .. }
                | Malformed::HeaderBlockTooLarge { .. },
            )) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Failed::Unencodable(_) => StatusCode::BAD_REQUEST,
            // A connection lost before the gateway answered means the gateway is
            // unavailable (crashed, restarting, unreachable), not that it answered badly.
            Failed::Unavailable(_)
            | Failed::NoStreamCredit
            | Failed::Head(HeadError::ConnectionLost(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Failed::HeadTimeout => StatusCode::GATEWAY_TIMEOUT,
            Failed::StreamRefused(_) | Failed::Head(_) | Failed::BadReply(_) => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// The `x-aimux-outcome` value: the sidecar's own names, distinct from the gateway's.
    fn outcome(&self) -> &'static str {
        match self {
            Failed::Target(TargetError::Connect) => "method_not_allowed",
            Failed::Target(_) | Failed::AgentBody(_) | Failed::Unencodable(_) => "bad_request",
            Failed::Unavailable(Unavailable::Stopped) => "shutting_down",
            Failed::Unavailable(_) => "no_connection",
            Failed::NoStreamCredit => "no_stream_credit",
            Failed::StreamRefused(_) | Failed::Head(HeadError::Refused(_)) => "stream_refused",
            Failed::Head(HeadError::Reset(_) | HeadError::Aborted(_)) => "stream_reset",
            Failed::Head(HeadError::ConnectionLost(_)) => "connection_lost",
            Failed::Head(_) | Failed::BadReply(_) => "bad_gateway_reply",
            Failed::HeadTimeout => "gateway_timeout",
        }
    }

    pub(crate) fn message(&self, shared: &Shared) -> String {
        let gw = shared.gateway;
        let wait = Secs(shared.settings.connect_wait);
        let why = match self {
            Failed::Target(t) => t.message(),
            Failed::AgentBody(e) => format!("reading the request body failed: {e}"),
            Failed::Unencodable(e) => format!("the request cannot be sent to the gateway: {e}"),
            Failed::Unavailable(Unavailable::NoConnection { cause }) => format!(
                "no connection to the gateway {gw} for {wait}: {}; retrying",
                cause
                    .as_deref()
                    .unwrap_or("the first connection attempt has not finished")
            ),
            Failed::Unavailable(Unavailable::Refused { cause }) => format!(
                "no connection to the gateway {gw}: {}",
                cause
                    .as_deref()
                    .unwrap_or("the gateway refused this sidecar")
            ),
            Failed::Unavailable(Unavailable::Stopped) => "the sidecar is shutting down".to_owned(),
            Failed::NoStreamCredit => format!(
                "the gateway {gw} allowed no new request stream within {wait} (too many requests \
                 in flight); retry later"
            ),
            Failed::StreamRefused(e) => {
                format!("the gateway {gw} refused the request stream: {e}")
            }
            Failed::Head(HeadError::Truncated { received }) => format!(
                "the gateway {gw} ended the stream before a complete response envelope \
                 ({received} bytes received)"
            ),
            Failed::Head(HeadError::Malformed(e)) => {
                format!("the gateway {gw} sent an invalid response envelope: {e}")
            }
            Failed::Head(HeadError::Reset(code)) => format!(
                "the gateway {gw} reset the request stream before answering (code {code:#x}, {})",
                app_code_name(*code)
            ),
            Failed::Head(HeadError::Aborted(why)) => format!(
                "the gateway {gw} reset the request stream before answering (HTTP/2 RST_STREAM \
                 without an aimux code: {why})"
            ),
            Failed::Head(HeadError::ConnectionLost(why)) => {
                format!("the connection to the gateway {gw} was lost before it answered: {why}")
            }
            Failed::Head(HeadError::Refused(why)) => {
                format!("the gateway {gw} refused the request stream: {why}")
            }
            Failed::Head(HeadError::Read(e)) => {
                format!("reading the gateway's answer failed: {e}")
            }
            Failed::HeadTimeout => format!(
                "the gateway {gw} did not answer within {} of the end of the request",
                Secs(shared.settings.response_head_timeout)
            ),
            Failed::BadReply(why) => why.clone(),
        };
        format!("aimux sidecar ({}): {why}", shared.label)
    }

    fn into_response(self, message: &str) -> Response<ResponseBody> {
        let mut response = reply::text(self.status(), self.outcome(), message);
        if let Failed::Target(TargetError::Connect) = self {
            // RFC 9110 §15.5.6: a 405 lists the methods that are supported.
            response.headers_mut().insert(
                http::header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn the_answer_clock_restarts_with_each_upload_progress() {
        let (progress, rx) = watch::channel(());
        let start = Instant::now();
        let deadline = tokio::spawn(head_deadline(rx, LIMIT));
        // An upload taking 24 s in steps of 8 s never trips a 10 s limit...
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(8)).await;
            progress.send_replace(());
        }
        drop(progress);
        // ...and the gateway then has the full limit to answer.
        deadline.await.unwrap();
        assert_eq!(start.elapsed().as_secs(), 24 + 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_upload_or_a_finished_one_gets_the_limit() {
        let (progress, rx) = watch::channel(());
        let start = Instant::now();
        head_deadline(rx, LIMIT).await;
        assert_eq!(start.elapsed().as_secs(), 10);
        drop(progress);

        let (progress, rx) = watch::channel(());
        drop(progress);
        let start = Instant::now();
        head_deadline(rx, LIMIT).await;
        assert_eq!(start.elapsed().as_secs(), 10);
    }
}
