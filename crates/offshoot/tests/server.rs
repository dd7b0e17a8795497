//! End to end: the real `offshoot server` process, the CLI, real git repositories, the real
//! Docker engine and real HTTP through the router (`.ci/run` starts Docker and PostgreSQL).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_offshoot")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

struct Server {
    child: Child,
    data: PathBuf,
    api: u16,
    router: u16,
    db: Option<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    fn start(data: &Path, db: Option<&str>) -> Server {
        let (api, router) = (free_port(), free_port());
        let mut cmd = Command::new(bin());
        cmd.args([
            "server",
            "--listen",
            &format!("127.0.0.1:{api}"),
            "--router-listen",
            &format!("127.0.0.1:{router}"),
            "--data-dir",
            data.to_str().expect("utf-8"),
        ]);
        if let Some(db) = db {
            cmd.args(["--database-url", db]);
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data.with_extension("log")).expect("log file");
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn().expect("start the server");
        let s = Server { child, data: data.to_owned(), api, router, db: db.map(str::to_owned), _tmp: None };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http(api, "localhost", "/healthz").is_some_and(|r| r.contains("ok")) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the server did not start; see {}", data.with_extension("log").display());
    }

    fn new(db: Option<&str>) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Server::start(&tmp.path().join("data"), db);
        s._tmp = Some(tmp);
        s
    }

    fn cli(&self, args: &[&str]) -> Output {
        let token = std::fs::read_to_string(self.data.join("admin-token")).expect("admin token");
        Command::new(bin())
            .args(args)
            .env("OFFSHOOT_URL", format!("http://127.0.0.1:{}", self.api))
            .env("OFFSHOOT_TOKEN", token.trim())
            .output()
            .expect("run the CLI")
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let o = self.cli(&all);
        assert!(o.status.success(), "{args:?} failed: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&o.stdout)))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn instance(&self) -> String {
        std::fs::read_to_string(self.data.join("instance-id")).unwrap_or_default().trim().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        // Leave nothing behind on the engine, whatever the test did.
        let ids = docker(&["ps", "-aq", "--filter", &format!("label=offshoot.instance={}", self.instance())]);
        for id in ids.split_whitespace() {
            docker(&["rm", "-f", id]);
        }
        let _ = &self.db;
    }
}

fn docker(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().expect("docker CLI");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A real HTTP/1.1 request to 127.0.0.1:port with a Host header; the whole response.
fn http(port: u16, host: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() { copy_dir(&src, &dst) } else { std::fs::copy(&src, &dst).map(|_| ()).expect("copy") }
    }
}

/// The example shop as a git repository, with `edit` applied to its template.
fn shop_repo(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop"), dir.path());
    let t = dir.path().join(".release/application_template.yaml");
    let text = std::fs::read_to_string(&t).expect("template");
    std::fs::write(&t, edit(text)).expect("write");
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "shop"]);
    dir
}

fn containers(env: &str) -> Vec<(String, String)> {
    let out = docker(&["ps", "-a", "--filter", &format!("label=offshoot.env={env}"), "--format", "{{.Names}} {{.ID}}"]);
    let mut v: Vec<(String, String)> = out.lines().filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned()))).collect();
    v.sort();
    v
}

fn leftovers(env: &str) -> String {
    let label = format!("label=offshoot.env={env}");
    format!(
        "{}{}{}",
        docker(&["ps", "-aq", "--filter", &label]),
        docker(&["network", "ls", "-q", "--filter", &label]),
        docker(&["volume", "ls", "-q", "--filter", &label])
    )
}

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
    for phase in ["fetch", "build", "start"] {
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
}
