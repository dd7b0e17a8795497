//! Environments that sleep: their services stopped (kept, with their volumes, their dataset
//! leases, their static sites and their records), and woken again in dependency order, each
//! waited for until it is ready. An environment's imports sleep and wake with it.
//!
//! The status is the intent, written first: `sleeping` (services being stopped, or stopped) and
//! `waking` (services being started). Whatever an interruption leaves, [`Control::converge`]
//! finishes from the status and the engine, so a restarted server completes a sleep or a wake
//! that was under way.

use crate::Control;
use crate::backend::{Backend, BackendErrorKind};
use crate::error::ControlError;
use crate::gate::{Noted, Operation, gate};
use crate::ports::Ports;
use offshoot_api_types::{EnvStatus, ServiceStatus};
use offshoot_store::{Environment, ServiceRow};
use offshoot_template::document::{self, Kind};
use std::collections::HashMap;

/// The shortest idle time an environment may be given before it sleeps.
pub const MIN_IDLE_SECONDS: u64 = 10;
/// The longest: thirty days.
pub const MAX_IDLE_SECONDS: u64 = 30 * 86_400;

/// An idle-sleep setting as written: a duration (`30m`, `2h`), `off`, or for an environment
/// `default` (its application's). `Some(0)` is never, `None` is the application's (for an
/// application, never).
pub fn parse_idle(text: &str, for_env: bool) -> Result<Option<i64>, ControlError> {
    let t = text.trim();
    if t == "off" {
        return Ok(if for_env { Some(0) } else { None });
    }
    if t == "default" && for_env {
        return Ok(None);
    }
    let hint = if for_env { "`30m`, `2h`, `off` or `default`" } else { "`30m`, `2h` or `off`" };
    let secs = offshoot_datasets::parse_duration(t)
        .map_err(|e| ControlError::BadInput { message: format!("idle_sleep: {e}"), hint: Some(format!("write it like {hint}")) })?;
    if !(MIN_IDLE_SECONDS..=MAX_IDLE_SECONDS).contains(&secs) {
        return Err(ControlError::bad_input(format!("idle_sleep: `{t}` is not between 10 seconds and 30 days")));
    }
    Ok(Some(i64::try_from(secs).unwrap_or(i64::MAX)))
}

/// How long an environment may go without a request before it sleeps: its own setting, else
/// its application's; `None` for never.
pub fn idle_limit(env: &Environment, app_default: Option<i64>) -> Option<i64> {
    match env.idle_sleep_seconds {
        Some(0) => None,
        Some(s) => Some(s),
        None => app_default.filter(|s| *s > 0),
    }
}

/// Whether `env` has been idle past its limit at `now` (ms): ready, not an import (those sleep
/// with their importer), and neither a request nor a change of state for that long.
pub fn is_idle(env: &Environment, app_default: Option<i64>, now: i64) -> bool {
    let Some(limit) = idle_limit(env, app_default) else { return false };
    let last = env.last_request_at.unwrap_or(0).max(env.updated_at);
    env.status == EnvStatus::Ready && env.parent_id.is_none() && now - last >= limit * 1000
}

/// Why an environment cannot sleep or wake now.
fn not_now(env: &Environment, what: &str) -> ControlError {
    ControlError::Conflict {
        code: "conflict",
        message: format!("environment `{}` is {}; it cannot {what} now", env.id, env.status),
        hint: Some(match env.status {
            EnvStatus::Failed => "deploy it again first: `offshoot env deploy ID`".to_owned(),
            _ => "try again once it is ready".to_owned(),
        }),
    }
}

