//! Terraform `infrastructure` of environments: each entry's state (encrypted by the server, or
//! the name of the module's own backend), its last outputs, the lock a run holds, and its runs
//! with Terraform's output.

use crate::{Result, Store, db};
use sqlx::FromRow;

/// How many runs of one entry of one environment are kept (the oldest go first).
pub const INFRA_HISTORY: i64 = 20;
/// How much of a run's output is kept (its end).
pub const INFRA_LOG_BYTES: usize = 256 * 1024;

/// What is known of one entry of one environment.
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct InfraState {
    pub env_id: String,
    pub name: String,
    /// The sealed `terraform.tfstate`; none before the first apply, or when the module keeps its
    /// state in its own backend.
    pub state: Option<String>,
    /// The state's `serial`, to keep the newer of two copies.
    pub serial: i64,
    /// The type of the module's own backend (`s3`), when it declares one.
    pub backend: Option<String>,
    /// The non-sensitive outputs as they become variables: a JSON object `{NAME: value}`.
    pub outputs: String,
    /// The sensitive ones, sealed (a JSON object once opened).
    pub sensitive: Option<String>,
    /// `new`, `applied`, `failed` (an apply or destroy failed; `reason` says why).
    pub status: String,
    pub reason: Option<String>,
    pub updated_at: i64,
    /// Who holds the lock (a deployment), and since when.
    pub locked_by: Option<String>,
    pub locked_at: Option<i64>,
}

const STATE_COLUMNS: &str = "env_id, name, state, serial, backend, outputs, sensitive, status, reason, updated_at, locked_by, locked_at";

/// One run of an entry.
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct InfraRun {
    pub id: String,
    pub env_id: String,
    pub name: String,
    /// `apply` or `destroy`.
    pub action: String,
    pub deployment_id: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// `running`, `succeeded`, `failed` or `interrupted`.
    pub status: String,
    pub reason: Option<String>,
    /// The end of Terraform's output.
    pub log: String,
}

const RUN_COLUMNS: &str = "id, env_id, name, action, deployment_id, started_at, finished_at, status, reason, log";

/// What a run leaves of an entry's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InfraUpdate {
    pub state: Option<String>,
    pub serial: i64,
    pub backend: Option<String>,
    pub outputs: String,
    pub sensitive: Option<String>,
    pub status: String,
    pub reason: Option<String>,
}

/// The end of `log`, at most [`INFRA_LOG_BYTES`], cut at a character boundary.
fn log_tail(log: &str) -> &str {
    if log.len() <= INFRA_LOG_BYTES {
        return log;
    }
    let mut start = log.len() - INFRA_LOG_BYTES;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    &log[start..]
}

