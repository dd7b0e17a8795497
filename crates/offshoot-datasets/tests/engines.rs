//! The engines against the real PostgreSQL and MariaDB servers that `scripts/services` starts:
//! snapshot, clone, each clone's login reaches its own database and no other, drop, and the
//! objects listing the reconciler relies on.

use offshoot_datasets::{CloneSpec, DatabaseServer, Dsn, Names, Server, new_password, random_hex};
use sqlx::Connection;

const PG_ADMIN: &str = "postgres://offshoot:offshoot@127.0.0.1:5432/postgres";
const MY_ADMIN: &str = "mysql://offshoot:offshoot@127.0.0.1:3306";

async fn pg_exec(url: &str, sql: &str) {
    let mut c = sqlx::PgConnection::connect(url).await.expect("connect to PostgreSQL");
    sqlx::Executor::execute(&mut c, sql).await.expect(sql);
}

async fn my_exec(url: &str, sql: &str) {
    let mut c = sqlx::MySqlConnection::connect(url).await.expect("connect to MariaDB");
    sqlx::Executor::execute(&mut c, sql).await.expect(sql);
}

fn clone_spec(names: &Names) -> CloneSpec {
    let name = names.clone_name();
    CloneSpec { database: name.clone(), role: name, password: new_password() }
}

#[tokio::test]
async fn postgres_snapshot_and_clones() {
    let admin = Dsn::parse(PG_ADMIN).expect("admin url");
    let server = Server::new(&admin);
    let names = Names::new(&random_hex(8));
    let src = format!("engines_src_{}", random_hex(4));
    pg_exec(PG_ADMIN, &format!("CREATE DATABASE {src}")).await;
    let src_url = format!("postgres://offshoot:offshoot@127.0.0.1:5432/{src}");
    pg_exec(
        &src_url,
        "CREATE TABLE artists (id serial PRIMARY KEY, name text NOT NULL); INSERT INTO artists (name) VALUES ('Nina'), ('Miles'), ('Ella');
         CREATE VIEW loud AS SELECT upper(name) AS name FROM artists;",
    )
    .await;

    let (snap, owner) = (names.snapshot_name(), names.owner_name());
    let size = server.snapshot(&Dsn::parse(&src_url).expect("src"), &snap, &owner).await.expect("snapshot");
    assert!(size > 0);
    let (a, b) = (clone_spec(&names), clone_spec(&names));
    server.make_clone(&snap, &owner, &a).await.expect("clone a");
    server.make_clone(&snap, &owner, &b).await.expect("clone b");

    // Each login owns its clone: it reads, writes and alters it (a migration would).
    let url = |c: &CloneSpec, db: &str| format!("postgres://{}:{}@127.0.0.1:5432/{db}", c.role, c.password);
    let mut ca = sqlx::PgConnection::connect(&url(&a, &a.database)).await.expect("a connects to its clone");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM artists").fetch_one(&mut ca).await.expect("read");
    assert_eq!(n, 3);
    sqlx::Executor::execute(&mut ca, "ALTER TABLE artists ADD COLUMN born int; INSERT INTO artists (name) VALUES ('Dizzy')")
        .await
        .expect("the clone's login owns its tables");
    let loud: String = sqlx::query_scalar("SELECT name FROM loud ORDER BY name LIMIT 1").fetch_one(&mut ca).await.expect("view");
    assert_eq!(loud, "DIZZY");
    // Clones are independent, and a login reaches no other clone.
    let mut cb = sqlx::PgConnection::connect(&url(&b, &b.database)).await.expect("b connects");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM artists").fetch_one(&mut cb).await.expect("read b");
    assert_eq!(n, 3, "b does not see a's insert");
    let err = sqlx::PgConnection::connect(&url(&a, &b.database)).await.expect_err("a cannot connect to b");
    assert!(err.to_string().contains("permission denied"), "{err}");
    let _ = ca.close().await;
    let _ = cb.close().await;

    let objects = server.objects(names.prefix()).await.expect("objects");
    assert_eq!(objects.databases.len(), 3, "{objects:?}");
    assert_eq!(objects.roles.len(), 3, "two logins and the owner: {objects:?}");

    server.drop_clone(&a.database, &a.role).await.expect("drop a");
    server.drop_clone(&a.database, &a.role).await.expect("dropping again is fine");
    server.drop_snapshot(&snap, &owner).await.expect("drop the snapshot while b lives on");
    let mut cb = sqlx::PgConnection::connect(&url(&b, &b.database)).await.expect("b outlives its snapshot");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM artists").fetch_one(&mut cb).await.expect("read b");
    assert_eq!(n, 3);
    let _ = cb.close().await;
    server.drop_clone(&b.database, &b.role).await.expect("drop b");
    assert_eq!(server.objects(names.prefix()).await.expect("objects"), Default::default());
    pg_exec(PG_ADMIN, &format!("DROP DATABASE {src} WITH (FORCE)")).await;
}

