//! Raw TCP streams (envelope kind 0x02, SPEC.md §2 item 5): after the response envelope,
//! the stream and the upstream TCP connection are joined byte for byte. Half-close is
//! honoured both ways (the sidecar's FIN becomes a TCP FIN to the upstream and the
//! upstream's FIN the stream's), each direction running on while the other is closed.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::transport::{StreamRecv, StreamSend};
use aimux_wire::codes;

/// Largest read per write, in either direction.
const CHUNK: usize = 16 * 1024;

/// How the relay ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Relayed {
    pub(crate) up_clean: bool,
    pub(crate) down_clean: bool,
}

/// Joins the stream and the upstream connection until both directions have ended.
pub(crate) async fn relay(send: &mut StreamSend, recv: StreamRecv, upstream: TcpStream) -> Relayed {
    let (up_read, up_write) = upstream.into_split();
    let (up_clean, down_clean) =
        tokio::join!(to_upstream(recv, up_write), to_sidecar(up_read, send));
    Relayed {
        up_clean,
        down_clean,
    }
}

/// Sidecar → upstream: a TCP FIN (write shutdown) at the stream's FIN.
async fn to_upstream(mut recv: StreamRecv, mut upstream: OwnedWriteHalf) -> bool {
    loop {
        match recv.read_chunk(CHUNK).await {
            Ok(Some(chunk)) => {
                if upstream.write_all(&chunk).await.is_err() {
                    recv.stop(codes::STREAM_UPSTREAM_FAILED);
                    return false;
                }
            }
            Ok(None) => return upstream.shutdown().await.is_ok(),
            Err(_) => {
                // The agent's side was reset: reset the upstream's too, rather than a FIN
                // it would take for a complete request.
                let _ = upstream.as_ref().set_zero_linger();
                return false;
            }
        }
    }
}

/// Upstream → sidecar: the stream's FIN at the upstream's EOF, a reset if reading fails.
async fn to_sidecar(mut upstream: OwnedReadHalf, send: &mut StreamSend) -> bool {
    let mut buf = BytesMut::with_capacity(CHUNK);
    loop {
        buf.reserve(CHUNK);
        match upstream.read_buf(&mut buf).await {
            Ok(0) => return send.finish().is_ok(),
            Ok(_) => {
                if send.write_chunk(buf.split().freeze()).await.is_err() {
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
