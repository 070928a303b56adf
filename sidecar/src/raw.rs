//! Raw TCP listeners: every agent connection is one tunnel stream with a raw-stream envelope
//! (kind 0x02, SPEC.md §2 item 5), intent `tcp SERVICE`, its bytes carried untouched both
//! ways. Half-close is honoured in both directions: the agent's FIN becomes the stream's
//! FIN, and the stream's FIN (the upstream closed its sending side) becomes a TCP FIN to the
//! agent, each while the other direction keeps flowing.
//!
//! A refusal has no HTTP response to carry its reason: the sidecar logs it and resets the
//! agent's connection (RST, by closing with a zero linger), which TCP clients report as
//! "connection reset" rather than mistaking it for an empty answer.

use std::net::SocketAddr;
use std::sync::Arc;

use aimux_wire::{Intent, Outcome, Protocol, RequestEnvelope, RequestId, TraceContext, codes};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tracing::{debug, info, warn};

use crate::body::{RecvGuard, read_head};
use crate::exchange::{Shared, open_stream};
use crate::request::FreshIds;
use crate::stats::Counters;
use crate::upload::SendGuard;

/// Largest read from the agent's socket, and from the stream, per write.
const CHUNK: usize = 16 * 1024;

/// Relays one agent connection to `service` through the tunnel until both directions end.
pub(crate) async fn serve(shared: Arc<Shared>, service: String, tcp: TcpStream, peer: SocketAddr) {
    let _in_flight = shared.counters.start_request();
    let ids = FreshIds::random();
    let request_id = RequestId::from(ids.request_id).to_string();
    if let Err(e) = tcp.set_nodelay(true) {
        debug!(%peer, "cannot set TCP_NODELAY: {e}");
    }
    let mut envelope = RequestEnvelope::stream(service.clone());
    envelope.identity = Some(shared.identity.clone());
    envelope.intent = Some(Intent::new(Protocol::Tcp, service.as_str(), ""));
    envelope.request_id = Some(RequestId::from(ids.request_id));
    envelope.trace = Some(TraceContext {
        version: 0,
        trace_id: ids.trace_id,
        parent_id: ids.span_id,
        flags: 0,
        tracestate: None,
    });
    let limits = &shared.settings.limits;
    let bytes = match envelope.to_bytes(limits) {
        Ok(b) => b,
        Err(e) => {
            warn!(%request_id, %service, "cannot encode the stream envelope: {e}");
            return reset(tcp);
        }
    };
    let (send, mut recv) = match open_stream(&shared, bytes).await {
        Ok(pair) => pair,
        Err(failed) => {
            Counters::incr(&shared.counters.failures);
            warn!(%request_id, %service, %peer, "TCP connection not carried: {}", failed.message(&shared));
            return reset(tcp);
        }
    };
    let (agent_read, agent_write) = tcp.into_split();
    // The agent's bytes go up at once: a client protocol that speaks first (PostgreSQL,
    // TLS) must not wait for the gateway's answer.
    let upload = tokio::spawn(upload(
        agent_read,
        send,
        request_id.clone(),
        codes::STREAM_CANCELLED,
    ));
    let head = tokio::time::timeout(
        shared.settings.response_head_timeout,
        read_head(&mut recv, limits),
    )
    .await;
    let first = match head {
        Ok(Ok((envelope, first))) if envelope.outcome == Outcome::Forwarded => first,
        Ok(Ok((envelope, _))) => {
            Counters::incr(&shared.counters.refused);
            info!(%request_id, %service, outcome = envelope.outcome.as_str(),
                "the gateway refused the TCP connection: {}", envelope.reason);
            upload.abort();
            return reset_halves(agent_write, upload).await;
        }
        Ok(Err(e)) => {
            Counters::incr(&shared.counters.failures);
            warn!(%request_id, %service, "the TCP stream failed before the gateway answered: {e:?}");
            upload.abort();
            return reset_halves(agent_write, upload).await;
        }
        Err(_) => {
            Counters::incr(&shared.counters.failures);
            warn!(%request_id, %service, "the gateway did not answer the TCP stream in time");
            recv.stop(codes::STREAM_TIMEOUT);
            upload.abort();
            return reset_halves(agent_write, upload).await;
        }
    };
    Counters::incr(&shared.counters.forwarded);
    let downloaded = download(first, recv, agent_write).await;
    let uploaded = upload.await.unwrap_or(false);
    debug!(%request_id, %service, uploaded, downloaded, "TCP connection done");
}

/// Socket → stream: FIN on the socket's EOF, a reset with `fail_code` if reading fails.
/// True if it ended cleanly. Used both ways round: the agent's outgoing connection
/// (`CANCELLED`: the client went away) and a delivery's connection to the agent
/// (`UPSTREAM_FAILED`: the agent is the one answering, `inbound/tcp.rs`).
pub(crate) async fn upload(
    mut agent: OwnedReadHalf,
    mut send: SendGuard,
    request_id: String,
    fail_code: u32,
) -> bool {
    let mut buf = BytesMut::with_capacity(CHUNK);
    loop {
        buf.reserve(CHUNK);
        match agent.read_buf(&mut buf).await {
            Ok(0) => {
                send.finish();
                return true;
            }
            Ok(_) => {
                if let Err(e) = send.write(buf.split().freeze()).await {
                    debug!(%request_id, "the TCP stream stopped taking bytes: {e}");
                    return false;
                }
            }
            Err(e) => {
                debug!(%request_id, "reading from the agent failed: {e}");
                send.reset(fail_code);
                return false;
            }
        }
    }
}

/// Stream → agent: a TCP FIN (shutdown of the write half) on the stream's FIN; a reset of
/// the agent's connection if the stream was reset. True if it ended cleanly.
pub(crate) async fn download(first: Bytes, mut recv: RecvGuard, mut agent: OwnedWriteHalf) -> bool {
    if !first.is_empty() && agent.write_all(&first).await.is_err() {
        return false;
    }
    loop {
        match recv.read_chunk(CHUNK).await {
            Ok(Some(chunk)) => {
                if agent.write_all(&chunk).await.is_err() {
                    recv.stop(codes::STREAM_CANCELLED);
                    return false;
                }
            }
            Ok(None) => return agent.shutdown().await.is_ok(),
            Err(e) => {
                debug!("the TCP stream failed: {e:?}");
                // Dropping the write half alone would send a FIN, which the agent would take
                // for a clean end; the whole socket is reset when both halves are gone.
                let _ = agent.as_ref().set_zero_linger();
                return false;
            }
        }
    }
}

/// Closes the agent's connection with a reset (SO_LINGER 0).
fn reset(tcp: TcpStream) {
    let _ = tcp.set_zero_linger();
}

async fn reset_halves(agent_write: OwnedWriteHalf, upload: tokio::task::JoinHandle<bool>) {
    let _ = agent_write.as_ref().set_zero_linger();
    let _ = upload.await;
}