/// A session the admin may not end (an autovacuum worker's, in real life; here a superuser's that
/// lasts under a second) makes `DROP DATABASE ... WITH (FORCE)` fail for a non-superuser: the
/// drop ends what it may and retries until the database is free.
#[tokio::test]
async fn postgres_drop_waits_out_a_session_it_may_not_end() {
    let admin = Dsn::parse(PG_ADMIN).expect("admin url");
    let server = Server::new(&admin);
    let names = Names::new(&random_hex(8));
    let src = format!("engines_src_{}", random_hex(4));
    pg_exec(PG_ADMIN, &format!("CREATE DATABASE {src}")).await;
    let (snap, owner) = (names.snapshot_name(), names.owner_name());
    server
        .snapshot(&Dsn::parse(&format!("postgres://offshoot:offshoot@127.0.0.1:5432/{src}")).expect("src"), &snap, &owner)
        .await
        .expect("snapshot");
    let c = clone_spec(&names);
    server.make_clone(&snap, &owner, &c).await.expect("clone");
    let busy = std::process::Command::new("su")
        .args(["postgres", "-c", &format!("psql -q -d {} -c 'SELECT pg_sleep(0.8)'", c.database)])
        .spawn()
        .expect("a superuser session (run as root)");
    let mut probe = sqlx::PgConnection::connect(PG_ADMIN).await.expect("connect");
    for _ in 0..100 {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
            .bind(&c.database)
            .fetch_one(&mut probe)
            .await
            .expect("activity");
        if n > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let started = std::time::Instant::now();
    server.drop_clone(&c.database, &c.role).await.expect("dropped once the session ended");
    assert!(started.elapsed() >= std::time::Duration::from_millis(200), "the forced drop did not meet the session");
    let _ = busy.wait_with_output();
    server.drop_snapshot(&snap, &owner).await.expect("drop the snapshot");
    assert_eq!(server.objects(names.prefix()).await.expect("objects"), Default::default());
    pg_exec(PG_ADMIN, &format!("DROP DATABASE {src} WITH (FORCE)")).await;
}

#[tokio::test]
async fn mariadb_snapshot_and_clones() {
    let admin = Dsn::parse(MY_ADMIN).expect("admin url");
    let server = Server::new(&admin);
    let names = Names::new(&random_hex(8));
    let src = format!("engines_src_{}", random_hex(4));
    my_exec(MY_ADMIN, &format!("CREATE DATABASE {src}")).await;
    let src_url = format!("mysql://offshoot:offshoot@127.0.0.1:3306/{src}");
    my_exec(&src_url, "CREATE TABLE artists (id int AUTO_INCREMENT PRIMARY KEY, name varchar(40) NOT NULL)").await;
    my_exec(&src_url, "INSERT INTO artists (name) VALUES ('Nina'), ('Miles'), ('Ella')").await;

    let snap = names.snapshot_name();
    server.snapshot(&Dsn::parse(&src_url).expect("src"), &snap, "").await.expect("snapshot");
    let (a, b) = (clone_spec(&names), clone_spec(&names));
    server.make_clone(&snap, "", &a).await.expect("clone a");
    server.make_clone(&snap, "", &b).await.expect("clone b");
    let url = |c: &CloneSpec, db: &str| format!("mysql://{}:{}@127.0.0.1:3306/{db}", c.role, c.password);
    let mut ca = sqlx::MySqlConnection::connect(&url(&a, &a.database)).await.expect("a connects");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM artists").fetch_one(&mut ca).await.expect("read");
    assert_eq!(n, 3);
    sqlx::Executor::execute(&mut ca, "ALTER TABLE artists ADD COLUMN born int").await.expect("alter");
    let _ = ca.close().await;
    assert!(sqlx::MySqlConnection::connect(&url(&a, &b.database)).await.is_err(), "a cannot reach b");

    let objects = server.objects(names.prefix()).await.expect("objects");
    assert_eq!((objects.databases.len(), objects.roles.len()), (3, 2), "{objects:?}");
    server.drop_clone(&a.database, &a.role).await.expect("drop a");
    server.drop_clone(&b.database, &b.role).await.expect("drop b");
    server.drop_snapshot(&snap, "").await.expect("drop the snapshot");
    assert_eq!(server.objects(names.prefix()).await.expect("objects"), Default::default());
    my_exec(MY_ADMIN, &format!("DROP DATABASE {src}")).await;
}
