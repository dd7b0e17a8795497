//! Pull requests from forks, held until approved (see `offshoot_control::forks`).

use crate::{Result, Store, db, now_ms};
use sqlx::FromRow;

#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct ForkPull {
    pub app: String,
    /// The pull request's key: `github:owner/name#12`.
    pub pull_request: String,
    pub number: i64,
    /// The latest event seen of it: the normalized pull request, JSON.
    pub event: String,
    /// The head commit someone approved, by whom, when.
    pub approved_commit: Option<String>,
    pub approved_by: Option<String>,
    pub approved_at: Option<i64>,
    pub updated_at: i64,
}

const COLUMNS: &str = "app, pull_request, number, event, approved_commit, approved_by, approved_at, updated_at";

impl Store {
    /// Records the latest event of a fork's pull request; an approval it had stays.
    pub async fn set_fork_pull(&self, app: &str, pull_request: &str, number: i64, event: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO fork_pulls (app, pull_request, number, event, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (app, pull_request) DO UPDATE SET number = excluded.number, event = excluded.event, updated_at = excluded.updated_at",
        )
        .bind(app)
        .bind(pull_request)
        .bind(number)
        .bind(event)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(db("record a fork's pull request"))?;
        Ok(())
    }

    /// Records that `commit` of a fork's pull request was approved by `by`.
    pub async fn approve_fork_pull(&self, app: &str, pull_request: &str, commit: &str, by: &str) -> Result<()> {
        sqlx::query("UPDATE fork_pulls SET approved_commit = $3, approved_by = $4, approved_at = $5 WHERE app = $1 AND pull_request = $2")
            .bind(app)
            .bind(pull_request)
            .bind(commit)
            .bind(by)
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(db("record an approval"))?;
        Ok(())
    }

    /// The forks' pull requests of an application, by number.
    pub async fn fork_pulls(&self, app: &str) -> Result<Vec<ForkPull>> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM fork_pulls WHERE app = $1 ORDER BY number, pull_request"))
            .bind(app)
            .fetch_all(&self.pool)
            .await
            .map_err(db("list forks' pull requests"))
    }

    pub async fn fork_pull(&self, app: &str, pull_request: &str) -> Result<Option<ForkPull>> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM fork_pulls WHERE app = $1 AND pull_request = $2"))
            .bind(app)
            .bind(pull_request)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read a fork's pull request"))
    }

    /// Forgets a fork's pull request (it was closed).
    pub async fn delete_fork_pull(&self, app: &str, pull_request: &str) -> Result<()> {
        sqlx::query("DELETE FROM fork_pulls WHERE app = $1 AND pull_request = $2")
            .bind(app)
            .bind(pull_request)
            .execute(&self.pool)
            .await
            .map_err(db("forget a fork's pull request"))?;
        Ok(())
    }

    /// Whether the environments of forks' pull requests get the application's secrets.
    pub async fn set_fork_secrets(&self, app: &str, on: bool) -> Result<()> {
        sqlx::query("UPDATE app_git SET fork_secrets = $2 WHERE app = $1")
            .bind(app)
            .bind(i64::from(on))
            .execute(&self.pool)
            .await
            .map_err(db("store the forks' secrets setting"))?;
        Ok(())
    }
}
