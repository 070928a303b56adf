//! The live sidecar connections, so that a CRL change can re-check and close them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use aimux_certs::SpiffeId;
use aimux_certs::pki_types::CertificateDer;
use quinn::Connection;

/// One live connection: its handle, the identity its certificate proves, and the
/// certificate chain (to verify again against a new CRL).
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub(crate) conn: Connection,
    pub(crate) id: SpiffeId,
    pub(crate) certs: Arc<[CertificateDer<'static>]>,
}

/// Live connections by quinn's stable id.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    live: Mutex<HashMap<usize, Live>>,
}

impl Registry {
    /// Registers `live` until the returned guard drops.
    pub(crate) fn register(self: &Arc<Self>, live: Live) -> Registration {
        let key = live.conn.stable_id();
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Live>> {
        // Every critical section is a single map operation: a poisoned map is still whole.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes its connection from the registry when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    registry: Arc<Registry>,
    key: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.key);
    }
}
