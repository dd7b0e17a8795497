//! Git integration end to end: real repositories, webhooks signed as GitHub and GitLab sign
//! them, a local stand-in for GitHub's API recording the calls, and polling.

mod support;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::hooks::{Hook, github_push, post};
use support::*;

fn path(d: &tempfile::TempDir) -> &str {
    d.path().to_str().expect("utf-8")
}

fn head(dir: &std::path::Path, rev: &str) -> String {
    let o = std::process::Command::new("git").args(["rev-parse", rev]).current_dir(dir).output().expect("git");
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Commits `files` on `branch` and returns the new commit.
fn commit(dir: &std::path::Path, branch: &str, files: &[(&str, &str)]) -> String {
    git(dir, &["checkout", "-q", branch]);
    for (rel, text) in files {
        std::fs::write(dir.join(rel), text).expect("write");
    }
    git(dir, &["commit", "-qam", "change"]);
    let c = head(dir, "HEAD");
    git(dir, &["checkout", "-q", "main"]);
    c
}

fn github_pr(action: &str, number: u64, branch: &str, sha: &str, labels: &[&str]) -> String {
    let labels: Vec<String> = labels.iter().map(|l| format!(r#"{{"name":"{l}"}}"#)).collect();
    format!(
        r#"{{"action":"{action}","number":{number},"pull_request":{{"number":{number},"state":"open","html_url":"https://github.com/o/r/pull/{number}","head":{{"ref":"{branch}","sha":"{sha}","repo":{{"full_name":"o/r"}}}},"base":{{"ref":"main"}},"labels":[{}]}},"repository":{{"full_name":"o/r"}},"sender":{{"login":"dev"}}}}"#,
        labels.join(",")
    )
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn deliveries(s: &Server, app: &str) -> Vec<serde_json::Value> {
    s.json(&["app", "deliveries", app]).as_array().cloned().unwrap_or_default()
}

/// The result of a delivery once handled.
fn handled(s: &Server, app: &str, id: &str) -> serde_json::Value {
    wait_for(&format!("delivery {id}"), 60, || deliveries(s, app).into_iter().find(|d| d["id"] == id && d["status"] != "pending"))
}

/// A stand-in for GitHub's (or GitLab's) REST API: records every call, creates comments (notes)
/// with id 4242.
/// One recorded API call: method, path, `Authorization` (or GitLab's `PRIVATE-TOKEN`) header,
/// body.
type Call = (String, String, String, String);

struct FakeGithub {
    port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl FakeGithub {
    fn start() -> FakeGithub {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let rec = calls.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut r = BufReader::new(stream);
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let (method, path) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
                let (mut len, mut auth) = (0usize, String::new());
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap_or(("", ""));
                    match k.to_ascii_lowercase().as_str() {
                        "content-length" => len = v.trim().parse().unwrap_or(0),
                        "authorization" | "private-token" => auth = v.trim().to_owned(),
                        _ => {}
                    }
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                rec.lock().expect("lock").push((method.clone(), path, auth, String::from_utf8_lossy(&body).into_owned()));
                let (code, answer) = if method == "POST" { ("201 Created", r#"{"id":4242}"#) } else { ("200 OK", r#"{"id":4242}"#) };
                let mut s = r.into_inner();
                let _ = write!(
                    s,
                    "HTTP/1.1 {code}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        FakeGithub { port, calls }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }
}

/// The feedback on a pull request: exactly one comment created (`POST create`), then edited
/// (`edit_method edit`), every call with the token `auth`, and commit statuses in each of
/// `states` posted to `status`.
fn assert_feedback(calls: &[Call], (create, edit_method, edit): (&str, &str, &str), auth: &str, status: &str, states: &[&str]) {
    assert_eq!(calls.iter().filter(|(m, p, _, _)| m == "POST" && p == create).count(), 1, "{calls:?}");
    assert!(calls.iter().any(|(m, p, _, _)| m == edit_method && p == edit), "{calls:?}");
    assert!(calls.iter().all(|(_, _, a, _)| a == auth), "{calls:?}");
    for state in states {
        assert!(calls.iter().any(|(m, p, _, b)| m == "POST" && p == status && b.contains(&format!("\"{state}\""))), "{state}: {calls:?}");
    }
}

fn env_of_pr(s: &Server, app: &str, number: u64) -> Option<serde_json::Value> {
    s.json(&["env", "list", "--app", app]).as_array()?.iter().find(|e| e["pull_request"]["number"] == number).cloned()
}

#[test]
fn github_pull_request_environment_lives_and_dies_with_the_pull_request() {
    let repo = app_repo("shop", "web", "", None, true);
    let gh = FakeGithub::start();
    let api = format!("http://127.0.0.1:{}", gh.port);
    let s = Server::new_with(None, &["--github-api-url", &api, "--github-token", "t0k"]);
    s.json(&["app", "create", "--repo", path(&repo)]);
    let hook = Hook::of(&s, "shop");
    let feature = head(repo.path(), "feature/new");

    // A forged signature: 401 and nothing recorded.
    let body = github_pr("opened", 7, "feature/new", &feature, &[]);
    let forged = Hook { secret: "not-the-secret".into(), ..Hook::of(&s, "shop") };
    assert_eq!(forged.github("pull_request", "d-forged", &body).0, 401);
    let unsigned =
        post(hook.port, &hook.path, &[("X-GitHub-Event", "pull_request".into()), ("X-GitHub-Delivery", "d-x".into())], body.as_bytes());
    assert_eq!(unsigned.0, 401);
    assert!(deliveries(&s, "shop").is_empty());
    // Too large: 413.
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(3 * 1024 * 1024));
    assert_eq!(hook.github("push", "d-big", &big).0, 413);
    // A ping is answered and ignored.
    let (code, answer) = hook.github("ping", "d-ping", r#"{"zen":"hi"}"#);
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("ignored"), "{answer}");

    // Pull-request environments are off until the app turns them on.
    assert_eq!(hook.github("pull_request", "d-1", &body).0, 202);
    let d = handled(&s, "shop", "github:d-1");
    assert!(d["result"].as_str().unwrap_or("").contains("off"), "{d}");
    let app = s.json(&["app", "set", "shop", "--pull-requests", "on", "--pull-request-label", "preview"]);
    assert_eq!((app["pull_requests"].as_bool(), app["pull_request_label"].as_str()), (Some(true), Some("preview")));
    assert_eq!(hook.github("pull_request", "d-2", &body).0, 202);
    assert!(handled(&s, "shop", "github:d-2")["result"].as_str().unwrap_or("").contains("label"));
    assert!(env_of_pr(&s, "shop", 7).is_none());

    // Labelled: an environment for the head branch, ready and served.
    let labelled = github_pr("labeled", 7, "feature/new", &feature, &["preview"]);
    assert_eq!(hook.github("pull_request", "d-3", &labelled).0, 202);
    // The same delivery again is ignored.
    let (code, answer) = hook.github("pull_request", "d-3", &labelled);
    assert_eq!(code, 200);
    assert!(answer.contains("duplicate"), "{answer}");
    assert_eq!(handled(&s, "shop", "github:d-3")["status"], "done");
    let env = wait_for("the pull request's environment", 120, || env_of_pr(&s, "shop", 7).filter(|e| e["status"] == "ready"));
    let id = env["id"].as_str().expect("id").to_owned();
    assert_eq!(env["branch"], "feature/new");
    assert_eq!(env["commit"].as_str(), Some(feature.as_str()));
    let host = format!("web-{id}.localhost");
    assert!(http(s.router, &host, "/").unwrap_or_default().contains("shop on feature/new"));

    // A push to the head branch patches it to the new commit; the matching synchronize does
    // not deploy twice.
    let pushed = commit(repo.path(), "feature/new", &[("web/index.html", "shop on feature/new, second\n")]);
    assert_eq!(hook.github("push", "d-4", &github_push("feature/new", &feature, &pushed)).0, 202);
    let d = handled(&s, "shop", "github:d-4");
    assert!(d["result"].as_str().unwrap_or("").contains("patch"), "{d}");
    assert_eq!(hook.github("pull_request", "d-5", &github_pr("synchronize", 7, "feature/new", &pushed, &["preview"])).0, 202);
    let d = handled(&s, "shop", "github:d-5");
    assert!(d["result"].as_str().unwrap_or("").contains("already at"), "{d}");
    let patched = wait_for("the patch", 120, || {
        s.json(&["env", "show", &id])
            .as_object()
            .cloned()
            .filter(|e| e.get("status").is_some_and(|s| s == "ready") && e.get("commit").is_some_and(|c| c == pushed.as_str()))
    });
    assert_eq!(patched["deployments"].as_array().map(|d| d.iter().filter(|d| d["workflow"] == "patch").count()), Some(1));
    assert!(http(s.router, &host, "/").unwrap_or_default().contains("second"));

    // An invalid pushed template is refused with its diagnostics; the environment keeps serving.
    let broken = commit(
        repo.path(),
        "feature/new",
        &[(".release/application_template.yaml", "app: shop\nservices:\n- name: web\n  replicas: many\n")],
    );
    assert_eq!(hook.github("push", "d-6", &github_push("feature/new", &pushed, &broken)).0, 202);
    let d = handled(&s, "shop", "github:d-6");
    assert_eq!(d["status"], "failed", "{d}");
    let app = s.json(&["app", "show", "shop"]);
    let gitops = app["gitops_error"].as_str().unwrap_or("");
    assert!(gitops.contains(".release/application_template.yaml:4:13: expected a whole number"), "{app}");
    let still = s.json(&["env", "show", &id]);
    assert_eq!((still["status"].as_str(), still["commit"].as_str()), (Some("ready"), Some(pushed.as_str())));
    assert!(http(s.router, &host, "/").unwrap_or_default().contains("second"));

    // Closed: torn down, nothing left.
    assert_eq!(hook.github("pull_request", "d-7", &github_pr("closed", 7, "feature/new", &broken, &["preview"])).0, 202);
    handled(&s, "shop", "github:d-7");
    wait_for("the teardown", 60, || (s.json(&["env", "show", &id])["status"] == "deleted").then_some(()));
    assert_eq!(leftovers(&id), "");

    // Feedback: one comment created then edited, commit statuses, with the token.
    let calls = wait_for("the final feedback", 30, || {
        let c = gh.calls();
        c.iter().any(|(m, _, _, b)| m == "PATCH" && b.contains("deleted")).then_some(c)
    });
    assert_feedback(
        &calls,
        ("/repos/o/r/issues/7/comments", "PATCH", "/repos/o/r/issues/comments/4242"),
        "Bearer t0k",
        &format!("/repos/o/r/statuses/{feature}"),
        &["success"],
    );
    assert!(calls.iter().any(|(_, _, _, b)| b.contains(&format!("http://web-{id}.localhost:{}/", s.router))), "{calls:?}");
}

#[test]
fn gitlab_merge_requests_and_polling_gitops() {
    let repo = app_repo("shop", "web", "", Some("defaults: []\nmapping:\n  BACKEND_URL: one\n"), true);
    let gl = FakeGithub::start();
    let api = format!("http://127.0.0.1:{}/api/v4", gl.port);
    let s = Server::new_with(None, &["--poll-interval", "1", "--gitlab-api-url", &api, "--gitlab-token", "glt"]);
    s.json(&["app", "create", "--repo", path(&repo)]);
    s.json(&["app", "set", "shop", "--pull-requests", "on"]);
    let hook = Hook::of(&s, "shop");
    let feature = head(repo.path(), "feature/new");
    let mr = |action: &str| {
        format!(
            r#"{{"object_kind":"merge_request","event_type":"merge_request","project":{{"id":42,"path_with_namespace":"g/p"}},"labels":[],"object_attributes":{{"iid":3,"action":"{action}","state":"opened","source_branch":"feature/new","target_branch":"main","target_project_id":42,"last_commit":{{"id":"{feature}"}},"url":"https://gitlab.example/g/p/-/merge_requests/3"}}}}"#
        )
    };
    assert_eq!(hook.gitlab("Merge Request Hook", "u-0", "wrong", &mr("open")).0, 401);
    assert_eq!(hook.gitlab("Merge Request Hook", "u-1", &hook.secret, &mr("open")).0, 202);
    let env = wait_for("the merge request's environment", 120, || env_of_pr(&s, "shop", 3).filter(|e| e["status"] == "ready"));
    assert_eq!(env["pull_request"]["provider"], "gitlab");
    let mr_id = env["id"].as_str().expect("id").to_owned();

    // A branch environment on main, then pushes found by polling alone (no webhook).
    let main_env = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    let main_id = main_env["id"].as_str().expect("id").to_owned();
    let main_host = format!("web-{main_id}.localhost");
    assert!(http(s.router, &main_host, "/").unwrap_or_default().contains("backend: one"));
    // GitOps: the pushed variables become version 2 and re-run `setup` on main's environment.
    let c = commit(repo.path(), "main", &[(".release/environment_variables.yaml", "defaults: []\nmapping:\n  BACKEND_URL: two\n")]);
    wait_for("the polled push to deploy", 120, || {
        let e = s.json(&["env", "show", &main_id]);
        (e["status"] == "ready" && e["commit"] == c.as_str()).then_some(())
    });
    assert!(http(s.router, &main_host, "/").unwrap_or_default().contains("backend: two"));
    assert_eq!(s.json(&["app", "show", "shop"])["version"], 2);
    let polled = deliveries(&s, "shop");
    assert!(polled.iter().any(|d| d["id"] == format!("poll:shop:refs/heads/main:{c}") && d["status"] == "done"), "{polled:?}");
    // The merge request's environment (feature/new) was not touched by main's push.
    assert_eq!(s.json(&["env", "show", &mr_id])["commit"].as_str(), Some(feature.as_str()));

    // The repository disappears: the fetch error is reported, nothing is torn down; it comes
    // back and polling recovers.
    let moved = repo.path().with_extension("moved");
    std::fs::rename(repo.path(), &moved).expect("move the repository away");
    let app = wait_for("the fetch error", 30, || {
        s.json(&["app", "show", "shop"]).as_object().cloned().filter(|a| a.get("fetch_error").is_some())
    });
    assert!(app["fetch_error"].as_str().unwrap_or("").contains("cannot fetch"), "{app:?}");
    std::thread::sleep(Duration::from_secs(2));
    for id in [&main_id, &mr_id] {
        assert_eq!(s.json(&["env", "show", id])["status"], "ready");
    }
    assert!(http(s.router, &main_host, "/").unwrap_or_default().contains("backend: two"));
    std::fs::rename(&moved, repo.path()).expect("move the repository back");
    wait_for("the fetch to recover", 30, || s.json(&["app", "show", "shop"]).get("fetch_error").is_none().then_some(()));

    // Merged: torn down.
    assert_eq!(hook.gitlab("Merge Request Hook", "u-2", &hook.secret, &mr("merge")).0, 202);
    wait_for("the teardown", 60, || (s.json(&["env", "show", &mr_id])["status"] == "deleted").then_some(()));
    assert_eq!(leftovers(&mr_id), "");
    s.cli(&["env", "delete", &main_id, "--wait"]);

    // Feedback on the merge request: one note created then edited, commit statuses, the token.
    let calls = wait_for("the final note", 30, || {
        let c = gl.calls();
        c.iter().any(|(m, _, _, b)| m == "PUT" && b.contains("deleted")).then_some(c)
    });
    assert_feedback(
        &calls,
        ("/api/v4/projects/42/merge_requests/3/notes", "PUT", "/api/v4/projects/42/merge_requests/3/notes/4242"),
        "glt",
        &format!("/api/v4/projects/42/statuses/{feature}"),
        &["success", "canceled"],
    );
}

#[test]
fn pull_request_labels_choose_the_imports_and_relabelling_changes_them() {
    let backend = app_repo("backend", "api", "", None, true);
    let admin = app_repo("admin", "panel", "", None, false);
    let frontend =
        app_repo("frontend", "web", "app_imports:\n- name: backend\n  pull_request_labels:\n  - with-backend\n- name: admin\n", None, true);
    let s = Server::new(None);
    for r in [&backend, &admin, &frontend] {
        s.json(&["app", "create", "--repo", path(r)]);
    }
    s.json(&["app", "set", "frontend", "--pull-requests", "on"]);
    let hook = Hook::of(&s, "frontend");
    let sha = head(frontend.path(), "feature/new");
    let imports = |e: &serde_json::Value| -> Vec<String> {
        e["imports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| format!("{}:{}", i["app"].as_str().unwrap_or(""), i["status"].as_str().unwrap_or("")))
            .collect()
    };

    // Without the label: the backend is left out, and the environment says why.
    assert_eq!(hook.github("pull_request", "l-1", &github_pr("opened", 9, "feature/new", &sha, &[])).0, 202);
    let env = wait_for("the environment", 120, || env_of_pr(&s, "frontend", 9).filter(|e| e["status"] == "ready"));
    let id = env["id"].as_str().expect("id").to_owned();
    assert_eq!(imports(&env), vec!["admin:ready".to_owned()]);
    assert!(env["warnings"].to_string().contains("pull_request_labels"), "{env}");

    // Labelled: the backend comes, on its same-name branch, and the setup re-runs.
    assert_eq!(hook.github("pull_request", "l-2", &github_pr("labeled", 9, "feature/new", &sha, &["with-backend"])).0, 202);
    let d = handled(&s, "frontend", "github:l-2");
    assert!(d["result"].as_str().unwrap_or("").contains("import `backend` added"), "{d}");
    let env = wait_for("the backend import", 120, || {
        let e = s.json(&["env", "show", &id]);
        (e["status"] == "ready" && imports(&e).len() == 2 && imports(&e).iter().all(|i| i.ends_with(":ready"))).then_some(e)
    });
    let b = env["imports"].as_array().and_then(|l| l.iter().find(|i| i["app"] == "backend")).cloned().expect("backend");
    assert_eq!((b["branch"].as_str(), b["reason"].as_str()), (Some("feature/new"), Some("same-name branch")));
    let bid = b["env_id"].as_str().expect("id").to_owned();
    assert!(env.get("warnings").is_none(), "the warning about the backend went with it: {env}");
    assert!(http(s.router, &format!("api-{bid}.localhost"), "/").unwrap_or_default().contains("backend on feature/new"));
    let o = s.cli(&["env", "exec", &id, "web", "--", "wget", "-qO-", "http://api:8080/"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("backend on feature/new"), "{o:?}");

    // Unlabelled: the backend's environment goes, the rest stays.
    assert_eq!(hook.github("pull_request", "l-3", &github_pr("unlabeled", 9, "feature/new", &sha, &[])).0, 202);
    handled(&s, "frontend", "github:l-3");
    wait_for("the backend to go", 60, || (s.json(&["env", "show", &bid])["status"] == "deleted").then_some(()));
    assert_eq!(leftovers(&bid), "");
    let env = wait_for("the setup", 120, || Some(s.json(&["env", "show", &id])).filter(|e| e["status"] == "ready"));
    assert_eq!(imports(&env), vec!["admin:ready".to_owned()]);

    // Closed: everything goes.
    assert_eq!(hook.github("pull_request", "l-4", &github_pr("closed", 9, "feature/new", &sha, &[])).0, 202);
    wait_for("the teardown", 60, || (s.json(&["env", "show", &id])["status"] == "deleted").then_some(()));
    let aid = env["imports"][0]["env_id"].as_str().expect("id").to_owned();
    assert_eq!(format!("{}{}", leftovers(&id), leftovers(&aid)), "");
}

#[test]
fn a_delivery_recorded_before_a_crash_is_handled_after_the_restart() {
    let repo = app_repo("shop", "web", "", None, false);
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().join("data");
    let mut s = Server::start(&dir, None);
    s.json(&["app", "create", "--repo", path(&repo)]);
    let env = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    let id = env["id"].as_str().expect("id").to_owned();
    // Killed right after recording a push, before handling it.
    s.kill();
    let sha = commit(repo.path(), "main", &[("web/index.html", "shop after the crash\n")]);
    let event = offshoot_git::hooks::GitEvent::Push { ref_name: "refs/heads/main".into(), commit: Some(sha.clone()) };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let store = offshoot_store::Store::open(&format!("sqlite://{}", dir.join("offshoot.db").display())).await.expect("store");
        let d = offshoot_store::Delivery {
            id: "github:before-crash".into(),
            app: "shop".into(),
            event: serde_json::to_string(&event).expect("json"),
            status: "pending".into(),
            result: None,
            received_at: offshoot_store::now_ms(),
            finished_at: None,
        };
        assert!(store.add_delivery(&d).await.expect("record"));
        store.close().await;
    });
    let s = Server::start(&dir, None);
    let d = handled(&s, "shop", "github:before-crash");
    assert_eq!(d["status"], "done", "{d}");
    wait_for("the patch", 120, || {
        let e = s.json(&["env", "show", &id]);
        (e["status"] == "ready" && e["commit"] == sha.as_str()).then_some(())
    });
    assert!(http(s.router, &format!("web-{id}.localhost"), "/").unwrap_or_default().contains("after the crash"));
    s.cli(&["env", "delete", &id, "--wait"]);
}

/// A GitHub pull request from the fork `mallory/r`.
fn github_fork_pr(action: &str, number: u64, sha: &str, labels: &[&str]) -> String {
    github_pr(action, number, "patch-1", sha, labels).replacen(r#""repo":{"full_name":"o/r"}"#, r#""repo":{"full_name":"mallory/r"}"#, 1)
}

/// A GitHub comment on pull request `number` by `login`, related to the repository as
/// `association`.
fn github_comment(number: u64, body: &str, login: &str, association: &str) -> String {
    format!(
        r#"{{"action":"created","issue":{{"number":{number},"pull_request":{{"url":"https://api.github.com/repos/o/r/pulls/{number}"}}}},"comment":{{"body":"{body}","user":{{"login":"{login}"}},"author_association":"{association}"}},"repository":{{"full_name":"o/r"}}}}"#
    )
}

/// A commit of a fork, kept by the repository at `refs/pull/N/head` only (as GitHub keeps it).
fn fork_commit(dir: &std::path::Path, number: u64, page: &str) -> String {
    git(dir, &["checkout", "-q", "--detach", "main"]);
    std::fs::write(dir.join("web/index.html"), page).expect("write");
    git(dir, &["commit", "-qam", "from a fork"]);
    let c = head(dir, "HEAD");
    git(dir, &["update-ref", &format!("refs/pull/{number}/head"), &c]);
    git(dir, &["checkout", "-q", "main"]);
    c
}

/// A variable of a service's container: `None` when it is not set.
fn printenv(s: &Server, id: &str, key: &str) -> Option<String> {
    printenv_of(s, id, "web", key)
}

fn printenv_of(s: &Server, id: &str, service: &str, key: &str) -> Option<String> {
    let script = format!("if [ -n \"${{{key}+set}}\" ]; then echo \"=${key}\"; else echo unset; fi");
    let r = s.cli(&["env", "exec", id, service, "--", "sh", "-c", &script]);
    assert!(r.status.success(), "{r:?}");
    String::from_utf8_lossy(&r.stdout).trim().strip_prefix('=').map(str::to_owned)
}

#[test]
fn a_fork_s_pull_request_waits_for_approval_and_runs_without_the_secrets() {
    let vars = "defaults:\n- key: FILE_SECRET\n  value: from-the-file\n  secret: true\n- key: PLAIN\n  value: plain\n";
    let repo = app_repo("shop", "web", "app_imports:\n- name: stock\n", Some(vars), false);
    let stock = app_repo("stock", "api", "", None, false);
    let s = Server::new(None);
    s.json(&["app", "create", "--repo", path(&stock)]);
    s.json(&["app", "create", "--repo", path(&repo)]);
    s.json(&["app", "set", "shop", "--pull-requests", "on"]);
    for (app, key, value) in [("shop", "API_KEY", "s3cr3t-value"), ("stock", "STOCK_KEY", "st0ck-s3cr3t")] {
        let set = s.cli_stdin(&["app", "secret", "set", app, key], value);
        assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    }
    let hook = Hook::of(&s, "shop");
    let first = fork_commit(repo.path(), 12, "shop from a fork\n");

    // Held: nothing deployed, and the delivery says how to approve it.
    assert_eq!(hook.github("pull_request", "f-1", &github_fork_pr("opened", 12, &first, &[])).0, 202);
    let d = handled(&s, "shop", "github:f-1");
    let result = d["result"].as_str().unwrap_or_default();
    assert!(result.contains("from the fork `mallory/r` waits for approval") && result.contains("offshoot env approve shop 12"), "{d}");
    assert!(env_of_pr(&s, "shop", 12).is_none());
    let pending = s.json(&["env", "pending", "shop"]);
    assert_eq!(
        (pending[0]["number"].as_u64(), pending[0]["status"].as_str(), pending[0]["fork"].as_str()),
        (Some(12), Some("waiting"), Some("mallory/r")),
        "{pending}"
    );
    // Nobody may deploy its head as a branch of their own, and a comment from outside approves nothing.
    let own = s.cli(&["env", "create", "shop", "--branch", "refs/pull/12/head"]);
    assert!(!own.status.success() && String::from_utf8_lossy(&own.stderr).contains("offshoot env approve shop"), "{own:?}");
    let (code, answer) = hook.github("issue_comment", "f-2", &github_comment(12, "/offshoot approve", "mallory", "CONTRIBUTOR"));
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("may not approve"), "{answer}");
    assert!(env_of_pr(&s, "shop", 12).is_none());

    // Approved: an environment of its head, fetched from `refs/pull/12/head`, without the secrets.
    let approved = s.json(&["env", "approve", "shop", "12"]);
    assert!(approved["result"].as_str().unwrap_or_default().contains("approved by admin"), "{approved}");
    let env = wait_for("the fork's environment", 120, || env_of_pr(&s, "shop", 12).filter(|e| e["status"] == "ready"));
    let id = env["id"].as_str().expect("id").to_owned();
    assert_eq!((env["branch"].as_str(), env["commit"].as_str()), (Some("refs/pull/12/head"), Some(first.as_str())));
    let host = format!("web-{id}.localhost");
    assert!(http(s.router, &host, "/").unwrap_or_default().contains("shop from a fork"));
    assert_eq!(printenv(&s, &id, "API_KEY"), None, "an application secret reached a fork's code");
    assert_eq!(printenv(&s, &id, "FILE_SECRET").as_deref(), Some(""), "a secret of the variables file reached a fork's code");
    assert_eq!(printenv(&s, &id, "PLAIN").as_deref(), Some("plain"));
    // Nor do those of the application it imports: its trusted code answers the fork's.
    let import = env["imports"][0]["env_id"].as_str().expect("the import's environment").to_owned();
    assert_eq!(s.json(&["env", "show", &import])["status"], "ready");
    assert_eq!(printenv_of(&s, &import, "api", "STOCK_KEY"), None, "an imported application's secret answers a fork's code");

    // New commits wait for another approval; the environment stays where it was approved.
    let second = fork_commit(repo.path(), 12, "shop from a fork, second\n");
    assert_eq!(hook.github("pull_request", "f-3", &github_fork_pr("synchronize", 12, &second, &[])).0, 202);
    let d = handled(&s, "shop", "github:f-3");
    assert!(d["result"].as_str().unwrap_or_default().contains(&format!("{id} stays as it is")), "{d}");
    assert_eq!(s.json(&["env", "show", &id])["commit"].as_str(), Some(first.as_str()));
    // A member's comment approves it: patched to the new commit.
    assert_eq!(hook.github("issue_comment", "f-4", &github_comment(12, "/offshoot approve", "maintainer", "MEMBER")).0, 202);
    let d = handled(&s, "shop", "github:f-4");
    assert!(d["result"].as_str().unwrap_or_default().contains("approved by maintainer (a comment)"), "{d}");
    wait_for("the patch to the approved commit", 120, || {
        let e = s.json(&["env", "show", &id]);
        (e["status"] == "ready" && e["commit"] == second.as_str()).then_some(())
    });
    assert!(http(s.router, &host, "/").unwrap_or_default().contains("second"));
    let pending = s.json(&["env", "pending", "shop"]);
    assert_eq!(
        (pending[0]["status"].as_str(), pending[0]["approved_by"].as_str()),
        (Some("approved"), Some("maintainer (a comment)")),
        "{pending}"
    );

    // The dashboard shows a waiting commit with a button that approves it.
    let third = fork_commit(repo.path(), 12, "shop from a fork, third\n");
    assert_eq!(hook.github("pull_request", "f-6", &github_fork_pr("synchronize", 12, &third, &[])).0, 202);
    handled(&s, "shop", "github:f-6");
    let session = dashboard_login(&s, &s.token());
    let page = http_raw(s.api, &format!("GET /ui/apps/shop HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {session}"), b"").unwrap_or_default();
    assert!(page.contains("Pull requests from forks") && page.contains(&format!("Approve {}", &third[..7])), "{page}");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).expect("a CSRF token");
    let form = format!("csrf={csrf}");
    let head = format!(
        "POST /ui/apps/shop/pulls/12/approve HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {session}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}",
        form.len()
    );
    let answer = http_raw(s.api, &head, form.as_bytes()).unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
    wait_for("the patch approved on the dashboard", 120, || {
        let e = s.json(&["env", "show", &id]);
        (e["status"] == "ready" && e["commit"] == third.as_str()).then_some(())
    });

    // An application that allows it gives forks its secrets.
    s.json(&["app", "set", "shop", "--fork-secrets", "on"]);
    s.json(&["env", "deploy", &id, "--wait"]);
    assert_eq!(printenv(&s, &id, "API_KEY").as_deref(), Some("s3cr3t-value"));
    assert_eq!(printenv(&s, &id, "FILE_SECRET").as_deref(), Some("from-the-file"));
    // Each application decides for its own secrets.
    assert_eq!(printenv_of(&s, &import, "api", "STOCK_KEY"), None);
    s.json(&["app", "set", "stock", "--fork-secrets", "on"]);
    s.json(&["env", "deploy", &import, "--wait"]);
    assert_eq!(printenv_of(&s, &import, "api", "STOCK_KEY").as_deref(), Some("st0ck-s3cr3t"));

    // Closed: torn down and forgotten.
    assert_eq!(hook.github("pull_request", "f-5", &github_fork_pr("closed", 12, &third, &[])).0, 202);
    handled(&s, "shop", "github:f-5");
    wait_for("the teardown", 60, || (s.json(&["env", "show", &id])["status"] == "deleted").then_some(()));
    assert_eq!(s.json(&["env", "pending", "shop"]), serde_json::json!([]));
    assert_eq!(leftovers(&id), "");
    assert_eq!(leftovers(&import), "");
}
