//! The control plane's state over sqlx. SQLite (a file in the data directory) by default,
//! PostgreSQL when given a `postgres://` URL; one portable SQL through sqlx's `Any` driver,
//! embedded migrations that run on both. Rows are plain structs; JSON columns are text the server
//! owns.

mod activity;
mod certs;
mod cron;
mod datasets;
mod forks;
mod ids;
mod infra;
mod registries;
mod services;
mod users;

pub use activity::{Activity, ActivityFilter};
pub use certs::{CertRow, IssuedCert};
pub use cron::{CRON_HISTORY, CronRun};
pub use datasets::{Dataset, DatasetClone};
pub use forks::ForkPull;
pub use ids::{AppName, DeploymentId, EnvId};
pub use infra::{INFRA_HISTORY, INFRA_LOG_BYTES, InfraRun, InfraState, InfraUpdate};
pub use offshoot_api_types::{DeploymentStatus, EnvStatus, ServiceStatus};
pub use registries::RegistryCredential;
pub use services::{IngressRecord, Routing, SERVICE_DETAIL_VERSION, ServiceDetail, ServiceRow};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, FromRow};
use std::time::{SystemTime, UNIX_EPOCH};
pub use users::{ADMIN_USER, TokenRow, User};

/// One set of migrations, in SQL that SQLite and PostgreSQL both accept (TEXT, BIGINT, no
/// backend-specific types); split it per backend when one needs its own.
static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database error while trying to {operation}")]
    Db {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot migrate the database from schema {from} (pending: {}); nothing was changed", pending.join(", "))]
    Migrate {
        /// The last migration applied before.
        from: i64,
        /// The migrations that were to run, as `0007 step tasks`.
        pending: Vec<String>,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("{what} `{name}` already exists")]
    Conflict { what: &'static str, name: String },
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://...")]
    Url(String),
    #[error("the {what} `{name}` in the database has an unknown status")]
    Status {
        what: &'static str,
        name: String,
        #[source]
        source: offshoot_api_types::UnknownStatus,
    },
    #[error("the {what} `{name}` in the database cannot be read")]
    Decode {
        what: &'static str,
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl StoreError {
    /// The database could not be reached or is refusing work for now (connection lost or
    /// refused, pool exhausted, shutting down, SQLite busy): worth a retry, and not the caller's
    /// fault.
    pub fn is_unavailable(&self) -> bool {
        let StoreError::Db { source, .. } = self else { return false };
        match source {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
                true
            }
            sqlx::Error::Database(e) => e.code().is_some_and(|c| {
                // PostgreSQL: connection exceptions (08), insufficient resources (53), operator
                // intervention (57), a database not accepting connections (55000); SQLite: busy
                // and locked.
                c.starts_with("08") || c.starts_with("53") || c.starts_with("57") || c == "55000" || c == "5" || c == "6"
            }),
            _ => false,
        }
    }

    /// The database's disk is full (SQLite's `SQLITE_FULL`, PostgreSQL's `disk_full`, or the
    /// operating system's "no space left"): nothing was written, and it is worth a retry once
    /// there is room.
    pub fn is_full(&self) -> bool {
        let StoreError::Db { source, .. } = self else { return false };
        match source {
            sqlx::Error::Io(e) => e.kind() == std::io::ErrorKind::StorageFull,
            sqlx::Error::Database(e) => e.code().is_some_and(|c| c == "13" || c == "53100"),
            _ => false,
        }
    }

    /// What the store was doing when it failed (for a database error).
    pub fn operation(&self) -> Option<&'static str> {
        match self {
            StoreError::Db { operation, .. } => Some(operation),
            _ => None,
        }
    }
}

fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Db { operation, source }
}

