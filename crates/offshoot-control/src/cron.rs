//! Cron jobs where the control plane keeps the schedule (the Docker engine; on Kubernetes a
//! `CronJob` does). Each round looks at every environment's `cron_jobs`: a schedule that fired
//! since the job's last recorded occurrence gets one run, recorded before it starts so that an
//! occurrence runs once however many servers share the store, or a skipped run that says why
//! (the environment sleeps or is not ready, the previous run is still going). Occurrences missed
//! while the server was down are not replayed one by one: the latest runs, and says how many
//! were missed. A run is the engine's `run_job`, as in a workflow.

use crate::{Backend as _, Control, ControlError, Ports};
use offshoot_api_types::EnvStatus;
use offshoot_store::{CronRun, Environment, now_ms};
use offshoot_template::document::{self, Kind};
use offshoot_template::schedule::Schedule;

/// The most of a run's log that is kept (its tail), in bytes.
pub const MAX_OUTPUT: usize = 64 * 1024;

/// A cron job of an environment: its name and its schedule as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronJob {
    pub name: String,
    pub schedule: String,
}

/// The cron jobs of an environment's forked template (none if it does not parse: a deployment
/// says why).
pub fn cron_jobs_of(env: &Environment) -> Vec<CronJob> {
    if !env.template.contains("cron_jobs") {
        return Vec::new();
    }
    let doc = document::check("application_template.yaml", &env.template, Some(Kind::Template));
    doc.template
        .map(|t| {
            t.cron_jobs
                .iter()
                .filter_map(|j| Some(CronJob { name: j.name.value.clone(), schedule: j.schedule.as_ref()?.value.clone() }))
                .collect()
        })
        .unwrap_or_default()
}

/// What a round does for one job of one environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing fired since the last occurrence.
    Wait,
    /// Run the occurrence at `at`; `missed` earlier ones fired unseen.
    Run { at: i64, missed: u32 },
    /// Record the occurrence at `at` as skipped, for `reason`.
    Skip { at: i64, reason: String },
}

/// Decides for a job whose last recorded occurrence is `latest` (with whether its run is still
/// going), in an environment of `status` where a job without runs counts from `since`, at
/// `now`.
pub fn decide(schedule: &Schedule, status: EnvStatus, latest: Option<(i64, bool)>, since: i64, now: i64) -> Decision {
    // A job with runs counts from its last occurrence (a deployment since does not hide one
    // that came after it); one without, from `since`.
    let after = latest.map_or(since, |(at, _)| at);
    let Some((at, fired)) = schedule.last_between(after, now, 1000) else { return Decision::Wait };
    let reason = match status {
        EnvStatus::Ready => None,
        EnvStatus::Sleeping => Some("the environment is asleep".to_owned()),
        other => Some(format!("the environment is {other}")),
    };
    match (reason, latest) {
        (Some(reason), _) => Decision::Skip { at, reason },
        (None, Some((_, true))) => Decision::Skip { at, reason: "the previous run is still running".into() },
        (None, _) => Decision::Run { at, missed: fired - 1 },
    }
}

/// The last `MAX_OUTPUT` bytes of a log, cut at a character boundary.
fn bounded(mut s: String) -> String {
    if s.len() > MAX_OUTPUT {
        let mut cut = s.len() - MAX_OUTPUT;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s.drain(..cut);
    }
    s
}

