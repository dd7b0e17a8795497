//! Background work under supervision. Every loop of the server (reconciler, pool keepers, poller,
//! container events, garbage collection) and every piece of work that outlives a request
//! (deployments, webhook deliveries, probe monitors, pull-request feedback) is started through
//! [`Background::spawn`]: tracked, named in the logs when it panics, and stopped at shutdown.
//! Stopping drops the work at its next await, which is no worse than a crash: deployments resume
//! from their step log and deliveries from the store when the server starts again.

use futures_util::FutureExt as _;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub(crate) struct Background {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Background {
    /// Runs `work` until it ends or the server stops.
    pub(crate) fn spawn(&self, name: &'static str, work: impl Future<Output = ()> + Send + 'static) {
        drop(self.spawn_joinable(name, work));
    }

    /// Runs `work` like [`spawn`](Self::spawn), for a caller that waits for its result (`None`
    /// when the server stopped it or it panicked). Dropping the handle does not stop the work.
    pub(crate) fn spawn_joinable<T: Send + 'static>(
        &self,
        name: &'static str,
        work: impl Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<Option<T>> {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                ended = AssertUnwindSafe(work).catch_unwind() => {
                    if ended.is_err() {
                        tracing::error!(task = name, "background work panicked");
                    }
                    ended.ok()
                }
                () = stop.cancelled() => None,
            }
        })
    }

    /// Stops everything and waits for it, at most `grace`; returns how many were still running.
    pub(crate) async fn shutdown(&self, grace: Duration) -> usize {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            tracing::warn!(running = self.tracker.len(), "background work did not stop in time");
        }
        self.tracker.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_stops_loops_and_reports_none_left() {
        let bg = Background::default();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        bg.spawn("forever", async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        bg.spawn("short", async {});
        tokio::task::yield_now().await;
        assert_eq!(bg.shutdown(Duration::from_secs(5)).await, 0);
        // The loop was dropped: its sender is gone.
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_panic_ends_only_the_work_that_panicked() {
        let bg = Background::default();
        bg.spawn("panics", async { panic!("boom") });
        let (tx, rx) = tokio::sync::oneshot::channel();
        bg.spawn("works", async move {
            let _ = tx.send(());
        });
        assert!(rx.await.is_ok());
        assert_eq!(bg.shutdown(Duration::from_secs(5)).await, 0);
    }

    #[tokio::test]
    async fn joinable_work_gives_its_result_and_outlives_its_dropped_handle() {
        let bg = Background::default();
        assert_eq!(bg.spawn_joinable("answer", async { 42 }).await.ok().flatten(), Some(42));
        let (tx, rx) = tokio::sync::oneshot::channel();
        drop(bg.spawn_joinable("detached", async move {
            tokio::task::yield_now().await;
            let _ = tx.send("done");
        }));
        assert_eq!(rx.await.ok(), Some("done"));
        assert_eq!(bg.shutdown(Duration::from_secs(5)).await, 0);
    }
}
