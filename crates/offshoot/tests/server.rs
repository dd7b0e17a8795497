//! End to end: the real `offshoot server` process, the CLI, real git repositories, the real
//! Docker engine and real HTTP through the router (`.ci/run` starts Docker and PostgreSQL).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

#[test]
fn shop_lifecycle_routed_patched_and_deleted() {
    let repo = shop_repo(|t| t);
    let s = Server::new(None);
    let app = s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    assert_eq!(app["name"], "shop");
    let env = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    let id = env["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 7);
    assert_eq!(env["status"], "ready", "{env}");
    let web = env["services"].as_array().and_then(|v| v.iter().find(|s| s["name"] == "web")).expect("web");
    assert_eq!(web["hostnames"][0], format!("web-{id}.localhost"));
    assert_eq!(web["urls"][0], format!("http://web-{id}.localhost:{}/", s.router));

    // Routed by Host; the build argument carried the API's URL; the API sees its variables.
    let page = http(s.router, &format!("web-{id}.localhost"), "/").expect("web answers");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains(&format!("http://api-{id}.localhost:{}", s.router)), "{page}");
    let orders = http(s.router, &format!("api-{id}.localhost:{}", s.router), "/cgi-bin/orders").expect("api answers");
    assert!(orders.contains(&format!("\"env\":\"{id}\"")), "{orders}");
    let unknown = http(s.router, "nobody.localhost", "/").expect("router answers");
    assert!(unknown.starts_with("HTTP/1.1 404") && !unknown.contains(&id), "{unknown}");

    // exec and logs.
    let o = s.cli(&["env", "exec", &id, "api", "--", "cat", "/www/health"]);
    assert_eq!((o.status.code(), String::from_utf8_lossy(&o.stdout).trim()), (Some(0), "ok"));
    assert!(s.cli(&["env", "logs", &id, "store"]).status.success());

    // A push to the API only: patch rebuilds and restarts the API alone.
    let before = containers(&id);
    std::fs::write(
        repo.path().join("api/orders.sh"),
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nv2 %s\\n' \"$RELEASE_ENV_ID\"\n",
    )
    .expect("edit");
    git(repo.path(), &["commit", "-qam", "api v2"]);
    let patched = s.json(&["env", "deploy", &id, "--wait"]);
    assert_eq!(patched["status"], "ready", "{patched}");
    let after = containers(&id);
    let changed: Vec<&str> = before.iter().zip(&after).filter(|(b, a)| b.1 != a.1).map(|(b, _)| b.0.as_str()).collect();
    assert_eq!(changed, [format!("offshoot-{id}-api")], "only the API is replaced: {before:?} -> {after:?}");
    let v2 = http(s.router, &format!("api-{id}.localhost"), "/cgi-bin/orders").expect("api answers");
    assert!(v2.contains(&format!("v2 {id}")), "{v2}");
    let deployments = patched["deployments"].as_array().expect("deployments");
    assert_eq!(deployments.len(), 2);
    for phase in ["fetch", "build", "start", "ready"] {
        assert!(deployments[1]["phases"].get(phase).is_some(), "phase {phase} missing: {patched}");
    }

    // Delete: nothing with the environment's label is left.
    let gone = s.json(&["env", "delete", &id, "--wait"]);
    assert_eq!(gone["status"], "deleted");
    assert_eq!(leftovers(&id), "");
    let after_delete = http(s.router, &format!("web-{id}.localhost"), "/").expect("router answers");
    assert!(after_delete.starts_with("HTTP/1.1 404"), "{after_delete}");
}

