//! Faults the server survives, each with "nothing lost" checked: every environment ends ready,
//! or failed with its reason, and deleting it leaves no container, network or volume. The
//! engine's faults are played on an engine of the test's own (`support::engine`), restarted,
//! stopped or frozen while the machine's engine serves the other tests.

mod support;

use std::time::{Duration, Instant};
use support::engine::Engine;
use support::*;

/// A server on `engine`.
fn server_on(engine: &Engine) -> Server {
    Server::new_with_env(None, &["--network-pool", engine.pool()], &[("DOCKER_HOST", &engine.host())])
}

/// A ready environment of the example app on `s`, served by its router; its id.
fn ready_env(s: &Server, repo: &tempfile::TempDir) -> String {
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let e = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    assert_eq!(e["status"], "ready", "{e}");
    let id = e["id"].as_str().expect("id").to_owned();
    eventually(30, "the environment is served", || served(s, &format!("web-{id}.localhost")).then_some(()));
    id
}

fn served(s: &Server, host: &str) -> bool {
    http(s.router, host, "/").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
}

/// The environment's status and its services' statuses.
fn statuses(s: &Server, id: &str) -> (String, Vec<String>) {
    let e = s.json(&["env", "show", id]);
    let services = e["services"].as_array().into_iter().flatten().map(|s| format!("{}={}", s["name"], s["status"])).collect();
    (e["status"].as_str().unwrap_or_default().to_owned(), services)
}

/// Deletes the environment and checks the engine holds nothing of Offshoot's afterwards.
fn delete_leaves_nothing(s: &Server, engine: &Engine, id: &str) {
    let d = s.json(&["env", "delete", id, "--wait"]);
    assert_eq!(d["status"], "deleted", "{d}");
    let left = engine.offshoot_objects();
    assert!(left.is_empty(), "left on the engine after the delete: {left:?}");
}

/// The engine restarted while an environment idles: its containers come back (restart policy)
/// and the router serves them again within seconds. It used to answer 503 for minutes while
/// `env show` said ready: the events the engine sent while the server was not listening were
/// lost, and nothing read its state again.
#[test]
fn an_environment_is_served_again_soon_after_the_engine_restarts() {
    let mut engine = Engine::start("10.214.0.0/16");
    let s = server_on(&engine);
    let repo = shop_repo(|t| t);
    let id = ready_env(&s, &repo);
    let host = format!("web-{id}.localhost");

    engine.restart();
    let back = Instant::now();
    eventually(30, "served again after the engine restarted", || served(&s, &host).then_some(()));
    let took = back.elapsed();
    assert!(took < Duration::from_secs(30), "{took:?}");
    let (status, services) = statuses(&s, &id);
    assert_eq!(status, "ready", "{services:?}");
    assert!(services.iter().all(|x| x.ends_with("=\"ready\"")), "{services:?}");
    assert!(s.log().contains("the engine's state read again"), "{}", s.log());
    delete_leaves_nothing(&s, &engine, &id);
}

/// The engine restarted while an environment deploys: the deployment ends, ready or failed
/// with its reason (never stuck deploying), and deleting it leaves nothing on the engine.
#[test]
fn an_engine_restart_in_the_middle_of_a_deployment_ends_it_ready_or_failed_with_its_reason() {
    let mut engine = Engine::start("10.216.0.0/16");
    let s = server_on(&engine);
    let repo = shop_repo(|t| t);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let e = s.json(&["env", "create", "shop", "--branch", "main"]);
    let id = e["id"].as_str().expect("id").to_owned();
    // The first container of the environment is up: the deployment is under way.
    eventually(120, "the deployment starts its containers", || {
        engine.docker(&["ps", "--format", "{{.Names}}"]).contains(&format!("offshoot-{id}-")).then_some(())
    });
    engine.restart();
    let (status, reason) = eventually(180, "the deployment ends", || {
        let e = s.json(&["env", "show", &id]);
        let status = e["status"].as_str().unwrap_or_default().to_owned();
        matches!(status.as_str(), "ready" | "failed").then(|| (status, e["reason"].as_str().unwrap_or_default().to_owned()))
    });
    if status == "failed" {
        assert!(!reason.is_empty(), "failed without a reason");
    } else {
        eventually(30, "the environment is served", || served(&s, &format!("web-{id}.localhost")).then_some(()));
    }
    delete_leaves_nothing(&s, &engine, &id);
}

