//! Background work under supervision. Every loop of the server (reconciler, pool keepers, poller,
//! container events, garbage collection) and every piece of work that outlives a request
//! (deployments, webhook deliveries, probe monitors, pull-request feedback) is started through
//! [`Background::spawn`]: tracked, named in the logs when it panics, and stopped at shutdown.
//! Stopping drops the work at its next await, which is no worse than a crash: deployments resume
//! from their step log and deliveries from the store when the server starts again.
//!
//! A loop is a [`Periodic`] task: a value that owns the state it keeps between rounds and does
//! one round at a time, driven by [`Background::every`] on a period or when woken. Each round's
//! outcome is kept in [`Loops`], which `/metrics` and `GET /api/v1/loops` show.

use futures_util::FutureExt as _;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub(crate) struct Background {
    tracker: TaskTracker,
    stop: CancellationToken,
    loops: Loops,
}

/// A loop of the server: it owns what it keeps between rounds and does one round at a time.
pub(crate) trait Periodic: Send + 'static {
    /// As logged and shown (`reconciler`, `pool keeper`, ...).
    const NAME: &'static str;
    /// One round. An error is logged and kept as the loop's last; the next round is the retry.
    fn round(&mut self) -> impl Future<Output = Result<(), crate::failure::Failure>> + Send;
}

/// How each loop's rounds went.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct LoopStatus {
    pub(crate) rounds: u64,
    pub(crate) failures: u64,
    /// When the last round began (milliseconds since the epoch).
    pub(crate) last_started_at: Option<i64>,
    pub(crate) last_took_ms: Option<u64>,
    /// The last failed round's error, until a round succeeds.
    pub(crate) last_error: Option<String>,
}

/// Every loop's [`LoopStatus`], by name.
#[derive(Clone, Default)]
pub(crate) struct Loops(Arc<Mutex<BTreeMap<&'static str, LoopStatus>>>);

impl Loops {
    pub(crate) fn snapshot(&self) -> BTreeMap<&'static str, LoopStatus> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn record(&self, name: &'static str, started_at: i64, took: Duration, result: Result<(), String>) {
        let mut all = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = all.entry(name).or_default();
        s.rounds += 1;
        s.last_started_at = Some(started_at);
        s.last_took_ms = Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
        match result {
            Ok(()) => s.last_error = None,
            Err(e) => {
                s.failures += 1;
                s.last_error = Some(e);
            }
        }
    }

    /// The loops' counters in OpenMetrics text.
    pub(crate) fn metrics_text(&self) -> String {
        use std::fmt::Write as _;
        let all = self.snapshot();
        let mut out = String::new();
        for (metric, help, value) in [
            ("offshoot_loop_rounds", "Rounds each background loop has done.", (|s: &LoopStatus| s.rounds) as fn(&LoopStatus) -> u64),
            ("offshoot_loop_failures", "Rounds of each background loop that failed.", |s: &LoopStatus| s.failures),
        ] {
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
            for (name, s) in &all {
                let _ = writeln!(out, "{metric}_total{{loop=\"{name}\"}} {}", value(s));
            }
        }
        out
    }
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

    /// Every loop's rounds so far.
    pub(crate) fn loops(&self) -> &Loops {
        &self.loops
    }

    /// Runs `task` a round at a time until the server stops: a round right away, then one
    /// `period` after each round ends, or sooner when `wake` is notified.
    pub(crate) fn every<T: Periodic>(&self, mut task: T, period: Duration, wake: Option<Arc<Notify>>) {
        let loops = self.loops.clone();
        self.spawn(T::NAME, async move {
            loop {
                let (started, started_at) = (Instant::now(), offshoot_store::now_ms());
                let result = task.round().await.map_err(|e| e.to_string());
                if let Err(e) = &result {
                    tracing::warn!(task = T::NAME, error = %e, "a round failed; the next round retries");
                }
                loops.record(T::NAME, started_at, started.elapsed(), result);
                match &wake {
                    Some(w) => {
                        tokio::select! {
                            () = w.notified() => {}
                            () = tokio::time::sleep(period) => {}
                        }
                    }
                    None => tokio::time::sleep(period).await,
                }
            }
        });
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

    /// Counts its rounds and fails every second one.
    struct Counter(u64, tokio::sync::mpsc::UnboundedSender<u64>);

    impl Periodic for Counter {
        const NAME: &'static str = "counter";
        async fn round(&mut self) -> Result<(), crate::failure::Failure> {
            self.0 += 1;
            let _ = self.1.send(self.0);
            if self.0.is_multiple_of(2) { Err("an even round".to_owned().into()) } else { Ok(()) }
        }
    }

    #[tokio::test]
    async fn a_loop_keeps_its_own_state_is_woken_early_and_its_rounds_are_counted() {
        let bg = Background::default();
        let wake = Arc::new(Notify::new());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        bg.every(Counter(0, tx), Duration::from_secs(3600), Some(wake.clone()));
        assert_eq!(rx.recv().await, Some(1), "a round right away");
        wake.notify_one();
        assert_eq!(rx.recv().await, Some(2), "woken long before its period");
        // The round's outcome is recorded after it sends: wait for the record.
        let mut status = bg.loops().snapshot().remove("counter").unwrap_or_default();
        for _ in 0..100 {
            if status.rounds == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            status = bg.loops().snapshot().remove("counter").unwrap_or_default();
        }
        assert_eq!((status.rounds, status.failures, status.last_error.as_deref()), (2, 1, Some("an even round")));
        let text = bg.loops().metrics_text();
        assert!(text.contains("offshoot_loop_rounds_total{loop=\"counter\"} 2"), "{text}");
        assert!(text.contains("offshoot_loop_failures_total{loop=\"counter\"} 1"), "{text}");
        wake.notify_one();
        assert_eq!(rx.recv().await, Some(3));
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