#[test]
fn killed_mid_setup_resumes_without_duplicates_on_postgres() {
    // A slow migration job holds setup in its second step.
    let repo = shop_repo(|t| t.replace("echo migrating orders for $RELEASE_ENV_ID", "sleep 4; echo migrated"));
    let admin = std::env::var("OFFSHOOT_TEST_POSTGRES").unwrap_or_else(|_| "postgres://offshoot:offshoot@127.0.0.1:5432/postgres".into());
    let db = format!("offshoot_e2e_{}", std::process::id());
    let psql = |sql: &str| Command::new("psql").args([admin.as_str(), "-qc", sql]).output().expect("psql");
    assert!(psql(&format!("CREATE DATABASE {db}")).status.success(), "PostgreSQL must be running: bash scripts/services");
    let url = format!("{}/{db}", admin.rsplit_once('/').expect("url").0);
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut s = Server::start(&data, Some(&url));
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let env = s.json(&["env", "create", "shop", "--branch", "main"]);
    let id = env["id"].as_str().expect("id").to_owned();
    // Wait until the migration job runs, then kill the server outright.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !containers(&id).iter().any(|(n, _)| n.contains("-job-migrate")) {
        assert!(Instant::now() < deadline, "the job never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    s.kill();
    let s2 = Server::start(&data, Some(&url));
    let deadline = Instant::now() + Duration::from_secs(120);
    let env = loop {
        let e = s2.json(&["env", "show", &id]);
        if e["status"] == "ready" || e["status"] == "failed" {
            break e;
        }
        assert!(Instant::now() < deadline, "did not finish after restart: {e}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(env["status"], "ready", "{env}");
    let names: Vec<String> = containers(&id).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [format!("offshoot-{id}-api"), format!("offshoot-{id}-store"), format!("offshoot-{id}-web")],
        "one container per service"
    );
    assert!(http(s2.router, &format!("web-{id}.localhost"), "/").is_some_and(|r| r.starts_with("HTTP/1.1 200")));
    assert_eq!(s2.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
    assert_eq!(leftovers(&id), "");
    drop(s2);
    drop(s);
    let _ = psql(&format!("DROP DATABASE {db}"));
}

/// A database that stops answering: a request with a valid token is told the store failed
/// (503, saying what it was doing), never that its token is wrong; once the database is back, it is served.
#[test]
fn a_database_that_cannot_answer_is_a_server_error_not_a_wrong_token() {
    let admin = std::env::var("OFFSHOOT_TEST_POSTGRES").unwrap_or_else(|_| "postgres://offshoot:offshoot@127.0.0.1:5432/postgres".into());
    let db = format!("offshoot_outage_{}", std::process::id());
    let psql = |sql: &str| Command::new("psql").args([admin.as_str(), "-qc", sql]).output().expect("psql");
    assert!(psql(&format!("CREATE DATABASE {db}")).status.success(), "PostgreSQL must be running: bash scripts/services");
    let url = format!("{}/{db}", admin.rsplit_once('/').expect("url").0);
    let s = Server::new(Some(&url));
    assert!(s.cli(&["app", "list"]).status.success());
    let cut = format!(
        "ALTER DATABASE {db} ALLOW_CONNECTIONS false; SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
    );
    assert!(psql(&cut).status.success());
    let o = s.cli(&["app", "list"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "served without its database");
    assert!(!err.contains("Bearer") && err.contains("database cannot answer (while trying to check a token)"), "{err}");
    assert!(psql(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true")).status.success());
    eventually(20, "served again once the database is back", || s.cli(&["app", "list"]).status.success().then_some(()));
    drop(s);
    let _ = psql(&format!("DROP DATABASE {db} WITH (FORCE)"));
}

#[test]
fn bad_inputs_fail_clearly_and_leave_nothing() {
    let s = Server::new(None);
    let expect_err = |args: &[&str], needle: &str| {
        let o = s.cli(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: expected `{needle}` in: {err}");
    };
    expect_err(&["env", "create", "nosuchapp", "--branch", "main"], "application `nosuchapp` does not exist");

    let repo = shop_repo(|t| t);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    expect_err(&["env", "create", "shop", "--branch", "nope"], "branch `nope` does not exist");
    expect_err(&["env", "create", "shop", "--branch", "nope"], "branches of `shop`: main");

    // An invalid template is refused with its diagnostics.
    let bad = shop_repo(|t| t.replace("app: shop", "app: broken").replace("port: '8081'", "port: '80000'"));
    expect_err(&["app", "create", "--repo", bad.path().to_str().expect("utf-8")], "`80000` is not a port number");

    // Helm charts cannot run here: refused at creation, naming the feature.
    let charts = shop_repo(|t| format!("{}charts:\n- name: x\n  directory: chart\n", t.replace("app: shop", "app: charted")));
    s.json(&["app", "create", "--repo", charts.path().to_str().expect("utf-8")]);
    expect_err(&["env", "create", "charted", "--branch", "main"], "Helm `charts`");

    // A failing build: failed, with the build log's tail, nothing left running.
    let failing = shop_repo(|t| t.replace("app: shop", "app: failbuild"));
    std::fs::write(failing.path().join("web/Dockerfile"), "FROM busybox:stable\nRUN echo compiling && exit 3\n").expect("write");
    git(failing.path(), &["commit", "-qam", "break the build"]);
    s.json(&["app", "create", "--repo", failing.path().to_str().expect("utf-8")]);
    let o = s.cli(&["env", "create", "failbuild", "--branch", "main", "--wait", "--output", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(e["status"], "failed");
    let reason = e["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("building image") && reason.contains("compiling"), "{reason}");
    assert_eq!(leftovers(e["id"].as_str().expect("id")), "", "a failed build leaves nothing behind");
    let o = s.cli(&["env", "logs", e["id"].as_str().expect("id"), "--build"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("web| compiling"), "{}", String::from_utf8_lossy(&o.stdout));

    // A service that never becomes ready: failed with the probe's last error.
    let unready = shop_repo(|t| {
        t.replace("app: shop", "app: unready")
            .replace("path: /health", "path: /missing")
            .replace("failure_threshold: 30\n- name: web", "failure_threshold: 3\n- name: web")
    });
    s.json(&["app", "create", "--repo", unready.path().to_str().expect("utf-8")]);
    let o = s.cli(&["env", "create", "unready", "--branch", "main", "--wait", "--output", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let reason = e["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("never became ready") && reason.contains("GET /missing answered 404"), "{reason}");

    // An image that cannot be pulled: failed with the registry's message.
    let unpullable =
        shop_repo(|t| t.replace("app: shop", "app: unpullable").replace("image: busybox:stable", "image: localhost:1/nothing/here:1"));
    s.json(&["app", "create", "--repo", unpullable.path().to_str().expect("utf-8")]);
    let o = s.cli(&["env", "create", "unpullable", "--branch", "main", "--wait", "--output", "json"]);
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let reason = e["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("localhost:1/nothing/here:1") && reason.contains("not available"), "{reason}");

    // A wrong token is refused.
    let o = Command::new(bin())
        .args(["app", "list"])
        .env("OFFSHOOT_URL", format!("http://127.0.0.1:{}", s.api))
        .env("OFFSHOOT_TOKEN", "wrong")
        .output()
        .expect("cli");
    assert!(String::from_utf8_lossy(&o.stderr).contains("Bearer"), "{}", String::from_utf8_lossy(&o.stderr));

    // Every change and every refusal above is in the activity log, newest first, by the token.
    let log = s.json(&["activity", "--limit", "1000"]);
    let entries: Vec<String> = log
        .as_array()
        .expect("a list")
        .iter()
        .rev()
        .map(|a| {
            format!(
                "{} {} {} {}",
                a["actor"].as_str().unwrap_or(""),
                a["operation"].as_str().unwrap_or(""),
                a["target"].as_str().unwrap_or(""),
                a["outcome"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        entries[..4],
        [
            "admin env.create nosuchapp refused",
            "admin app.create shop ok",
            "admin env.create shop refused",
            "admin env.create shop refused"
        ],
        "{entries:?}"
    );
    let invalid = log.as_array().expect("a list").iter().find(|a| a["operation"] == "app.create" && a["outcome"] == "refused");
    assert!(invalid.is_some_and(|a| a["detail"].as_str().unwrap_or("").contains("the configuration is invalid")), "{log}");
    assert!(entries.contains(&"admin env.create failbuild ok".to_owned()), "{entries:?}");
    let refused = &log.as_array().expect("a list").iter().find(|a| a["target"] == "charted" && a["outcome"] == "refused").expect("charts");
    assert!(refused["detail"].as_str().unwrap_or("").contains("Helm `charts`"), "{refused}");
    let o = s.cli(&["activity", "--limit", "0"]);
    assert_eq!(o.status.code(), Some(2), "a limit out of range is refused by the CLI");
    let text = String::from_utf8_lossy(&s.cli(&["activity"]).stdout).into_owned();
    assert!(text.starts_with("WHEN") && text.contains("env.create") && text.contains("refused"), "{text}");
}

#[test]
fn the_reconciler_recreates_missing_services_and_expires_environments() {
    let repo = shop_repo(|t| t);
    let s = Server::new(None);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let env = s.json(&["env", "create", "shop", "--branch", "main", "--ttl", "40s", "--wait"]);
    let id = env["id"].as_str().expect("id").to_owned();
    assert_eq!(env["status"], "ready");
    // A service container removed behind Offshoot's back comes back.
    docker(&["rm", "-f", &format!("offshoot-{id}-web")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let e = s.json(&["env", "show", &id]);
        let back = containers(&id).iter().any(|(n, _)| n == &format!("offshoot-{id}-web"));
        if back && e["status"] == "ready" {
            break;
        }
        assert!(Instant::now() < deadline, "web was not recreated: {e}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(http(s.router, &format!("web-{id}.localhost"), "/").is_some_and(|r| r.starts_with("HTTP/1.1 200")));
    // A stopped service: at once out of the router's pool (503 naming it, not a wait on a dead
    // address), then the reconciler brings it back. (On a loaded machine the reconciler may
    // already have replaced it: then a new container answers.)
    let web = format!("offshoot-{id}-web");
    let before = docker(&["inspect", "--format", "{{.Id}}", &web]).trim().to_owned();
    docker(&["kill", &web]);
    // The engine's event reaches the server within milliseconds; the reconciler needs seconds.
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let down = http(s.router, &format!("web-{id}.localhost"), "/").expect("router answers");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let replaced = docker(&["inspect", "--format", "{{.Id}}", &web]).trim() != before;
    assert!(
        (down.starts_with("HTTP/1.1 503") && down.contains(&id) && down.contains("web")) || (replaced && down.starts_with("HTTP/1.1 200")),
        "{down}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http(s.router, &format!("web-{id}.localhost"), "/").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(Instant::now() < deadline, "the stopped service was not brought back");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Past its time to live, the environment is torn down by itself.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let e = s.json(&["env", "show", &id]);
        if e["status"] == "deleted" {
            break;
        }
        assert!(Instant::now() < deadline, "did not expire: {e}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(leftovers(&id), "");
}

#[test]
fn a_failing_liveness_probe_restarts_the_container() {
    // The API's liveness probe checks /www/health every second; removing it fails the probe.
    let repo = shop_repo(|t| t.replace("period_seconds: 5\n    failure_threshold: 3", "period_seconds: 1\n    failure_threshold: 2"));
    let s = Server::new(None);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let env = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    let id = env["id"].as_str().expect("id").to_owned();
    let api = format!("offshoot-{id}-api");
    let container_id = |c: &str| docker(&["inspect", "--format", "{{.Id}}", c]).trim().to_owned();
    let first = container_id(&api);
    let o = s.cli(&["env", "exec", &id, "api", "--", "rm", "/www/health"]);
    assert!(o.status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let e = s.json(&["env", "show", &id]);
        let reason = e["services"]
            .as_array()
            .and_then(|v| v.iter().find(|s| s["name"] == "api"))
            .and_then(|s| s["reason"].as_str())
            .unwrap_or("")
            .to_owned();
        let now = container_id(&api);
        if !now.is_empty() && now != first && reason.contains("failed liveness probes") {
            break;
        }
        assert!(Instant::now() < deadline, "not restarted: {e}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Recreated from its image, the API passes its probe again and stays.
    let second = container_id(&api);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(container_id(&api), second, "restarted again: the fresh container should be healthy");
    assert_eq!(containers(&id).len(), 3);
    assert_eq!(s.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
}

#[test]
fn replicas_share_the_service_name() {
    let repo =
        shop_repo(|t| t.replace("- name: web\n  image: offshoot/shop/web", "- name: web\n  replicas: 3\n  image: offshoot/shop/web"));
    let s = Server::new(None);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let env = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    assert_eq!(env["status"], "ready", "{env}");
    let id = env["id"].as_str().expect("id").to_owned();
    let names: Vec<String> = containers(&id).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            format!("offshoot-{id}-api"),
            format!("offshoot-{id}-store"),
            format!("offshoot-{id}-web"),
            format!("offshoot-{id}-web-1"),
            format!("offshoot-{id}-web-2")
        ]
    );
    // Every replica answers under the service's name.
    let o =
        s.cli(&["env", "exec", &id, "api", "--", "sh", "-c", "nslookup web 2>/dev/null | grep -c '^Address' ; wget -qO- http://web:8080/"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("<h1>Shop</h1>"), "{out}");
    assert_eq!(s.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
    assert_eq!(leftovers(&id), "");
}
