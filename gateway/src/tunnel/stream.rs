//! One request stream (SPEC.md §2): read the request envelope, check the claimed identity
//! against the certificate, route, check access, forward upstream, and answer on the same
//! stream with a response envelope and the response body as the upstream writes it.
//!
//! Transport-independent: QUIC and HTTP/2 streams arrive here as the same
//! [`StreamSend`]/[`StreamRecv`] pair (see `transport.rs`).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aimux_wire::{
    HttpResponseHead, Outcome, RequestEnvelope, RequestKind, ResponseEnvelope, codes,
};
use http::{Method, header};
use http_body_util::BodyExt;
use tracing::{debug, warn};

use super::deliver::{Delivery, deliver};
use super::envelope::{EnvelopeError, read_request};
use super::framed::{FrameError, write_body_frame};
use super::transport::{Stopped, StreamRecv, StreamSend};
use crate::forward::body::{RequestBody, ResponseBody, TunnelBody};
use crate::forward::{ForwardError, Outgoing, Service, client, headers};
use crate::metrics::{GaugeGuard, Status, UNKNOWN_SERVICE};
use crate::policy::{Caller, Refusal, RequestFacts};
use crate::shared::{Admitted, Shared};

/// Longest reason sent in a response envelope; reasons quote request data (a destination
/// name, say), and must stay well inside the envelope's 8 KiB field limit.
const MAX_REASON_LEN: usize = 1024;
/// After the last byte of a response, how long the stream task waits for the sidecar to
/// acknowledge it, so that a shutdown that closes the connection once every stream task is
/// done does not discard answers still in flight.
const ACK_WAIT: Duration = Duration::from_secs(2);

/// What every stream of a connection shares.
#[derive(Debug)]
pub(crate) struct StreamContext {
    pub(crate) shared: Arc<Shared>,
    /// The identity the peer certificate proves.
    pub(crate) caller: Caller,
    /// Every live sidecar connection, for delivery to agents.
    pub(crate) registry: Arc<super::registry::Registry>,
}

/// Serves one stream to its end.
pub(crate) async fn serve(ctx: Arc<StreamContext>, mut send: StreamSend, mut recv: StreamRecv) {
    let shared = &ctx.shared;
    let open = shared.metrics.stream_opened(send.transport());
    let started = Instant::now();
    let read = tokio::time::timeout(
        shared.envelope_timeout(),
        read_request(&mut recv, &shared.limits),
    )
    .await;
    let envelope = match read {
        Ok(Ok(envelope)) => envelope,
        Err(_elapsed) => {
            debug!(
                identity = %ctx.caller.id(), stream = %send.id(),
                "no complete request envelope within {}s; resetting the stream",
                shared.envelope_timeout().as_secs_f64()
            );
            send.reset(codes::STREAM_TIMEOUT);
            recv.stop(codes::STREAM_TIMEOUT);
            return;
        }
        Ok(Err(EnvelopeError::Read(e))) => {
            debug!(identity = %ctx.caller.id(), stream = %send.id(), error = %e,
                "stream ended before its envelope was read");
            send.reset(codes::STREAM_CANCELLED);
            return;
        }
        Ok(Err(e)) => {
            warn!(identity = %ctx.caller.id(), stream = %send.id(), error = %e,
                "malformed request envelope");
            let refusal = Refusal::new(
                Outcome::MalformedRequest,
                format!("malformed request envelope: {e}"),
            );
            let mut ex = Exchange::new(&ctx, send, UNKNOWN_SERVICE, started, open);
            ex.refuse_with(refusal, codes::STREAM_MALFORMED).await;
            recv.stop(codes::STREAM_MALFORMED);
            return;
        }
    };
    handle(&ctx, envelope, send, recv, started, open).await;
}

