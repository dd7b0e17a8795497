//! Runs of cron jobs (one row per occurrence of a job's schedule in an environment), and the
//! images jobs with a build of their own were built as.

use crate::{Result, Store, db};
use sqlx::FromRow;

/// How many runs of one job of one environment are kept (the oldest go first).
pub const CRON_HISTORY: i64 = 50;

#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct CronRun {
    pub id: String,
    pub env_id: String,
    pub job: String,
    /// The occurrence of the schedule it is for (ms since the epoch).
    pub scheduled_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// `running`, `succeeded`, `failed`, `skipped` or `interrupted`.
    pub status: String,
    /// Why it failed, was skipped or was interrupted.
    pub reason: Option<String>,
    /// The tail of its log.
    pub output: String,
}

const COLUMNS: &str = "id, env_id, job, scheduled_at, started_at, finished_at, status, reason, output";

impl Store {
    /// Records a run unless its occurrence has one already; whether it was recorded (only then
    /// does its caller run it). Older runs of the job beyond [`CRON_HISTORY`] are forgotten.
    pub async fn add_cron_run(&self, r: &CronRun) -> Result<bool> {
        let done = sqlx::query(&format!(
            "INSERT INTO cron_runs ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (env_id, job, scheduled_at) DO NOTHING"
        ))
        .bind(&r.id)
        .bind(&r.env_id)
        .bind(&r.job)
        .bind(r.scheduled_at)
        .bind(r.started_at)
        .bind(r.finished_at)
        .bind(&r.status)
        .bind(&r.reason)
        .bind(&r.output)
        .execute(&self.pool)
        .await
        .map_err(db("record a cron job's run"))?;
        if done.rows_affected() == 1 {
            sqlx::query(
                "DELETE FROM cron_runs WHERE env_id = $1 AND job = $2 AND scheduled_at < \
                 (SELECT MIN(scheduled_at) FROM (SELECT scheduled_at FROM cron_runs WHERE env_id = $1 AND job = $2 ORDER BY scheduled_at DESC LIMIT $3) AS kept)",
            )
            .bind(&r.env_id)
            .bind(&r.job)
            .bind(CRON_HISTORY)
            .execute(&self.pool)
            .await
            .map_err(db("forget old runs of a cron job"))?;
        }
        Ok(done.rows_affected() == 1)
    }

    /// Ends a running run (a run that is not running any more is left as it is).
    pub async fn finish_cron_run(&self, id: &str, status: &str, reason: Option<&str>, output: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE cron_runs SET status = $1, reason = $2, output = $3, finished_at = $4 WHERE id = $5 AND status = 'running'")
            .bind(status)
            .bind(reason)
            .bind(output)
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("finish a cron job's run"))?;
        Ok(())
    }

    /// The runs of an environment's cron jobs (of one job if given), newest first.
    pub async fn cron_runs(&self, env_id: &str, job: Option<&str>) -> Result<Vec<CronRun>> {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM cron_runs WHERE env_id = $1 AND ($2 = '' OR job = $2) ORDER BY scheduled_at DESC, id DESC"
        ))
        .bind(env_id)
        .bind(job.unwrap_or(""))
        .fetch_all(&self.pool)
        .await
        .map_err(db("list a cron job's runs"))
    }

    /// The latest occurrence each job of an environment has a run for: `(job, scheduled_at,
    /// running)`.
    pub async fn cron_latest(&self, env_id: &str) -> Result<Vec<(String, i64, bool)>> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT job, MAX(scheduled_at), SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END) FROM cron_runs WHERE env_id = $1 GROUP BY job",
        )
        .bind(env_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("find cron jobs' latest runs"))?;
        Ok(rows.into_iter().map(|(j, at, running)| (j, at, running > 0)).collect())
    }

    /// Runs recorded as running, of every environment (after a restart: interrupted).
    pub async fn running_cron_runs(&self) -> Result<Vec<CronRun>> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM cron_runs WHERE status = 'running'"))
            .fetch_all(&self.pool)
            .await
            .map_err(db("list running cron jobs"))
    }
}

impl Store {
    /// Records the image a job with a build of its own was built as for an environment.
    pub async fn set_job_image(&self, env_id: &str, job: &str, image: &str) -> Result<()> {
        sqlx::query("INSERT INTO job_images (env_id, job, image) VALUES ($1, $2, $3) ON CONFLICT (env_id, job) DO UPDATE SET image = excluded.image")
            .bind(env_id)
            .bind(job)
            .bind(image)
            .execute(&self.pool)
            .await
            .map_err(db("record a job's image"))?;
        Ok(())
    }

    /// The images an environment's jobs were last built as: `(job, image)`.
    pub async fn job_images(&self, env_id: &str) -> Result<Vec<(String, String)>> {
        sqlx::query_as("SELECT job, image FROM job_images WHERE env_id = $1 ORDER BY job")
            .bind(env_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db("list jobs' images"))
    }
}
