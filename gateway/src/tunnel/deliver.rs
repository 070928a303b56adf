//! Delivery to an agent of the mesh (SPEC.md §12.2). A service declared `agent = "NAME"`
//! has no upstream address: its requests and TCP streams travel, still in their envelopes,
//! over that agent's own sidecar connection, on a stream the gateway opens. The agent's
//! machine therefore needs no inbound port at all; its sidecar's outbound QUIC connection
//! is the only path.
//!
//! The gateway forwards the caller's envelope with the identity its certificate proved
//! (never the caller's claim) and the routed service as destination, then joins the two
//! streams: the caller's payload to the agent, and the agent sidecar's response envelope
//! and payload back, each direction ending (FIN, or reset with its code) on its own.

use std::pin::pin;
use std::time::Duration;

use aimux_certs::{SpiffeId, WorkloadName};
use aimux_wire::{Outcome, RequestEnvelope, codes};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::envelope::{EnvelopeError, read_response};
use super::registry::Handle;
use super::stream::Exchange;
use super::transport::{RecvError, Stopped, StreamRecv, StreamSend};
use crate::forward::Service;
use crate::metrics::Status;
use crate::policy::Refusal;

/// Largest read per write, in either direction.
const CHUNK: usize = 16 * 1024;

/// What is delivered where.
pub(super) struct Delivery<'a> {
    pub(super) envelope: &'a RequestEnvelope,
    pub(super) service: &'a Service,
    pub(super) agent: &'a WorkloadName,
    /// How long the agent may take to answer once it has the whole request.
    pub(super) head_timeout: Duration,
    pub(super) request_id: &'a str,
}

/// Delivers the request on `recv` to the agent and relays its answer to the caller.
pub(super) async fn deliver(ex: &mut Exchange<'_>, mut recv: StreamRecv, d: Delivery<'_>) {
    let shared = &ex.ctx.shared;
    let dest = SpiffeId::agent(&shared.trust_domain, d.agent);
    let agent = d.agent;
    let conn = match ex.ctx.registry.newest(&dest) {
        Some(Handle::Quic(conn)) => conn,
        Some(Handle::H2(_)) => {
            let reason = format!(
                "agent `{agent}` is connected over the HTTP/2 tunnel, which cannot carry \
                 requests to it (an HTTP/2 server cannot open streams, RFC 9113 §5.1.1); give \
                 agent `{agent}` transport = \"quic\""
            );
            return unreachable(ex, &mut recv, reason, d.request_id).await;
        }
        None => {
            let reason = format!(
                "agent `{agent}` ({dest}) is not connected to this gateway: its sidecar has no \
                 live tunnel connection"
            );
            return unreachable(ex, &mut recv, reason, d.request_id).await;
        }
    };
    let wait = shared.timeouts.connect;
    let (mut to_agent, from_agent) = match tokio::time::timeout(wait, conn.open_bi()).await {
        Ok(Ok((send, recv))) => (StreamSend::Quic(send.into()), StreamRecv::Quic(recv)),
        Ok(Err(e)) => {
            let reason = format!("the connection of agent `{agent}` was lost: {e}");
            return unreachable(ex, &mut recv, reason, d.request_id).await;
        }
        Err(_) => {
            let reason = format!(
                "the sidecar of agent `{agent}` allowed no stream within {}s: it accepts no \
                 deliveries (give the agent `inbound` in mesh.toml) or is at its stream limit",
                wait.as_secs_f64()
            );
            return unreachable(ex, &mut recv, reason, d.request_id).await;
        }
    };
    // Everything else goes as the caller sent it, `te-trailers` included: the agent's
    // sidecar may then answer with a framed payload (SPEC.md §6.3), relayed byte for byte.
    let mut forwarded = d.envelope.clone();
    forwarded.identity = Some(ex.ctx.caller.id_str().to_owned());
    forwarded.destination = d.service.name().to_owned();
    let sent = match forwarded.to_bytes(&shared.limits) {
        Ok(bytes) => to_agent.write_chunk(bytes).await.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the envelope cannot be encoded again: {e}")),
    };
    if let Err(e) = sent {
        to_agent.reset(codes::STREAM_CANCELLED);
        let reason = format!("the request could not be handed to agent `{agent}`: {e}");
        return unreachable(ex, &mut recv, reason, d.request_id).await;
    }

    let (uploaded_tx, uploaded_rx) = oneshot::channel();
    let cancel = CancellationToken::new();
    tokio::join!(
        upload(recv, to_agent, uploaded_tx, cancel.clone()),
        download(ex, from_agent, uploaded_rx, &cancel, &d),
    );
}

