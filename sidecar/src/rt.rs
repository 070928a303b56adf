//! An executor for hyper's HTTP/2 client tasks (the connection task that owns the socket,
//! and one task per request body) that keeps them owned: they run on a `TaskTracker`, and
//! [`OwnedExecutor::shutdown`] lets them finish for a bounded time, then cancels what is
//! left, so none outlives the connection that spawned it.

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
    /// Waits at most `wait` for the tasks to end on their own (e.g. the connection task
    /// sending GOAWAY once nothing uses the connection), then cancels the rest and waits at
    /// most `wait` again.
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

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_then_cancels_what_still_runs() {
        let exec = OwnedExecutor::default();
        let (quick_tx, quick_rx) = tokio::sync::oneshot::channel::<()>();
        exec.execute(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = quick_tx.send(());
        });
        let (stuck_tx, stuck_rx) = tokio::sync::oneshot::channel::<()>();
        exec.execute(async move {
            std::future::pending::<()>().await;
            drop(stuck_tx);
        });
        exec.shutdown(Duration::from_secs(1)).await;
        assert_eq!(quick_rx.await, Ok(()), "finished on its own");
        assert!(stuck_rx.await.is_err(), "cancelled after the wait");
    }
}
