//! Static sites end to end: a real server builds a front end in a builder container (busybox
//! here), stores it, and serves it through the router next to an API container; then the same
//! against an S3-compatible server (moto).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::*;

/// The front end's build: a fingerprinted bundle, a page that names the API's URL (a build-time
/// variable), a text file worth compressing, and a random build id (changes with every build).
const BUILD_SH: &str = r#"set -e
name="app.v1$(md5sum app.js | cut -c1-10).js"
cp app.js "dist/assets/$name"
printf '<!doctype html><title>%s</title><script src="/assets/%s"></script><p id=api>%s</p>\n' "$(cat version)" "$name" "$API_INGRESS_URL" > dist/index.html
i=0
while [ $i -lt 300 ]; do echo "line $i of some rather repetitive text" >> dist/notes.txt; i=$((i+1)); done
cat /proc/sys/kernel/random/uuid > dist/build-id.txt
mkdir -p "$npm_config_cache"
echo run >> "$npm_config_cache/runs"
wc -l < "$npm_config_cache/runs" | tr -d ' ' > dist/builds.txt
echo "secret is $TOKEN"
"#;

fn spa_repo() -> tempfile::TempDir {
    repo(
        SPA_TEMPLATE,
        Some("defaults:\n- key: TOKEN\n  value: not-for-logs-1234\n  secret: true\n"),
        &[
            (
                "api/Dockerfile",
                "FROM busybox:stable\nRUN mkdir /www && echo api > /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
            ),
            ("front-end/build.sh", BUILD_SH),
            ("front-end/app.js", "console.log('one');\n"),
            ("front-end/version", "v1"),
        ],
        &[("broken", &[("front-end/build.sh", "echo about to fail\nexit 3\n")])],
    )
}

