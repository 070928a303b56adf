//! One sidecar connection: finish the handshake, learn the caller from its verified
//! certificate, register it for revocation checks, and serve its streams until it closes
//! or the gateway shuts down.

use std::sync::Arc;
use std::time::Duration;

use aimux_certs::pki_types::{CertificateDer, UnixTime};
use aimux_certs::tls::MeshClientVerifier;
use aimux_wire::codes;
use quinn::{Connection, ConnectionError, Incoming, VarInt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::registry::{Live, Registry};
use super::stream::{self, StreamContext};
use crate::policy::Caller;
use crate::revocation;
use crate::shared::Shared;

/// What every connection task needs.
#[derive(Debug)]
pub(crate) struct ConnectionDeps {
    pub(crate) shared: Arc<Shared>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) verifier: Arc<MeshClientVerifier>,
}

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
    let id = match aimux_certs::peer_identity(&certs) {
        Ok(id) => id,
        Err(e) => {
            warn!(%remote, error = %e, "a verified certificate has no usable SPIFFE ID; closing");
            conn.close(VarInt::from_u32(codes::CLOSE_UNAUTHORIZED), b"unauthorized");
            return;
        }
    };
    let live = Live {
        conn: conn.clone(),
        id: id.clone(),
        certs,
    };
    let _registration = deps.registry.register(live.clone());
    // A CRL swapped between this handshake and the registration above would have missed
    // this connection in its sweep: check it once more, now that any later sweep sees it.
    if let Err(e) = deps.verifier.recheck_peer(&live.certs, UnixTime::now()) {
        revocation::close_rejected(&live, &e, &deps.shared.metrics);
        return;
    }
    let _open = deps.shared.metrics.connection_opened();
    info!(identity = %id, %remote, "sidecar connected");

    let ctx = Arc::new(StreamContext {
        caller: Caller::new(id.clone(), &deps.shared.trust_domain),
        shared: Arc::clone(&deps.shared),
    });
    let mut streams = JoinSet::new();
    let end = loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break End::Shutdown,
            Some(done) = streams.join_next() => report_panic(done, &id),
            bi = conn.accept_bi() => match bi {
                Ok((send, recv)) => {
                    streams.spawn(stream::serve(Arc::clone(&ctx), send, recv));
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

fn report_panic(done: Result<(), tokio::task::JoinError>, id: &aimux_certs::SpiffeId) {
    if let Err(e) = done
        && e.is_panic()
    {
        error!(identity = %id, "a stream task panicked: {e}");
    }
}

/// The verified client certificate chain (rustls hands it to quinn as
/// `Vec<CertificateDer>`).
fn peer_certificates(conn: &Connection) -> Option<Arc<[CertificateDer<'static>]>> {
    let any = conn.peer_identity()?;
    let certs = any.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    (!certs.is_empty()).then(|| Arc::from(*certs))
}
