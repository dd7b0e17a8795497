//! The cron jobs' clock on the Docker engine: a loop that asks the control plane which
//! occurrences are due ([`offshoot_control::cron`]) and runs each in the background. On
//! Kubernetes the cluster's `CronJob`s keep the schedule, and this loop does not run.

use crate::background::Periodic;
use crate::failure::Failure;
use crate::plane::control;
use crate::state::Shared;
use offshoot_control::Actor;
use offshoot_runtime::Runtime as _;
use std::time::Duration;

/// How often the schedules are looked at: a run starts at most this long after its minute.
pub(crate) const EVERY: Duration = Duration::from_secs(5);

pub(crate) struct CronClock(pub(crate) Shared);

impl Periodic for CronClock {
    const NAME: &'static str = "cron";

    async fn round(&mut self) -> Result<(), Failure> {
        let ctx = &self.0;
        let runs = control(ctx, Actor::system("cron")).cron_round(offshoot_store::now_ms()).await.map_err(|e| e.to_string())?;
        for run in runs {
            let ctx = ctx.clone();
            ctx.background.clone().spawn("cron job", async move {
                if let Err(e) = control(&ctx, Actor::system("cron")).run_cron(&run).await {
                    tracing::error!(env = %run.env_id, job = %run.job, error = %e, "cannot record a cron job's end");
                }
            });
        }
        Ok(())
    }
}

/// After a restart: the runs that were going are interrupted, and their containers removed
/// (the engine may still run them).
pub(crate) async fn recover(ctx: &Shared) {
    match control(ctx, Actor::system("cron")).interrupt_cron_runs().await {
        Ok(runs) => {
            for r in runs {
                tracing::info!(env = %r.env_id, job = %r.job, "a cron job's run was interrupted by a restart");
                if let Err(e) = ctx.rt.remove(&crate::docker_backend::job_container(&r.env_id, &r.job)).await {
                    tracing::warn!(env = %r.env_id, job = %r.job, error = %e, "cannot remove an interrupted cron job's container");
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot list the cron jobs' runs"),
    }
}