async fn handle(
    ctx: &StreamContext,
    envelope: RequestEnvelope,
    send: StreamSend,
    mut recv: StreamRecv,
    started: Instant,
    open: GaugeGuard,
) {
    let shared = &ctx.shared;
    let caller = &ctx.caller;
    let request_id = envelope
        .request_id
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let label = shared.service_label(&envelope.destination);
    let mut ex = Exchange::new(ctx, send, &label, started, open);

    // Every decision uses the identity the certificate proves; a different claim in the
    // envelope is a sidecar bug or an attempt to speak for someone else (SPEC.md §5.3).
    if let Some(claimed) = &envelope.identity
        && claimed != caller.id_str()
    {
        warn!(
            claimed = %claimed, verified = %caller.id(), request_id,
            "identity mismatch: the envelope claims {claimed} on a connection whose \
             certificate proves {}", caller.id()
        );
        let reason = format!(
            "the request claims to come from {claimed}, but the connection's certificate \
             proves {}",
            caller.id()
        );
        ex.refuse(Refusal::new(Outcome::IdentityMismatch, reason), &mut recv)
            .await;
        return;
    }
    let head = match (envelope.kind, &envelope.http) {
        (RequestKind::Http, Some(head)) => head,
        (RequestKind::Stream, None) => {
            raw_stream(ex, &envelope, recv, &request_id).await;
            return;
        }
        _ => {
            let reason = "the envelope's kind and HTTP fields disagree";
            ex.refuse(Refusal::new(Outcome::MalformedRequest, reason), &mut recv)
                .await;
            return;
        }
    };
    let facts = RequestFacts {
        destination: &envelope.destination,
        intent: envelope.intent.as_ref(),
        method: &head.method,
        path: &head.path,
    };
    let Some(admitted) = ex.admit(&facts, &mut recv, &request_id).await else {
        return;
    };
    let service = admitted.service;
    if let Some(agent) = service.agent_name() {
        let delivery = Delivery {
            envelope: &envelope,
            service: &service,
            agent,
            head_timeout: admitted.timeout.unwrap_or(shared.timeouts.response_head),
            request_id: &request_id,
        };
        deliver(&mut ex, recv, delivery).await;
        return;
    }
    let Ok(method) = Method::from_bytes(head.method.as_bytes()) else {
        let reason = format!("method `{}` cannot be forwarded", head.method);
        ex.refuse(Refusal::new(Outcome::MalformedRequest, reason), &mut recv)
            .await;
        return;
    };
    let request_headers = match headers::from_envelope(head) {
        Ok(h) => h,
        Err(refusal) => {
            ex.refuse(refusal, &mut recv).await;
            return;
        }
    };

    let mut body = TunnelBody::new(recv);
    body.peek_end_now();
    if !body_expected(&method, &request_headers) {
        // A bodiless GET should reach HTTP/1.1 without a (chunked) body, which needs the
        // FIN. The sidecar sends it right after the envelope, so this waits for at most a
        // packet; a sidecar that sends neither data nor FIN is cut off by the bound.
        let _ = tokio::time::timeout(shared.envelope_timeout(), body.peek_end()).await;
    }
    let outgoing = Outgoing {
        method,
        target: &head.path,
        headers: request_headers,
        body: RequestBody::tunnel(body),
        caller,
        trace: envelope.trace.as_ref(),
        response_timeout: admitted.timeout,
        te_trailers: envelope.te_trailers,
    };
    ex.forward(&service, outgoing, &request_id).await;
}

/// A raw TCP stream: decided like a request (its intent is `tcp SERVICE`), then joined to
/// a TCP connection to one of the service's `tcp://` upstreams.
async fn raw_stream(
    mut ex: Exchange<'_>,
    envelope: &RequestEnvelope,
    mut recv: StreamRecv,
    request_id: &str,
) {
    let shared = &ex.ctx.shared;
    let caller = &ex.ctx.caller;
    let facts = RequestFacts {
        destination: &envelope.destination,
        intent: envelope.intent.as_ref(),
        method: "",
        path: "",
    };
    let Some(admitted) = ex.admit(&facts, &mut recv, request_id).await else {
        return;
    };
    let service = admitted.service;
    if let Some(agent) = service.agent_name() {
        let delivery = Delivery {
            envelope,
            service: &service,
            agent,
            head_timeout: admitted.timeout.unwrap_or(shared.timeouts.response_head),
            request_id,
        };
        deliver(&mut ex, recv, delivery).await;
        return;
    }
    if !service.is_tcp() {
        let reason = format!(
            "service `{}` forwards HTTP; a raw TCP stream needs a service with tcp:// upstreams",
            service.name()
        );
        ex.refuse(Refusal::new(Outcome::NoRoute, reason), &mut recv)
            .await;
        return;
    }
    let (upstream, _lease) = match shared.forwarder.connect_tcp(&service).await {
        Ok(connected) => connected,
        Err(refusal) => {
            warn!(identity = %caller.id(), service = service.name(), request_id, "{}", refusal.reason);
            ex.refuse(refusal, &mut recv).await;
            return;
        }
    };
    let envelope = ResponseEnvelope::new(Outcome::Forwarded, String::new());
    let bytes = match envelope.to_bytes(&shared.limits) {
        Ok(bytes) => bytes,
        Err(e) => {
            warn!(
                request_id,
                "cannot encode the stream's response envelope: {e}"
            );
            ex.send.reset(codes::STREAM_CANCELLED);
            return;
        }
    };
    if ex.send.write_chunk(bytes).await.is_err() {
        return;
    }
    let relayed = super::raw::relay(&mut ex.send, recv, upstream).await;
    debug!(identity = %caller.id(), service = service.name(), request_id, ?relayed, "TCP stream done");
    ex.record(Status::Outcome(Outcome::Forwarded));
    ex.open = None;
}

