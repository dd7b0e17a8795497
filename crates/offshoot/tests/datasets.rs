//! Instant Datasets end to end, against this machine's real PostgreSQL and MariaDB (started by
//! `scripts/services`): environments read their clone from inside their containers, through
//! the host gateway.

mod support;

use support::*;

/// A fresh source database on PostgreSQL with three artists.
fn pg_source() -> String {
    let name = format!("ds_src_{}_{}", std::process::id(), free_port());
    psql("postgres", &format!("CREATE DATABASE {name}"));
    psql(
        &name,
        "CREATE TABLE artists (id serial PRIMARY KEY, name text NOT NULL); INSERT INTO artists (name) VALUES ('Nina'), ('Miles'), ('Ella')",
    );
    name
}

/// The databases on PostgreSQL that belong to a server instance.
fn pg_objects(instance: &str) -> (Vec<String>, Vec<String>) {
    let prefix = format!("ods_{instance}_");
    let list = |sql: &str| psql("postgres", sql).lines().map(str::to_owned).filter(|l| !l.is_empty()).collect::<Vec<_>>();
    (
        list(&format!("SELECT datname FROM pg_database WHERE starts_with(datname, '{prefix}') ORDER BY 1")),
        list(&format!("SELECT rolname FROM pg_roles WHERE starts_with(rolname, '{prefix}') ORDER BY 1")),
    )
}

/// On a failing test, what it made on the database servers goes too (the server first, so that
/// its pool keeper makes nothing more): a failure leaves no debris for the next run.
struct Debris {
    pid: u32,
    instance: String,
    source: String,
    mariadb: bool,
}

impl Debris {
    fn of(s: &Server, source: &str, mariadb: bool) -> Debris {
        Debris { pid: s.child.id(), instance: s.instance(), source: source.to_owned(), mariadb }
    }
}

impl Drop for Debris {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let _ = std::process::Command::new("kill").args(["-9", &self.pid.to_string()]).status();
        let prefix = format!("ods_{}_", self.instance);
        if self.mariadb {
            let list = |sql: &str| mariadb("", sql).lines().filter(|l| l.starts_with(&prefix)).map(str::to_owned).collect::<Vec<_>>();
            for db in list("SHOW DATABASES") {
                mariadb("", &format!("DROP DATABASE `{db}`"));
            }
            for u in list("SELECT user FROM mysql.user") {
                mariadb("", &format!("DROP USER '{u}'@'%'"));
            }
            mariadb("", &format!("DROP DATABASE IF EXISTS `{}`", self.source));
            return;
        }
        let (dbs, roles) = pg_objects(&self.instance);
        // As the superuser: nothing it cannot end or drop.
        let su = |sql: &str| {
            let _ = std::process::Command::new("su").args(["postgres", "-c", &format!("psql -q -c '{sql}'")]).output();
        };
        for db in dbs.iter().chain(std::iter::once(&self.source)) {
            su(&format!("ALTER DATABASE \"{db}\" IS_TEMPLATE false"));
            su(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"));
        }
        for r in roles {
            su(&format!("DROP ROLE IF EXISTS \"{r}\""));
        }
    }
}

/// An app whose `web` service prints what `query` prints (run in the container at start), and
/// whose ephemeral environments attach `dataset`.
fn reader_repo(dataset: &str, query: &str) -> tempfile::TempDir {
    let image = db_client_image();
    let template = format!(
        "app: reader\nhostnames:\n- web: web-${{env_id}}.${{domain}}\nenvironment_templates:\n- name: ephemeral\n  datasets:\n  - name: {dataset}\n- name: permanent\nservices:\n- name: web\n  image: {image}\n  command:\n  - sh\n  - -c\n  - |\n    mkdir -p /www\n    {query} > /www/index.html 2>&1\n    exec httpd -f -p 8080 -h /www\n  ports:\n  - type: node_port\n    port: '8080'\n    target_port: '8080'\n  readiness_probe:\n    http_get:\n      path: /\n      port: '8080'\n    period_seconds: 1\n    failure_threshold: 30\n"
    );
    let prefix = dataset.to_uppercase().replace('-', "_");
    let vars = format!(
        "defaults: []\nmapping:\n  DATABASE_URL: ${{{prefix}_DB_URL}}\n  DB_HOST: ${{{prefix}_RDS_DB_POOL_HOST:-database}}\n  DB_USER: ${{{prefix}_RDS_DB_POOL_USER}}\n  DB_PASS: ${{{prefix}_RDS_DB_POOL_PASS}}\n  DB_NAME: ${{{prefix}_DB_NAME}}\n  DB_PORT: ${{{prefix}_DB_PORT}}\n"
    );
    repo(&template, Some(&vars), &[], &[])
}

