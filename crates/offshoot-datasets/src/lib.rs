//! Instant Datasets: a snapshot of a user's database, frozen on a database server Offshoot
//! manages, and a pool of clones made from it ahead of time, each with its own login and random
//! password, so that an environment checks one out in constant time whatever the data size.
//!
//! This crate knows the database engines and nothing of the control plane: `Dsn` (a validated
//! database URL that never prints its password), the pure helpers (names, variables, schedules,
//! durations), and `DatabaseServer`, the narrow trait the engines implement: PostgreSQL
//! (`pg_dump | pg_restore` into a template database, clones by `CREATE DATABASE ... TEMPLATE`)
//! and MariaDB/MySQL (`mariadb-dump | mariadb` for the snapshot and for every clone).

mod mysql;
mod postgres;

use std::fmt;
use std::future::Future;

pub use mysql::MariadbServer;
pub use postgres::PostgresServer;

/// A database engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Mariadb,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::Mariadb => "mariadb",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "postgres" => Some(Kind::Postgres),
            "mariadb" => Some(Kind::Mariadb),
            _ => None,
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Kind::Postgres => 5432,
            Kind::Mariadb => 3306,
        }
    }

    /// The scheme of the URLs given to environments.
    fn url_scheme(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::Mariadb => "mysql",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    #[error("invalid database URL: {0}")]
    Dsn(String),
    #[error("{server}: cannot {operation}: {source}")]
    Sql {
        server: String,
        operation: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{server}: `{tool}` failed ({status}): {stderr}")]
    Tool { server: String, tool: &'static str, status: String, stderr: String },
    #[error("cannot run `{tool}` (is it installed?): {source}")]
    Spawn {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, DatasetError>;

/// Longest database URL accepted.
const MAX_DSN: usize = 2048;

/// A database server's address and login (and, for a source, the database), from a URL such as
/// `postgres://user:pass@host:5432/app` or `mysql://user:pass@host/app` (`mariadb://` too).
/// `Debug` and `redacted` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    pub kind: Kind,
    pub host: String,
    pub port: u16,
    pub user: String,
    password: String,
    pub database: Option<String>,
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn decode(s: &str, what: &str) -> Result<String> {
    let bytes: Vec<u8> = url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())
        .unwrap_or_default();
    let v = String::from_utf8(bytes).map_err(|_| DatasetError::Dsn(format!("the {what} is not UTF-8")))?;
    if v.chars().any(char::is_control) {
        return Err(DatasetError::Dsn(format!("the {what} contains a control character")));
    }
    Ok(v)
}

impl Dsn {
    pub fn parse(s: &str) -> Result<Dsn> {
        if s.len() > MAX_DSN {
            return Err(DatasetError::Dsn(format!("longer than {MAX_DSN} characters")));
        }
        let u = url::Url::parse(s).map_err(|e| DatasetError::Dsn(e.to_string()))?;
        let kind = match u.scheme() {
            "postgres" | "postgresql" => Kind::Postgres,
            "mysql" | "mariadb" => Kind::Mariadb,
            other => {
                return Err(DatasetError::Dsn(format!("unsupported scheme `{other}`: use postgres://, mysql:// or mariadb://")));
            }
        };
        let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(|| DatasetError::Dsn("no host".into()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let user = decode(u.username(), "user name")?;
        if user.is_empty() {
            return Err(DatasetError::Dsn("no user name (postgres://USER:PASSWORD@HOST/DB)".into()));
        }
        let password = decode(u.password().unwrap_or(""), "password")?;
        let path = u.path().trim_start_matches('/');
        if path.contains('/') {
            return Err(DatasetError::Dsn(format!("`{path}` is not a database name")));
        }
        let database = if path.is_empty() { None } else { Some(decode(path, "database name")?) };
        if database.as_ref().is_some_and(|d| d.len() > 63) {
            return Err(DatasetError::Dsn("the database name is longer than 63 characters".into()));
        }
        Ok(Dsn { kind, host, port: u.port().unwrap_or(kind.default_port()), user, password, database })
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// The URL with its password masked.
    pub fn redacted(&self) -> String {
        self.url_with(if self.password.is_empty() { None } else { Some("***") })
    }

    /// The full URL, password included: a secret.
    pub fn expose_url(&self) -> String {
        self.url_with(Some(&self.password))
    }

    fn url_with(&self, password: Option<&str>) -> String {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20");
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let login = match password {
            Some("***") => format!("{}:***", enc(&self.user)),
            Some(p) => format!("{}:{}", enc(&self.user), enc(p)),
            None => enc(&self.user),
        };
        let db = self.database.as_deref().map(enc).unwrap_or_default();
        format!("{}://{login}@{host}:{}/{db}", self.kind.url_scheme(), self.port)
    }

    pub fn with_database(&self, database: Option<&str>) -> Dsn {
        Dsn { database: database.map(str::to_owned), ..self.clone() }
    }

    /// Whether the server is this machine's loopback (containers reach it through the host).
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// Where the server is, for messages: `host:port`.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Generates and recognizes the names of the databases and roles one Offshoot server makes:
/// `ods_<instance>_<kind letter><random>`, so that servers sharing a database server never touch
/// each other's objects, and the reconciler finds its own.
#[derive(Clone, Debug)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(instance: &str) -> Names {
        let safe: String = instance.chars().filter(char::is_ascii_alphanumeric).take(16).collect::<String>().to_ascii_lowercase();
        Names { prefix: format!("ods_{safe}_") }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn fresh(&self, letter: char) -> String {
        format!("{}{letter}{}", self.prefix, random_hex(6))
    }

    /// A clone's database (its login has the same name).
    pub fn clone_name(&self) -> String {
        self.fresh('c')
    }

    pub fn snapshot_name(&self) -> String {
        self.fresh('s')
    }

    /// The role that owns a snapshot's objects (PostgreSQL).
    pub fn owner_name(&self) -> String {
        self.fresh('o')
    }
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // The OS random source does not fail on Linux once booted; an all-zero buffer would only
    // make a name collide, which creating it then reports.
    let _ = getrandom::fill(&mut buf);
    hex::encode(buf)
}

/// A new clone's password: 24 random bytes, hex (safe in every quoting context).
pub fn new_password() -> String {
    random_hex(24)
}

/// A clone to make.
#[derive(Clone)]
pub struct CloneSpec {
    pub database: String,
    /// The login, named like the database.
    pub role: String,
    pub password: String,
}

impl fmt::Debug for CloneSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloneSpec").field("database", &self.database).field("role", &self.role).finish_non_exhaustive()
    }
}

/// Databases and roles found on a server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Objects {
    pub databases: Vec<String>,
    pub roles: Vec<String>,
}

/// What a database engine does for the pools. Every operation is idempotent where it removes.
pub trait DatabaseServer: Send + Sync {
    /// Copies database `source` into a new database `snapshot` on this server (its objects owned
    /// by `owner`, where the engine has owners) and freezes it; returns its size in bytes.
    fn snapshot(&self, source: &Dsn, snapshot: &str, owner: &str) -> impl Future<Output = Result<u64>> + Send;
    /// Makes a clone of `snapshot`: a database and a login that owns it and can reach nothing else.
    fn make_clone(&self, snapshot: &str, owner: &str, clone: &CloneSpec) -> impl Future<Output = Result<()>> + Send;
    fn drop_clone(&self, database: &str, role: &str) -> impl Future<Output = Result<()>> + Send;
    fn drop_snapshot(&self, snapshot: &str, owner: &str) -> impl Future<Output = Result<()>> + Send;
    fn drop_role(&self, role: &str) -> impl Future<Output = Result<()>> + Send;
    /// The databases and roles whose names start with `prefix`.
    fn objects(&self, prefix: &str) -> impl Future<Output = Result<Objects>> + Send;
}

/// A server of either engine.
pub enum Server {
    Postgres(PostgresServer),
    Mariadb(MariadbServer),
}

impl Server {
    /// The server named by `admin` (a login allowed to create databases and roles).
    pub fn new(admin: &Dsn) -> Server {
        match admin.kind {
            Kind::Postgres => Server::Postgres(PostgresServer::new(admin.clone())),
            Kind::Mariadb => Server::Mariadb(MariadbServer::new(admin.clone())),
        }
    }
}

impl DatabaseServer for Server {
    async fn snapshot(&self, source: &Dsn, snapshot: &str, owner: &str) -> Result<u64> {
        match self {
            Server::Postgres(s) => s.snapshot(source, snapshot, owner).await,
            Server::Mariadb(s) => s.snapshot(source, snapshot, owner).await,
        }
    }
    async fn make_clone(&self, snapshot: &str, owner: &str, clone: &CloneSpec) -> Result<()> {
        match self {
            Server::Postgres(s) => s.make_clone(snapshot, owner, clone).await,
            Server::Mariadb(s) => s.make_clone(snapshot, owner, clone).await,
        }
    }
    async fn drop_clone(&self, database: &str, role: &str) -> Result<()> {
        match self {
            Server::Postgres(s) => s.drop_clone(database, role).await,
            Server::Mariadb(s) => s.drop_clone(database, role).await,
        }
    }
    async fn drop_snapshot(&self, snapshot: &str, owner: &str) -> Result<()> {
        match self {
            Server::Postgres(s) => s.drop_snapshot(snapshot, owner).await,
            Server::Mariadb(s) => s.drop_snapshot(snapshot, owner).await,
        }
    }
    async fn drop_role(&self, role: &str) -> Result<()> {
        match self {
            Server::Postgres(s) => s.drop_role(role).await,
            Server::Mariadb(s) => s.drop_role(role).await,
        }
    }
    async fn objects(&self, prefix: &str) -> Result<Objects> {
        match self {
            Server::Postgres(s) => s.objects(prefix).await,
            Server::Mariadb(s) => s.objects(prefix).await,
        }
    }
}

/// A dataset name: 1 to 40 of `a-z`, `0-9`, `-`, starting with a letter or digit (it becomes a
/// variable prefix: upper-cased, `-` → `_`).
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if ok { Ok(()) } else { Err(format!("`{name}` is not a dataset name: use 1 to 40 of a-z, 0-9 and `-`, not starting with `-`")) }
}

/// A checked-out clone as an environment sees it.
pub struct Attached<'a> {
    pub dataset: &'a str,
    pub kind: Kind,
    /// The server's host as containers reach it.
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
    pub user: &'a str,
    pub password: &'a str,
}

/// The variables an environment gets for an attached clone: `(name, value, secret)`, named by
/// `offshoot_template::resolve::dataset_variables`.
pub fn variables(a: &Attached<'_>) -> Vec<(String, String, bool)> {
    use offshoot_template::resolve::DatasetField;
    let url = Dsn {
        kind: a.kind,
        host: a.host.to_owned(),
        port: a.port,
        user: a.user.to_owned(),
        password: a.password.to_owned(),
        database: Some(a.database.to_owned()),
    }
    .expose_url();
    offshoot_template::resolve::dataset_variables(a.dataset)
        .into_iter()
        .map(|(name, field)| {
            let value = match field {
                DatasetField::Host => a.host.to_owned(),
                DatasetField::Port => a.port.to_string(),
                DatasetField::Name => a.database.to_owned(),
                DatasetField::User => a.user.to_owned(),
                DatasetField::Pass => a.password.to_owned(),
                DatasetField::Url => url.clone(),
            };
            (name, value, field.is_secret())
        })
        .collect()
}

/// A refresh schedule (five cron fields, UTC), the same as cron jobs'.
pub use offshoot_template::schedule::Schedule;

/// A duration such as `72h`, `30m`, `7d`, `1h30m` or `3600` (seconds), at most ten years.
pub fn parse_duration(s: &str) -> std::result::Result<u64, String> {
    let bad = || format!("`{s}` is not a duration: write a number with s, m, h, d or w, e.g. `72h` or `1h30m`");
    let s2 = s.trim();
    if s2.is_empty() {
        return Err(bad());
    }
    if let Ok(n) = s2.parse::<u64>() {
        return if n <= 10 * 365 * 86_400 { Ok(n) } else { Err(format!("`{s}` is longer than ten years")) };
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s2.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        total = total.checked_add(n.checked_mul(unit).ok_or_else(bad)?).ok_or_else(bad)?;
    }
    if !num.is_empty() {
        return Err(bad());
    }
    if total > 10 * 365 * 86_400 {
        return Err(format!("`{s}` is longer than ten years"));
    }
    Ok(total)
}

/// Maps an sqlx error to one naming the server and what was being done.
fn sql_error(server: &Dsn, operation: impl Into<String>) -> impl FnOnce(sqlx::Error) -> DatasetError {
    let server = server.server();
    let operation = operation.into();
    move |source| DatasetError::Sql { server, operation, source }
}

/// A connection attempt, given up after 15 seconds.
async fn connect_within<C>(server: &Dsn, what: String, connect: impl Future<Output = std::result::Result<C, sqlx::Error>>) -> Result<C> {
    match tokio::time::timeout(std::time::Duration::from_secs(15), connect).await {
        Ok(r) => r.map_err(sql_error(server, what)),
        Err(_) => Err(sql_error(server, what)(sqlx::Error::PoolTimedOut)),
    }
}

/// Quotes an SQL identifier (`"x"` on PostgreSQL).
fn quote_ident(s: &str, quote: char) -> String {
    let q = quote.to_string();
    format!("{quote}{}{quote}", s.replace(quote, &q.repeat(2)))
}

/// Reads a child process to its end; an error carries its exit status and the end of stderr.
async fn finished(server: &str, tool: &'static str, child: tokio::process::Child) -> Result<()> {
    let out = child.wait_with_output().await.map_err(|source| DatasetError::Spawn { tool, source })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    Err(DatasetError::Tool {
        server: server.to_owned(),
        tool,
        status: out.status.to_string(),
        stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_print_the_password() {
        let d = Dsn::parse("postgres://app:s%40cret@db.internal:6543/shop").expect("parses");
        assert_eq!(
            (d.kind, d.host.as_str(), d.port, d.user.as_str(), d.password()),
            (Kind::Postgres, "db.internal", 6543, "app", "s@cret")
        );
        assert_eq!(d.database.as_deref(), Some("shop"));
        assert_eq!(format!("{d:?}"), "postgres://app:***@db.internal:6543/shop");
        assert!(!d.redacted().contains("cret"));
        assert_eq!(Dsn::parse(&d.expose_url()).expect("round trip"), d);
        let m = Dsn::parse("mariadb://root@127.0.0.1/app").expect("parses");
        assert_eq!((m.kind, m.port), (Kind::Mariadb, 3306));
        assert!(m.is_loopback());
        for bad in ["http://x/y", "postgres:///db", "postgres://host/db", "postgres://u@h/a/b", "not a url"] {
            assert!(Dsn::parse(bad).is_err(), "{bad}");
        }
        assert!(Dsn::parse(&format!("postgres://u@h/{}", "a".repeat(3000))).is_err());
    }

    #[test]
    fn variables_follow_release_names() {
        let a = Attached {
            dataset: "shop-data",
            kind: Kind::Postgres,
            host: "host.docker.internal",
            port: 5432,
            database: "ods_x_c1",
            user: "ods_x_c1",
            password: "pw",
        };
        let v = variables(&a);
        let get = |k: &str| v.iter().find(|(n, _, _)| n == k).map(|(_, v, s)| (v.as_str(), *s));
        assert_eq!(get("SHOP_DATA_DB_HOST"), Some(("host.docker.internal", false)));
        assert_eq!(get("SHOP_DATA_DB_PASS"), Some(("pw", true)));
        assert_eq!(get("SHOP_DATA_DB_URL"), Some(("postgres://ods_x_c1:pw@host.docker.internal:5432/ods_x_c1", true)));
        assert_eq!(get("SHOP_DATA_RDS_DB_POOL_USER"), Some(("ods_x_c1", false)));
        assert_eq!(v.len(), 9);
    }

    #[test]
    fn names_are_scoped_to_the_instance() {
        let n = Names::new("00ff\"; DROP");
        assert_eq!(n.prefix(), "ods_00ffdrop_");
        let c = n.clone_name();
        assert!(c.starts_with("ods_00ffdrop_c") && c.len() == "ods_00ffdrop_c".len() + 12, "{c}");
        assert_ne!(n.clone_name(), c);
        assert!(check_name("artists").is_ok() && check_name("my-db2").is_ok());
        for bad in ["", "-x", "Has", "a_b", &"a".repeat(41)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_and_schedules() {
        assert_eq!(parse_duration("72h"), Ok(72 * 3600));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("45"), Ok(45));
        for bad in ["", "h", "3x", "1h3", "999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let s = Schedule::parse("0 3 * * *").expect("parses");
        // 2026-11-27T12:00:00Z → the next 03:00 is 2026-11-28T03:00:00Z.
        let noon = 1_795_780_800_000;
        assert_eq!(s.next_after(noon), Some(noon + 15 * 3_600_000));
        assert!(Schedule::parse("0 3 * *").is_err());
        assert!(Schedule::parse("0 25 * * *").is_err());
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b", '"'), "\"a\"\"b\"");
        assert_eq!(quote_ident("a`b", '`'), "`a``b`");
    }
}
