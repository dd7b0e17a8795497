//! App imports end to end: three real git repositories, one namespace.

mod support;

use support::*;

fn path(d: &tempfile::TempDir) -> &str {
    d.path().to_str().expect("utf-8")
}

fn page(s: &Server, host: &str) -> String {
    http(s.router, host, "/").unwrap_or_default()
}

#[test]
fn an_environment_brings_its_imports_on_matching_branches_into_one_namespace() {
    let backend = app_repo("backend", "api", "", None, true);
    let admin = app_repo("admin", "panel", "", None, false);
    let frontend = app_repo(
        "frontend",
        "web",
        "app_imports:\n- name: backend\n- name: admin\nparallelize_app_imports: true\nrules:\n- service: api\n  hostnames:\n  - shop-${env_id}.${domain}\n  path: /\n",
        Some("defaults: []\nmapping:\n  BACKEND_URL: ${API_INGRESS_URL}\n"),
        true,
    );
    let s = Server::new(None);
    for r in [&backend, &admin, &frontend] {
        s.json(&["app", "create", "--repo", path(r)]);
    }
    let env = s.json(&["env", "create", "frontend", "--branch", "feature/new", "--wait"]);
    assert_eq!(env["status"], "ready", "{env}");
    let id = env["id"].as_str().expect("id").to_owned();
    let imports = env["imports"].as_array().expect("imports").clone();
    assert_eq!(imports.len(), 2, "{env}");
    let import = |app: &str| imports.iter().find(|i| i["app"] == app).cloned().expect("import");
    let (b, a) = (import("backend"), import("admin"));
    assert_eq!(
        (b["branch"].as_str(), b["reason"].as_str(), b["status"].as_str()),
        (Some("feature/new"), Some("same-name branch"), Some("ready"))
    );
    assert_eq!((a["branch"].as_str(), a["reason"].as_str()), (Some("main"), Some("fell back to main")));
    assert!(b["commit"].as_str().is_some_and(|c| c.len() == 40));
    let (bid, aid) = (b["env_id"].as_str().expect("id").to_owned(), a["env_id"].as_str().expect("id").to_owned());

    // The front end is served, built with the backend's URL; each import from its branch.
    let front = page(&s, &format!("web-{id}.localhost"));
    assert!(front.contains("frontend on feature/new"), "{front}");
    assert!(front.contains(&format!("backend: http://api-{bid}.localhost:{}", s.router)), "{front}");
    assert!(page(&s, &format!("api-{bid}.localhost")).contains("backend on feature/new"));
    assert!(page(&s, &format!("panel-{aid}.localhost")).contains("admin on main"));
    // The importer's rule routes its own hostname to the imported backend.
    assert!(page(&s, &format!("shop-{id}.localhost")).contains("backend on feature/new"));

    // The list (built from a few queries for all environments) says what each `env show` says.
    let list = s.json(&["env", "list"]);
    let list = list.as_array().expect("a list");
    assert_eq!(list.len(), 3, "{list:?}");
    for e in list {
        assert_eq!(e, &s.json(&["env", "show", e["id"].as_str().expect("id")]));
    }
    let only = s.json(&["env", "list", "--app", "frontend"]);
    assert_eq!(only.as_array().map(Vec::len), Some(1));
    assert_eq!(only[0]["imports"].as_array().map(Vec::len), Some(2), "{only}");

    // One network: the front end reaches the others by service name.
    let net = docker(&["network", "inspect", &format!("offshoot-{id}"), "--format", "{{range .Containers}}{{.Name}} {{end}}"]);
    for c in [format!("offshoot-{id}-web"), format!("offshoot-{bid}-api"), format!("offshoot-{aid}-panel")] {
        assert!(net.contains(&c), "{c} is not on the shared network: {net}");
    }
    let o = s.cli(&["env", "exec", &id, "web", "--", "wget", "-qO-", "http://api:8080/"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("backend on feature/new"), "{o:?}");

    // Each import is an environment of its own app, linked to its importer, and is deleted
    // with it, not alone.
    let child = s.json(&["env", "show", &bid]);
    assert_eq!((child["app"].as_str(), child["parent"].as_str()), (Some("backend"), Some(id.as_str())));
    let listed = s.json(&["env", "list", "--app", "backend"]);
    assert!(listed.to_string().contains(&bid));
    let refused = s.cli(&["env", "delete", &bid]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains(&id), "{refused:?}");
    let human = String::from_utf8_lossy(&s.cli(&["env", "show", &id]).stdout).into_owned();
    assert!(human.contains("import backend") && human.contains("same-name branch"), "{human}");

    // A new commit on the backend's branch patches the backend's environment alone.
    let web_before = docker(&["inspect", "--format", "{{.Id}}", &format!("offshoot-{id}-web")]);
    git(backend.path(), &["checkout", "-q", "feature/new"]);
    std::fs::write(backend.path().join("api/index.html"), "backend v2 on feature/new\n").expect("write");
    git(backend.path(), &["commit", "-qam", "v2"]);
    let patched = s.json(&["env", "deploy", &bid, "--wait"]);
    assert_eq!(patched["status"], "ready", "{patched}");
    assert!(page(&s, &format!("api-{bid}.localhost")).contains("backend v2"));
    assert_eq!(docker(&["inspect", "--format", "{{.Id}}", &format!("offshoot-{id}-web")]), web_before, "the importer was not touched");

    assert_eq!(s.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
    for e in [&id, &bid, &aid] {
        assert_eq!(leftovers(e), "", "{e} left something");
        assert_eq!(s.json(&["env", "show", e])["status"], "deleted");
    }
}

#[test]
fn bad_imports_are_refused_before_anything_starts() {
    let s = Server::new(None);
    let create = |r: &tempfile::TempDir| s.json(&["app", "create", "--repo", path(r)]);
    let refused = |app: &str| {
        let o = s.cli(&["env", "create", app, "--branch", "main"]);
        assert!(!o.status.success(), "{app}: {o:?}");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // An unknown app.
    let lonely = app_repo("lonely", "web", "app_imports:\n- name: nowhere\n", None, false);
    create(&lonely);
    let e = refused("lonely");
    assert!(e.contains("nowhere"), "{e}");
    // A service name in two apps.
    let one = app_repo("one", "api", "", None, false);
    let two = app_repo("two", "api", "app_imports:\n- name: one\n", None, false);
    create(&one);
    create(&two);
    let e = refused("two");
    assert!(e.contains("`api`") && e.contains("`one`") && e.contains("`two`"), "{e}");
    // ... unless left out.
    let three = app_repo("three", "api", "app_imports:\n- name: one\n  exclude_services:\n  - name: api\n", None, false);
    create(&three);
    let o = s.cli(&["env", "create", "three", "--branch", "main", "--output", "json"]);
    assert!(o.status.success(), "{o:?}");
    // A rule naming a service nowhere.
    let astray = app_repo(
        "astray",
        "web",
        "app_imports:\n- name: one\nrules:\n- service: ghost\n  hostnames:\n  - g.${domain}\n  path: /\n",
        None,
        false,
    );
    create(&astray);
    let e = refused("astray");
    assert!(e.contains("ghost"), "{e}");
    // A cycle.
    let ping = app_repo("ping", "ping", "app_imports:\n- name: pong\n", None, false);
    let pong = app_repo("pong", "pong", "app_imports:\n- name: ping\n", None, false);
    create(&ping);
    create(&pong);
    let e = refused("ping");
    assert!(e.contains("cycle") && e.contains("ping") && e.contains("pong"), "{e}");
    // Nothing was started for the refused ones.
    for app in ["lonely", "two", "ping", "astray"] {
        let list = s.json(&["env", "list", "--app", app]);
        assert_eq!(list.as_array().map(Vec::len), Some(0), "{app}: {list}");
    }
}

#[test]
fn a_service_is_built_from_another_repository() {
    // The other repository: a build context on `main` and on `v2`.
    let other = repo(
        "app: unused\nservices:\n- name: x\n  image: busybox:stable\n",
        None,
        &[("img/index.html", "the other repository, main\n"), ("img/Dockerfile", DOCKERFILE)],
        &[("v2", &[("img/index.html", "the other repository, v2\n")])],
    );
    let template = format!(
        "app: multi\nbuilds:\n- name: site\n  context: img\n  repo_url: {}\n  repo_branch: v2\nhostnames:\n- site: site-${{env_id}}.${{domain}}\nservices:\n- name: site\n  image: acme/other/site\n  has_repo: true\n  ports:\n  - type: node_port\n    port: '8080'\n    target_port: '8080'\n",
        path(&other)
    );
    let multi = repo(&template, None, &[], &[]);
    let s = Server::new(None);
    s.json(&["app", "create", "--repo", path(&multi)]);
    let env = s.json(&["env", "create", "multi", "--branch", "main", "--wait"]);
    assert_eq!(env["status"], "ready", "{env}");
    let id = env["id"].as_str().expect("id").to_owned();
    let served = page(&s, &format!("site-{id}.localhost"));
    assert!(served.contains("the other repository, v2"), "{served}");
    assert_eq!(s.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
}

#[test]
fn killed_while_an_import_starts_resumes_without_duplicates() {
    // The backend takes three seconds to answer: the server is killed while it waits for it.
    let slow = "FROM busybox:stable\nCOPY index.html /www/index.html\nCMD [\"sh\", \"-c\", \"sleep 3; httpd -f -p 8080 -h /www\"]\n";
    let backend = repo(&one_service("backend", "api", ""), None, &[("api/index.html", "slow backend\n"), ("api/Dockerfile", slow)], &[]);
    let frontend = app_repo("frontend", "web", "app_imports:\n- name: backend\n", None, false);
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut s = Server::start(&data, None);
    for r in [&backend, &frontend] {
        s.json(&["app", "create", "--repo", path(r)]);
    }
    let env = s.json(&["env", "create", "frontend", "--branch", "main"]);
    let id = env["id"].as_str().expect("id").to_owned();
    let bid = env["imports"][0]["env_id"].as_str().expect("import id").to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while containers(&bid).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the import never started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    s.kill();
    let s2 = Server::start(&data, None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let env = loop {
        let e = s2.json(&["env", "show", &id]);
        if e["status"] == "ready" || e["status"] == "failed" {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "did not finish after the restart: {e}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    assert_eq!(env["status"], "ready", "{env}");
    assert_eq!(env["imports"][0]["status"], "ready", "{env}");
    let names = |e: &str| containers(e).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names(&bid), [format!("offshoot-{bid}-api")], "one container per service");
    assert_eq!(names(&id), [format!("offshoot-{id}-web")], "one container per service");
    // One setup of the import: the interrupted one, resumed.
    let child = s2.json(&["env", "show", &bid]);
    assert_eq!(child["deployments"].as_array().map(Vec::len), Some(1), "{child}");
    assert!(page(&s2, &format!("api-{bid}.localhost")).contains("slow backend"));
    assert_eq!(s2.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
    assert_eq!(format!("{}{}", leftovers(&id), leftovers(&bid)), "");
    drop(s2);
    drop(s);
}

/// Repository locations are checked before any connection. An application fetched from a git
/// URL (here `git daemon` on loopback) whose template asks to build from a path on the server is
/// refused with why: a template, from any branch, may not read the server's files (an
/// application an administrator made from a path may, as above). A link-local or cloud metadata
/// URL, or another transport, is refused at once.
#[test]
fn repository_locations_are_checked_before_any_connection() {
    let other = repo("app: unused\nservices:\n- name: x\n  image: busybox:stable\n", None, &[("img/Dockerfile", DOCKERFILE)], &[]);
    let template = format!(
        "app: remote\nbuilds:\n- name: site\n  context: img\n  repo_url: {}\nservices:\n- name: site\n  image: acme/other/site\n  has_repo: true\n",
        path(&other)
    );
    let remote = repo(&template, None, &[], &[]);
    let base = remote.path().parent().expect("parent").to_owned();
    let name = remote.path().file_name().and_then(|n| n.to_str()).expect("name").to_owned();
    let port = free_port();
    let mut daemon = std::process::Command::new("git")
        .args(["daemon", "--export-all", "--reuseaddr", "--listen=127.0.0.1", &format!("--port={port}")])
        .arg(format!("--base-path={}", base.display()))
        .arg(&base)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("git daemon");
    support::acme::listening(port, "git daemon listens");
    let s = Server::new(None);
    s.json(&["app", "create", "--repo", &format!("git://127.0.0.1:{port}/{name}")]);
    let o = s.cli(&["env", "create", "remote", "--branch", "main", "--wait", "--output", "json"]);
    let env: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(env["status"], "failed", "{env}");
    let reason = env["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("`repo_url`") && reason.contains("is a path on the server: only an administrator may fetch from one"),
        "{reason}"
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
    for (url, why) in [
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a cloud metadata address"),
        ("https://[fe80::1]/repo.git", "a link-local address"),
        ("http://metadata.google.internal/repo.git", "is a cloud metadata service"),
        ("ext::sh@example.com", "only https, http, ssh and git URLs are fetched"),
    ] {
        let started = std::time::Instant::now();
        let o = s.cli(&["app", "create", "--repo", url]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(why), "{url}: {err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{url}: refused only after {:?}", started.elapsed());
    }
}
