//! The sidecar tunnel, whatever carries it (SPEC.md §12): one client verifier with the CRL
//! (swapped in place by the watcher), one registry of live connections, admission of a
//! connection from its verified certificate, and the per-stream logic. The transports
//! (`crate::quic`, `crate::h2`) only accept connections and streams and hand them here.

mod deliver;
pub(crate) mod envelope;
mod framed;
pub(crate) mod raw;
pub(crate) mod registry;
pub(crate) mod stream;
pub(crate) mod transport;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use aimux_certs::SpiffeId;
use aimux_certs::pki_types::{CertificateDer, UnixTime};
use aimux_certs::tls::{MeshClientVerifier, MeshTrust};
use aimux_wire::codes;
use tracing::{error, info, warn};

use self::registry::{Handle, Live, Registration, Registry};
use self::stream::StreamContext;
use crate::config::TunnelConfig;
use crate::error::GatewayError;
use crate::h2::H2Listener;
use crate::metrics::{GaugeGuard, Transport};
use crate::policy::Caller;
use crate::quic::QuicListener;
use crate::revocation::{self, CrlWatcher};
use crate::shared::Shared;

/// What every connection task needs, whatever its transport.
#[derive(Debug)]
pub(crate) struct ConnectionDeps {
    pub(crate) shared: Arc<Shared>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) verifier: Arc<MeshClientVerifier>,
}

/// A connection that passed admission. Dropping it unregisters the connection and stops
/// counting it as open.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub(crate) id: SpiffeId,
    pub(crate) ctx: Arc<StreamContext>,
    _registration: Registration,
    _open: GaugeGuard,
}

/// Admits a connection whose handshake verified `certs`: reads the SPIFFE ID, registers
/// the connection for revocation sweeps and checks it once more against the current CRL.
/// A refused connection has been closed (and logged) when this returns `None`.
pub(crate) fn admit(
    deps: &ConnectionDeps,
    certs: Arc<[CertificateDer<'static>]>,
    conn: Handle,
    transport: Transport,
    remote: SocketAddr,
) -> Option<Admitted> {
    let id = match aimux_certs::peer_identity(&certs) {
        Ok(id) => id,
        Err(e) => {
            warn!(%remote, error = %e, "a verified certificate has no usable SPIFFE ID; closing");
            conn.close(codes::CLOSE_UNAUTHORIZED, b"unauthorized");
            return None;
        }
    };
    let live = Live {
        conn,
        id: id.clone(),
        certs,
    };
    let registration = deps.registry.register(live.clone());
    // A CRL swapped between this handshake and the registration above would have missed
    // this connection in its sweep: check it once more, now that any later sweep sees it.
    if let Err(e) = deps.verifier.recheck_peer(&live.certs, UnixTime::now()) {
        revocation::close_rejected(&live, &e, &deps.shared.metrics);
        return None;
    }
    let open = deps.shared.metrics.connection_opened(transport);
    info!(identity = %id, %remote, transport = transport.as_str(), "sidecar connected");
    let ctx = Arc::new(StreamContext {
        caller: Caller::new(id.clone(), &deps.shared.trust_domain),
        shared: Arc::clone(&deps.shared),
        registry: Arc::clone(&deps.registry),
    });
    Some(Admitted {
        id,
        ctx,
        _registration: registration,
        _open: open,
    })
}

/// The bound tunnel listeners and what they share.
#[derive(Debug)]
pub(crate) struct TunnelListeners {
    verifier: Arc<MeshClientVerifier>,
    crl_path: PathBuf,
    crl_stamp: Option<revocation::Stamp>,
    pub(crate) quic: Option<QuicListener>,
    pub(crate) h2: Option<H2Listener>,
}

impl TunnelListeners {
    /// Loads the CRL, builds the verifier and binds every configured listener.
    pub(crate) async fn bind(
        config: &TunnelConfig,
        trust: &MeshTrust,
    ) -> Result<Self, GatewayError> {
        if config.quic.is_none() && config.h2.is_none() {
            return Err(GatewayError::NoTunnelListener);
        }
        let crl_error = |source| GatewayError::Crl {
            path: config.crl_path.clone(),
            source: Box::new(source),
        };
        // Stamp first: if the file changes between the stamp and the load, the watcher
        // sees a new stamp and loads it again.
        let crl_stamp = revocation::stamp_now(&config.crl_path);
        let crls = aimux_certs::load_crls(&config.crl_path).map_err(crl_error)?;
        let verifier = Arc::new(MeshClientVerifier::new(trust.clone(), crls).map_err(crl_error)?);
        let quic = config
            .quic
            .map(|addr| QuicListener::bind(addr, config, &verifier))
            .transpose()?;
        let h2 = match config.h2 {
            Some(addr) => Some(H2Listener::bind(addr, config, &verifier).await?),
            None => None,
        };
        Ok(Self {
            verifier,
            crl_path: config.crl_path.clone(),
            crl_stamp,
            quic,
            h2,
        })
    }

    /// The CRL watcher for the shared verifier and every transport's connections.
    pub(crate) fn watcher(&self, shared: &Arc<Shared>, registry: &Arc<Registry>) -> CrlWatcher {
        CrlWatcher::new(
            self.crl_path.clone(),
            self.crl_stamp,
            Arc::clone(&self.verifier),
            Arc::clone(registry),
            Arc::clone(shared),
        )
    }

    /// What the connection tasks of every listener share.
    pub(crate) fn deps(
        &self,
        shared: &Arc<Shared>,
        registry: &Arc<Registry>,
    ) -> Arc<ConnectionDeps> {
        Arc::new(ConnectionDeps {
            shared: Arc::clone(shared),
            registry: Arc::clone(registry),
            verifier: Arc::clone(&self.verifier),
        })
    }
}

/// Logs a stream task that panicked (a bug); other endings need no report.
pub(crate) fn report_panic(done: Result<(), tokio::task::JoinError>, id: &SpiffeId) {
    if let Err(e) = done
        && e.is_panic()
    {
        error!(identity = %id, "a stream task panicked: {e}");
    }
}