impl Store {
    /// Takes the lock of an entry for `owner` (a deployment), making its row if it has none.
    /// `Ok(None)` when taken (or held by `owner` already, as after a restart), else who holds it.
    pub async fn lock_infra(&self, env_id: &str, name: &str, owner: &str, now: i64) -> Result<Option<String>> {
        sqlx::query(
            "INSERT INTO infra_states (env_id, name, status, updated_at) VALUES ($1, $2, 'new', $3) ON CONFLICT (env_id, name) DO NOTHING",
        )
        .bind(env_id)
        .bind(name)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db("record an infrastructure entry"))?;
        let taken = sqlx::query(
            "UPDATE infra_states SET locked_by = $1, locked_at = $2 WHERE env_id = $3 AND name = $4 AND (locked_by IS NULL OR locked_by = $1)",
        )
        .bind(owner)
        .bind(now)
        .bind(env_id)
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(db("lock an infrastructure entry's state"))?;
        if taken.rows_affected() == 1 {
            return Ok(None);
        }
        Ok(self.infra_state(env_id, name).await?.and_then(|s| s.locked_by))
    }

    /// Lets go of an entry's lock (if `owner` holds it).
    pub async fn unlock_infra(&self, env_id: &str, name: &str, owner: &str) -> Result<()> {
        sqlx::query("UPDATE infra_states SET locked_by = NULL, locked_at = NULL WHERE env_id = $1 AND name = $2 AND locked_by = $3")
            .bind(env_id)
            .bind(name)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(db("unlock an infrastructure entry's state"))?;
        Ok(())
    }

    /// Records what a run left (the lock stays).
    pub async fn save_infra(&self, env_id: &str, name: &str, u: &InfraUpdate, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE infra_states SET state = $1, serial = $2, backend = $3, outputs = $4, sensitive = $5, status = $6, reason = $7, updated_at = $8 \
             WHERE env_id = $9 AND name = $10",
        )
        .bind(&u.state)
        .bind(u.serial)
        .bind(&u.backend)
        .bind(&u.outputs)
        .bind(&u.sensitive)
        .bind(&u.status)
        .bind(&u.reason)
        .bind(now)
        .bind(env_id)
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(db("save an infrastructure entry's state"))?;
        Ok(())
    }

    /// Records that an apply or destroy failed, keeping the state.
    pub async fn fail_infra(&self, env_id: &str, name: &str, reason: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE infra_states SET status = 'failed', reason = $1, updated_at = $2 WHERE env_id = $3 AND name = $4")
            .bind(reason)
            .bind(now)
            .bind(env_id)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db("record an infrastructure entry's failure"))?;
        Ok(())
    }

    /// Forgets an entry whose destroy succeeded (its runs stay until the environment goes).
    pub async fn forget_infra(&self, env_id: &str, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM infra_states WHERE env_id = $1 AND name = $2")
            .bind(env_id)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db("forget an infrastructure entry's state"))?;
        Ok(())
    }

    pub async fn infra_state(&self, env_id: &str, name: &str) -> Result<Option<InfraState>> {
        sqlx::query_as(&format!("SELECT {STATE_COLUMNS} FROM infra_states WHERE env_id = $1 AND name = $2"))
            .bind(env_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read an infrastructure entry's state"))
    }

    /// Every entry an environment has state or a record for, by name.
    pub async fn infra_states(&self, env_id: &str) -> Result<Vec<InfraState>> {
        sqlx::query_as(&format!("SELECT {STATE_COLUMNS} FROM infra_states WHERE env_id = $1 ORDER BY name"))
            .bind(env_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db("list an environment's infrastructure"))
    }

    /// Records a run as it starts; older runs of the entry beyond [`INFRA_HISTORY`] are forgotten.
    pub async fn add_infra_run(&self, r: &InfraRun) -> Result<()> {
        sqlx::query(&format!("INSERT INTO infra_runs ({RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"))
            .bind(&r.id)
            .bind(&r.env_id)
            .bind(&r.name)
            .bind(&r.action)
            .bind(&r.deployment_id)
            .bind(r.started_at)
            .bind(r.finished_at)
            .bind(&r.status)
            .bind(&r.reason)
            .bind(log_tail(&r.log))
            .execute(&self.pool)
            .await
            .map_err(db("record an infrastructure run"))?;
        sqlx::query(
            "DELETE FROM infra_runs WHERE env_id = $1 AND name = $2 AND started_at < \
             (SELECT MIN(started_at) FROM (SELECT started_at FROM infra_runs WHERE env_id = $1 AND name = $2 ORDER BY started_at DESC LIMIT $3) AS kept)",
        )
        .bind(&r.env_id)
        .bind(&r.name)
        .bind(INFRA_HISTORY)
        .execute(&self.pool)
        .await
        .map_err(db("forget old infrastructure runs"))?;
        Ok(())
    }

    /// Ends a running run (one that is not running any more is left as it is).
    pub async fn finish_infra_run(&self, id: &str, status: &str, reason: Option<&str>, log: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE infra_runs SET status = $1, reason = $2, log = $3, finished_at = $4 WHERE id = $5 AND status = 'running'")
            .bind(status)
            .bind(reason)
            .bind(log_tail(log))
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("finish an infrastructure run"))?;
        Ok(())
    }

    /// The runs of an environment's entries (of one entry if given), newest first.
    pub async fn infra_runs(&self, env_id: &str, name: Option<&str>) -> Result<Vec<InfraRun>> {
        sqlx::query_as(&format!(
            "SELECT {RUN_COLUMNS} FROM infra_runs WHERE env_id = $1 AND ($2 = '' OR name = $2) ORDER BY started_at DESC, id DESC"
        ))
        .bind(env_id)
        .bind(name.unwrap_or(""))
        .fetch_all(&self.pool)
        .await
        .map_err(db("list infrastructure runs"))
    }

    /// Marks the runs a stopped server left running as interrupted (their deployment, resumed,
    /// runs the entry again).
    pub async fn interrupt_infra_runs(&self, now: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE infra_runs SET status = 'interrupted', reason = 'the server stopped during the run', finished_at = $1 WHERE status = 'running'",
        )
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db("interrupt infrastructure runs"))?;
        Ok(done.rows_affected())
    }

    /// Lets go of the locks held by deployments that are not running (a stopped server's
    /// deployment keeps its locks: resumed, it runs on with them).
    pub async fn release_stale_infra_locks(&self) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE infra_states SET locked_by = NULL, locked_at = NULL WHERE locked_by IS NOT NULL \
             AND locked_by NOT IN (SELECT id FROM deployments WHERE status = 'running')",
        )
        .execute(&self.pool)
        .await
        .map_err(db("release stale infrastructure locks"))?;
        Ok(done.rows_affected())
    }

    /// Forgets an environment's runs (it is gone, and so is its infrastructure).
    pub async fn forget_infra_runs(&self, env_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM infra_runs WHERE env_id = $1")
            .bind(env_id)
            .execute(&self.pool)
            .await
            .map_err(db("forget an environment's infrastructure runs"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::log_tail;

    #[test]
    fn a_log_keeps_its_end_at_a_character_boundary() {
        let long = format!("{}é{}", "a".repeat(10), "b".repeat(super::INFRA_LOG_BYTES - 1));
        let t = log_tail(&long);
        assert!(t.len() <= super::INFRA_LOG_BYTES);
        assert!(t.ends_with('b'));
        assert_eq!(log_tail("short"), "short");
    }
}