async fn unreachable(ex: &mut Exchange<'_>, recv: &mut StreamRecv, reason: String, id: &str) {
    warn!(identity = %ex.ctx.caller.id(), request_id = id, "{reason}");
    ex.refuse(Refusal::new(Outcome::UpstreamUnreachable, reason), recv)
        .await;
}

/// Caller → agent: the request payload as it arrives, its FIN or reset passed on. Sends on
/// `uploaded` once the payload is complete; stops (resetting the agent's side) on `cancel`.
async fn upload(
    mut from_caller: StreamRecv,
    mut to_agent: StreamSend,
    uploaded: oneshot::Sender<()>,
    cancel: CancellationToken,
) {
    let mut agent_stopped = pin!(to_agent.stopped());
    loop {
        let chunk = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            stopped = &mut agent_stopped => {
                // The agent wants no more of the request (it answered early, or went away):
                // tell the caller to stop sending too.
                let code = match stopped {
                    Stopped::Code(code) => u32::try_from(code).unwrap_or(codes::STREAM_CANCELLED),
                    _ => codes::STREAM_CANCELLED,
                };
                from_caller.stop(code);
                return;
            }
            chunk = from_caller.read_chunk(CHUNK) => chunk,
        };
        match chunk {
            Ok(Some(bytes)) => {
                let written = tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    w = to_agent.write_chunk(bytes) => w,
                };
                if written.is_err() {
                    from_caller.stop(codes::STREAM_CANCELLED);
                    return;
                }
            }
            Ok(None) => {
                let _ = to_agent.finish();
                let _ = uploaded.send(());
                return;
            }
            Err(RecvError::Reset(code)) => {
                to_agent.reset(u32::try_from(code).unwrap_or(codes::INTERNAL));
                return;
            }
            Err(RecvError::Aborted(_)) => {
                to_agent.reset(codes::STREAM_CANCELLED);
                return;
            }
        }
    }
    // Cancelled: the exchange is over (refused, or the caller left).
    from_caller.stop(codes::STREAM_CANCELLED);
    to_agent.reset(codes::STREAM_CANCELLED);
}

