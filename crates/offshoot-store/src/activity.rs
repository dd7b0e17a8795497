//! The activity log: what was done, by whom, and how it ended.

use crate::{Result, Store, db};
use sqlx::FromRow;

#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct Activity {
    /// Unique, and ordered as written within a millisecond; chosen by the caller.
    pub id: String,
    pub at: i64,
    /// Who: `token`, `dashboard`, `webhook`, `poller`, a user later.
    pub actor: String,
    /// What: `env.create`, `app.delete`, ...
    pub operation: String,
    /// On what: an application's name or an environment's id.
    pub target: String,
    /// `ok`, `refused` or `failed`.
    pub outcome: String,
    /// The error, for `refused` and `failed`.
    pub detail: Option<String>,
    /// The API token used (its id), when one was.
    pub token_id: Option<String>,
    /// The address the request came from.
    pub address: Option<String>,
}

const COLUMNS: &str = "id, at, actor, operation, target, outcome, detail, token_id, address";

/// Which activities to list.
#[derive(Clone, Debug, Default)]
pub struct ActivityFilter {
    /// Only on this application (its name, or one of its environments).
    pub app: Option<String>,
    pub actor: Option<String>,
    /// Only since this time (ms).
    pub since: Option<i64>,
    pub limit: i64,
}

impl Store {
    pub async fn add_activity(&self, a: &Activity) -> Result<()> {
        sqlx::query(&format!("INSERT INTO activity ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))
            .bind(&a.id)
            .bind(a.at)
            .bind(&a.actor)
            .bind(&a.operation)
            .bind(&a.target)
            .bind(&a.outcome)
            .bind(&a.detail)
            .bind(&a.token_id)
            .bind(&a.address)
            .execute(&self.pool)
            .await
            .map_err(db("record an activity"))?;
        Ok(())
    }

    /// Drops the records made before `before` (ms): the retention's, and no interface's.
    pub async fn prune_activity(&self, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM activity WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(db("prune the activity log"))?;
        Ok(done.rows_affected())
    }

    /// The latest `limit` activities, newest first.
    pub async fn activity(&self, limit: i64) -> Result<Vec<Activity>> {
        self.activity_where(&ActivityFilter { limit, ..Default::default() }).await
    }

    /// The latest activities that match, newest first. An application's are those on it and on
    /// its environments (targets `APP`, `APP/...`, or an environment of it, past or present).
    pub async fn activity_where(&self, f: &ActivityFilter) -> Result<Vec<Activity>> {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM activity WHERE ($1 = '' OR target = $1 OR target LIKE $2 OR target IN (SELECT id FROM environments WHERE app = $1)) \
             AND ($3 = '' OR actor = $3) AND at >= $4 ORDER BY at DESC, id DESC LIMIT $5"
        ))
        .bind(f.app.as_deref().unwrap_or(""))
        .bind(format!("{}/%", f.app.as_deref().unwrap_or("")))
        .bind(f.actor.as_deref().unwrap_or(""))
        .bind(f.since.unwrap_or(0))
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("list activities"))
    }
}