/// The engine frozen for 30 s (it answers nothing; its containers keep running): the router
/// keeps serving, `env show` keeps answering, no probe failure restarts a container (the same
/// containers run after), and once it answers again a new environment deploys.
#[test]
fn thirty_seconds_of_an_unreachable_engine_stop_nothing_that_runs() {
    let engine = Engine::start("10.217.0.0/16");
    let s = server_on(&engine);
    let repo = shop_repo(|t| t);
    let id = ready_env(&s, &repo);
    let host = format!("web-{id}.localhost");
    let containers = || engine.docker(&["ps", "--format", "{{.ID}} {{.Names}}"]);
    let before = containers();
    engine.freeze();
    let frozen = Instant::now();
    while frozen.elapsed() < Duration::from_secs(30) {
        assert!(served(&s, &host), "the router stopped serving while the engine was unreachable");
        assert_eq!(statuses(&s, &id).0, "ready");
        std::thread::sleep(Duration::from_secs(2));
    }
    engine.thaw();
    // What was waiting on the engine (a restart it was asked for) lands now.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(containers(), before, "a container was replaced because the engine did not answer");
    assert!(served(&s, &host));
    let second = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    assert_eq!(second["status"], "ready", "{second}");
    let second = second["id"].as_str().expect("id").to_owned();
    for id in [id, second] {
        let d = s.json(&["env", "delete", &id, "--wait"]);
        assert_eq!(d["status"], "deleted", "{d}");
    }
    let left = engine.offshoot_objects();
    assert!(left.is_empty(), "left on the engine: {left:?}");
}

/// Fifty writers at once on the SQLite store (the default): every write lands, none is refused
/// as busy or locked, and each is recorded once in the activity log.
#[test]
fn fifty_concurrent_writers_on_the_sqlite_store_all_land_once() {
    let s = Server::new(None);
    let repo = shop_repo(|t| t);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let token = s.token();
    let writers: Vec<_> = (0..50)
        .map(|i| {
            let (port, token) = (s.api, token.clone());
            std::thread::spawn(move || {
                let body = format!(r#"{{"key":"K{i}","value":"value-{i}"}}"#);
                let head = format!(
                    "POST /api/v1/apps/shop/secrets HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}",
                    body.len()
                );
                http_raw(port, &head, body.as_bytes()).unwrap_or_default()
            })
        })
        .collect();
    for (i, w) in writers.into_iter().enumerate() {
        let answer = w.join().expect("writer");
        assert!(answer.starts_with("HTTP/1.1 204"), "writer {i}: {answer}");
    }
    let activity = s.json(&["activity", "--limit", "1000", "--app", "shop"]);
    let mut targets: Vec<String> = activity
        .as_array()
        .expect("list")
        .iter()
        .filter(|a| a["operation"] == "app.secret" && a["outcome"] == "ok")
        .filter_map(|a| a["target"].as_str().map(str::to_owned))
        .collect();
    targets.sort();
    let mut want: Vec<String> = (0..50).map(|i| format!("shop/K{i}")).collect();
    want.sort();
    assert_eq!(targets, want, "each write recorded once");
    assert!(!s.log().contains("database is locked"), "{}", s.log());
}

/// A PostgreSQL server of the test's own (its own data directory and port), to stop and start.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: std::path::PathBuf,
}

impl Postgres {
    fn start() -> Postgres {
        let versions = std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL is installed: run `bash scripts/services`");
        let mut versions: Vec<u32> = versions.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
        versions.sort_unstable();
        let bin = std::path::PathBuf::from(format!("/usr/lib/postgresql/{}/bin", versions.last().expect("a version")));
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::process::Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().expect("chown");
        let o = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .output()
            .expect("initdb");
        assert!(o.status.success(), "initdb: {}", String::from_utf8_lossy(&o.stderr));
        let pg = Postgres { dir, port: free_port(), bin };
        pg.ctl("start");
        pg
    }

