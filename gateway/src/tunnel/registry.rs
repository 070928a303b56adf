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
    fn key(&self) -> Key {
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

/// Live connections by transport and connection id, with the newest connection of each
/// identity (where requests for that agent are delivered, SPEC.md §12.2).
#[derive(Debug, Default)]
pub(crate) struct Registry {
    inner: Mutex<Inner>,
}

type Key = (&'static str, usize);

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<Key, (u64, Live)>,
    /// The connections of each identity, oldest first (a reconnecting sidecar briefly has
    /// two: the new one until the old one's close is noticed).
    by_id: HashMap<SpiffeId, Vec<(u64, Key)>>,
    /// Registration order, so that the newest connection of an identity is known.
    next_seq: u64,
}

impl Registry {
    /// Registers `live` until the returned guard drops.
    pub(crate) fn register(self: &Arc<Self>, live: Live) -> Registration {
        let key = live.conn.key();
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner
            .by_id
            .entry(live.id.clone())
            .or_default()
            .push((seq, key));
        inner.live.insert(key, (seq, live));
        Registration {
            registry: Arc::clone(self),
            key,
        }
    }

    /// A copy of the current entries (cheap: handles and `Arc`s), so that checks and
    /// closes run without the lock.
    pub(crate) fn snapshot(&self) -> Vec<Live> {
        self.lock().live.values().map(|(_, l)| l.clone()).collect()
    }

    /// The newest live connection whose certificate proves `id`, if any.
    pub(crate) fn newest(&self, id: &SpiffeId) -> Option<Handle> {
        let inner = self.lock();
        let (_, key) = inner.by_id.get(id)?.last()?;
        inner.live.get(key).map(|(_, l)| l.conn.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section is a few map operations that cannot panic halfway: a
        // poisoned map is still whole.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes its connection from the registry when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    registry: Arc<Registry>,
    key: Key,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        let Some((seq, live)) = inner.live.remove(&self.key) else {
            return;
        };
        if let Some(list) = inner.by_id.get_mut(&live.id) {
            list.retain(|(s, _)| *s != seq);
            if list.is_empty() {
                inner.by_id.remove(&live.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(id: &str) -> (Live, usize) {
        let handle = CloseHandle::new();
        let key = handle.id();
        let live = Live {
            conn: Handle::H2(handle),
            id: SpiffeId::parse(id).unwrap(),
            certs: Arc::from(Vec::new()),
        };
        (live, key)
    }

    fn newest_key(registry: &Registry, id: &str) -> Option<usize> {
        match registry.newest(&SpiffeId::parse(id).unwrap())? {
            Handle::H2(h) => Some(h.id()),
            Handle::Quic(c) => Some(c.stable_id()),
        }
    }

    #[test]
    fn the_newest_connection_of_an_identity_is_found_until_it_goes() {
        let registry = Arc::new(Registry::default());
        let bob = "spiffe://t.test/agent/bob";
        assert_eq!(newest_key(&registry, bob), None);
        let (old, old_key) = live(bob);
        let old = registry.register(old);
        // A reconnecting sidecar: the new connection registers before the old one is gone.
        let (new, new_key) = live(bob);
        let new = registry.register(new);
        let (alice, _) = live("spiffe://t.test/agent/alice");
        let _alice = registry.register(alice);
        assert_eq!(newest_key(&registry, bob), Some(new_key));
        // The new one dies first (say, its handshake raced a revocation): the old one is
        // still there to use.
        drop(new);
        assert_eq!(newest_key(&registry, bob), Some(old_key));
        drop(old);
        assert_eq!(newest_key(&registry, bob), None);
        assert_eq!(registry.snapshot().len(), 1);
        assert!(
            !registry
                .lock()
                .by_id
                .contains_key(&SpiffeId::parse(bob).unwrap())
        );
    }
}