impl<P: Ports> Control<'_, P> {
    /// One round of the schedule at `now`: records the skipped occurrences and the runs to
    /// start, and returns the runs (the caller starts each with [`Control::run_cron`]).
    pub async fn cron_round(&self, now: i64) -> Result<Vec<CronRun>, ControlError> {
        let mut started = Vec::new();
        for env in self.store.envs(None, false).await? {
            if matches!(env.status, EnvStatus::TearingDown | EnvStatus::Deleted) {
                continue;
            }
            let jobs = cron_jobs_of(&env);
            if jobs.is_empty() {
                continue;
            }
            let latest = self.store.cron_latest(&env.id).await?;
            let since = self.cron_since(&env).await?;
            for job in jobs {
                let Ok(schedule) = Schedule::parse(&job.schedule) else { continue };
                let last = latest.iter().find(|(j, ..)| *j == job.name).map(|(_, at, running)| (*at, *running));
                let (at, status, reason) = match decide(&schedule, env.status, last, since, now) {
                    Decision::Wait => continue,
                    Decision::Run { at, missed: 0 } => (at, "running", None),
                    Decision::Run { at, missed } => {
                        (at, "running", Some(format!("caught up: {missed} earlier occurrence(s) passed while the server was not running")))
                    }
                    Decision::Skip { at, reason } => (at, "skipped", Some(reason)),
                };
                let run = CronRun {
                    id: crate::ids::new_cron_run_id(),
                    env_id: env.id.to_string(),
                    job: job.name.clone(),
                    scheduled_at: at,
                    started_at: (status == "running").then_some(now),
                    finished_at: (status == "skipped").then_some(now),
                    status: status.into(),
                    reason,
                    output: String::new(),
                };
                if self.store.add_cron_run(&run).await? {
                    match run.status.as_str() {
                        "running" => started.push(run),
                        _ => {
                            tracing::info!(env = %env.id, job = %job.name, reason = run.reason.as_deref().unwrap_or(""), "cron job skipped")
                        }
                    }
                }
            }
        }
        Ok(started)
    }

    /// Where an environment's cron jobs count from when they have no run yet: its creation, or
    /// its last successful deployment (which may have brought the job).
    async fn cron_since(&self, env: &Environment) -> Result<i64, ControlError> {
        let deployed = self
            .store
            .deployments(&env.id)
            .await?
            .into_iter()
            .filter(|d| d.status == offshoot_api_types::DeploymentStatus::Succeeded)
            .filter_map(|d| d.finished_at)
            .max();
        Ok(deployed.unwrap_or(env.created_at).max(env.created_at))
    }

    /// Runs a run recorded by [`Control::cron_round`] to its end on the environment's engine,
    /// and records how it ended.
    pub async fn run_cron(&self, run: &CronRun) -> Result<(), ControlError> {
        tracing::info!(env = %run.env_id, job = %run.job, "cron job started");
        let outcome = match self.find_env(&run.env_id).await {
            Ok(env) => match self.ports.job_engine(&env).await {
                Ok(engine) => engine.run_job(&run.job).await.map_err(|e| e.message().to_owned()),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        let caught_up = run.reason.clone();
        let (status, reason, output) = match outcome {
            Ok(output) => ("succeeded", caught_up, output),
            Err(why) => ("failed", Some(why), String::new()),
        };
        tracing::info!(env = %run.env_id, job = %run.job, status, "cron job ended");
        self.store.finish_cron_run(&run.id, status, reason.as_deref(), &bounded(output), now_ms()).await?;
        Ok(())
    }

    /// After a restart: runs recorded as running were cut short with the server; each is
    /// recorded as interrupted (the next occurrence runs as usual). Returns them, for the
    /// caller to remove what the engine may still run.
    pub async fn interrupt_cron_runs(&self) -> Result<Vec<CronRun>, ControlError> {
        let runs = self.store.running_cron_runs().await?;
        for r in &runs {
            self.store.finish_cron_run(&r.id, "interrupted", Some("the server stopped during the run"), "", now_ms()).await?;
        }
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn every_minute() -> Schedule {
        Schedule::parse("* * * * *").expect("parses")
    }

    #[test]
    fn a_schedule_fires_once_per_occurrence() {
        let s = every_minute();
        assert_eq!(decide(&s, EnvStatus::Ready, None, 10 * MIN + 1, 10 * MIN + 30_000), Decision::Wait, "not before the first minute");
        assert_eq!(decide(&s, EnvStatus::Ready, None, 10 * MIN + 1, 11 * MIN), Decision::Run { at: 11 * MIN, missed: 0 });
        assert_eq!(decide(&s, EnvStatus::Ready, Some((11 * MIN, false)), 0, 11 * MIN + 59_000), Decision::Wait, "ran already");
        assert_eq!(decide(&s, EnvStatus::Ready, Some((11 * MIN, false)), 0, 12 * MIN + 5), Decision::Run { at: 12 * MIN, missed: 0 });
    }

    #[test]
    fn a_deployment_after_the_last_run_hides_no_occurrence() {
        let s = every_minute();
        // Last run at minute 11, deployed at 12:00.5, looked at 12:00.9: minute 12 runs.
        assert_eq!(
            decide(&s, EnvStatus::Ready, Some((11 * MIN, false)), 12 * MIN + 500, 12 * MIN + 900),
            Decision::Run { at: 12 * MIN, missed: 0 }
        );
    }

    #[test]
    fn missed_occurrences_run_once_and_are_counted() {
        let s = every_minute();
        assert_eq!(decide(&s, EnvStatus::Ready, Some((11 * MIN, false)), 0, 20 * MIN + 5), Decision::Run { at: 20 * MIN, missed: 8 });
    }

    #[test]
    fn asleep_not_ready_or_still_running_is_skipped_with_why() {
        let s = every_minute();
        let skip = |status, latest| decide(&s, status, latest, 0, 12 * MIN);
        assert_eq!(skip(EnvStatus::Sleeping, None), Decision::Skip { at: 12 * MIN, reason: "the environment is asleep".into() });
        assert_eq!(skip(EnvStatus::Deploying, None), Decision::Skip { at: 12 * MIN, reason: "the environment is deploying".into() });
        assert_eq!(
            skip(EnvStatus::Ready, Some((11 * MIN, true))),
            Decision::Skip { at: 12 * MIN, reason: "the previous run is still running".into() }
        );
    }

    #[test]
    fn output_keeps_its_tail() {
        let long = format!("{}é{}", "a".repeat(MAX_OUTPUT), "z".repeat(10));
        let b = bounded(long);
        assert!(b.len() <= MAX_OUTPUT && b.ends_with("zzzzzzzzzz"), "{}", b.len());
    }
}