/// Runs the pending migrations in one transaction: they all apply, or the store is left as it
/// was (SQLite and PostgreSQL both roll back DDL) and the error names what was pending.
async fn migrate(pool: &AnyPool) -> Result<()> {
    // None before the first start.
    let applied: Vec<(i64,)> =
        sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success = TRUE").fetch_all(pool).await.unwrap_or_default();
    let applied: Vec<i64> = applied.into_iter().map(|(v,)| v).collect();
    let pending: Vec<String> =
        MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)).map(|m| format!("{:04} {}", m.version, m.description)).collect();
    if pending.is_empty() {
        return Ok(());
    }
    let from = applied.iter().copied().max().unwrap_or(0);
    let fail = |source| StoreError::Migrate { from, pending: pending.clone(), source };
    let mut tx = pool.begin().await.map_err(db("begin the migration"))?;
    MIGRATIONS.run(&mut *tx).await.map_err(fail)?;
    tx.commit().await.map_err(db("commit the migration"))?;
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct App {
    #[sqlx(try_from = "String")]
    pub name: AppName,
    pub repo: String,
    pub default_branch: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct AppVersion {
    pub app: String,
    pub version: i64,
    pub template: String,
    pub env_vars: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct Secret {
    pub app: String,
    /// Empty for a secret of every service.
    pub service: String,
    pub key: String,
    pub ciphertext: String,
}

#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct Environment {
    #[sqlx(try_from = "String")]
    pub id: EnvId,
    #[sqlx(try_from = "String")]
    pub app: AppName,
    pub branch: String,
    pub commit_sha: Option<String>,
    pub environment_template: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: EnvStatus,
    pub reason: Option<String>,
    /// The forked template and variables (later app edits do not touch them).
    pub template: String,
    pub env_vars: String,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// For an imported app's environment: the importing environment.
    pub parent_id: Option<EnvId>,
    /// For an imported app's environment: how it was chosen (JSON the server owns).
    pub import_info: Option<String>,
    /// For an environment made for a pull request: which one (JSON the server owns).
    pub pull_request: Option<String>,
    /// Since when it sleeps; `None` while awake.
    pub sleeping_since: Option<i64>,
    /// When the router last passed it a request.
    pub last_request_at: Option<i64>,
    /// Idle time after which it sleeps: `None` for its application's setting, `0` for never.
    pub idle_sleep_seconds: Option<i64>,
    /// The values given for its template's `parameters` (a JSON object of strings).
    pub parameters: Option<String>,
}

impl Environment {
    /// The values it was given for its template's `parameters` (none if unreadable: the
    /// server wrote them).
    pub fn given_parameters(&self) -> std::collections::BTreeMap<String, String> {
        self.parameters.as_deref().and_then(|p| serde_json::from_str(p).ok()).unwrap_or_default()
    }
}

/// An application's git settings and the last trouble with its repository.
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct AppGit {
    pub app: String,
    /// Encrypted.
    pub webhook_secret: String,
    /// Environments for pull requests (`0` or `1`).
    pub pull_requests: i64,
    /// Only pull requests carrying this label get one.
    pub pull_request_label: Option<String>,
    /// Why the last pushed configuration was refused (cleared by a valid one).
    pub gitops_error: Option<String>,
    /// Why the last fetch failed (cleared by a successful one).
    pub fetch_error: Option<String>,
    /// The image static builds run in (`None`: the server's default).
    pub static_builder: Option<String>,
    /// Idle time after which its environments sleep (`None`: never).
    pub idle_sleep_seconds: Option<i64>,
    /// The lifetime its new environments get (`None`: none).
    pub ttl_seconds: Option<i64>,
    /// The lifetime its new pull-request environments get (`None`: none).
    pub pull_request_ttl_seconds: Option<i64>,
    /// When its environments go to sleep (five-field cron, the server's time zone).
    pub sleep_schedule: Option<String>,
    /// When its sleeping environments wake.
    pub wake_schedule: Option<String>,
    /// The image its Terraform runs in (`None`: the server's default).
    pub terraform_image: Option<String>,
    /// `team` when its previews are for the team only (`None`: public).
    pub access: Option<String>,
    /// Its previews' bypass token, sealed.
    pub bypass_token: Option<String>,
    /// Whether forks' pull requests get its secrets (`0` or `1`).
    pub fork_secrets: i64,
}

/// A webhook delivery or a polled change: a normalized event (JSON the server owns).
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct Delivery {
    pub id: String,
    pub app: String,
    pub event: String,
    /// `pending`, `done`, `failed` or `ignored`.
    pub status: String,
    /// What was done, or why nothing was.
    pub result: Option<String>,
    pub received_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct Deployment {
    #[sqlx(try_from = "String")]
    pub id: DeploymentId,
    #[sqlx(try_from = "String")]
    pub env_id: EnvId,
    pub workflow: String,
    pub commit_sha: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: DeploymentStatus,
    pub error: Option<String>,
    /// JSON: phase name → milliseconds.
    pub phases: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct Step {
    pub deployment: DeploymentId,
    pub idx: i64,
    pub name: String,
    pub status: String,
    pub output: String,
}

/// One task of a workflow step, recorded when it ended.
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct StepTask {
    pub deployment: String,
    pub step: i64,
    /// The task as written (`services.api`, `jobs.migrate`).
    pub task: String,
    pub status: String,
    pub output: String,
}

/// A service's row as stored; its detail is a [`ServiceDetail`] in JSON.
#[derive(FromRow)]
struct RawServiceRow {
    env_id: String,
    name: String,
    status: String,
    reason: Option<String>,
    detail: String,
}

impl RawServiceRow {
    fn typed(self) -> Result<ServiceRow> {
        let detail = serde_json::from_str(&self.detail).map_err(|source| StoreError::Decode {
            what: "service record",
            name: format!("{}/{}", self.env_id, self.name),
            source,
        })?;
        let status = self.status.parse().map_err(|e: offshoot_api_types::UnknownStatus| StoreError::Status {
            what: "service",
            name: format!("{}/{}", self.env_id, self.name),
            source: e,
        })?;
        Ok(ServiceRow { env_id: self.env_id.into(), name: self.name, status, reason: self.reason, detail })
    }
}

const ENV_COLUMNS: &str = "id, app, branch, commit_sha, environment_template, status, reason, template, env_vars, expires_at, created_at, updated_at, parent_id, import_info, pull_request, sleeping_since, last_request_at, idle_sleep_seconds, parameters";
const DELIVERY_COLUMNS: &str = "id, app, event, status, result, received_at, finished_at";
const APP_GIT_COLUMNS: &str = "app, webhook_secret, pull_requests, pull_request_label, gitops_error, fetch_error, static_builder, idle_sleep_seconds, ttl_seconds, pull_request_ttl_seconds, \
     sleep_schedule, wake_schedule, terraform_image, access, bypass_token, fork_secrets";
const DEPLOYMENT_COLUMNS: &str = "id, env_id, workflow, commit_sha, status, error, phases, created_at, finished_at";

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`: `sqlite://PATH` or
    /// `postgres://USER:PASSWORD@HOST/DB`.
    pub async fn open(url: &str) -> Result<Store> {
        install_default_drivers();
        let (backend, url) = if let Some(path) = url.strip_prefix("sqlite://") {
            let sep = if path.contains('?') { '&' } else { '?' };
            (Backend::Sqlite, format!("sqlite://{path}{sep}mode=rwc"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::Url(url.to_owned()));
        };
        // SQLite allows one writer; a single connection serializes writes without busy errors.
        let max = if backend == Backend::Sqlite { 1 } else { 8 };
        let pool = AnyPoolOptions::new().max_connections(max).connect(&url).await.map_err(db("connect"))?;
        if backend == Backend::Sqlite {
            for pragma in ["PRAGMA foreign_keys = ON", "PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL"] {
                sqlx::query(pragma).execute(&pool).await.map_err(db("configure SQLite"))?;
            }
        }
        migrate(&pool).await?;
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // Tokens ------------------------------------------------------------------------------

    /// Records a token of the built-in administrator (the first start's).
    pub async fn add_token(&self, hash: &str, name: &str) -> Result<()> {
        sqlx::query("INSERT INTO tokens (hash, name, created_at, id, user_email) VALUES ($1, $2, $3, $4, $5)")
            .bind(hash)
            .bind(name)
            .bind(now_ms())
            .bind(format!("t{}", hash.get(..16).unwrap_or(hash)))
            .bind(users::ADMIN_USER)
            .execute(&self.pool)
            .await
            .map_err(db("add a token"))?;
        Ok(())
    }

    /// Records a dashboard session (by the hash of its id) begun `via` `token` or `sso`, until
    /// `expires_at` (ms); expired sessions are dropped on the way.
    pub async fn create_session(&self, hash: &str, user: &str, via: &str, expires_at: i64) -> Result<()> {
        sqlx::query("DELETE FROM ui_sessions WHERE expires_at < $1")
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(db("drop sessions"))?;
        sqlx::query("INSERT INTO ui_sessions (hash, expires_at, user_email, via) VALUES ($1, $2, $3, $4)")
            .bind(hash)
            .bind(expires_at)
            .bind(user)
            .bind(via)
            .execute(&self.pool)
            .await
            .map_err(db("create a session"))?;
        Ok(())
    }

    /// Whether a session (by the hash of its id) exists and has not expired.
    pub async fn session_valid(&self, hash: &str) -> Result<bool> {
        let n: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ui_sessions WHERE hash = $1 AND expires_at > $2")
            .bind(hash)
            .bind(now_ms())
            .fetch_one(&self.pool)
            .await
            .map_err(db("check a session"))?;
        Ok(n.0 > 0)
    }

    /// Ends a session; returns how it began (`token`, `sso`), if it existed.
    pub async fn delete_session(&self, hash: &str) -> Result<Option<String>> {
        let via: Option<(String,)> = sqlx::query_as("SELECT via FROM ui_sessions WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read a session"))?;
        sqlx::query("DELETE FROM ui_sessions WHERE hash = $1").bind(hash).execute(&self.pool).await.map_err(db("delete a session"))?;
        Ok(via.map(|v| v.0))
    }

    /// Every version of an application's configuration, newest first.
    pub async fn versions(&self, app: &str) -> Result<Vec<AppVersion>> {
        sqlx::query_as("SELECT app, version, template, env_vars, created_at FROM app_versions WHERE app = $1 ORDER BY version DESC")
            .bind(app)
            .fetch_all(&self.pool)
            .await
            .map_err(db("read versions"))
    }

    pub async fn token_count(&self) -> Result<i64> {
        let n: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tokens").fetch_one(&self.pool).await.map_err(db("count tokens"))?;
        Ok(n.0)
    }

    // Applications --------------------------------------------------------------------------

    /// Creates an application with its template and variables as version 1.
    pub async fn create_app(&self, app: &App, template: &str, env_vars: &str) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db("begin"))?;
        let exists: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM apps WHERE name = $1")
            .bind(app.name.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(db("find an app"))?;
        if exists.0 > 0 {
            return Err(StoreError::Conflict { what: "application", name: app.name.to_string() });
        }
        sqlx::query("INSERT INTO apps (name, repo, default_branch, created_at) VALUES ($1, $2, $3, $4)")
            .bind(app.name.as_str())
            .bind(&app.repo)
            .bind(&app.default_branch)
            .bind(app.created_at)
            .execute(&mut *tx)
            .await
            .map_err(db("create an app"))?;
        sqlx::query("INSERT INTO app_versions (app, version, template, env_vars, created_at) VALUES ($1, 1, $2, $3, $4)")
            .bind(app.name.as_str())
            .bind(template)
            .bind(env_vars)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db("store version 1"))?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(())
    }

    pub async fn apps(&self) -> Result<Vec<App>> {
        sqlx::query_as("SELECT name, repo, default_branch, created_at FROM apps ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(db("list apps"))
    }

    pub async fn app(&self, name: &str) -> Result<Option<App>> {
        sqlx::query_as("SELECT name, repo, default_branch, created_at FROM apps WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("find an app"))
    }

    /// Deletes an application with its versions and secrets (environments are torn down first
    /// by the caller).
    pub async fn delete_app(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db("begin"))?;
        for q in [
            "DELETE FROM secrets WHERE app = $1",
            "DELETE FROM app_versions WHERE app = $1",
            "DELETE FROM app_git WHERE app = $1",
            "DELETE FROM deliveries WHERE app = $1",
            "DELETE FROM git_heads WHERE app = $1",
            "DELETE FROM pr_comments WHERE app = $1",
            "DELETE FROM fork_pulls WHERE app = $1",
        ] {
            sqlx::query(q).bind(name).execute(&mut *tx).await.map_err(db("delete an app"))?;
        }
        let r = sqlx::query("DELETE FROM apps WHERE name = $1").bind(name).execute(&mut *tx).await.map_err(db("delete an app"))?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(r.rows_affected() > 0)
    }

    /// Saves a new version; returns its number.
    pub async fn add_version(&self, app: &str, template: &str, env_vars: &str) -> Result<i64> {
        let mut tx = self.pool.begin().await.map_err(db("begin"))?;
        let last: (i64,) = sqlx::query_as("SELECT COALESCE(MAX(version), 0) FROM app_versions WHERE app = $1")
            .bind(app)
            .fetch_one(&mut *tx)
            .await
            .map_err(db("find the last version"))?;
        let version = last.0 + 1;
        sqlx::query("INSERT INTO app_versions (app, version, template, env_vars, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(app)
            .bind(version)
            .bind(template)
            .bind(env_vars)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db("store a version"))?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(version)
    }

    pub async fn latest_version(&self, app: &str) -> Result<Option<AppVersion>> {
        sqlx::query_as("SELECT app, version, template, env_vars, created_at FROM app_versions WHERE app = $1 ORDER BY version DESC LIMIT 1")
            .bind(app)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("find the latest version"))
    }

    // Secrets ------------------------------------------------------------------------------

    pub async fn set_secret(&self, s: &Secret) -> Result<()> {
        sqlx::query(
            "INSERT INTO secrets (app, service, key, ciphertext) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (app, service, key) DO UPDATE SET ciphertext = excluded.ciphertext",
        )
        .bind(&s.app)
        .bind(&s.service)
        .bind(&s.key)
        .bind(&s.ciphertext)
        .execute(&self.pool)
        .await
        .map_err(db("store a secret"))?;
        Ok(())
    }

    pub async fn secrets(&self, app: &str) -> Result<Vec<Secret>> {
        sqlx::query_as("SELECT app, service, key, ciphertext FROM secrets WHERE app = $1 ORDER BY service, key")
            .bind(app)
            .fetch_all(&self.pool)
            .await
            .map_err(db("list secrets"))
    }

    // Environments ---------------------------------------------------------------------------

    pub async fn create_env(&self, e: &Environment) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO environments ({ENV_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
        ))
        .bind(e.id.as_str())
        .bind(e.app.as_str())
        .bind(&e.branch)
        .bind(&e.commit_sha)
        .bind(&e.environment_template)
        .bind(e.status.as_str())
        .bind(&e.reason)
        .bind(&e.template)
        .bind(&e.env_vars)
        .bind(e.expires_at)
        .bind(e.created_at)
        .bind(e.updated_at)
        .bind(&e.parent_id)
        .bind(&e.import_info)
        .bind(&e.pull_request)
        .bind(e.sleeping_since)
        .bind(e.last_request_at)
        .bind(e.idle_sleep_seconds)
        .bind(&e.parameters)
        .execute(&self.pool)
        .await
        .map_err(db("create an environment"))?;
        Ok(())
    }

    pub async fn env(&self, id: &str) -> Result<Option<Environment>> {
        sqlx::query_as(&format!("SELECT {ENV_COLUMNS} FROM environments WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("find an environment"))
    }

    /// The root of an environment's group: the environment importing it, or itself when it
    /// imports; `None` when its importer is gone.
    pub async fn root_env(&self, env: &Environment) -> Result<Option<Environment>> {
        match &env.parent_id {
            Some(parent) => self.env(parent).await,
            None => Ok(Some(env.clone())),
        }
    }

    /// Environments, newest first; of one app if given; without deleted ones unless asked.
    pub async fn envs(&self, app: Option<&str>, include_deleted: bool) -> Result<Vec<Environment>> {
        let mut sql = format!("SELECT {ENV_COLUMNS} FROM environments WHERE ($1 = '' OR app = $1)");
        if !include_deleted {
            sql.push_str(" AND status <> 'deleted'");
        }
        sql.push_str(" ORDER BY created_at DESC, id");
        sqlx::query_as(&sql).bind(app.unwrap_or("")).fetch_all(&self.pool).await.map_err(db("list environments"))
    }

    /// The environments of an importing environment's imports (but deleted ones), in the order
    /// they were created.
    pub async fn child_envs(&self, parent: &str) -> Result<Vec<Environment>> {
        sqlx::query_as(&format!(
            "SELECT {ENV_COLUMNS} FROM environments WHERE parent_id = $1 AND status <> 'deleted' ORDER BY created_at, id"
        ))
        .bind(parent)
        .fetch_all(&self.pool)
        .await
        .map_err(db("list imported environments"))
    }

    pub async fn set_env_status(&self, id: &str, status: EnvStatus, reason: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE environments SET status = $1, reason = $2, updated_at = $3 WHERE id = $4")
            .bind(status.as_str())
            .bind(reason)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("update an environment"))?;
        Ok(())
    }

    /// Moves an environment from one of `from` to `to`, atomically: `false` (nothing changed)
    /// when it is in none of them. Entering `sleeping` records when; leaving it for `ready`
    /// forgets it (`waking` keeps it: a wake that fails shows since when it slept).
    pub async fn transition_env(&self, id: &str, from: &[EnvStatus], to: EnvStatus, reason: Option<&str>) -> Result<bool> {
        let now = now_ms();
        let sleeping_since = match to {
            EnvStatus::Sleeping => "$2",
            EnvStatus::Waking => "sleeping_since",
            _ => "NULL",
        };
        let list: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 5)).collect();
        let sql = format!(
            "UPDATE environments SET status = $1, sleeping_since = {sleeping_since}, reason = $3, updated_at = $2 \
             WHERE id = $4 AND status IN ({})",
            list.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(to.as_str()).bind(now).bind(reason).bind(id);
        for f in from {
            q = q.bind(f.as_str());
        }
        let done = q.execute(&self.pool).await.map_err(db("change an environment's state"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Records when the router last passed each environment a request (a later time only).
    pub async fn record_requests(&self, seen: &[(String, i64)]) -> Result<()> {
        for (id, at) in seen {
            sqlx::query("UPDATE environments SET last_request_at = $1 WHERE id = $2 AND (last_request_at IS NULL OR last_request_at < $1)")
                .bind(at)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(db("record an environment's last request"))?;
        }
        Ok(())
    }

    /// An environment's own idle-sleep setting (`None`: its application's; `Some(0)`: never).
    pub async fn set_env_idle_sleep(&self, id: &str, seconds: Option<i64>) -> Result<()> {
        sqlx::query("UPDATE environments SET idle_sleep_seconds = $1, updated_at = $2 WHERE id = $3")
            .bind(seconds)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("set an environment's idle sleep"))?;
        Ok(())
    }

    /// The lifetimes an application's new environments get (`None`: none).
    pub async fn set_app_ttls(&self, app: &str, ttl: Option<i64>, pull_request_ttl: Option<i64>) -> Result<()> {
        sqlx::query("UPDATE app_git SET ttl_seconds = $1, pull_request_ttl_seconds = $2 WHERE app = $3")
            .bind(ttl)
            .bind(pull_request_ttl)
            .bind(app)
            .execute(&self.pool)
            .await
            .map_err(db("set an application's lifetimes"))?;
        Ok(())
    }

    /// When an application's environments sleep and wake by the clock (`None`: not by it).
    pub async fn set_app_schedules(&self, app: &str, sleep: Option<&str>, wake: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE app_git SET sleep_schedule = $1, wake_schedule = $2 WHERE app = $3")
            .bind(sleep)
            .bind(wake)
            .bind(app)
            .execute(&self.pool)
            .await
            .map_err(db("set an application's schedules"))?;
        Ok(())
    }

    /// When an environment expires (`None`: never); a new time may be warned about again.
    pub async fn set_env_expiry(&self, id: &str, expires_at: Option<i64>) -> Result<()> {
        sqlx::query("UPDATE environments SET expires_at = $1, expiry_warned_at = NULL, updated_at = $2 WHERE id = $3")
            .bind(expires_at)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("set an environment's expiry"))?;
        Ok(())
    }

    /// Records that an environment's pull request was warned it expires; `false` when it had
    /// been already (one warning per expiry time).
    pub async fn mark_expiry_warned(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE environments SET expiry_warned_at = $1 WHERE id = $2 AND expiry_warned_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("record an expiry warning"))?;
        Ok(done.rows_affected() > 0)
    }

    /// An application's idle-sleep default (`None`: never).
    pub async fn set_app_idle_sleep(&self, app: &str, seconds: Option<i64>) -> Result<()> {
        sqlx::query("UPDATE app_git SET idle_sleep_seconds = $1 WHERE app = $2")
            .bind(seconds)
            .bind(app)
            .execute(&self.pool)
            .await
            .map_err(db("set an application's idle sleep"))?;
        Ok(())
    }

    pub async fn set_env_commit(&self, id: &str, commit: &str) -> Result<()> {
        sqlx::query("UPDATE environments SET commit_sha = $1, updated_at = $2 WHERE id = $3")
            .bind(commit)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("update an environment"))?;
        Ok(())
    }

    // Deployments and their steps -----------------------------------------------------------------

    /// Replaces what an environment records about its imports (JSON the server owns).
    pub async fn set_env_import_info(&self, id: &str, import_info: Option<&str>) -> Result<()> {
        self.set_text("UPDATE environments SET import_info = $2 WHERE id = $1", id, import_info, "record an environment's imports").await
    }

    /// Records the pull request an environment was made for (its latest labels and head).
    pub async fn set_env_pull_request(&self, id: &str, pull_request: &str) -> Result<()> {
        self.set_text(
            "UPDATE environments SET pull_request = $2 WHERE id = $1",
            id,
            Some(pull_request),
            "record an environment's pull request",
        )
        .await
    }

    /// Replaces an environment's forked template and variables (a GitOps push).
    pub async fn set_env_config(&self, id: &str, template: &str, env_vars: &str) -> Result<()> {
        sqlx::query("UPDATE environments SET template = $2, env_vars = $3, updated_at = $4 WHERE id = $1")
            .bind(id)
            .bind(template)
            .bind(env_vars)
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(db("update an environment's configuration"))?;
        Ok(())
    }

    pub async fn create_deployment(&self, d: &Deployment) -> Result<()> {
        sqlx::query(&format!("INSERT INTO deployments ({DEPLOYMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))
            .bind(d.id.as_str())
            .bind(d.env_id.as_str())
            .bind(&d.workflow)
            .bind(&d.commit_sha)
            .bind(d.status.as_str())
            .bind(&d.error)
            .bind(&d.phases)
            .bind(d.created_at)
            .bind(d.finished_at)
            .execute(&self.pool)
            .await
            .map_err(db("create a deployment"))?;
        Ok(())
    }

    pub async fn deployment(&self, id: &str) -> Result<Option<Deployment>> {
        sqlx::query_as(&format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("find a deployment"))
    }

    /// The deployments of every environment that is not deleted, oldest first.
    /// The steps of every deployment of one environment, or of every environment that is not
    /// deleted.
    pub async fn deployment_steps(&self, env_id: Option<&str>) -> Result<Vec<Step>> {
        let deployments = match env_id {
            Some(_) => "SELECT id FROM deployments WHERE env_id = $1",
            None => "SELECT id FROM deployments WHERE env_id IN (SELECT id FROM environments WHERE status <> 'deleted')",
        };
        let sql =
            format!("SELECT deployment, idx, name, status, output FROM steps WHERE deployment IN ({deployments}) ORDER BY deployment, idx");
        let mut q = sqlx::query_as(&sql);
        if let Some(id) = env_id {
            q = q.bind(id);
        }
        q.fetch_all(&self.pool).await.map_err(db("list steps"))
    }

    pub async fn live_deployments(&self) -> Result<Vec<Deployment>> {
        sqlx::query_as(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE env_id IN (SELECT id FROM environments WHERE status <> 'deleted') \
             ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db("list deployments"))
    }

    pub async fn deployments(&self, env_id: &str) -> Result<Vec<Deployment>> {
        sqlx::query_as(&format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE env_id = $1 ORDER BY created_at, id"))
            .bind(env_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db("list deployments"))
    }

    /// Deployments that were running when the server stopped, oldest first.
    pub async fn unfinished_deployments(&self) -> Result<Vec<Deployment>> {
        sqlx::query_as(&format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE status = 'running' ORDER BY created_at, id"))
            .fetch_all(&self.pool)
            .await
            .map_err(db("list unfinished deployments"))
    }

    pub async fn set_deployment_commit(&self, id: &str, commit: &str) -> Result<()> {
        sqlx::query("UPDATE deployments SET commit_sha = $1 WHERE id = $2")
            .bind(commit)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("record a commit"))?;
        Ok(())
    }

    pub async fn set_phases(&self, id: &str, phases: &str) -> Result<()> {
        sqlx::query("UPDATE deployments SET phases = $1 WHERE id = $2")
            .bind(phases)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("record phases"))?;
        Ok(())
    }

    pub async fn finish_deployment(&self, id: &str, status: DeploymentStatus, error: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE deployments SET status = $1, error = $2, finished_at = $3 WHERE id = $4")
            .bind(status.as_str())
            .bind(error)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("finish a deployment"))?;
        Ok(())
    }

    pub async fn steps(&self, deployment: &str) -> Result<Vec<Step>> {
        sqlx::query_as("SELECT deployment, idx, name, status, output FROM steps WHERE deployment = $1 ORDER BY idx")
            .bind(deployment)
            .fetch_all(&self.pool)
            .await
            .map_err(db("list steps"))
    }

    /// Records a step's progress (the workflow resumes from these after a restart).
    pub async fn set_step(&self, s: &Step) -> Result<()> {
        sqlx::query(
            "INSERT INTO steps (deployment, idx, name, status, output) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (deployment, idx) DO UPDATE SET name = excluded.name, status = excluded.status, output = excluded.output",
        )
        .bind(&s.deployment)
        .bind(s.idx)
        .bind(&s.name)
        .bind(&s.status)
        .bind(&s.output)
        .execute(&self.pool)
        .await
        .map_err(db("record a step"))?;
        Ok(())
    }

    /// The tasks of a deployment's steps that ended, in step order.
    pub async fn step_tasks(&self, deployment: &str) -> Result<Vec<StepTask>> {
        sqlx::query_as("SELECT deployment, step, task, status, output FROM step_tasks WHERE deployment = $1 ORDER BY step, task")
            .bind(deployment)
            .fetch_all(&self.pool)
            .await
            .map_err(db("list step tasks"))
    }

    /// Records how a task of a step ended.
    pub async fn set_step_task(&self, t: &StepTask) -> Result<()> {
        sqlx::query(
            "INSERT INTO step_tasks (deployment, step, task, status, output) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (deployment, step, task) DO UPDATE SET status = excluded.status, output = excluded.output",
        )
        .bind(&t.deployment)
        .bind(t.step)
        .bind(&t.task)
        .bind(&t.status)
        .bind(&t.output)
        .execute(&self.pool)
        .await
        .map_err(db("record a step's task"))?;
        Ok(())
    }

    // Services --------------------------------------------------------------------------------

    pub async fn set_service(&self, s: &ServiceRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO services (env_id, name, status, reason, detail) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (env_id, name) DO UPDATE SET status = excluded.status, reason = excluded.reason, detail = excluded.detail",
        )
        .bind(&s.env_id)
        .bind(&s.name)
        .bind(s.status.as_str())
        .bind(&s.reason)
        .bind(serde_json::to_string(&s.detail).map_err(|source| StoreError::Decode {
            what: "service record",
            name: format!("{}/{}", s.env_id, s.name),
            source,
        })?)
        .execute(&self.pool)
        .await
        .map_err(db("record a service"))?;
        Ok(())
    }

    /// The services of every environment that is not deleted, by environment then name.
    pub async fn live_services(&self) -> Result<Vec<ServiceRow>> {
        let rows: Vec<RawServiceRow> = sqlx::query_as(
            "SELECT env_id, name, status, reason, detail FROM services \
             WHERE env_id IN (SELECT id FROM environments WHERE status <> 'deleted') ORDER BY env_id, name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("list services"))?;
        rows.into_iter().map(RawServiceRow::typed).collect()
    }

    pub async fn services(&self, env_id: &str) -> Result<Vec<ServiceRow>> {
        let rows: Vec<RawServiceRow> =
            sqlx::query_as("SELECT env_id, name, status, reason, detail FROM services WHERE env_id = $1 ORDER BY name")
                .bind(env_id)
                .fetch_all(&self.pool)
                .await
                .map_err(db("list services"))?;
        rows.into_iter().map(RawServiceRow::typed).collect()
    }

    // Build logs --------------------------------------------------------------------------------

    pub async fn set_build_log(&self, deployment: &str, service: &str, log: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO build_logs (deployment, service, log) VALUES ($1, $2, $3) \
             ON CONFLICT (deployment, service) DO UPDATE SET log = excluded.log",
        )
        .bind(deployment)
        .bind(service)
        .bind(log)
        .execute(&self.pool)
        .await
        .map_err(db("store a build log"))?;
        Ok(())
    }

    pub async fn build_logs(&self, deployment: &str) -> Result<Vec<(String, String)>> {
        sqlx::query_as("SELECT service, log FROM build_logs WHERE deployment = $1 ORDER BY service")
            .bind(deployment)
            .fetch_all(&self.pool)
            .await
            .map_err(db("read build logs"))
    }

    /// Runs `UPDATE ... SET column = $2 WHERE key = $1` for one text column.
    async fn set_text(&self, sql: &str, key: &str, value: Option<&str>, operation: &'static str) -> Result<()> {
        sqlx::query(sql).bind(key).bind(value).execute(&self.pool).await.map_err(db(operation))?;
        Ok(())
    }

    // Git ---------------------------------------------------------------------------------------

    pub async fn app_git(&self, app: &str) -> Result<Option<AppGit>> {
        sqlx::query_as(&format!("SELECT {APP_GIT_COLUMNS} FROM app_git WHERE app = $1"))
            .bind(app)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read git settings"))
    }

    /// Creates an application's git settings unless it has them; returns what it has.
    pub async fn ensure_app_git(&self, g: &AppGit) -> Result<AppGit> {
        sqlx::query(&format!(
            "INSERT INTO app_git ({APP_GIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (app) DO NOTHING"
        ))
        .bind(&g.app)
        .bind(&g.webhook_secret)
        .bind(g.pull_requests)
        .bind(&g.pull_request_label)
        .bind(&g.gitops_error)
        .bind(&g.fetch_error)
        .bind(&g.static_builder)
        .bind(g.idle_sleep_seconds)
        .bind(g.ttl_seconds)
        .bind(g.pull_request_ttl_seconds)
        .bind(&g.sleep_schedule)
        .bind(&g.wake_schedule)
        .bind(&g.terraform_image)
        .bind(&g.access)
        .bind(&g.bypass_token)
        .bind(g.fork_secrets)
        .execute(&self.pool)
        .await
        .map_err(db("store git settings"))?;
        Ok(self.app_git(&g.app).await?.unwrap_or_else(|| g.clone()))
    }

    pub async fn set_pull_requests(&self, app: &str, on: bool, label: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE app_git SET pull_requests = $2, pull_request_label = $3 WHERE app = $1")
            .bind(app)
            .bind(i64::from(on))
            .bind(label)
            .execute(&self.pool)
            .await
            .map_err(db("store pull-request settings"))?;
        Ok(())
    }

    /// Sets (or with `None` clears) the image an application's static builds run in.
    pub async fn set_static_builder(&self, app: &str, image: Option<&str>) -> Result<()> {
        self.set_text("UPDATE app_git SET static_builder = $2 WHERE app = $1", app, image, "store the static builder").await
    }

    /// Sets an application's previews' access (`team`, or `None`: public).
    pub async fn set_access(&self, app: &str, access: Option<&str>) -> Result<()> {
        self.set_text("UPDATE app_git SET access = $2 WHERE app = $1", app, access, "store the access").await
    }

    /// Sets an application's sealed bypass token.
    pub async fn set_bypass_token(&self, app: &str, sealed: &str) -> Result<()> {
        self.set_text("UPDATE app_git SET bypass_token = $2 WHERE app = $1", app, Some(sealed), "store the bypass token").await
    }

    /// The applications whose previews are for the team only, with their sealed bypass tokens.
    pub async fn team_apps(&self) -> Result<Vec<(String, Option<String>)>> {
        sqlx::query_as("SELECT app, bypass_token FROM app_git WHERE access = 'team' ORDER BY app")
            .fetch_all(&self.pool)
            .await
            .map_err(db("list team-only applications"))
    }

    /// Sets (or with `None` clears) the image an application's Terraform runs in.
    pub async fn set_terraform_image(&self, app: &str, image: Option<&str>) -> Result<()> {
        self.set_text("UPDATE app_git SET terraform_image = $2 WHERE app = $1", app, image, "store the Terraform image").await
    }

    pub async fn set_webhook_secret(&self, app: &str, ciphertext: &str) -> Result<()> {
        self.set_text("UPDATE app_git SET webhook_secret = $2 WHERE app = $1", app, Some(ciphertext), "store a webhook secret").await
    }

    /// Records (or with `None` clears) why the last pushed configuration was refused.
    pub async fn set_gitops_error(&self, app: &str, error: Option<&str>) -> Result<()> {
        self.set_text("UPDATE app_git SET gitops_error = $2 WHERE app = $1", app, error, "record a GitOps error").await
    }

    /// Records (or with `None` clears) why the last fetch failed.
    pub async fn set_fetch_error(&self, app: &str, error: Option<&str>) -> Result<()> {
        self.set_text("UPDATE app_git SET fetch_error = $2 WHERE app = $1", app, error, "record a fetch error").await
    }

    /// Records a delivery; `false` if one with this id was recorded before.
    pub async fn add_delivery(&self, d: &Delivery) -> Result<bool> {
        let r = sqlx::query(&format!(
            "INSERT INTO deliveries ({DELIVERY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING"
        ))
        .bind(&d.id)
        .bind(&d.app)
        .bind(&d.event)
        .bind(&d.status)
        .bind(&d.result)
        .bind(d.received_at)
        .bind(d.finished_at)
        .execute(&self.pool)
        .await
        .map_err(db("record a delivery"))?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn delivery(&self, id: &str) -> Result<Option<Delivery>> {
        sqlx::query_as(&format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("find a delivery"))
    }

    /// An application's latest deliveries, newest first.
    pub async fn deliveries(&self, app: &str, limit: i64) -> Result<Vec<Delivery>> {
        sqlx::query_as(&format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE app = $1 ORDER BY received_at DESC, id LIMIT $2"))
            .bind(app)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db("list deliveries"))
    }

    /// Deliveries not yet handled, oldest first.
    pub async fn pending_deliveries(&self) -> Result<Vec<Delivery>> {
        sqlx::query_as(&format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE status = 'pending' ORDER BY received_at, id"))
            .fetch_all(&self.pool)
            .await
            .map_err(db("list pending deliveries"))
    }

    pub async fn finish_delivery(&self, id: &str, status: &str, result: &str) -> Result<()> {
        sqlx::query("UPDATE deliveries SET status = $2, result = $3, finished_at = $4 WHERE id = $1")
            .bind(id)
            .bind(status)
            .bind(result)
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(db("finish a delivery"))?;
        Ok(())
    }

    /// Forgets handled deliveries received before `before` (ms); their ids may then repeat.
    pub async fn prune_deliveries(&self, before: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM deliveries WHERE status <> 'pending' AND received_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(db("prune deliveries"))?;
        Ok(r.rows_affected())
    }

    /// The commits last seen for an application's branches and tags (`refs/heads/...`,
    /// `refs/tags/...`).
    pub async fn git_heads(&self, app: &str) -> Result<Vec<(String, String)>> {
        sqlx::query_as("SELECT ref_name, commit_sha FROM git_heads WHERE app = $1 ORDER BY ref_name")
            .bind(app)
            .fetch_all(&self.pool)
            .await
            .map_err(db("list git heads"))
    }

    /// Records the commit a ref points to; returns the one recorded before.
    pub async fn set_git_head(&self, app: &str, ref_name: &str, commit: &str) -> Result<Option<String>> {
        let mut tx = self.pool.begin().await.map_err(db("begin"))?;
        let before: Option<(String,)> = sqlx::query_as("SELECT commit_sha FROM git_heads WHERE app = $1 AND ref_name = $2")
            .bind(app)
            .bind(ref_name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("read a git head"))?;
        sqlx::query(
            "INSERT INTO git_heads (app, ref_name, commit_sha) VALUES ($1, $2, $3) \
             ON CONFLICT (app, ref_name) DO UPDATE SET commit_sha = excluded.commit_sha",
        )
        .bind(app)
        .bind(ref_name)
        .bind(commit)
        .execute(&mut *tx)
        .await
        .map_err(db("record a git head"))?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(before.map(|b| b.0))
    }

    pub async fn pr_comment(&self, app: &str, pull_request: &str) -> Result<Option<String>> {
        let r: Option<(String,)> = sqlx::query_as("SELECT comment_id FROM pr_comments WHERE app = $1 AND pull_request = $2")
            .bind(app)
            .bind(pull_request)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("find a pull-request comment"))?;
        Ok(r.map(|r| r.0))
    }

    pub async fn set_pr_comment(&self, app: &str, pull_request: &str, comment_id: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO pr_comments (app, pull_request, comment_id) VALUES ($1, $2, $3) \
             ON CONFLICT (app, pull_request) DO UPDATE SET comment_id = excluded.comment_id",
        )
        .bind(app)
        .bind(pull_request)
        .bind(comment_id)
        .execute(&self.pool)
        .await
        .map_err(db("record a pull-request comment"))?;
        Ok(())
    }
}
