//! Process plumbing for the long-running commands: logging, the tokio runtime, and turning
//! SIGINT/SIGTERM into a cancellation that every component observes.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long components get to finish in-flight work after a signal before the process exits.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Logs to stderr; `RUST_LOG` filters (default `info`).
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Runs `main` on a multi-threaded runtime with a shutdown token that a signal cancels; the
/// tracker owns every background task, and is awaited (bounded) before returning.
pub(crate) fn run<F, Fut>(main: F) -> anyhow::Result<()>
where
    F: FnOnce(CancellationToken, TaskTracker) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let signals = tasks.spawn(cancel_on_signal(shutdown.clone()));
        let result = main(shutdown.clone(), tasks.clone()).await;
        shutdown.cancel();
        signals.abort();
        tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not stop within {SHUTDOWN_GRACE:?}; exiting anyway");
        }
        result
    })
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM ({e}); stop with Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
        () = terminate => tracing::info!("SIGTERM; shutting down"),
        () = shutdown.cancelled() => {}
    }
    shutdown.cancel();
}