fn commit(repo: &std::path::Path, files: &[(&str, &str)], message: &str) {
    for (rel, text) in files {
        std::fs::write(repo.join(rel), text).expect("write");
    }
    git(repo, &["commit", "-qam", message]);
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `src` of the page's script.
fn script_of(page: &str) -> String {
    page.split("src=\"").nth(1).and_then(|r| r.split('"').next()).expect("a script").to_owned()
}

fn deploy(s: &Server, id: &str) -> serde_json::Value {
    let o = s.cli(&["env", "deploy", id, "--wait"]);
    assert!(o.status.success(), "deploy: {}{}", text(&o.stdout), text(&o.stderr));
    s.json(&["env", "show", id])
}

fn app_and_env(s: &Server, repo: &std::path::Path) -> (String, String) {
    s.json(&["app", "create", "--repo", repo.to_str().expect("utf-8")]);
    let a = s.json(&["app", "set", "spa", "--static-builder", "busybox:stable"]);
    assert_eq!(a["static_builder"], "busybox:stable", "{a}");
    let env = s.json(&["env", "create", "spa", "--branch", "main", "--wait"]);
    assert_eq!(env["status"], "ready", "{env}");
    let id = env["id"].as_str().expect("id").to_owned();
    (id.clone(), format!("web-{id}.localhost"))
}

#[test]
fn static_front_end_with_api() {
    let repo = spa_repo();
    let s = Server::new(None);
    let (id, web) = app_and_env(&s, repo.path());
    let r = s.router;

    // The page was built with the API's URL, and both are reachable.
    let (st, h, body) = fetch(r, "GET", &web, "/", &[]);
    let page = text(&body);
    assert_eq!(st, 200, "{page}");
    assert!(page.contains(&format!("<p id=api>http://api-{id}.localhost:{r}</p>")), "{page}");
    assert!(page.contains("<title>v1</title>"), "{page}");
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache");
    assert!(text(&fetch(r, "GET", &format!("api-{id}.localhost"), "/", &[]).2).contains("api"));
    let env = s.json(&["env", "show", &id]);
    let web_svc = env["services"].as_array().and_then(|v| v.iter().find(|x| x["name"] == "web")).cloned().expect("web");
    assert_eq!(web_svc["status"], "ready", "{env}");
    assert!(web_svc["urls"].to_string().contains(&format!("http://{web}:{r}")), "{web_svc}");
    // No container serves it.
    assert!(!containers(&id).iter().any(|(n, _)| n.contains("-web")), "{:?}", containers(&id));

    // Conditional requests and caching.
    let etag = h["etag"].clone();
    let (st, h304, body) = fetch(r, "GET", &web, "/", &[("If-None-Match", &etag)]);
    assert_eq!((st, body.len(), h304["etag"].as_str()), (304, 0, etag.as_str()));
    let asset = script_of(&page);
    let (st, h, _) = fetch(r, "GET", &web, &asset, &[]);
    assert_eq!(
        (st, h["cache-control"].as_str(), h["content-type"].as_str()),
        (200, "public, max-age=31536000, immutable", "text/javascript; charset=utf-8")
    );
    let (_, h, gz) = fetch(r, "GET", &web, "/notes.txt", &[("Accept-Encoding", "gzip, br")]);
    assert_eq!(h["content-encoding"], "br");
    assert!(gz.len() < 2000, "{} bytes", gz.len());
    let (st, h, part) = fetch(r, "GET", &web, "/notes.txt", &[("Range", "bytes=0-9")]);
    assert_eq!((st, text(&part).as_str(), h["content-range"].as_str()), (206, "line 0 of ", h["content-range"].as_str()));
    assert!(h["content-range"].starts_with("bytes 0-9/"), "{h:?}");
    // The SPA fallback for routes, a 404 for missing files.
    let (st, _, body) = fetch(r, "GET", &web, "/users/42", &[]);
    assert_eq!(st, 200);
    assert!(text(&body).contains("<title>v1</title>"));
    assert_eq!(fetch(r, "GET", &web, "/assets/missing.js", &[]).0, 404);
    // The build log is kept, with the secret masked.
    let logs = s.json(&["env", "logs", &id, "--build"]);
    let log = logs.to_string();
    assert!(log.contains("$ sh build.sh") && log.contains("secret is ****"), "{log}");
    assert!(!log.contains("not-for-logs-1234"), "{log}");

    // The same commit again: nothing is rebuilt (the build id is the same).
    let build_id = text(&fetch(r, "GET", &web, "/build-id.txt", &[]).2);
    assert_eq!(build_id.trim().len(), 36, "{build_id}");
    deploy(&s, &id);
    assert_eq!(text(&fetch(r, "GET", &web, "/build-id.txt", &[]).2), build_id);
    // A push that changes only the API does not rebuild the front end either.
    commit(
        repo.path(),
        &[(
            "api/Dockerfile",
            "FROM busybox:stable\nRUN mkdir /www && echo api v2 > /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
        )],
        "api v2",
    );
    deploy(&s, &id);
    assert!(text(&fetch(r, "GET", &web, "/", &[]).2).contains("<title>v1</title>"));
    assert!(text(&fetch(r, "GET", &format!("api-{id}.localhost"), "/", &[]).2).contains("api v2"));
    assert_eq!(text(&fetch(r, "GET", &web, "/build-id.txt", &[]).2), build_id);

    // A new front end: requests during the deployment all see one whole build, old or new
    // (never an error); afterwards the new page is served, and the old page's bundle is still
    // there for a browser that loaded the old page.
    commit(repo.path(), &[("front-end/app.js", "console.log('two');\n"), ("front-end/version", "v2")], "front end v2");
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, web) = (stop.clone(), web.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (st, _, body) = fetch(r, "GET", &web, "/", &[]);
                let page = text(&body);
                let version = if page.contains("<title>v1</title>") {
                    "v1"
                } else if page.contains("<title>v2</title>") {
                    "v2"
                } else {
                    "?"
                };
                seen.push((st, version.to_owned(), page));
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        })
    };
    deploy(&s, &id);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().expect("watcher");
    assert!(seen.iter().all(|(st, v, _)| *st == 200 && v != "?"), "{:?}", seen.iter().find(|(st, v, _)| *st != 200 || v == "?"));
    let first_v2 = seen.iter().position(|(_, v, _)| v == "v2").unwrap_or_else(|| {
        panic!("the new build was served: {} {}", s.json(&["env", "show", &id]), text(&fetch(r, "GET", &web, "/", &[]).2))
    });
    assert!(seen[first_v2..].iter().all(|(_, v, _)| v == "v2"), "once switched, never back");
    assert!(seen.iter().any(|(_, v, _)| v == "v1"), "the old build served during the deployment");
    let (_, h2, body) = fetch(r, "GET", &web, "/", &[]);
    let page2 = text(&body);
    assert_ne!(h2["etag"], etag);
    assert_ne!(script_of(&page2), asset);
    assert_ne!(text(&fetch(r, "GET", &web, "/build-id.txt", &[]).2), build_id);
    // The package managers' cache outlived the first build.
    assert_eq!(text(&fetch(r, "GET", &web, "/builds.txt", &[]).2).trim(), "2");
    assert_eq!(fetch(r, "GET", &web, &asset, &[]).0, 200, "the old bundle stays reachable");
    assert_eq!(fetch(r, "GET", &web, &script_of(&page2), &[]).0, 200);
    assert_eq!(fetch(r, "GET", &web, "/", &[("If-None-Match", &etag)]).0, 200, "the old ETag no longer matches");

    // Deleting the environment leaves nothing on the engine.
    let o = s.cli(&["env", "delete", &id, "--wait"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(leftovers(&id), "");
    assert_eq!(fetch(r, "GET", &web, "/", &[]).0, 404);
}

fn moto() -> Helper {
    let bin = std::env::var("OFFSHOOT_MOTO").unwrap_or_else(|_| "/opt/offshoot-moto/bin/moto_server".into());
    helper(&bin, &["-H", "127.0.0.1", "-p", "{port}"], "run scripts/services")
}

#[test]
fn s3_storage_and_failed_builds() {
    let m = moto();
    let endpoint = format!("http://127.0.0.1:{}", m.port);
    let created = std::process::Command::new("curl").args(["-fsS", "-X", "PUT", &format!("{endpoint}/sites")]).output().expect("curl");
    assert!(created.status.success(), "{}", text(&created.stderr));
    let repo = spa_repo();
    let s = Server::new_with_env(
        None,
        &["--static-store", "s3://sites/offshoot"],
        &[
            ("AWS_ENDPOINT_URL", &endpoint),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ],
    );
    let (id, web) = app_and_env(&s, repo.path());
    let (st, _, body) = fetch(s.router, "GET", &web, "/", &[]);
    assert_eq!(st, 200);
    assert!(text(&body).contains("<title>v1</title>"));
    let (st, _, notes) = fetch(s.router, "GET", &web, "/notes.txt", &[]);
    assert_eq!((st, text(&notes).lines().count()), (200, 300));
    // The site is in the bucket: its manifest and its files, named by content.
    let list = std::process::Command::new("curl")
        .args(["-fsS", &format!("{endpoint}/sites?list-type=2&prefix=offshoot/")])
        .output()
        .expect("curl");
    let list = text(&list.stdout);
    assert!(list.contains("offshoot/sites/") && list.contains(".json</Key>"), "{list}");
    assert!(list.matches("offshoot/blobs/").count() >= 5, "{list}");
    // Nothing under the data directory: the bucket holds it all.
    assert!(!s.data.join("static").exists());

    // A build that fails: the environment fails with the exit code and the log's end; nothing
    // is served for it.
    let o = s.cli(&["env", "create", "spa", "--branch", "broken", "--wait"]);
    assert!(!o.status.success());
    let all = s.json(&["env", "list"]);
    let broken = all.as_array().and_then(|v| v.iter().find(|e| e["branch"] == "broken")).cloned().expect("broken env");
    let reason = broken["reason"].as_str().unwrap_or_default().to_owned();
    assert_eq!(broken["status"], "failed", "{broken}");
    assert!(reason.contains("exited with code 3") && reason.contains("about to fail"), "{reason}");
    let bid = broken["id"].as_str().expect("id");
    assert_eq!(fetch(s.router, "GET", &format!("web-{bid}.localhost"), "/", &[]).0, 503);
    let o = s.cli(&["env", "delete", bid, "--wait"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(leftovers(bid), "");
    let o = s.cli(&["env", "delete", &id, "--wait"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}
