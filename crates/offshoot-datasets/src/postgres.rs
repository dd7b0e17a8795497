//! PostgreSQL. The snapshot is `pg_dump | pg_restore` into a database whose objects a dedicated
//! role owns (`--no-owner --role`), frozen as a template (`ALLOW_CONNECTIONS false`); a clone is
//! `CREATE DATABASE ... TEMPLATE` (a file copy, no replay of the data) owned by the clone's login,
//! which then takes over the objects (`REASSIGN OWNED`), and `CONNECT` is revoked from `PUBLIC`
//! so that no other login reaches it. A template copy of the user's database itself would need
//! it idle (no session may be connected to a template while it is copied) and would keep its
//! owners, so the snapshot always goes through a dump.

use crate::{CloneSpec, DatabaseServer, DatasetError, Dsn, Objects, Result, finished, quote_ident};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};
use std::process::Stdio;
use tokio::process::Command;

pub struct PostgresServer {
    admin: Dsn,
}

fn ident(s: &str) -> String {
    quote_ident(s, '"')
}

/// A libpq conninfo value, quoted.
fn conninfo_value(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `host=... port=... user=... dbname=...` for the command-line tools (the password goes in
/// `PGPASSWORD`, never on a command line).
fn conninfo(d: &Dsn, database: &str) -> String {
    format!(
        "host={} port={} user={} dbname={} connect_timeout=10",
        conninfo_value(&d.host),
        d.port,
        conninfo_value(&d.user),
        conninfo_value(database)
    )
}

impl PostgresServer {
    pub fn new(admin: Dsn) -> Self {
        PostgresServer { admin }
    }

    fn maintenance_db(&self) -> &str {
        self.admin.database.as_deref().unwrap_or("postgres")
    }

    fn sql_err(&self, operation: impl Into<String>) -> impl FnOnce(sqlx::Error) -> DatasetError {
        crate::sql_error(&self.admin, operation)
    }

    async fn connect(&self, database: &str) -> Result<PgConnection> {
        let opts = PgConnectOptions::new()
            .host(&self.admin.host)
            .port(self.admin.port)
            .username(&self.admin.user)
            .password(self.admin.password())
            .database(database)
            .application_name("offshoot-datasets");
        crate::connect_within(&self.admin, format!("connect to `{database}` as `{}`", self.admin.user), PgConnection::connect_with(&opts))
            .await
    }

    /// Runs statements over the simple query protocol (several at once, no preparation).
    async fn exec(&self, conn: &mut PgConnection, sql: &str, operation: &str) -> Result<()> {
        sqlx::Executor::execute(&mut *conn, sql).await.map_err(self.sql_err(operation))?;
        Ok(())
    }

    /// `DROP DATABASE ... WITH (FORCE)`, which ends the sessions still connected. A login that
    /// is not a superuser may not end an autovacuum worker's session (PostgreSQL reports
    /// "must be a member of the role whose process is being terminated"): then the sessions of
    /// the logins it may act for are ended by hand and a plain `DROP DATABASE` cancels the
    /// autovacuum itself.
    async fn drop_database(&self, admin: &mut PgConnection, database: &str, operation: &str) -> Result<()> {
        let forced =
            sqlx::Executor::execute(&mut *admin, format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(database)).as_str()).await;
        let e = match forced {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let denied = e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "42501");
        if !denied {
            return Err(self.sql_err(operation)(e));
        }
        let mut last = e;
        for _ in 0..5 {
            sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND pg_has_role(usesysid, 'USAGE')")
                .bind(database)
                .fetch_all(&mut *admin)
                .await
                .map_err(self.sql_err(operation))?;
            match sqlx::Executor::execute(&mut *admin, format!("DROP DATABASE IF EXISTS {}", ident(database)).as_str()).await {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        Err(self.sql_err(operation)(last))
    }

    async fn exists(&self, conn: &mut PgConnection, database: &str) -> Result<bool> {
        let row = sqlx::query("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(database)
            .fetch_one(&mut *conn)
            .await
            .map_err(self.sql_err("list databases"))?;
        Ok(row.try_get::<i64, _>(0).unwrap_or(0) > 0)
    }
}

impl DatabaseServer for PostgresServer {
    async fn snapshot(&self, source: &Dsn, snapshot: &str, owner: &str) -> Result<u64> {
        let src_db = source.database.as_deref().ok_or_else(|| DatasetError::Dsn("the source URL names no database".into()))?;
        let mut admin = self.connect(self.maintenance_db()).await?;
        self.exec(&mut admin, &format!("CREATE ROLE {} NOLOGIN", ident(owner)), "create the snapshot's owner role").await?;
        self.exec(&mut admin, &format!("GRANT {} TO CURRENT_USER", ident(owner)), "join the snapshot's owner role").await?;
        self.exec(&mut admin, &format!("CREATE DATABASE {}", ident(snapshot)), "create the snapshot database").await?;
        self.exec(&mut admin, &format!("GRANT CREATE ON DATABASE {} TO {}", ident(snapshot), ident(owner)), "grant on the snapshot")
            .await?;
        {
            let mut snap = self.connect(snapshot).await?;
            self.exec(&mut snap, &format!("GRANT ALL ON SCHEMA public TO {}", ident(owner)), "grant on the snapshot's schema").await?;
            let _ = snap.close().await;
        }
        let mut dump = Command::new("pg_dump")
            .args(["--format=custom", "--no-owner", "--no-acl", "--dbname"])
            .arg(conninfo(source, src_db))
            .env("PGPASSWORD", source.password())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| DatasetError::Spawn { tool: "pg_dump", source })?;
        let piped: Stdio = dump
            .stdout
            .take()
            .ok_or_else(|| DatasetError::Spawn { tool: "pg_dump", source: std::io::Error::other("no output pipe") })?
            .try_into()
            .map_err(|source| DatasetError::Spawn { tool: "pg_dump", source })?;
        let restore = Command::new("pg_restore")
            .args(["--no-owner", "--no-acl", "--exit-on-error", "--role"])
            .arg(owner)
            .arg("--dbname")
            .arg(conninfo(&self.admin, snapshot))
            .env("PGPASSWORD", self.admin.password())
            .stdin(piped)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| DatasetError::Spawn { tool: "pg_restore", source })?;
        let (from, to) = (source.server(), self.admin.server());
        let (d, r) = tokio::join!(finished(&from, "pg_dump", dump), finished(&to, "pg_restore", restore));
        d?;
        r?;
        self.exec(
            &mut admin,
            &format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true", ident(snapshot)),
            "freeze the snapshot",
        )
        .await?;
        let row = sqlx::query("SELECT pg_database_size($1)")
            .bind(snapshot)
            .fetch_one(&mut admin)
            .await
            .map_err(self.sql_err("measure the snapshot"))?;
        let _ = admin.close().await;
        Ok(u64::try_from(row.try_get::<i64, _>(0).unwrap_or(0)).unwrap_or(0))
    }

    async fn make_clone(&self, snapshot: &str, owner: &str, c: &CloneSpec) -> Result<()> {
        if !c.password.chars().all(|ch| ch.is_ascii_alphanumeric()) {
            return Err(DatasetError::Dsn("a clone's password must be alphanumeric".into()));
        }
        let mut admin = self.connect(self.maintenance_db()).await?;
        let version: i64 = sqlx::query("SELECT current_setting('server_version_num')::bigint")
            .fetch_one(&mut admin)
            .await
            .map_err(self.sql_err("read the server version"))?
            .try_get(0)
            .unwrap_or(0);
        let role = ident(&c.role);
        self.exec(&mut admin, &format!("CREATE ROLE {role} LOGIN PASSWORD '{}' CONNECTION LIMIT 100", c.password), "create a clone's role")
            .await?;
        self.exec(&mut admin, &format!("GRANT {role} TO CURRENT_USER"), "join a clone's role").await?;
        // A file copy: no WAL replay of the whole database (PostgreSQL 15 and later).
        let strategy = if version >= 150_000 { " STRATEGY FILE_COPY" } else { "" };
        self.exec(
            &mut admin,
            &format!("CREATE DATABASE {} TEMPLATE {} OWNER {role}{strategy}", ident(&c.database), ident(snapshot)),
            "copy the snapshot",
        )
        .await?;
        self.exec(&mut admin, &format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", ident(&c.database)), "restrict a clone").await?;
        let _ = admin.close().await;
        let mut db = self.connect(&c.database).await?;
        self.exec(&mut db, &format!("REASSIGN OWNED BY {} TO {role}; DROP OWNED BY {}", ident(owner), ident(owner)), "hand a clone over")
            .await?;
        let _ = db.close().await;
        Ok(())
    }

    async fn drop_clone(&self, database: &str, role: &str) -> Result<()> {
        let mut admin = self.connect(self.maintenance_db()).await?;
        self.drop_database(&mut admin, database, "drop a clone").await?;
        self.exec(&mut admin, &format!("DROP ROLE IF EXISTS {}", ident(role)), "drop a clone's role").await?;
        let _ = admin.close().await;
        Ok(())
    }

    async fn drop_snapshot(&self, snapshot: &str, owner: &str) -> Result<()> {
        let mut admin = self.connect(self.maintenance_db()).await?;
        if self.exists(&mut admin, snapshot).await? {
            self.exec(&mut admin, &format!("ALTER DATABASE {} IS_TEMPLATE false", ident(snapshot)), "unfreeze a snapshot").await?;
            self.drop_database(&mut admin, snapshot, "drop a snapshot").await?;
        }
        if !owner.is_empty() {
            self.exec(&mut admin, &format!("DROP ROLE IF EXISTS {}", ident(owner)), "drop a snapshot's owner role").await?;
        }
        let _ = admin.close().await;
        Ok(())
    }

    async fn drop_role(&self, role: &str) -> Result<()> {
        let mut admin = self.connect(self.maintenance_db()).await?;
        self.exec(&mut admin, &format!("DROP ROLE IF EXISTS {}", ident(role)), "drop a role").await?;
        let _ = admin.close().await;
        Ok(())
    }

    async fn objects(&self, prefix: &str) -> Result<Objects> {
        let mut admin = self.connect(self.maintenance_db()).await?;
        let names = |rows: Vec<sqlx::postgres::PgRow>| rows.iter().filter_map(|r| r.try_get::<String, _>(0).ok()).collect::<Vec<_>>();
        let databases = sqlx::query("SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1")
            .bind(prefix)
            .fetch_all(&mut admin)
            .await
            .map_err(self.sql_err("list databases"))?;
        let roles = sqlx::query("SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1")
            .bind(prefix)
            .fetch_all(&mut admin)
            .await
            .map_err(self.sql_err("list roles"))?;
        let _ = admin.close().await;
        Ok(Objects { databases: names(databases), roles: names(roles) })
    }
}
