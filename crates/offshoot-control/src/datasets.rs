//! Instant Datasets as an environment's deployment uses them: a clone of each dataset its
//! environment template lists is checked out before it resolves (waiting, with the reason on the
//! environment, while a pool is empty), and checked in (dropped) when it no longer lists it or
//! is torn down. These are steps of a deployment, authorised when it was started: they pass no
//! gate. The pools themselves (snapshots, filling, dropping) are the server's keepers'.

use crate::Control;
use crate::error::ControlError;
use crate::ports::Ports;
use offshoot_store::{DatasetClone, Environment};
use std::time::Duration;

/// Why an environment cannot have a clone of a dataset.
fn refuse(message: String, hint: Option<String>) -> ControlError {
    ControlError::Unprocessable { code: "dataset", message, hint }
}

impl<P: Ports> Control<'_, P> {
    /// Checks out a clone of each dataset in `wanted` that `env` does not hold yet, waiting at
    /// most `wait` for one when a pool is empty, and checks in the clones of datasets it no
    /// longer lists.
    pub async fn attach_datasets(&self, env: &Environment, wanted: &[String], wait: Duration) -> Result<(), ControlError> {
        let held = self.store.leases(&env.id).await?;
        for c in held.iter().filter(|c| !wanted.contains(&c.dataset)) {
            self.check_in(c).await?;
        }
        // A dataset's data is the team's, as its secrets are: a fork's code gets neither.
        if !wanted.is_empty() && crate::forks::secrets_withheld(self.store, env).await? {
            return Err(refuse(
                format!("a fork's pull request gets no clone of a dataset ({}): their data is the team's", wanted.join(", ")),
                Some(format!("`offshoot app set {} --fork-secrets on` gives forks the application's secrets and datasets", env.app)),
            ));
        }
        for name in wanted.iter().filter(|n| !held.iter().any(|c| &&c.dataset == n)) {
            self.checkout(env, name, wait).await?;
        }
        Ok(())
    }

    async fn checkout(&self, env: &Environment, name: &str, wait: Duration) -> Result<DatasetClone, ControlError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(50);
        let mut waiting = false;
        loop {
            let Some(d) = self.store.dataset(name).await? else {
                return Err(refuse(
                    format!("dataset `{name}` does not exist"),
                    Some(format!("`offshoot dataset create {name} --source ...` makes it")),
                ));
            };
            if d.state == "deleting" {
                return Err(refuse(format!("dataset `{name}` is being deleted"), None));
            }
            if let Some(c) = self.store.checkout(name, &env.id).await? {
                tracing::info!(env = %env.id, dataset = %name, clone = %c.db_name, "dataset attached");
                self.ports.wake_pools();
                if waiting {
                    self.say(env, None).await?;
                }
                return Ok(c);
            }
            if d.state == "failed" {
                return Err(refuse(format!("dataset `{name}` has no snapshot: {}", d.error.as_deref().unwrap_or("it failed")), None));
            }
            self.ports.wake_pools();
            if tokio::time::Instant::now() >= deadline {
                let why = d.error.as_deref().map_or_else(String::new, |e| format!(": {e}"));
                return Err(refuse(
                    format!("no clone of dataset `{name}` became ready within {wait:?} (pool size {}){why}", d.pool_size),
                    Some(format!("`offshoot dataset show {name}` shows its pool")),
                ));
            }
            if !waiting {
                waiting = true;
                let why = match (&d.snapshot, &d.error) {
                    (None, _) => "its snapshot is being taken".to_owned(),
                    (Some(_), Some(e)) => format!("the pool is empty: {e}"),
                    (Some(_), None) => "the pool is empty; a clone is being made".to_owned(),
                };
                self.say(env, Some(&format!("waiting for a clone of dataset `{name}`: {why}"))).await?;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Sets (or clears) the reason shown on the environment, keeping its status.
    async fn say(&self, env: &Environment, reason: Option<&str>) -> Result<(), ControlError> {
        if let Some(now) = self.store.env(&env.id).await?.map(|e| e.status) {
            self.store.set_env_status(&env.id, now, reason).await?;
        }
        Ok(())
    }

    /// Checks in every clone an environment holds.
    pub async fn detach_datasets(&self, env_id: &str) -> Result<(), ControlError> {
        for c in self.store.leases(env_id).await? {
            self.check_in(&c).await?;
        }
        Ok(())
    }

    /// Returns a leased clone: marked `dropping` (so nobody else has it), then dropped now; when
    /// its server cannot be reached, the pool keeper drops it later. A clone already returned is
    /// left alone.
    pub async fn check_in(&self, c: &DatasetClone) -> Result<(), ControlError> {
        if !self.store.move_clone(&c.db_name, "leased", "dropping").await? {
            return Ok(());
        }
        match self.ports.drop_clone(c).await {
            Ok(()) => {
                self.store.delete_clone(&c.db_name).await?;
                tracing::info!(dataset = %c.dataset, clone = %c.db_name, env = c.env_id.as_deref().unwrap_or(""), "dataset checked in");
            }
            Err(e) => tracing::warn!(clone = %c.db_name, error = %e, "datasets: the clone will be dropped by the pool keeper"),
        }
        self.ports.wake_pools();
        Ok(())
    }
}
