//! A raw TCP stream delivered to this agent (envelope kind 0x02): a connection to the
//! agent's loopback TCP port, a `forwarded` answer, then the two byte streams joined with
//! half-close honoured both ways (a FIN in one direction is passed on as a FIN while the
//! other keeps flowing; a reset as a reset).

use std::net::SocketAddr;

use aimux_wire::{Outcome, ResponseEnvelope, codes};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tracing::{debug, warn};

use super::{CONNECT_WAIT, Inbound, answer};
use crate::stats::Counters;
use crate::tunnel::transport::{StreamRecv, StreamSend};

/// Largest read per write, in either direction.
const CHUNK: usize = 16 * 1024;

/// Connects to the agent at `addr` and relays until both directions have ended.
pub(super) async fn deliver(
    inbound: &Inbound,
    addr: SocketAddr,
    mut send: StreamSend,
    mut recv: StreamRecv,
    request_id: &str,
) {
    let label = &inbound.label;
    let tcp = match tokio::time::timeout(CONNECT_WAIT, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            let reason =
                format!("{label} could not be reached at tcp://{addr}: {e}; is the agent running?");
            warn!(request_id, "{reason}");
            Counters::incr(&inbound.counters.failures);
            recv.stop(codes::STREAM_CANCELLED);
            return answer(
                inbound,
                &mut send,
                ResponseEnvelope::new(Outcome::UpstreamUnreachable, reason),
            )
            .await;
        }
        Err(_) => {
            let reason = format!(
                "{label} did not accept a connection at tcp://{addr} within {}s",
                CONNECT_WAIT.as_secs()
            );
            Counters::incr(&inbound.counters.failures);
            recv.stop(codes::STREAM_CANCELLED);
            return answer(
                inbound,
                &mut send,
                ResponseEnvelope::new(Outcome::UpstreamUnreachable, reason),
            )
            .await;
        }
    };
    let _ = tcp.set_nodelay(true);
    let forwarded = ResponseEnvelope::new(Outcome::Forwarded, String::new());
    let written = match forwarded.to_bytes(&inbound.limits) {
        Ok(bytes) => send.write(bytes).await.is_ok(),
        Err(_) => false,
    };
    if !written {
        send.reset(codes::INTERNAL);
        recv.stop(codes::STREAM_CANCELLED);
        return;
    }
    let (read, write) = tcp.into_split();
    let (up, down) = tokio::join!(to_agent(recv, write), from_agent(read, &mut send));
    debug!(request_id, up, down, "delivered TCP stream done");
}

/// Gateway → agent: a TCP FIN (write shutdown) at the stream's FIN; a reset on a reset.
async fn to_agent(mut recv: StreamRecv, mut agent: OwnedWriteHalf) -> bool {
    loop {
        match recv.read_chunk(CHUNK).await {
            Ok(Some(chunk)) => {
                if agent.write_all(&chunk).await.is_err() {
                    recv.stop(codes::STREAM_UPSTREAM_FAILED);
                    return false;
                }
            }
            Ok(None) => return agent.shutdown().await.is_ok(),
            Err(_) => {
                // The caller's side was reset: reset the agent's connection too, rather
                // than a FIN it would take for a complete request.
                let _ = agent.as_ref().set_zero_linger();
                return false;
            }
        }
    }
}

/// Agent → gateway: the stream's FIN at the agent's EOF, a reset if reading fails.
async fn from_agent(mut agent: OwnedReadHalf, send: &mut StreamSend) -> bool {
    let mut buf = BytesMut::with_capacity(CHUNK);
    loop {
        buf.reserve(CHUNK);
        match agent.read_buf(&mut buf).await {
            Ok(0) => {
                send.finish();
                return true;
            }
            Ok(_) => {
                if send.write(buf.split().freeze()).await.is_err() {
                    return false;
                }
            }
            Err(_) => {
                send.reset(codes::STREAM_UPSTREAM_FAILED);
                return false;
            }
        }
    }
}