/// Whether a request is expected to carry a body: it announces one, or its method usually
/// has one (RFC 9110 §9.3: GET, HEAD, DELETE, OPTIONS and TRACE requests have no
/// generally defined body semantics).
fn body_expected(method: &Method, headers: &http::HeaderMap) -> bool {
    headers.contains_key(header::CONTENT_LENGTH)
        || !matches!(
            *method,
            Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE
        )
}

/// The answering side of one stream.
pub(super) struct Exchange<'a> {
    pub(super) ctx: &'a StreamContext,
    pub(super) send: StreamSend,
    service_label: String,
    started: Instant,
    /// Counts the stream as open until its response is complete.
    pub(super) open: Option<GaugeGuard>,
}

impl<'a> Exchange<'a> {
    fn new(
        ctx: &'a StreamContext,
        send: StreamSend,
        label: &str,
        started: Instant,
        open: GaugeGuard,
    ) -> Self {
        Self {
            ctx,
            send,
            service_label: label.to_owned(),
            started,
            open: Some(open),
        }
    }

    /// Routes and checks access; a refused request is answered here (and `None` returned).
    async fn admit(
        &mut self,
        facts: &RequestFacts<'_>,
        recv: &mut StreamRecv,
        request_id: &str,
    ) -> Option<Admitted> {
        let ctx = self.ctx;
        match ctx.shared.admit(&ctx.caller, facts, request_id).await {
            Ok(admitted) => {
                self.service_label = admitted.service.name().to_owned();
                Some(admitted)
            }
            Err(denied) => {
                self.service_label = denied.service_label;
                self.refuse(denied.refusal, recv).await;
                None
            }
        }
    }

    pub(super) fn record(&self, status: Status) {
        self.ctx.shared.record(
            self.ctx.caller.id_str(),
            &self.service_label,
            status,
            self.started,
        );
    }

    /// Answers with `refusal` and ends the stream; the request body is not wanted, so the
    /// sidecar is asked to stop sending it (SPEC.md §2.6 allows answering first).
    pub(super) async fn refuse(&mut self, refusal: Refusal, recv: &mut StreamRecv) {
        self.refuse_with(refusal, codes::STREAM_CANCELLED).await;
        recv.stop(codes::STREAM_CANCELLED);
    }

    /// Answers with `refusal`; if even that cannot be sent, resets with `reset_code`.
    pub(super) async fn refuse_with(&mut self, refusal: Refusal, reset_code: u32) {
        self.record(Status::Outcome(refusal.outcome));
        let head = refusal.http_head();
        let mut envelope = ResponseEnvelope::new(refusal.outcome, bounded(refusal.reason));
        envelope.http = head;
        let sent = match envelope.to_bytes(&self.ctx.shared.limits) {
            Ok(bytes) => self.send.write_chunk(bytes).await.is_ok(),
            Err(_) => false,
        };
        if sent {
            self.finish().await;
        } else {
            self.send.reset(reset_code);
        }
    }

    /// Ends the response and waits (bounded) until the sidecar has it. The stream stops
    /// counting as open before the FIN leaves, so whoever has read the whole response sees
    /// it closed in the metrics.
    pub(super) async fn finish(&mut self) {
        self.open = None;
        if self.send.finish().is_ok() {
            let _ = tokio::time::timeout(ACK_WAIT, self.send.stopped()).await;
        }
    }

