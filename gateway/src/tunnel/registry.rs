//! The live sidecar connections of every transport, so that a CRL change can re-check and
//! close them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use aimux_certs::SpiffeId;
use aimux_certs::pki_types::CertificateDer;
use quinn::VarInt;

use crate::h2::CloseHandle;
use crate::metrics::Transport;

/// How to close one live connection.
#[derive(Debug, Clone)]
pub(crate) enum Handle {
    Quic(quinn::Connection),
    H2(CloseHandle),
}

impl Handle {
    fn key(&self) -> (&'static str, usize) {
        match self {
            Handle::Quic(conn) => (Transport::Quic.as_str(), conn.stable_id()),
            Handle::H2(handle) => (Transport::H2.as_str(), handle.id()),
        }
    }

    /// Closes the connection with an application code of SPEC.md §12. QUIC carries the code
    /// and reason in CONNECTION_CLOSE; HTTP/2 cannot (see `h2::CloseHandle`).
    pub(crate) fn close(&self, code: u32, reason: &'static [u8]) {
        match self {
            Handle::Quic(conn) => conn.close(VarInt::from_u32(code), reason),
            Handle::H2(handle) => handle.close(),
        }
    }
}

/// One live connection: its handle, the identity its certificate proves, and the
/// certificate chain (to verify again against a new CRL).
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub(crate) conn: Handle,
    pub(crate) id: SpiffeId,
    pub(crate) certs: Arc<[CertificateDer<'static>]>,
}

/// Live connections by transport and connection id.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    live: Mutex<HashMap<(&'static str, usize), Live>>,
}

impl Registry {
    /// Registers `live` until the returned guard drops.
    pub(crate) fn register(self: &Arc<Self>, live: Live) -> Registration {
        let key = live.conn.key();
        self.lock().insert(key, live);
        Registration {
            registry: Arc::clone(self),
            key,
        }
    }

    /// A copy of the current entries (cheap: handles and `Arc`s), so that checks and
    /// closes run without the lock.
    pub(crate) fn snapshot(&self) -> Vec<Live> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(&'static str, usize), Live>> {
        // Every critical section is a single map operation: a poisoned map is still whole.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes its connection from the registry when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    registry: Arc<Registry>,
    key: (&'static str, usize),
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.key);
    }
}