/// Agent → caller: the agent sidecar's response envelope (bounded in size, and in time once
/// the request is complete), then its payload frame by frame.
async fn download(
    ex: &mut Exchange<'_>,
    mut from_agent: StreamRecv,
    uploaded: oneshot::Receiver<()>,
    cancel: &CancellationToken,
    d: &Delivery<'_>,
) {
    let shared = &ex.ctx.shared;
    let agent = d.agent;
    let mut caller_stopped = pin!(ex.send.stopped());
    let deadline = async {
        // A failed upload also starts the clock: the agent's sidecar answers a reset request
        // promptly or not at all.
        let _ = uploaded.await;
        tokio::time::sleep(d.head_timeout).await;
    };
    let head = tokio::select! {
        biased;
        stopped = &mut caller_stopped => {
            debug!(request_id = d.request_id, ?stopped, "the caller left before the agent answered");
            abandon(ex, &mut from_agent, cancel);
            return;
        }
        head = read_response(&mut from_agent, &shared.limits) => Some(head),
        () = deadline => None,
    };
    let response = match head {
        Some(Ok(response)) => response,
        None => {
            from_agent.stop(codes::STREAM_TIMEOUT);
            cancel.cancel();
            let reason = format!(
                "agent `{agent}` sent no answer within {}s of receiving the whole request",
                d.head_timeout.as_secs_f64()
            );
            return refuse(ex, Outcome::UpstreamTimeout, reason, d.request_id).await;
        }
        Some(Err(e)) => {
            let why = match &e {
                EnvelopeError::Read(RecvError::Reset(code)) => {
                    format!("reset the stream before answering ({})", code_name(*code))
                }
                EnvelopeError::Read(RecvError::Aborted(why)) => {
                    format!("went away before answering: {why}")
                }
                other => {
                    from_agent.stop(codes::STREAM_MALFORMED);
                    format!("sent an invalid answer: {other}")
                }
            };
            cancel.cancel();
            let reason = format!("the sidecar of agent `{agent}` {why}");
            return refuse(ex, Outcome::UpstreamUnreachable, reason, d.request_id).await;
        }
    };
    let status = match (&response.outcome, &response.http) {
        (Outcome::Forwarded, Some(head)) => Status::Http(head.status),
        (outcome, _) => Status::Outcome(*outcome),
    };
    let bytes = match response.to_bytes(&shared.limits) {
        Ok(bytes) => bytes,
        Err(e) => {
            abandon(ex, &mut from_agent, cancel);
            let reason = format!("the answer of agent `{agent}` cannot be passed on: {e}");
            return refuse(ex, Outcome::InternalError, reason, d.request_id).await;
        }
    };
    ex.record(status);
    debug!(identity = %ex.ctx.caller.id(), agent = %agent, request_id = d.request_id,
        outcome = response.outcome.as_str(), "delivered to an agent");
    if ex.send.write_chunk(bytes).await.is_err() {
        abandon(ex, &mut from_agent, cancel);
        return;
    }
    loop {
        let chunk = tokio::select! {
            biased;
            _ = &mut caller_stopped => {
                abandon(ex, &mut from_agent, cancel);
                return;
            }
            chunk = from_agent.read_chunk(CHUNK) => chunk,
        };
        match chunk {
            Ok(Some(bytes)) => {
                if ex.send.write_chunk(bytes).await.is_err() {
                    abandon(ex, &mut from_agent, cancel);
                    return;
                }
            }
            Ok(None) => {
                ex.finish().await;
                return;
            }
            Err(RecvError::Reset(code)) => {
                ex.send
                    .reset(u32::try_from(code).unwrap_or(codes::INTERNAL));
                ex.open = None;
                return;
            }
            Err(RecvError::Aborted(_)) => {
                ex.send.reset(codes::STREAM_UPSTREAM_FAILED);
                ex.open = None;
                return;
            }
        }
    }
}

/// The caller is gone or cannot be answered: stop both directions towards the agent.
fn abandon(ex: &mut Exchange<'_>, from_agent: &mut StreamRecv, cancel: &CancellationToken) {
    from_agent.stop(codes::STREAM_CANCELLED);
    cancel.cancel();
    ex.send.reset(codes::STREAM_CANCELLED);
    ex.open = None;
}

async fn refuse(ex: &mut Exchange<'_>, outcome: Outcome, reason: String, id: &str) {
    warn!(identity = %ex.ctx.caller.id(), request_id = id, "{reason}");
    ex.refuse_with(Refusal::new(outcome, reason), codes::STREAM_UPSTREAM_FAILED)
        .await;
}

fn code_name(code: u64) -> String {
    let name = match u32::try_from(code) {
        Ok(codes::STREAM_CANCELLED) => "CANCELLED",
        Ok(codes::STREAM_MALFORMED) => "MALFORMED",
        Ok(codes::STREAM_UPSTREAM_FAILED) => "UPSTREAM_FAILED",
        Ok(codes::STREAM_TIMEOUT) => "TIMEOUT",
        _ => "INTERNAL",
    };
    format!("{name}, code {code:#x}")
}
