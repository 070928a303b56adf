//! An executor for hyper's HTTP/2 tasks (one per stream: it pipes a body into h2) that keeps
//! them owned: they run on a `TaskTracker`, and [`OwnedExecutor::shutdown`] lets them finish
//! for a bounded time, then cancels what is left, so none outlives the connection that
//! spawned it.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Default)]
pub(crate) struct OwnedExecutor {
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl OwnedExecutor {
    /// Waits at most `wait` for the tasks to end on their own (they do once their
    /// connection is gone), then cancels the rest and waits at most `wait` again.
    pub(crate) async fn shutdown(&self, wait: Duration) {
        self.tasks.close();
        if tokio::time::timeout(wait, self.tasks.wait()).await.is_err() {
            self.stop.cancel();
            let _ = tokio::time::timeout(wait, self.tasks.wait()).await;
        }
    }
}

impl<F> hyper::rt::Executor<F> for OwnedExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                biased;
                () = stop.cancelled() => {}
                _ = fut => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use hyper::rt::Executor;

    use super::*;

    #[tokio::test]
    async fn shutdown_cancels_what_still_runs() {
        let exec = OwnedExecutor::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        exec.execute(async move {
            std::future::pending::<()>().await;
            drop(tx);
        });
        exec.shutdown(Duration::from_millis(50)).await;
        // The pending future was dropped, and with it the sender.
        assert!(rx.await.is_err());
    }
}