/// `dataset create artists` from the PostgreSQL database `src`, waiting for its snapshot.
fn create_artists(s: &Server, src: &str, pool_size: &str, extra: &[&str]) -> serde_json::Value {
    let url = format!("postgres://offshoot:offshoot@127.0.0.1:5432/{src}");
    let mut args = vec!["dataset", "create", "artists", "--source", &url, "--pool-size", pool_size];
    args.extend(extra);
    s.json(&args)
}

/// Deletes the `artists` dataset, checks that nothing of the instance is left on PostgreSQL,
/// stops the server and drops the source.
fn delete_artists(s: Server, src: &str) {
    let instance = s.instance();
    assert!(s.cli(&["dataset", "delete", "artists"]).status.success());
    eventually(60, "the dataset to be deleted", || (pg_objects(&instance) == (vec![], vec![])).then_some(()));
    assert!(s.json(&["dataset", "list"]).as_array().is_some_and(Vec::is_empty));
    drop(s);
    psql("postgres", &format!("DROP DATABASE {src} WITH (FORCE)"));
}

fn show(s: &Server, name: &str) -> serde_json::Value {
    s.json(&["dataset", "show", name])
}

/// Waits until the pool has `ready` clones (of the current snapshot) and `leased` ones.
fn pool(s: &Server, name: &str, ready: u64, leased: u64) -> serde_json::Value {
    eventually(60, &format!("pool {ready} ready / {leased} leased"), || {
        let d = show(s, name);
        (d["pool"]["ready"] == ready && d["pool"]["leased"] == leased && d["pool"]["filling"] == 0).then_some(d)
    })
}

/// The body of the environment's page.
fn page(s: &Server, env: &str) -> String {
    let r = http(s.router, &format!("web-{env}.localhost"), "/").unwrap_or_default();
    r.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or(r)
}