impl<P: Ports> Control<'_, P> {
    /// Changes an environment's own settings (its idle sleep).
    pub async fn update_env_settings(&self, id: &str, req: &offshoot_api_types::EnvUpdate) -> Result<Environment, ControlError> {
        let work = async {
            self.find_env(id).await?;
            if let Some(text) = req.idle_sleep.as_deref() {
                self.store.set_env_idle_sleep(id, parse_idle(text, true)?).await?;
            }
            self.find_env(id).await
        };
        let noted =
            |e: &Environment| Noted::detail(format!("idle_sleep {}", e.idle_sleep_seconds.map_or("default".to_owned(), |s| s.to_string())));
        gate(self.store, &self.actor, Operation::UpdateEnv, id, work, noted).await
    }

    /// The environments whose application's schedules fired in `(from, to]` (ms): the ready ones
    /// to put to sleep, the sleeping ones to wake. When both fired, the later wins.
    pub async fn scheduled(&self, from: i64, to: i64) -> Result<(Vec<Environment>, Vec<Environment>), ControlError> {
        let (mut sleep, mut wake) = (Vec::new(), Vec::new());
        for app in self.store.apps().await? {
            let Some(git) = self.store.app_git(&app.name).await? else { continue };
            let next = |s: &Option<String>| {
                s.as_deref()
                    .and_then(|s| offshoot_datasets::Schedule::parse(s).ok())
                    .and_then(|s| s.next_after_in(from, &chrono::Local))
                    .filter(|t| *t <= to)
            };
            let (sleep_at, wake_at) = (next(&git.sleep_schedule), next(&git.wake_schedule));
            let asleep = match (sleep_at, wake_at) {
                (Some(s), Some(w)) => s > w,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => continue,
            };
            for env in self.store.envs(Some(&app.name), false).await?.into_iter().filter(|e| e.parent_id.is_none()) {
                match (asleep, env.status) {
                    (true, EnvStatus::Ready) => sleep.push(env),
                    (false, EnvStatus::Sleeping) => wake.push(env),
                    _ => {}
                }
            }
        }
        Ok((sleep, wake))
    }

    /// The environments idle past their limit at `now` (ms), for the idle sleeper.
    pub async fn idle_envs(&self, now: i64) -> Result<Vec<Environment>, ControlError> {
        let mut defaults: HashMap<String, Option<i64>> = HashMap::new();
        let mut out = Vec::new();
        for env in self.store.envs(None, false).await? {
            if env.status != EnvStatus::Ready {
                continue;
            }
            let app_default = match defaults.get(env.app.as_str()) {
                Some(d) => *d,
                None => {
                    let d = self.store.app_git(&env.app).await?.and_then(|g| g.idle_sleep_seconds);
                    defaults.insert(env.app.to_string(), d);
                    d
                }
            };
            if is_idle(&env, app_default, now) {
                out.push(env);
            }
        }
        Ok(out)
    }

    /// Puts an environment (and its imports' environments) to sleep: its services are stopped,
    /// the last first. Sleeping already is done.
    pub async fn sleep_env(&self, id: &str) -> Result<Environment, ControlError> {
        let work = async {
            let env = self.find_env(id).await?;
            if !self.fall_asleep(&env, None).await? {
                return Err(not_now(&env, "sleep"));
            }
            self.find_env(id).await
        };
        gate(self.store, &self.actor, Operation::SleepEnv, id, work, |_| Noted::default()).await
    }

    /// Puts `env` and its imports' environments to sleep: each moved from `ready` to `sleeping`
    /// (the status first, `reason` on `env`), then their services stopped, the importer's first
    /// (they may use its imports' until they stop). `false`, and nothing done, when `env` is
    /// neither ready nor asleep already (it is being deployed, say).
    pub(crate) async fn fall_asleep(&self, env: &Environment, reason: Option<&str>) -> Result<bool, ControlError> {
        let moved = self.store.transition_env(&env.id, &[EnvStatus::Ready], EnvStatus::Sleeping, reason).await?;
        if !moved && env.status != EnvStatus::Sleeping {
            return Ok(false);
        }
        let mut family = vec![env.clone()];
        for child in self.store.child_envs(&env.id).await? {
            self.store.transition_env(&child.id, &[EnvStatus::Ready], EnvStatus::Sleeping, None).await?;
            family.push(child);
        }
        for e in &family {
            self.stop_services(e).await?;
        }
        Ok(true)
    }

    /// Wakes a sleeping environment: its imports' environments first, then its services in
    /// dependency order, each waited for until it is ready. Awake already is done.
    pub async fn wake_env(&self, id: &str) -> Result<Environment, ControlError> {
        let work = async {
            let env = self.find_env(id).await?;
            match env.status {
                // Awake, or being woken by whoever moved it to `waking` (an interrupted wake is
                // the reconciler's to finish).
                EnvStatus::Ready | EnvStatus::Waking => return Ok(env),
                EnvStatus::Sleeping => {}
                _ => return Err(not_now(&env, "wake")),
            }
            // Room for it first: the least recently used idle environment may be put to sleep.
            if let Err(e) = Box::pin(self.admit(crate::capacity::memory_of(&env.template), Some(id))).await {
                self.store.set_env_status(id, EnvStatus::Sleeping, Some(&format!("cannot wake: {e}"))).await?;
                return Err(e);
            }
            // Whoever moves it to `waking` wakes it; the others are done.
            if !self.store.transition_env(id, &[EnvStatus::Sleeping], EnvStatus::Waking, None).await? {
                return self.find_env(id).await;
            }
            self.finish_wake(&env).await?;
            self.find_env(id).await
        };
        gate(self.store, &self.actor, Operation::WakeEnv, id, work, |_| Noted::default()).await
    }

    /// A request arrived for a sleeping environment: wakes it, unless it is not asleep (then
    /// nothing happens and nothing is recorded: a burst of requests wakes it once).
    /// A request for an import's environment wakes its importer, which wakes it too.
    pub async fn wake_on_request(&self, id: &str) -> Result<(), ControlError> {
        let env = self.find_env(id).await?;
        let root = match &env.parent_id {
            Some(parent) => self.find_env(parent).await?,
            None => env,
        };
        if root.status != EnvStatus::Sleeping {
            return Ok(());
        }
        self.wake_env(&root.id).await.map(|_| ())
    }

    /// Finishes what an environment's status says is under way, from what the engine has: a
    /// sleeping environment with a service still running has it stopped; a waking one is woken.
    /// Idempotent; the reconciler calls it for environments no operation holds.
    pub async fn converge(&self, env: &Environment) -> Result<(), ControlError> {
        match env.status {
            EnvStatus::Sleeping => {
                let engine = self.ports.engine(env).await?;
                let states = engine.observe().await?;
                // A service stopped by a sleep that was cut short before recording it is still
                // recorded ready: a wake would leave it stopped. Its stop is recorded now.
                if states.iter().any(|s| s.running) || !self.unrecorded_sleep(env).await?.is_empty() {
                    tracing::info!(env = %env.id, "a sleeping environment has services running or not recorded asleep; stopping them");
                    self.stop_services(env).await?;
                }
                Ok(())
            }
            EnvStatus::Waking => {
                tracing::info!(env = %env.id, "a wake was interrupted; finishing it");
                self.finish_wake(env).await
            }
            _ => Ok(()),
        }
    }

    /// The services of a sleeping `env` still recorded ready (a static site is always served).
    pub async fn unrecorded_sleep(&self, env: &Environment) -> Result<Vec<String>, ControlError> {
        let rows = self.store.services(&env.id).await?;
        Ok(rows.into_iter().filter(|r| r.status == ServiceStatus::Ready && !r.detail.is_site()).map(|r| r.name).collect())
    }

    /// Wakes `env` from `sleeping` or `waking`, its imports first; a failure fails it with why.
    pub(crate) async fn finish_wake(&self, env: &Environment) -> Result<(), ControlError> {
        let mut family = self.store.child_envs(&env.id).await?;
        family.push(env.clone());
        for e in &family {
            self.store.transition_env(&e.id, &[EnvStatus::Sleeping], EnvStatus::Waking, None).await?;
        }
        for e in &family {
            let current = self.find_env(&e.id).await?;
            if current.status != EnvStatus::Waking {
                continue;
            }
            if let Err(err) = self.start_services(&current).await {
                let reason = format!("waking: {err}");
                self.store.transition_env(&e.id, &[EnvStatus::Waking], EnvStatus::Failed, Some(&reason)).await?;
                if e.id != env.id {
                    let why = format!("waking: the environment of an import ({}) failed", e.id);
                    self.store.transition_env(&env.id, &[EnvStatus::Waking], EnvStatus::Failed, Some(&why)).await?;
                }
                self.ports.changed(&current).await;
                return Err(err);
            }
            self.store.transition_env(&e.id, &[EnvStatus::Waking], EnvStatus::Ready, None).await?;
            tracing::info!(env = %e.id, "environment awake");
            self.ports.changed(&current).await;
        }
        Ok(())
    }

    /// Stops the environment's services, the last wave first, and records them asleep.
    pub(crate) async fn stop_services(&self, env: &Environment) -> Result<(), ControlError> {
        let engine = self.ports.engine(env).await?;
        // Its schedules first: no cron job starts in an environment going to sleep.
        engine.pause_schedules(true).await?;
        let rows = self.store.services(&env.id).await?;
        for wave in waves(env, &rows, ServiceStatus::Ready).into_iter().rev() {
            let engine = &engine;
            let stops = wave.iter().map(|s| async move { (s, engine.stop_service(s).await) });
            for (service, result) in futures_util::future::join_all(stops).await {
                match result {
                    // Gone from the engine: the reconciler of a woken environment recreates it.
                    Err(e) if e.kind() == BackendErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                    Ok(()) => {}
                }
                self.set_service_status(&rows, service, ServiceStatus::Sleeping).await?;
            }
        }
        tracing::info!(env = %env.id, "environment asleep");
        self.ports.changed(env).await;
        Ok(())
    }

    /// Starts the environment's sleeping services wave by wave, each waited for until ready.
    async fn start_services(&self, env: &Environment) -> Result<(), ControlError> {
        let engine = self.ports.engine(env).await?;
        let rows = self.store.services(&env.id).await?;
        for wave in waves(env, &rows, ServiceStatus::Sleeping) {
            let engine = &engine;
            let starts = wave.iter().map(|s| async move { (s, engine.resume_service(s).await) });
            for (service, result) in futures_util::future::join_all(starts).await {
                result.map_err(|e| ControlError::Backend(crate::BackendError::new(format!("service `{service}`: {}", e.message()))))?;
                self.set_service_status(&rows, service, ServiceStatus::Ready).await?;
            }
        }
        engine.pause_schedules(false).await?;
        Ok(())
    }

    async fn set_service_status(&self, rows: &[ServiceRow], service: &str, status: ServiceStatus) -> Result<(), ControlError> {
        if let Some(row) = rows.iter().find(|r| r.name == service) {
            self.store.set_service(&ServiceRow { status, reason: None, ..row.clone() }).await?;
        }
        Ok(())
    }
}

