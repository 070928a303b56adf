//! One sidecar connection: finish the handshake, learn the caller from its verified
//! certificate, register it for revocation checks, and serve its streams until it closes
//! or the gateway shuts down.

use std::sync::Arc;
use std::time::Duration;

use aimux_certs::pki_types::CertificateDer;
use aimux_wire::codes;
use quinn::{Connection, ConnectionError, Incoming, VarInt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::Transport;
use crate::tunnel::registry::Handle;
use crate::tunnel::stream;
use crate::tunnel::transport::{StreamRecv, StreamSend};
use crate::tunnel::{self, ConnectionDeps, report_panic};

/// Why the stream loop ended.
enum End {
    Shutdown,
    Closed(ConnectionError),
    Violation,
}

/// Serves one incoming connection to its end.
pub(crate) async fn serve(
    incoming: Incoming,
    deps: Arc<ConnectionDeps>,
    shutdown: CancellationToken,
) {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(e) => {
            debug!(%remote, error = %e, "could not accept a connection");
            return;
        }
    };
    // The handshake is bounded by the idle timeout; shutdown interrupts it.
    let conn = tokio::select! {
        conn = connecting => conn,
        () = shutdown.cancelled() => return,
    };
    let conn = match conn {
        Ok(conn) => conn,
        Err(e) => {
            // Certificates from another CA, expired, revoked or missing end here: the
            // verifier refused them and rustls sent the matching TLS alert.
            info!(%remote, error = %e, "refused a sidecar connection during the handshake");
            return;
        }
    };
    let Some(certs) = peer_certificates(&conn) else {
        warn!(%remote, "a connection completed without a client certificate; closing it");
        conn.close(VarInt::from_u32(codes::CLOSE_UNAUTHORIZED), b"unauthorized");
        return;
    };
    let handle = Handle::Quic(conn.clone());
    let Some(admitted) = tunnel::admit(&deps, certs, handle, Transport::Quic, remote) else {
        return;
    };
    let (id, ctx) = (&admitted.id, &admitted.ctx);
    let mut streams = JoinSet::new();
    let end = loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break End::Shutdown,
            Some(done) = streams.join_next() => report_panic(done, id),
            bi = conn.accept_bi() => match bi {
                Ok((send, recv)) => {
                    let (send, recv) = (StreamSend::Quic(send.into()), StreamRecv::Quic(recv));
                    streams.spawn(stream::serve(Arc::clone(ctx), send, recv));
                }
                Err(e) => break End::Closed(e),
            },
            uni = conn.accept_uni() => match uni {
                Ok(_) => {
                    // SPEC.md §12: only bidirectional streams may be opened.
                    warn!(identity = %id, "the sidecar opened a unidirectional stream; closing \
                        the connection (protocol violation)");
                    conn.close(
                        VarInt::from_u32(codes::CLOSE_PROTOCOL_VIOLATION),
                        b"unidirectional streams are not allowed",
                    );
                    break End::Violation;
                }
                Err(e) => break End::Closed(e),
            },
        }
    };
    match end {
        End::Shutdown => drain(&conn, streams, deps.shared.timeouts.shutdown_grace).await,
        End::Closed(e) => {
            info!(identity = %id, reason = %e, "sidecar disconnected");
            abort_all(streams).await;
        }
        End::Violation => abort_all(streams).await,
    }
}

/// Lets in-flight streams finish (no new ones: the sidecar's stream credit drops to zero),
/// for at most `grace`, then closes the connection with SHUTDOWN (SPEC.md §12) so the
/// sidecar reconnects.
async fn drain(conn: &Connection, mut streams: JoinSet<()>, grace: Duration) {
    conn.set_max_concurrent_bi_streams(VarInt::from_u32(0));
    let in_flight = streams.len();
    let finished = tokio::time::timeout(grace, async {
        while streams.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        warn!(
            remaining = streams.len(),
            in_flight, "shutdown grace period over; abandoning the requests still in flight"
        );
    }
    abort_all(streams).await;
    conn.close(VarInt::from_u32(codes::CLOSE_SHUTDOWN), b"shutdown");
}

async fn abort_all(mut streams: JoinSet<()>) {
    streams.abort_all();
    while streams.join_next().await.is_some() {}
}

/// The verified client certificate chain (rustls hands it to quinn as
/// `Vec<CertificateDer>`).
fn peer_certificates(conn: &Connection) -> Option<Arc<[CertificateDer<'static>]>> {
    let any = conn.peer_identity()?;
    let certs = any.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    (!certs.is_empty()).then(|| Arc::from(*certs))
}
