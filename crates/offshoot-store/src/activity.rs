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
}

impl Store {
    pub async fn add_activity(&self, a: &Activity) -> Result<()> {
        sqlx::query("INSERT INTO activity (id, at, actor, operation, target, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&a.id)
            .bind(a.at)
            .bind(&a.actor)
            .bind(&a.operation)
            .bind(&a.target)
            .bind(&a.outcome)
            .bind(&a.detail)
            .execute(&self.pool)
            .await
            .map_err(db("record an activity"))?;
        Ok(())
    }

    /// The latest `limit` activities, newest first.
    pub async fn activity(&self, limit: i64) -> Result<Vec<Activity>> {
        sqlx::query_as("SELECT id, at, actor, operation, target, outcome, detail FROM activity ORDER BY at DESC, id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db("list activities"))
    }
}
