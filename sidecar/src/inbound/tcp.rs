//! A raw TCP stream delivered to this agent (envelope kind 0x02): a connection to the
//! agent's loopback TCP port, a `forwarded` answer, then the two byte streams joined with
//! half-close honoured both ways (a FIN in one direction is passed on as a FIN while the
//! other keeps flowing; a reset as a reset).

use std::net::SocketAddr;

use aimux_wire::{Outcome, ResponseEnvelope, codes};
use bytes::Bytes;
use tokio::net::TcpStream;
use tracing::debug;

use super::{CONNECT_WAIT, Inbound, agent_failed};
use crate::body::RecvGuard;
use crate::raw;
use crate::tunnel::transport::{StreamRecv, StreamSend};
use crate::upload::SendGuard;

/// Connects to the agent at `addr` and relays until both directions have ended.
pub(super) async fn deliver(
    inbound: &Inbound,
    addr: SocketAddr,
    mut send: StreamSend,
    mut recv: StreamRecv,
    request_id: &str,
) {
    let label = &inbound.label;
    let connected = tokio::time::timeout(CONNECT_WAIT, TcpStream::connect(addr)).await;
    let tcp = match connected {
        Ok(Ok(tcp)) => tcp,
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no connection within {}s", CONNECT_WAIT.as_secs()),
            };
            let reason = format!(
                "{label} could not be reached at tcp://{addr}: {why}; is the agent running?"
            );
            recv.stop(codes::STREAM_CANCELLED);
            return agent_failed(
                inbound,
                send,
                Outcome::UpstreamUnreachable,
                reason,
                request_id,
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
    let (down, up) = tokio::join!(
        raw::download(Bytes::new(), RecvGuard::new(recv), write),
        raw::upload(
            read,
            SendGuard::new(send),
            request_id.to_owned(),
            codes::STREAM_UPSTREAM_FAILED,
        ),
    );
    debug!(request_id, down, up, "delivered TCP stream done");
}