    async fn forward(&mut self, service: &Service, outgoing: Outgoing<'_>, request_id: &str) {
        let shared = &self.ctx.shared;
        // The requester takes trailers: the answer is a framed payload (SPEC.md §6.3).
        let framed = outgoing.te_trailers;
        // Resolves when the sidecar stops reading (STOP_SENDING) or the connection is
        // lost: the upstream request is then dropped, which cancels it.
        let mut stopped = pin!(self.send.stopped());
        let response = tokio::select! {
            r = shared.forwarder.send(service, outgoing) => r,
            s = &mut stopped => {
                debug!(identity = %self.ctx.caller.id(), request_id, stopped = ?s,
                    "the sidecar abandoned the request; cancelling it upstream");
                self.record(Status::Cancelled);
                self.send.reset(codes::STREAM_CANCELLED);
                return;
            }
        };
        let response = match response {
            Ok(response) => response,
            Err(ForwardError::Refused(refusal)) => {
                warn!(identity = %self.ctx.caller.id(), service = service.name(), request_id,
                    outcome = refusal.outcome.as_str(), "{}", refusal.reason);
                self.refuse_with(refusal, codes::STREAM_UPSTREAM_FAILED)
                    .await;
                return;
            }
            Err(ForwardError::Cancelled(why)) => {
                debug!(identity = %self.ctx.caller.id(), request_id, reason = %why,
                    "the request body failed (the sidecar reset the stream)");
                self.record(Status::Cancelled);
                self.send.reset(codes::STREAM_CANCELLED);
                return;
            }
        };
        let (parts, body) = response.into_parts();
        let status = parts.status.as_u16();
        let mut envelope = ResponseEnvelope::forwarded(HttpResponseHead {
            status,
            headers: headers::to_envelope(parts.headers),
        });
        envelope.framed_payload = framed;
        let bytes = match envelope.to_bytes(&shared.limits) {
            Ok(bytes) => bytes,
            Err(e) => {
                let reason = format!(
                    "the response head of service `{}` cannot be carried to the sidecar: {e}",
                    service.name()
                );
                warn!(identity = %self.ctx.caller.id(), request_id, "{reason}");
                self.refuse_with(
                    Refusal::new(Outcome::InternalError, reason),
                    codes::STREAM_UPSTREAM_FAILED,
                )
                .await;
                return;
            }
        };
        self.record(Status::Http(status));
        debug!(identity = %self.ctx.caller.id(), service = service.name(), request_id,
            status, "forwarded");
        // The head goes out as soon as it arrived (SSE clients wait for it).
        if let Err(e) = self.send.write_chunk(bytes).await {
            debug!(request_id, error = %e, "the sidecar went away before the response head");
            return;
        }
        self.stream_body(body, stopped, request_id, framed).await;
    }

    /// Copies the upstream's response body frame by frame, each as soon as it arrives:
    /// no coalescing, so every SSE event reaches the agent when the upstream wrote it.
    /// `framed`: as a framed payload, trailers included (`framed.rs`, SPEC.md §6.3).
    async fn stream_body(
        &mut self,
        mut body: ResponseBody,
        mut stopped: std::pin::Pin<&mut impl Future<Output = Stopped>>,
        request_id: &str,
        framed: bool,
    ) {
        loop {
            let frame = tokio::select! {
                biased;
                frame = body.frame() => frame,
                s = &mut stopped => {
                    debug!(request_id, stopped = ?s,
                        "the sidecar stopped reading the response; cancelling it upstream");
                    return;
                }
            };
            match frame {
                None => {
                    drop(body);
                    self.finish().await;
                    return;
                }
                Some(Ok(frame)) => {
                    let limits = &self.ctx.shared.limits;
                    match write_body_frame(&mut self.send, frame, framed, limits).await {
                        Ok(()) => {}
                        Err(FrameError::Send(e)) => {
                            debug!(request_id, error = %e,
                                "the sidecar stopped reading the response");
                            return;
                        }
                        Err(e @ FrameError::Encode(_)) => {
                            warn!(identity = %self.ctx.caller.id(), request_id, "{e}; \
                                resetting the stream");
                            self.send.reset(codes::STREAM_UPSTREAM_FAILED);
                            return;
                        }
                    }
                }
                Some(Err(e)) if client::is_request_body_error(&*e) => {
                    // The sidecar reset its request body mid-upload: hyper abandons the
                    // exchange, and the fault is not the upstream's.
                    debug!(request_id, error = %e, "the sidecar abandoned the request");
                    self.send.reset(codes::STREAM_CANCELLED);
                    return;
                }
                Some(Err(e)) => {
                    warn!(identity = %self.ctx.caller.id(), request_id, error = %e,
                        "the upstream failed in the middle of the response body; resetting \
                         the stream");
                    self.send.reset(codes::STREAM_UPSTREAM_FAILED);
                    return;
                }
            }
        }
    }
}

/// Caps a reason at [`MAX_REASON_LEN`] bytes, on a character boundary.
fn bounded(mut reason: String) -> String {
    if reason.len() > MAX_REASON_LEN {
        let mut cut = MAX_REASON_LEN;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push('…');
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded_on_char_boundaries() {
        assert_eq!(bounded("short".into()), "short");
        let long = "é".repeat(MAX_REASON_LEN);
        let cut = bounded(long);
        assert!(cut.len() <= MAX_REASON_LEN + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn bodies_are_expected_when_announced_or_usual() {
        let none = http::HeaderMap::new();
        assert!(!body_expected(&Method::GET, &none));
        assert!(body_expected(&Method::POST, &none));
        let mut cl = http::HeaderMap::new();
        cl.insert(header::CONTENT_LENGTH, http::HeaderValue::from_static("3"));
        assert!(body_expected(&Method::GET, &cl));
    }
}
