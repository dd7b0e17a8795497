//! MariaDB and MySQL. No template databases here: the snapshot is `mariadb-dump | mariadb` into a
//! database of its own, and every clone is a dump of the snapshot loaded into a new database,
//! with a login granted that database alone. That copy costs as much as a restore, which is why
//! it happens ahead of time, in the pool.

use crate::{CloneSpec, DatabaseServer, DatasetError, Dsn, Objects, Result, finished, quote_ident};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{Connection, Row};
use std::io::Write;
use std::process::Stdio;
use tokio::process::Command;

pub struct MariadbServer {
    admin: Dsn,
}

fn ident(s: &str) -> String {
    quote_ident(s, '`')
}

/// `'x'` as an SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// An option file holding a password (0600, removed when dropped): passwords never go on a
/// command line, where any user of the machine could read them.
fn option_file(password: &str) -> Result<tempfile::NamedTempFile> {
    let spawn = |source| DatasetError::Spawn { tool: "mariadb", source };
    let mut f = tempfile::Builder::new().prefix("offshoot-my-").tempfile().map_err(spawn)?;
    let escaped = password.replace('\\', "\\\\").replace('"', "\\\"");
    writeln!(f, "[client]\npassword=\"{escaped}\"").map_err(spawn)?;
    f.flush().map_err(spawn)?;
    Ok(f)
}

fn client(tool: &str, opts: &tempfile::NamedTempFile, d: &Dsn) -> Command {
    let mut c = Command::new(tool);
    c.arg(format!("--defaults-extra-file={}", opts.path().display()))
        .arg("--protocol=TCP")
        .arg(format!("--host={}", d.host))
        .arg(format!("--port={}", d.port))
        .arg(format!("--user={}", d.user))
        .kill_on_drop(true);
    c
}

impl MariadbServer {
    pub fn new(admin: Dsn) -> Self {
        MariadbServer { admin }
    }

    fn sql_err(&self, operation: impl Into<String>) -> impl FnOnce(sqlx::Error) -> DatasetError {
        crate::sql_error(&self.admin, operation)
    }

    async fn connect(&self) -> Result<MySqlConnection> {
        let opts = MySqlConnectOptions::new()
            .host(&self.admin.host)
            .port(self.admin.port)
            .username(&self.admin.user)
            .password(self.admin.password());
        crate::connect_within(&self.admin, format!("connect as `{}`", self.admin.user), MySqlConnection::connect_with(&opts)).await
    }

    /// Runs statements over the simple query protocol (several at once, no preparation).
    async fn exec(&self, conn: &mut MySqlConnection, sql: &str, operation: &str) -> Result<()> {
        sqlx::Executor::execute(&mut *conn, sql).await.map_err(self.sql_err(operation))?;
        Ok(())
    }

    /// `mariadb-dump FROM | mariadb INTO`.
    async fn copy(&self, from: &Dsn, from_db: &str, into_db: &str) -> Result<()> {
        let from_opts = option_file(from.password())?;
        let into_opts = option_file(self.admin.password())?;
        let mut dump = client("mariadb-dump", &from_opts, from)
            .args(["--single-transaction", "--routines", "--triggers", "--events", "--hex-blob", "--skip-lock-tables"])
            .arg(from_db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| DatasetError::Spawn { tool: "mariadb-dump", source })?;
        let piped: Stdio = dump
            .stdout
            .take()
            .ok_or_else(|| DatasetError::Spawn { tool: "mariadb-dump", source: std::io::Error::other("no output pipe") })?
            .try_into()
            .map_err(|source| DatasetError::Spawn { tool: "mariadb-dump", source })?;
        let load = client("mariadb", &into_opts, &self.admin)
            .arg(format!("--database={into_db}"))
            .stdin(piped)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| DatasetError::Spawn { tool: "mariadb", source })?;
        let (src, dst) = (from.server(), self.admin.server());
        let (d, l) = tokio::join!(finished(&src, "mariadb-dump", dump), finished(&dst, "mariadb", load));
        d?;
        l
    }
}

impl DatabaseServer for MariadbServer {
    async fn snapshot(&self, source: &Dsn, snapshot: &str, _owner: &str) -> Result<u64> {
        let src_db = source.database.as_deref().ok_or_else(|| DatasetError::Dsn("the source URL names no database".into()))?;
        let mut admin = self.connect().await?;
        self.exec(&mut admin, &format!("CREATE DATABASE {}", ident(snapshot)), "create the snapshot database").await?;
        self.copy(source, src_db, snapshot).await?;
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED) FROM information_schema.tables WHERE table_schema = ?",
        )
        .bind(snapshot)
        .fetch_one(&mut admin)
        .await
        .map_err(self.sql_err("measure the snapshot"))?;
        let _ = admin.close().await;
        Ok(u64::try_from(row.try_get::<i64, _>(0).unwrap_or(0)).unwrap_or(0))
    }

    async fn make_clone(&self, snapshot: &str, _owner: &str, c: &CloneSpec) -> Result<()> {
        let mut admin = self.connect().await?;
        let user = format!("{}@'%'", literal(&c.role));
        self.exec(&mut admin, &format!("CREATE USER {user} IDENTIFIED BY {}", literal(&c.password)), "create a clone's user").await?;
        self.exec(&mut admin, &format!("CREATE DATABASE {}", ident(&c.database)), "create a clone").await?;
        self.exec(&mut admin, &format!("GRANT ALL PRIVILEGES ON {}.* TO {user}", ident(&c.database)), "grant a clone to its user").await?;
        let _ = admin.close().await;
        self.copy(&self.admin, snapshot, &c.database).await
    }

    async fn drop_clone(&self, database: &str, role: &str) -> Result<()> {
        let mut admin = self.connect().await?;
        self.exec(&mut admin, &format!("DROP DATABASE IF EXISTS {}", ident(database)), "drop a clone").await?;
        self.exec(&mut admin, &format!("DROP USER IF EXISTS {}@'%'", literal(role)), "drop a clone's user").await?;
        let _ = admin.close().await;
        Ok(())
    }

    async fn drop_snapshot(&self, snapshot: &str, _owner: &str) -> Result<()> {
        let mut admin = self.connect().await?;
        self.exec(&mut admin, &format!("DROP DATABASE IF EXISTS {}", ident(snapshot)), "drop a snapshot").await?;
        let _ = admin.close().await;
        Ok(())
    }

    async fn drop_role(&self, role: &str) -> Result<()> {
        let mut admin = self.connect().await?;
        self.exec(&mut admin, &format!("DROP USER IF EXISTS {}@'%'", literal(role)), "drop a user").await?;
        let _ = admin.close().await;
        Ok(())
    }

    async fn objects(&self, prefix: &str) -> Result<Objects> {
        let mut admin = self.connect().await?;
        let names = |rows: Vec<sqlx::mysql::MySqlRow>| {
            let mut v: Vec<String> = rows
                .iter()
                .filter_map(|r| r.try_get::<Vec<u8>, _>(0).ok().map(|b| String::from_utf8_lossy(&b).into_owned()))
                .filter(|n| n.starts_with(prefix))
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let databases = sqlx::query("SELECT CAST(schema_name AS BINARY) FROM information_schema.schemata")
            .fetch_all(&mut admin)
            .await
            .map_err(self.sql_err("list databases"))?;
        let roles =
            sqlx::query("SELECT CAST(user AS BINARY) FROM mysql.user").fetch_all(&mut admin).await.map_err(self.sql_err("list users"))?;
        let _ = admin.close().await;
        Ok(Objects { databases: names(databases), roles: names(roles) })
    }
}