#[test]
fn postgres_clones_attach_refill_refresh_and_check_in() {
    let src = pg_source();
    let s = Server::new_with(None, &["--dataset-wait", "60"]);
    let _debris = Debris::of(&s, &src, false);
    let instance = s.instance();
    let url = format!("postgres://offshoot:offshoot@127.0.0.1:5432/{src}");

    // Bad input is refused with the field named, before anything is made.
    let o = s.cli(&["dataset", "create", "Bad_Name", "--source", &url]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("name:"), "{o:?}");
    let o = s.cli(&["dataset", "create", "artists", "--source", "postgres://offshoot@127.0.0.1/x", "--refresh", "0 3 * *"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("refresh:"), "{o:?}");
    let o = s.cli(&["dataset", "create", "artists", "--source", "http://nope/x"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("source:"), "{o:?}");

    // A source that cannot be read: the snapshot fails, says why, and leaves nothing behind.
    let o = s.cli(&["dataset", "create", "missing", "--source", "postgres://offshoot:offshoot@127.0.0.1:5432/no_such_db"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("no_such_db") && !stderr.contains(":offshoot@"), "{o:?}");
    assert_eq!(show(&s, "missing")["state"], "failed");
    assert_eq!(pg_objects(&instance), (vec![], vec![]), "a failed snapshot left objects");
    assert!(s.cli(&["dataset", "delete", "missing"]).status.success());

    let d = s.json(&["dataset", "create", "artists", "--source", &url, "--pool-size", "2", "--ttl", "2s", "--refresh", "0 3 * * *"]);
    assert_eq!((d["state"].as_str(), d["snapshot"]["generation"].as_i64()), (Some("ready"), Some(1)), "{d}");
    assert!(d["source"].as_str().is_some_and(|u| u.contains("***") && !u.contains("offshoot@") && !u.contains(":offshoot@")), "{d}");
    assert!(d["next_refresh"].as_i64().is_some(), "{d}");
    let human = String::from_utf8_lossy(&s.cli(&["dataset", "show", "artists"]).stdout).into_owned();
    assert!(human.contains("pool:") && !human.contains(":offshoot@"), "{human}");
    pool(&s, "artists", 2, 0);
    // The encrypted store holds no password in clear.
    for f in std::fs::read_dir(&s.data).expect("data dir").filter_map(|e| e.ok()) {
        let bytes = std::fs::read(f.path()).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains("offshoot:offshoot@"), "{} holds the source URL in clear", f.path().display());
    }

    // An environment checks out a clone and reads it from inside its container.
    let r = reader_repo("artists", "psql \"$DATABASE_URL\" -tAc \"SELECT string_agg(name, ',' ORDER BY id) FROM artists\"");
    s.json(&["app", "create", "--repo", r.path().to_str().expect("utf-8")]);
    let e1 = s.json(&["env", "create", "reader", "--branch", "main", "--wait"]);
    assert_eq!(e1["status"], "ready", "{e1}");
    let id1 = e1["id"].as_str().expect("id").to_owned();
    let att = &e1["datasets"][0];
    let clone1 = att["database"].as_str().expect("database").to_owned();
    assert_eq!(
        (att["dataset"].as_str(), att["host"].as_str(), att["port"].as_u64()),
        (Some("artists"), Some("host.docker.internal"), Some(5432))
    );
    assert!(clone1.starts_with(&format!("ods_{instance}_c")), "{clone1}");
    assert_eq!(page(&s, &id1).trim(), "Nina,Miles,Ella");
    // Release's variable names reach the container; the password is in no API answer.
    let o = s.cli(&["env", "exec", &id1, "web", "--", "sh", "-c", "echo $DB_HOST:$DB_PORT/$DB_NAME@$DB_USER"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), format!("host.docker.internal:5432/{clone1}@{clone1}"));
    let pass = String::from_utf8_lossy(&s.cli(&["env", "exec", &id1, "web", "--", "sh", "-c", "echo $DB_PASS"]).stdout).trim().to_owned();
    assert_eq!(pass.len(), 48);
    let shown = String::from_utf8_lossy(&s.cli(&["env", "show", &id1, "--output", "json"]).stdout).into_owned();
    assert!(!shown.contains(&pass), "env show prints the clone's password");
    assert!(!String::from_utf8_lossy(&s.cli(&["dataset", "show", "artists", "--output", "json"]).stdout).contains(&pass));
    // As Kubernetes manifests: the clone's URL is a secret, referenced and masked.
    let o = s.cli(&["env", "render", &id1]);
    let yaml = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    assert!(yaml.contains("kind: Deployment") && yaml.contains(&format!("namespace: offshoot-{id1}")), "{yaml}");
    assert!(yaml.contains("name: DATABASE_URL\n") && yaml.contains("secretKeyRef:") && !yaml.contains(&pass), "{yaml}");
    // The clone is the environment's own: writes there do not reach the source.
    let o = s.cli(&[
        "env",
        "exec",
        &id1,
        "web",
        "--",
        "sh",
        "-c",
        "psql \"$DATABASE_URL\" -tAc \"INSERT INTO artists (name) VALUES ('Local')\"",
    ]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(psql(&src, "SELECT count(*) FROM artists"), "3");

    // The pool refills behind the checkout; the lease is past its 2 s TTL and reported.
    pool(&s, "artists", 2, 1);
    let d = eventually(10, "the lease to pass its TTL", || {
        let d = show(&s, "artists");
        (d["leases"][0]["expired"] == true).then_some(d)
    });
    assert_eq!(d["leases"][0]["env_id"].as_str(), Some(id1.as_str()));

    // A refresh takes a new snapshot and replaces the unattached clones; the attached one stays.
    psql(&src, "INSERT INTO artists (name) VALUES ('Dizzy')");
    let ready_before: Vec<String> = pg_objects(&instance).0;
    let d = s.json(&["dataset", "refresh", "artists", "--wait"]);
    assert_eq!(d["snapshot"]["generation"].as_i64(), Some(2), "{d}");
    // The old snapshot and the old unattached clones go; two new ones come.
    let dbs = eventually(60, "the old clones to be replaced", || {
        let (dbs, _) = pg_objects(&instance);
        let old_left = ready_before.iter().any(|n| *n != clone1 && dbs.contains(n));
        (!old_left && dbs.len() == 1 + 1 + 2).then_some(dbs)
    });
    assert!(dbs.contains(&clone1), "the attached clone was touched by the refresh");
    let d = pool(&s, "artists", 2, 1);
    assert_eq!(d["leases"][0]["stale"], true, "{d}");
    assert_eq!(psql(&clone1, "SELECT count(*) FROM artists"), "4", "the attached clone kept its own writes");
    let e2 = s.json(&["env", "create", "reader", "--branch", "main", "--wait"]);
    let id2 = e2["id"].as_str().expect("id").to_owned();
    assert_eq!(page(&s, &id2).trim(), "Nina,Miles,Ella,Dizzy", "a new environment gets the new snapshot");
    assert_ne!(e2["datasets"][0]["database"], e1["datasets"][0]["database"]);

    // Teardown checks the clone in: database and role are dropped.
    let o = s.cli(&["env", "delete", &id1, "--wait"]);
    assert!(o.status.success(), "{o:?}");
    let (dbs, roles) = pg_objects(&instance);
    assert!(!dbs.contains(&clone1) && !roles.contains(&clone1), "{dbs:?} {roles:?}");

    // A dataset in use is not deleted; once free, everything goes.
    let o = s.cli(&["dataset", "delete", "artists"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains(&id2), "{o:?}");
    assert!(s.cli(&["env", "delete", &id2, "--wait"]).status.success());
    assert!(s.cli(&["dataset", "delete", "artists"]).status.success());
    eventually(30, "the dataset to be deleted", || (s.json(&["dataset", "list"]).as_array().is_some_and(Vec::is_empty)).then_some(()));
    assert_eq!(pg_objects(&instance), (vec![], vec![]), "objects left on the server");
    psql("postgres", &format!("DROP DATABASE {src} WITH (FORCE)"));
}

#[test]
fn mariadb_clones_attach_and_check_in() {
    let src = format!("ds_src_{}_{}", std::process::id(), free_port());
    mariadb("", &format!("CREATE DATABASE {src}"));
    mariadb(
        &src,
        "CREATE TABLE artists (id int AUTO_INCREMENT PRIMARY KEY, name varchar(40)); INSERT INTO artists (name) VALUES ('Nina'), ('Miles')",
    );
    let s = Server::new_with(None, &["--dataset-wait", "3"]);
    let _debris = Debris::of(&s, &src, true);
    let instance = s.instance();
    let d = s.json(&[
        "dataset",
        "create",
        "shop-db",
        "--source",
        &format!("mysql://offshoot:offshoot@127.0.0.1:3306/{src}"),
        "--pool-size",
        "1",
    ]);
    assert_eq!((d["engine"].as_str(), d["state"].as_str()), (Some("mariadb"), Some("ready")), "{d}");
    pool(&s, "shop-db", 1, 0);
    let r = reader_repo(
        "shop-db",
        "mariadb --protocol=TCP -h \"$DB_HOST\" -P \"$DB_PORT\" -u \"$DB_USER\" -p\"$DB_PASS\" -N -B -e \"SELECT GROUP_CONCAT(name ORDER BY id) FROM artists\" \"$DB_NAME\"",
    );
    s.json(&["app", "create", "--repo", r.path().to_str().expect("utf-8")]);
    let e = s.json(&["env", "create", "reader", "--branch", "main", "--wait"]);
    assert_eq!(e["status"], "ready", "{e}");
    let id = e["id"].as_str().expect("id").to_owned();
    assert_eq!(page(&s, &id).trim(), "Nina,Miles");
    let clone = e["datasets"][0]["database"].as_str().expect("database").to_owned();
    pool(&s, "shop-db", 1, 1);
    let mine =
        |sql: &str| mariadb("", sql).lines().filter(|l| l.starts_with(&format!("ods_{instance}_"))).map(str::to_owned).collect::<Vec<_>>();
    assert!(mine("SHOW DATABASES").contains(&clone));
    assert!(s.cli(&["env", "delete", &id, "--wait"]).status.success());
    assert!(!mine("SHOW DATABASES").contains(&clone), "teardown dropped the clone");
    assert!(!mine("SELECT user FROM mysql.user").contains(&clone), "and its user");

    // The snapshot vanishes behind Offshoot's back: the pool cannot refill, an environment waits
    // its bounded time and fails saying why; a refresh mends the pool and a deploy the environment.
    let snapshot = mine("SHOW DATABASES").into_iter().find(|d| d.starts_with(&format!("ods_{instance}_s"))).expect("the snapshot");
    mariadb("", &format!("DROP DATABASE {snapshot}"));
    let e2 = s.json(&["env", "create", "reader", "--branch", "main", "--wait"]);
    let id2 = e2["id"].as_str().expect("id").to_owned();
    assert_eq!(page(&s, &id2).trim(), "Nina,Miles", "the ready clone did not need the snapshot");
    let d = eventually(30, "the failed refill to show", || {
        let d = show(&s, "shop-db");
        d["error"].as_str().is_some_and(|e| e.contains("making a clone")).then_some(d)
    });
    assert_eq!(d["pool"]["ready"], 0, "{d}");
    let o = s.cli(&["env", "create", "reader", "--branch", "main", "--wait", "--output", "json"]);
    let e3: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let reason = e3["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("no clone of dataset `shop-db` became ready within 3s") && reason.contains("making a clone"), "{e3}");
    let id3 = e3["id"].as_str().expect("id").to_owned();
    let d = s.json(&["dataset", "refresh", "shop-db", "--wait"]);
    assert_eq!(d["snapshot"]["generation"], 2, "{d}");
    let e3 = s.json(&["env", "deploy", &id3, "--wait"]);
    assert_eq!(e3["status"], "ready", "{e3}");
    assert_eq!(page(&s, &id3).trim(), "Nina,Miles", "{e3}");
    pool(&s, "shop-db", 1, 2);

    // --force deletes a dataset in use, dropping the clones environments hold.
    assert!(!s.cli(&["dataset", "delete", "shop-db"]).status.success(), "in use");
    assert!(s.cli(&["dataset", "delete", "shop-db", "--force"]).status.success());
    eventually(30, "the dataset to be deleted", || (s.json(&["dataset", "list"]).as_array().is_some_and(Vec::is_empty)).then_some(()));
    assert!(mine("SHOW DATABASES").is_empty() && mine("SELECT user FROM mysql.user").is_empty());
    assert!(s.json(&["env", "show", &id2])["datasets"].as_array().is_none_or(Vec::is_empty));
    assert!(s.cli(&["env", "delete", &id2, "--wait"]).status.success());
    assert!(s.cli(&["env", "delete", &id3, "--wait"]).status.success());
    // An environment listing a dataset that does not exist is refused, saying which.
    let o = s.cli(&["env", "create", "reader", "--branch", "main", "--wait"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("lists dataset `shop-db`, which does not exist"), "{o:?}");
    assert!(stderr.contains("offshoot dataset create shop-db"), "{stderr}");
    assert!(s.json(&["env", "list"]).as_array().is_some_and(|l| l.iter().all(|e| e["status"] == "deleted")), "nothing was recorded");
    mariadb("", &format!("DROP DATABASE {src}"));
}

#[test]
fn a_restart_after_a_crash_removes_what_no_record_owns() {
    let src = pg_source();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut s = Server::start(&data, None);
    let instance = s.instance();
    create_artists(&s, &src, "2", &[]);
    pool(&s, "artists", 2, 0);
    s.kill();

    // What a crash can leave: a clone being made (recorded `filling`), a snapshot being taken
    // (named in `pending_snapshot`), and a database and role with no record at all.
    let (dbs, _) = pg_objects(&instance);
    let filling = dbs.iter().find(|d| d.starts_with(&format!("ods_{instance}_c"))).expect("a clone").clone();
    let pending = format!("ods_{instance}_s00000000cafe");
    let orphan = format!("ods_{instance}_c0000deadbeef");
    psql("postgres", &format!("CREATE DATABASE {pending}"));
    psql("postgres", &format!("CREATE ROLE {orphan} LOGIN"));
    psql("postgres", &format!("CREATE DATABASE {orphan}"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let store = offshoot_store::Store::open(&format!("sqlite://{}", data.join("offshoot.db").display())).await.expect("store");
        assert!(store.move_clone(&filling, "ready", "filling").await.expect("mark"));
        // A refresh was under way.
        store.request_refresh("artists").await.expect("refresh");
        store.begin_snapshot("artists", &pending, "").await.expect("pending");
        store.close().await;
    });

    let s = Server::start(&data, None);
    let d = eventually(60, "the pool to be whole again with a new snapshot", || {
        let d = show(&s, "artists");
        (d["pool"]["ready"] == 2 && d["pool"]["filling"] == 0 && d["snapshot"]["generation"] == 2).then_some(d)
    });
    assert_eq!(d["state"], "ready", "{d}");
    let (dbs, roles) = pg_objects(&instance);
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
    for gone in [&filling, &pending, &orphan] {
        assert!(!dbs.contains(gone), "{gone} survived the restart: {dbs:?}\n{log}");
        assert!(!roles.contains(gone), "role {gone} survived the restart: {roles:?}\n{log}");
    }
    assert_eq!(dbs.len(), 3, "one snapshot and two clones: {dbs:?}");
    delete_artists(s, &src);
}

#[test]
fn twenty_environments_created_at_once_get_twenty_distinct_clones() {
    let src = pg_source();
    let s = Server::new_with(None, &["--dataset-wait", "180"]);
    let _debris = Debris::of(&s, &src, false);
    let instance = s.instance();
    create_artists(&s, &src, "4", &[]);
    pool(&s, "artists", 4, 0);
    let template = "app: many\nenvironment_templates:\n- name: ephemeral\n  datasets:\n  - name: artists\nservices:\n- name: web\n  image: busybox:stable\n  command: [sh, -c, 'mkdir -p /tmp; echo $ARTISTS_DB_NAME > /tmp/db; exec sleep 3600']\n";
    let r = repo(template, None, &[], &[]);
    s.json(&["app", "create", "--repo", r.path().to_str().expect("utf-8")]);
    let ids: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| scope.spawn(|| s.json(&["env", "create", "many", "--branch", "main"])["id"].as_str().expect("id").to_owned()))
            .collect();
        handles.into_iter().map(|h| h.join().expect("create")).collect()
    });
    // Watch all twenty at once: every round, any of them may be the one waiting for a clone.
    let mut waited = false;
    eventually(240, "the twenty environments to be ready", || {
        let all = s.json(&["env", "list", "--app", "many"]);
        let all = all.as_array().expect("a list");
        assert!(all.iter().all(|e| e["status"] != "failed"), "{all:?}");
        waited |= all.iter().any(|e| e["reason"].as_str().is_some_and(|r| r.starts_with("waiting for a clone of dataset `artists`")));
        (all.len() == 20 && all.iter().all(|e| e["status"] == "ready")).then_some(())
    });
    assert!(waited, "with 4 clones for 20 environments, some said they were waiting for one");
    let envs: Vec<serde_json::Value> = ids.iter().map(|id| s.json(&["env", "show", id])).collect();
    let mut clones: Vec<String> = envs.iter().map(|e| e["datasets"][0]["database"].as_str().expect("a clone").to_owned()).collect();
    clones.sort();
    clones.dedup();
    assert_eq!(clones.len(), 20, "two environments share a clone: {clones:?}");
    let (dbs, _) = pg_objects(&instance);
    for c in &clones {
        assert!(dbs.contains(c), "{c} does not exist");
    }
    // Each container sees its own clone's name.
    let want = envs[7]["datasets"][0]["database"].as_str().expect("db");
    eventually(20, "the container to have written its clone's name", || {
        let seen = String::from_utf8_lossy(&s.cli(&["env", "exec", &ids[7], "web", "--", "cat", "/tmp/db"]).stdout).trim().to_owned();
        (seen == want).then_some(())
    });
    pool(&s, "artists", 4, 20);
    for id in &ids {
        assert!(s.cli(&["env", "delete", id]).status.success());
    }
    for id in &ids {
        eventually(120, "teardown", || (s.json(&["env", "show", id])["status"] == "deleted").then_some(()));
    }
    delete_artists(s, &src);
}

#[test]
fn a_scheduled_refresh_takes_a_new_snapshot() {
    let src = pg_source();
    let s = Server::new(None);
    let _debris = Debris::of(&s, &src, false);
    let instance = s.instance();
    let d = create_artists(&s, &src, "1", &["--refresh", "* * * * *"]);
    let taken = d["snapshot"]["taken_at"].as_i64().expect("taken");
    let next = d["next_refresh"].as_i64().expect("next refresh");
    assert!(next > taken && next - taken <= 60_000, "{d}");
    pool(&s, "artists", 1, 0);
    let first: Vec<String> = pg_objects(&instance).0;
    psql(&src, "INSERT INTO artists (name) VALUES ('Dizzy')");
    // At the next minute, without being asked: generation 2, and the pool's clone replaced.
    let d = eventually(90, "the scheduled refresh", || {
        let d = show(&s, "artists");
        (d["snapshot"]["generation"] == 2 && d["pool"]["ready"] == 1 && d["pool"]["filling"] == 0).then_some(d)
    });
    assert!(d["snapshot"]["taken_at"].as_i64().expect("taken") >= next, "{d}");
    let now = eventually(30, "the old clone and snapshot to go", || {
        let dbs = pg_objects(&instance).0;
        (dbs.len() == 2 && !dbs.iter().any(|n| first.contains(n))).then_some(dbs)
    });
    let clone = now.iter().find(|n| n.starts_with(&format!("ods_{instance}_c"))).expect("a clone");
    assert_eq!(psql(clone, "SELECT count(*) FROM artists"), "4", "the new clone has the new data");
    delete_artists(s, &src);
}