    fn ctl(&self, what: &str) {
        let d = self.dir.path();
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, d.display());
        let o = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args([what, "-w", "-m", "fast", "-D"])
            .arg(d.join("data"))
            .args(["-l"])
            .arg(d.join("log"))
            .args(["-o", &options])
            .output()
            .expect("pg_ctl");
        assert!(o.status.success(), "pg_ctl {what}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    }

    fn url(&self) -> String {
        self.url_of("postgres")
    }

    fn url_of(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` on database `db`; what it printed.
    fn sql(&self, db: &str, sql: &str) -> String {
        psql_at(self.port, "postgres", db, sql)
    }

    /// The databases and roles a server instance made here.
    fn objects_of(&self, instance: &str) -> Vec<String> {
        let sql = format!(
            "SELECT datname FROM pg_database WHERE starts_with(datname, 'ods_{instance}_') UNION ALL SELECT 'role ' || rolname FROM pg_roles WHERE starts_with(rolname, 'ods_{instance}_') ORDER BY 1"
        );
        self.sql("postgres", &sql).lines().map(str::to_owned).collect()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .output();
    }
}

/// The PostgreSQL store stopped for 30 s: the router keeps serving what runs, the API answers
/// `503 unavailable` (never a crash, never a wrong-token answer), and once the store is back the
/// server serves again without a restart: the environment is as it was, and a new one deploys.
#[test]
fn thirty_seconds_without_the_postgres_store_lose_nothing() {
    let pg = Postgres::start();
    let s = Server::new(Some(&pg.url()));
    let repo = shop_repo(|t| t);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let e = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    assert_eq!(e["status"], "ready", "{e}");
    let id = e["id"].as_str().expect("id").to_owned();
    let host = format!("web-{id}.localhost");
    eventually(30, "served", || served(&s, &host).then_some(()));
    pg.ctl("stop");
    let stopped = Instant::now();
    while stopped.elapsed() < Duration::from_secs(30) {
        assert!(served(&s, &host), "the router stopped serving without the store");
        let o = s.cli(&["env", "show", &id]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("database cannot answer"), "{err}");
        std::thread::sleep(Duration::from_secs(3));
    }
    pg.ctl("start");
    let back = eventually(30, "the API answers again", || {
        let o = s.cli(&["env", "show", &id, "--output", "json"]);
        o.status.success().then(|| serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("json"))
    });
    assert_eq!(back["status"], "ready", "{back}");
    assert!(served(&s, &host));
    let second = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    assert_eq!(second["status"], "ready", "{second}");
    for id in [id.as_str(), second["id"].as_str().expect("id")] {
        assert_eq!(s.json(&["env", "delete", id, "--wait"])["status"], "deleted");
    }
}

/// A dataset's database server restarted while clones are handed out, checked in and made:
/// an environment created meanwhile gets a clone of its own, one deleted meanwhile has its
/// clone dropped once the server is back, the pool refills, and in the end nothing of the
/// instance is left on the database server.
#[test]
fn a_dataset_server_restarted_while_clones_are_handed_out_loses_and_leaves_nothing() {
    let pg = Postgres::start();
    pg.sql("postgres", "CREATE DATABASE artists_src");
    pg.sql("artists_src", "CREATE TABLE artists (id serial PRIMARY KEY, name text NOT NULL); INSERT INTO artists (name) VALUES ('Nina')");
    let template = "app: reader\nhostnames:\n- web: web-${env_id}.${domain}\nenvironment_templates:\n- name: ephemeral\n  datasets:\n  - name: artists\n- name: permanent\nservices:\n- name: web\n  image: busybox:stable\n  command: [sh, -c, 'mkdir -p /www && echo $DB_NAME > /www/index.html && exec httpd -f -p 8080 -h /www']\n  ports:\n  - type: node_port\n    port: '8080'\n    target_port: '8080'\n";
    let vars = "defaults: []\nmapping:\n  DB_NAME: ${ARTISTS_DB_NAME}\n";
    let repo = repo(template, Some(vars), &[], &[]);
    let s = Server::new_with(None, &["--dataset-wait", "90"]);
    let instance = s.instance();
    s.json(&["dataset", "create", "artists", "--source", &pg.url_of("artists_src"), "--pool-size", "2"]);
    let pool = |ready: u64, leased: u64| {
        eventually(90, &format!("pool {ready} ready / {leased} leased"), || {
            let d = s.json(&["dataset", "show", "artists"]);
            (d["pool"]["ready"] == ready && d["pool"]["leased"] == leased && d["pool"]["filling"] == 0).then_some(d)
        })
    };
    pool(2, 0);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let create = || {
        let e = s.json(&["env", "create", "reader", "--branch", "main", "--wait"]);
        assert_eq!(e["status"], "ready", "{e}");
        (e["id"].as_str().expect("id").to_owned(), e["datasets"][0]["database"].as_str().expect("a clone").to_owned())
    };
    let (first, first_clone) = create();
    // Stopped at once: the refill that this checkout started is cut short.
    pg.ctl("stop");
    let (second, second_clone) = create();
    assert_ne!(first_clone, second_clone, "two environments, one clone");
    let deleted = s.json(&["env", "delete", &first, "--wait"]);
    assert_eq!(deleted["status"], "deleted", "{deleted}");
    std::thread::sleep(Duration::from_secs(10));
    pg.ctl("start");

    // Back: the deleted environment's clone is dropped, the pool refills, the leased clone stays.
    let d = pool(2, 1);
    assert_eq!(d["state"], "ready", "{d}");
    eventually(60, "the returned clone is dropped", || (!pg.objects_of(&instance).contains(&first_clone)).then_some(()));
    let objects = pg.objects_of(&instance);
    assert!(objects.contains(&second_clone), "the clone in use was kept: {objects:?}");
    assert_eq!(
        objects.iter().filter(|o| !o.starts_with("role ")).count(),
        4,
        "a snapshot, two ready clones and the one in use: {objects:?}"
    );
    let page = http(s.router, &format!("web-{second}.localhost"), "/").unwrap_or_default();
    assert!(page.contains(&second_clone), "{page}");

    // The faults did happen: the keeper was cut short, and the check-in could not drop at once.
    let log = s.log();
    assert!(log.contains("the pool keeper stopped; it retries"), "{log}");
    assert!(log.contains("the clone will be dropped by the pool keeper"), "{log}");
    s.json(&["env", "delete", &second, "--wait"]);
    assert!(s.cli(&["dataset", "delete", "artists"]).status.success());
    eventually(60, "nothing of the instance on the database server", || pg.objects_of(&instance).is_empty().then_some(()));
}
