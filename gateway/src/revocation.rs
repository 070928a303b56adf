//! Revocation while running: watch the CRL file, swap it into the verifier, and close the
//! live connections (QUIC and HTTP/2 alike) whose certificate no longer passes.
//!
//! The file is polled (modification time, size, inode) every 200 ms rather than watched
//! with inotify: it works on every filesystem and platform, costs one `stat` per poll, and
//! keeps the promise that a revoked agent is cut off within a second. `aimux certs revoke`
//! replaces the file atomically (rename), so a half-written file is never read; a file
//! that does not parse (someone edited it by hand) is logged and the previous CRL stays in
//! force until the next change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aimux_certs::pki_types::UnixTime;
use aimux_certs::rustls::{self, CertificateError};
use aimux_certs::tls::MeshClientVerifier;
use aimux_wire::codes;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::tunnel::registry::{Live, Registry};

/// How often the CRL file's metadata is read.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// What identifies one version of the CRL file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
        }
    }
}

/// The stamp of `path` now, if it can be read.
pub(crate) fn stamp_now(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| Stamp::of(&m))
}

/// Polls the CRL file and applies changes.
#[derive(Debug)]
pub(crate) struct CrlWatcher {
    path: PathBuf,
    last: Option<Stamp>,
    verifier: Arc<MeshClientVerifier>,
    registry: Arc<Registry>,
    shared: Arc<Shared>,
    /// Whether the last poll failed to read the file (logged once, not every 200 ms).
    unreadable: bool,
}

impl CrlWatcher {
    pub(crate) fn new(
        path: PathBuf,
        last: Option<Stamp>,
        verifier: Arc<MeshClientVerifier>,
        registry: Arc<Registry>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            path,
            last,
            verifier,
            registry,
            shared,
            unreadable: false,
        }
    }

    /// Polls until `shutdown`.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => self.poll().await,
            }
        }
    }

    async fn poll(&mut self) {
        let stamp = match tokio::fs::metadata(&self.path).await {
            Ok(meta) => Stamp::of(&meta),
            Err(e) => {
                if !self.unreadable {
                    warn!(path = %self.path.display(), error = %e,
                        "cannot read the CRL file; the CRL loaded last stays in force");
                    self.unreadable = true;
                }
                return;
            }
        };
        self.unreadable = false;
        if self.last == Some(stamp) {
            return;
        }
        self.last = Some(stamp);
        self.reload().await;
    }

    async fn reload(&self) {
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || aimux_certs::load_crls(&path)).await;
        let crls = match loaded {
            Ok(Ok(crls)) => crls,
            Ok(Err(e)) => {
                warn!(path = %self.path.display(), error = %e,
                    "cannot load the changed CRL; the previous one stays in force");
                return;
            }
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "CRL loader task failed");
                return;
            }
        };
        if let Err(e) = self.verifier.update_crls(crls) {
            warn!(path = %self.path.display(), error = %e,
                "refusing the changed CRL; the previous one stays in force");
            return;
        }
        info!(path = %self.path.display(), "loaded the changed CRL; re-checking live connections");
        self.sweep();
    }

    /// Verifies every live connection's certificate against the current CRL.
    fn sweep(&self) {
        let now = UnixTime::now();
        for live in self.registry.snapshot() {
            if let Err(e) = self.verifier.recheck_peer(&live.certs, now) {
                close_rejected(&live, &e, &self.shared.metrics);
            }
        }
    }
}

/// Closes a connection whose certificate no longer verifies: REVOKED (reason `revoked`)
/// when the CRL lists it, so the sidecar backs off; UNAUTHORIZED otherwise (e.g. expired
/// since it connected). SPEC.md §12. An HTTP/2 connection cannot carry the code; its
/// sidecar learns of the revocation from the `certificate_revoked` alert that refuses its
/// next handshake (SPEC.md §12.1).
pub(crate) fn close_rejected(live: &Live, error: &rustls::Error, metrics: &Metrics) {
    let id = &live.id;
    if matches!(
        error,
        rustls::Error::InvalidCertificate(CertificateError::Revoked)
    ) {
        live.conn.close(codes::CLOSE_REVOKED, b"revoked");
        metrics.revoked();
        warn!(identity = %id, "closed connection of {id}: certificate revoked");
    } else {
        live.conn.close(codes::CLOSE_UNAUTHORIZED, b"unauthorized");
        warn!(identity = %id, error = %error,
            "closed connection of {id}: its certificate is no longer accepted");
    }
}
