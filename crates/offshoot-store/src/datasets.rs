//! Instant Datasets: datasets and their clones. A checkout is one conditional update, so two
//! environments can never take the same clone, whichever backend and however many servers.

use crate::{Result, Store, StoreError, db, now_ms};
use sqlx::FromRow;

#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct Dataset {
    pub name: String,
    /// `postgres` or `mariadb`.
    pub engine: String,
    /// The source database's URL, encrypted.
    pub source: String,
    /// The pool server's admin URL, encrypted.
    pub target: String,
    pub pool_size: i64,
    /// A five-field cron schedule of refreshes.
    pub refresh: Option<String>,
    pub ttl_seconds: Option<i64>,
    /// `snapshotting` (no snapshot yet), `ready`, `failed` (no snapshot could be taken),
    /// `deleting`.
    pub state: String,
    pub error: Option<String>,
    pub generation: i64,
    pub snapshot: Option<String>,
    pub snapshot_owner: Option<String>,
    pub snapshot_bytes: Option<i64>,
    pub snapshot_at: Option<i64>,
    pub pending_snapshot: Option<String>,
    pub pending_owner: Option<String>,
    pub refresh_requested: i64,
    pub created_at: i64,
}

impl Dataset {
    /// A new dataset, waiting for its first snapshot.
    pub fn new(
        name: &str,
        engine: &str,
        (source, target): (String, String),
        pool_size: i64,
        refresh: Option<String>,
        ttl_seconds: Option<i64>,
    ) -> Self {
        Dataset {
            name: name.to_owned(),
            engine: engine.to_owned(),
            source,
            target,
            pool_size,
            refresh,
            ttl_seconds,
            state: "snapshotting".into(),
            error: None,
            generation: 0,
            snapshot: None,
            snapshot_owner: None,
            snapshot_bytes: None,
            snapshot_at: None,
            pending_snapshot: None,
            pending_owner: None,
            refresh_requested: 0,
            created_at: now_ms(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct DatasetClone {
    pub db_name: String,
    pub dataset: String,
    pub generation: i64,
    pub role: String,
    /// Encrypted.
    pub password: String,
    /// `filling`, `ready`, `leased`, `dropping`.
    pub state: String,
    pub env_id: Option<crate::EnvId>,
    pub leased_at: Option<i64>,
    pub created_at: i64,
    pub ready_at: Option<i64>,
}

const DATASET_COLUMNS: &str = "name, engine, source, target, pool_size, refresh, ttl_seconds, state, error, generation, snapshot, snapshot_owner, snapshot_bytes, snapshot_at, pending_snapshot, pending_owner, refresh_requested, created_at";
const CLONE_COLUMNS: &str = "db_name, dataset, generation, role, password, state, env_id, leased_at, created_at, ready_at";

/// Attempts of a checkout that lost a race for a clone before it reports none.
const CHECKOUT_ATTEMPTS: usize = 20;

impl Store {
    pub async fn create_dataset(&self, d: &Dataset) -> Result<()> {
        let r = sqlx::query(&format!(
            "INSERT INTO datasets ({DATASET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) ON CONFLICT (name) DO NOTHING"
        ))
        .bind(&d.name)
        .bind(&d.engine)
        .bind(&d.source)
        .bind(&d.target)
        .bind(d.pool_size)
        .bind(&d.refresh)
        .bind(d.ttl_seconds)
        .bind(&d.state)
        .bind(&d.error)
        .bind(d.generation)
        .bind(&d.snapshot)
        .bind(&d.snapshot_owner)
        .bind(d.snapshot_bytes)
        .bind(d.snapshot_at)
        .bind(&d.pending_snapshot)
        .bind(&d.pending_owner)
        .bind(d.refresh_requested)
        .bind(d.created_at)
        .execute(&self.pool)
        .await
        .map_err(db("create a dataset"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Conflict { what: "dataset", name: d.name.clone() });
        }
        Ok(())
    }

    pub async fn dataset(&self, name: &str) -> Result<Option<Dataset>> {
        sqlx::query_as(&format!("SELECT {DATASET_COLUMNS} FROM datasets WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read a dataset"))
    }

    pub async fn datasets(&self) -> Result<Vec<Dataset>> {
        sqlx::query_as(&format!("SELECT {DATASET_COLUMNS} FROM datasets ORDER BY name"))
            .fetch_all(&self.pool)
            .await
            .map_err(db("list datasets"))
    }

    pub async fn set_dataset_state(&self, name: &str, state: &str, error: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE datasets SET state = $1, error = $2 WHERE name = $3")
            .bind(state)
            .bind(error)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db("update a dataset"))?;
        Ok(())
    }

    /// Records a problem of the pool (a clone that could not be made) without changing state.
    pub async fn set_dataset_error(&self, name: &str, error: Option<&str>) -> Result<()> {
        self.set_text("UPDATE datasets SET error = $2 WHERE name = $1", name, error, "update a dataset").await
    }

    /// Names the snapshot about to be taken (before any of it exists).
    pub async fn begin_snapshot(&self, name: &str, snapshot: &str, owner: &str) -> Result<()> {
        sqlx::query("UPDATE datasets SET pending_snapshot = $1, pending_owner = $2 WHERE name = $3")
            .bind(snapshot)
            .bind(owner)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db("record a snapshot"))?;
        Ok(())
    }

    /// The pending snapshot becomes the current one (a new generation); returns the previous
    /// snapshot and its owner, now to be dropped.
    pub async fn finish_snapshot(&self, name: &str, bytes: i64) -> Result<Option<(String, String)>> {
        let before = self.dataset(name).await?;
        sqlx::query(
            "UPDATE datasets SET snapshot = pending_snapshot, snapshot_owner = pending_owner, pending_snapshot = NULL, pending_owner = NULL, \
             generation = generation + 1, snapshot_bytes = $1, snapshot_at = $2, refresh_requested = 0, state = 'ready', error = NULL \
             WHERE name = $3 AND pending_snapshot IS NOT NULL",
        )
        .bind(bytes)
        .bind(now_ms())
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(db("record a snapshot"))?;
        Ok(before.and_then(|d| Some((d.snapshot?, d.snapshot_owner.unwrap_or_default()))))
    }

    /// Forgets a snapshot that was being taken (a restart interrupted it); a refresh stays
    /// requested, and a first snapshot is taken again.
    pub async fn clear_pending_snapshot(&self, name: &str) -> Result<()> {
        sqlx::query("UPDATE datasets SET pending_snapshot = NULL, pending_owner = NULL WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db("update a dataset"))?;
        Ok(())
    }

    /// A snapshot failed: no pending one; `failed` unless an older snapshot still serves.
    pub async fn fail_snapshot(&self, name: &str, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE datasets SET pending_snapshot = NULL, pending_owner = NULL, refresh_requested = 0, error = $1, \
             state = CASE WHEN snapshot IS NULL THEN 'failed' ELSE state END WHERE name = $2",
        )
        .bind(error)
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(db("record a failed snapshot"))?;
        Ok(())
    }

    pub async fn request_refresh(&self, name: &str) -> Result<()> {
        sqlx::query("UPDATE datasets SET refresh_requested = 1 WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db("request a refresh"))?;
        Ok(())
    }

    pub async fn delete_dataset(&self, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM dataset_clones WHERE dataset = $1").bind(name).execute(&self.pool).await.map_err(db("delete clones"))?;
        sqlx::query("DELETE FROM datasets WHERE name = $1").bind(name).execute(&self.pool).await.map_err(db("delete a dataset"))?;
        Ok(())
    }

    // Clones ------------------------------------------------------------------------------------

    pub async fn add_clone(&self, c: &DatasetClone) -> Result<()> {
        sqlx::query(&format!("INSERT INTO dataset_clones ({CLONE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"))
            .bind(&c.db_name)
            .bind(&c.dataset)
            .bind(c.generation)
            .bind(&c.role)
            .bind(&c.password)
            .bind(&c.state)
            .bind(&c.env_id)
            .bind(c.leased_at)
            .bind(c.created_at)
            .bind(c.ready_at)
            .execute(&self.pool)
            .await
            .map_err(db("record a clone"))?;
        Ok(())
    }

    /// Moves a clone from one state to another; false when it was not in `from` (someone else
    /// took it first).
    pub async fn move_clone(&self, db_name: &str, from: &str, to: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE dataset_clones SET state = $1, ready_at = CASE WHEN $1 = 'ready' THEN $2 ELSE ready_at END WHERE db_name = $3 AND state = $4",
        )
        .bind(to)
        .bind(now_ms())
        .bind(db_name)
        .bind(from)
        .execute(&self.pool)
        .await
        .map_err(db("update a clone"))?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn delete_clone(&self, db_name: &str) -> Result<()> {
        sqlx::query("DELETE FROM dataset_clones WHERE db_name = $1")
            .bind(db_name)
            .execute(&self.pool)
            .await
            .map_err(db("delete a clone"))?;
        Ok(())
    }

    /// A dataset's clones, oldest first.
    pub async fn clones(&self, dataset: &str) -> Result<Vec<DatasetClone>> {
        sqlx::query_as(&format!("SELECT {CLONE_COLUMNS} FROM dataset_clones WHERE dataset = $1 ORDER BY created_at, db_name"))
            .bind(dataset)
            .fetch_all(&self.pool)
            .await
            .map_err(db("list clones"))
    }

    /// Every clone in one state, of every dataset.
    pub async fn clones_in_state(&self, state: &str) -> Result<Vec<DatasetClone>> {
        sqlx::query_as(&format!("SELECT {CLONE_COLUMNS} FROM dataset_clones WHERE state = $1 ORDER BY created_at"))
            .bind(state)
            .fetch_all(&self.pool)
            .await
            .map_err(db("list clones"))
    }

    /// Takes a ready clone of the dataset for the environment (the newest snapshot's first), or
    /// `None` when the pool is empty. A clone is leased by one conditional update: of two
    /// concurrent checkouts, one wins it and the other tries the next.
    pub async fn checkout(&self, dataset: &str, env_id: &str) -> Result<Option<DatasetClone>> {
        for _ in 0..CHECKOUT_ATTEMPTS {
            let candidate: Option<(String,)> = sqlx::query_as(
                "SELECT db_name FROM dataset_clones WHERE dataset = $1 AND state = 'ready' ORDER BY generation DESC, ready_at, db_name LIMIT 1",
            )
            .bind(dataset)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("find a ready clone"))?;
            let Some((db_name,)) = candidate else { return Ok(None) };
            let r = sqlx::query(
                "UPDATE dataset_clones SET state = 'leased', env_id = $1, leased_at = $2 WHERE db_name = $3 AND state = 'ready'",
            )
            .bind(env_id)
            .bind(now_ms())
            .bind(&db_name)
            .execute(&self.pool)
            .await
            .map_err(db("lease a clone"))?;
            if r.rows_affected() == 1 {
                return sqlx::query_as(&format!("SELECT {CLONE_COLUMNS} FROM dataset_clones WHERE db_name = $1"))
                    .bind(&db_name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db("read a clone"));
            }
        }
        Ok(None)
    }

    /// The clones an environment holds.
    /// The environments that hold a clone.
    pub async fn envs_with_leases(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT DISTINCT env_id FROM dataset_clones WHERE state = 'leased' AND env_id IS NOT NULL")
                .fetch_all(&self.pool)
                .await
                .map_err(db("list leases"))?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    pub async fn leases(&self, env_id: &str) -> Result<Vec<DatasetClone>> {
        sqlx::query_as(&format!("SELECT {CLONE_COLUMNS} FROM dataset_clones WHERE env_id = $1 AND state = 'leased' ORDER BY dataset"))
            .bind(env_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db("list an environment's clones"))
    }
}
