//! Hot reload: watch the mesh file and apply edits to routes, services, access rules and
//! semantic routing to the running gateway, without touching a connection.
//!
//! An edit is read, parsed and validated in full, then built into a gateway policy snapshot
//! and swapped in atomically (`aimux_gateway::Reloader`); anything invalid is logged with
//! every mistake and the running configuration keeps serving. Edits to what cannot change
//! under a running process (listen addresses, certificates, agents) are reported as needing
//! a restart and otherwise ignored.
//!
//! Change detection: inotify through `notify` on the file's directory (editors replace files
//! by renaming, which a watch on the file itself would miss), plus a slow poll of the file's
//! content as a backstop for file systems without inotify events.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::assemble::{self, Builtins};
use crate::mesh::{self, Mesh, Origin};

/// Quiet time after a change before it is read: editors write files in several steps.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// Backstop poll interval.
const POLL: Duration = Duration::from_secs(2);

/// Watches `path` until `shutdown`, reloading the gateway on every valid edit.
pub(crate) async fn watch(
    path: PathBuf,
    mut current: Mesh,
    reloader: aimux_gateway::Reloader,
    builtins: Arc<Builtins>,
    shutdown: CancellationToken,
) {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let name = path.file_name().map(ToOwned::to_owned);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = event.is_ok_and(|e| {
            e.paths
                .iter()
                .any(|p| name.is_none() || p.file_name() == name.as_deref())
        });
        if relevant {
            // A full channel already holds a wake-up; one is enough.
            let _ = tx.try_send(());
        }
    });
    let dir = parent_dir(&path);
    let _watcher = match watcher {
        Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                warn!(
                    "cannot watch {} for changes ({e}); polling every {}s instead",
                    dir.display(),
                    POLL.as_secs()
                );
                None
            }
        },
        Err(e) => {
            warn!(
                "cannot watch files ({e}); polling {} every {}s instead",
                path.display(),
                POLL.as_secs()
            );
            None
        }
    };
    let mut last = std::fs::read(&path).ok();
    info!(file = %path.display(), "watching the mesh file: edits to routes, services, access rules and [semantic] apply without a restart");
    let mut poll = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            Some(()) = rx.recv() => {}
            _ = poll.tick() => {}
        }
        // Let the editor finish, and fold a burst of events into one reload.
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(DEBOUNCE) => {}
        }
        while rx.try_recv().is_ok() {}
        let Ok(bytes) = std::fs::read(&path) else {
            // Mid-rename, or deleted: the next event or poll tries again.
            continue;
        };
        if last.as_deref() == Some(bytes.as_slice()) {
            continue;
        }
        last = Some(bytes.clone());
        match apply(&path, bytes, &current, &reloader, &builtins).await {
            Ok(mesh) => current = mesh,
            Err(why) => {
                error!("mesh file edit rejected, the previous configuration keeps serving:\n{why}")
            }
        }
    }
}

/// Parses, validates and applies one version of the file. Returns the new mesh on success.
async fn apply(
    path: &Path,
    bytes: Vec<u8>,
    current: &Mesh,
    reloader: &aimux_gateway::Reloader,
    builtins: &Builtins,
) -> Result<Mesh, String> {
    let source =
        String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8", path.display()))?;
    let mesh = mesh::parse(Origin::File(path.to_path_buf()), source).map_err(|e| e.to_string())?;
    for part in restart_needed(current, &mesh) {
        warn!("the mesh file changes {part}, which takes effect only after a restart");
    }
    let policy = assemble::policy(&mesh, builtins)
        .await
        .map_err(|e| format!("{e:#}"))?;
    // Building a snapshot may load the embedding model and embed every example: off the
    // async workers.
    let reloader = reloader.clone();
    tokio::task::spawn_blocking(move || reloader.reload(policy))
        .await
        .map_err(|e| format!("the reload task failed: {e}"))?
        .map_err(|e| e.to_string())?;
    info!(file = %path.display(), "mesh file reloaded");
    Ok(mesh)
}

/// The parts of the file a running process cannot change.
fn restart_needed(old: &Mesh, new: &Mesh) -> Vec<&'static str> {
    let mut parts = Vec::new();
    if old.trust_domain != new.trust_domain || old.certs_dir != new.certs_dir {
        parts.push("[mesh]");
    }
    if old.gateway != new.gateway {
        parts.push("[gateway]");
    }
    if old.agents != new.agents {
        parts.push("[[agent]]");
    }
    parts
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