/// The services of `env` whose record is `status` and that run on the engine (a static site is
/// served from storage and never sleeps), in waves: a service comes after those it depends on
/// (`depends_on` in its forked template). A cycle, refused by validation, would start together.
fn waves(env: &Environment, rows: &[ServiceRow], status: ServiceStatus) -> Vec<Vec<String>> {
    let doc = document::check("application_template.yaml", &env.template, Some(Kind::Template));
    let depends = |name: &str| -> Vec<String> {
        doc.template
            .as_ref()
            .and_then(|t| t.services.iter().find(|s| s.name.as_str() == name))
            .map(|s| s.depends_on.iter().map(|d| d.as_str().to_owned()).collect())
            .unwrap_or_default()
    };
    let mut remaining: Vec<String> = rows.iter().filter(|r| r.status == status && !r.detail.is_site()).map(|r| r.name.clone()).collect();
    let wanted = remaining.clone();
    let mut placed: Vec<String> = Vec::new();
    let mut out = Vec::new();
    while !remaining.is_empty() {
        let (mut wave, rest): (Vec<String>, Vec<String>) =
            remaining.into_iter().partition(|s| depends(s).iter().all(|d| placed.contains(d) || !wanted.contains(d)));
        if wave.is_empty() {
            wave = rest;
            remaining = Vec::new();
        } else {
            remaining = rest;
        }
        placed.extend(wave.iter().cloned());
        out.push(wave);
    }
    out
}
