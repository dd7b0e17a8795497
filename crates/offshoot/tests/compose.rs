//! A docker-compose application that relies on the repository's files (a bind-mounted folder
//! and file, a compose `config`, file `secrets`, an `env_file`) answers through Offshoot as under
//! docker-compose, side by side on the same engine; a commit that changes a mounted file
//! updates the service, and one that does not leaves its container alone.

mod support;

use std::path::Path;
use std::process::Command;
use support::*;

const COMPOSE: &str = r#"services:
  web:
    image: busybox:stable
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports:
      - "127.0.0.1:${WEB_PORT:-18088}:8080"
    env_file: ./web.env
    volumes:
      - ./site:/www
      - ./conf/greeting.txt:/etc/greeting.txt:ro
    configs:
      - source: motd
        target: /etc/motd.txt
    secrets:
      - db_password
      - source: api_key
        target: keys/api
        mode: 0440
configs:
  motd:
    file: ./conf/motd.txt
secrets:
  db_password:
    file: ./secrets/db_password.txt
  api_key:
    file: ./secrets/api_key.txt
"#;

const INFO: &str = r#"#!/bin/sh
echo "Content-Type: text/plain"
echo
echo "greeting: $(cat /etc/greeting.txt)"
echo "motd: $(cat /etc/motd.txt 2>/dev/null || echo none)"
echo "name: $GREETING_NAME"
echo "page: $(cat /www/sub/page.html)"
echo "secret: $(cat /run/secrets/db_password)"
echo "key: $(cat /run/secrets/keys/api)"
"#;

fn write(dir: &Path, rel: &str, text: &str) {
    let f = dir.join(rel);
    std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
    std::fs::write(f, text).expect("write");
}

fn compose_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    write(p, "docker-compose.yml", COMPOSE);
    write(p, "web.env", "GREETING_NAME=compose user\n");
    write(p, "conf/greeting.txt", "hello\n");
    write(p, "conf/motd.txt", "be kind\n");
    write(p, "site/index.html", "<h1>files</h1>\n");
    write(p, "site/sub/page.html", "a page\n");
    write(p, "secrets/db_password.txt", "pa55-w0rd-from-the-repo\n");
    write(p, "secrets/api_key.txt", "k3y-from-the-repo\n");
    write(p, "site/cgi-bin/info", INFO);
    let info = p.join("site/cgi-bin/info");
    std::fs::set_permissions(&info, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    git(p, &["init", "-q", "-b", "main"]);
    git(p, &["add", "-A"]);
    git(p, &["commit", "-qm", "main"]);
    dir
}

/// A response's body, its chunks joined when it came chunked.
fn body(response: &str) -> String {
    // A CGI script's own head (busybox httpd passes it on) may end its lines with `\n` alone.
    let (head, rest) = match (response.find("\r\n\r\n"), response.find("\n\n")) {
        (Some(a), Some(b)) if b + 2 < a + 4 => (&response[..b], &response[b + 2..]),
        (Some(a), _) => (&response[..a], &response[a + 4..]),
        (None, Some(b)) => (&response[..b], &response[b + 2..]),
        (None, None) => (response, ""),
    };
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return rest.to_owned();
    }
    let (mut out, mut rest) = (String::new(), rest);
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// `path` through docker-compose's published port.
fn compose_get(port: u16, path: &str) -> String {
    eventually(30, "docker-compose's web to answer", || http(port, "127.0.0.1", path).filter(|r| r.starts_with("HTTP/1.1 200")))
}

fn docker_compose(dir: &Path, project: &str, port: u16, args: &[&str]) {
    let o = Command::new("docker-compose")
        .args(["-p", project])
        .args(args)
        .env("WEB_PORT", port.to_string())
        .current_dir(dir)
        .output()
        .expect("docker-compose runs (scripts/services installs it)");
    assert!(o.status.success(), "docker-compose {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_compose_app_with_repository_files_answers_as_under_docker_compose_and_follows_their_changes() {
    let repo = compose_repo();
    let s = Server::new(None);
    let app = s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8"), "--name", "files"]);
    assert_eq!(app["name"], "files", "{app}");
    let env = s.json(&["env", "create", "files", "--branch", "main", "--wait"]);
    assert_eq!(env["status"], "ready", "{env}");
    let id = env["id"].as_str().expect("id").to_owned();
    let host = format!("web-files-{id}.localhost");
    let ours = |path: &str| http(s.router, &host, path).unwrap_or_default();

    // The same answers as docker-compose on the same engine.
    let project = format!("offshootcompose{}", std::process::id());
    let port = free_port();
    docker_compose(repo.path(), &project, port, &["up", "-d"]);
    let theirs_info = compose_get(port, "/cgi-bin/info");
    let theirs_index = compose_get(port, "/");
    docker_compose(repo.path(), &project, port, &["down", "-v"]);
    let (info, index) = (ours("/cgi-bin/info"), ours("/"));
    assert!(info.starts_with("HTTP/1.1 200") && index.starts_with("HTTP/1.1 200"), "{info}\n{index}");
    assert_eq!(body(&index), body(&theirs_index), "the bind-mounted folder");
    // docker-compose 1.29 does not mount `configs` outside swarm; the compose specification
    // does, at the target: that line is ours alone.
    let without_motd = |b: &str| b.lines().filter(|l| !l.starts_with("motd:")).collect::<Vec<_>>().join("\n");
    assert_eq!(without_motd(&body(&info)), without_motd(&body(&theirs_info)), "ours:\n{info}\ntheirs:\n{theirs_info}");
    assert!(body(&info).contains("greeting: hello") && body(&info).contains("name: compose user"), "{info}");
    assert!(body(&info).contains("motd: be kind"), "{info}");
    assert!(body(&info).contains("secret: pa55-w0rd-from-the-repo") && body(&info).contains("key: k3y-from-the-repo"), "{info}");

    // The file secrets: their modes (the long form's, else 0400), their values in memory, never
    // in the template nor on the data directory's disk.
    let o = s.cli(&["env", "exec", &id, "web", "--", "stat", "-c", "%a %u", "/run/secrets/db_password", "/run/secrets/keys/api"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "400 0\n440 0\n", "{}", String::from_utf8_lossy(&o.stderr));
    let template = String::from_utf8_lossy(&s.cli(&["app", "template", "files"]).stdout).into_owned();
    assert!(template.contains("secret_files:") && !template.contains("pa55-w0rd"), "{template}");
    let on_disk = Command::new("grep").args(["-r", "-l", "pa55-w0rd-from-the-repo"]).arg(&s.data).output().expect("grep");
    assert!(on_disk.stdout.is_empty(), "the value is on disk: {}", String::from_utf8_lossy(&on_disk.stdout));
    let instance = std::fs::read_to_string(s.data.join("instance-id")).expect("instance").trim().to_owned();
    let in_memory = Path::new("/dev/shm").join(format!("offshoot-{instance}")).join(&id);
    assert!(in_memory.is_dir(), "{}", in_memory.display());

    // Mounted read-only.
    let o = s.cli(&["env", "exec", &id, "web", "--", "sh", "-c", "echo x > /etc/greeting.txt"]);
    let shown = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(shown.contains("Read-only file system"), "{shown}");

    // A commit that leaves the mounted files alone leaves the container alone.
    let container = |name: &str| docker(&["inspect", "--format", "{{.Id}}", name]).trim().to_owned();
    let web = format!("offshoot-{id}-web");
    let before = container(&web);
    write(repo.path(), "README.md", "files\n");
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-qm", "readme"]);
    assert_eq!(s.json(&["env", "deploy", &id, "--wait"])["status"], "ready");
    assert_eq!(container(&web), before, "unchanged files: the same container");

    // One that changes a mounted file updates it.
    write(repo.path(), "conf/greeting.txt", "hello again\n");
    write(repo.path(), "site/sub/page.html", "a new page\n");
    git(repo.path(), &["commit", "-qam", "greeting"]);
    assert_eq!(s.json(&["env", "deploy", &id, "--wait"])["status"], "ready");
    assert_ne!(container(&web), before, "changed files: the service restarted");
    let info = ours("/cgi-bin/info");
    assert!(body(&info).contains("greeting: hello again") && body(&info).contains("page: a new page"), "{info}");

    // Teardown removes the mounted files and the secret files with the rest.
    let mounts = s.data.join("mounts").join(&id);
    assert!(mounts.is_dir(), "{}", mounts.display());
    assert_eq!(s.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
    assert!(!mounts.exists(), "{}", mounts.display());
    assert!(!in_memory.exists(), "{}", in_memory.display());
    assert_eq!(leftovers(&id), "");
}

#[test]
fn a_configmap_path_missing_or_a_link_fails_the_deployment_saying_which() {
    let template = r#"app: cm
services:
- name: web
  image: busybox:stable
  command: [sleep, "3600"]
  configmap:
  - name: settings
    mount_path: /etc/settings.yml
    repo_path: ./config/settings.yml
"#;
    let r = repo(template, None, &[], &[]);
    let s = Server::new(None);
    s.json(&["app", "create", "--repo", r.path().to_str().expect("utf-8")]);
    let o = s.cli(&["env", "create", "cm", "--branch", "main", "--wait", "--output", "json"]);
    assert!(!o.status.success(), "a failed environment is a failed command");
    let env: serde_json::Value = serde_json::from_slice(&o.stdout).expect("the environment, as JSON");
    assert_eq!(env["status"], "failed", "{env}");
    let reason = env["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("service `web`: configmap `settings`: `./config/settings.yml` is not in the repository at commit"), "{env}");
    let id = env["id"].as_str().expect("id").to_owned();

    // A link to a file of the machine is refused: the engine would mount what it points to.
    std::fs::create_dir_all(r.path().join("config")).expect("mkdir");
    std::os::unix::fs::symlink("/etc/hostname", r.path().join("config/settings.yml")).expect("symlink");
    git(r.path(), &["add", "-A"]);
    git(r.path(), &["commit", "-qm", "link"]);
    let o = s.cli(&["env", "deploy", &id, "--wait", "--output", "json"]);
    let env: serde_json::Value = serde_json::from_slice(&o.stdout).expect("the environment, as JSON");
    assert_eq!(env["status"], "failed", "{env}");
    assert!(env["reason"].as_str().unwrap_or_default().contains("`./config/settings.yml` is a symbolic link"), "{env}");

    // The file itself: mounted.
    std::fs::remove_file(r.path().join("config/settings.yml")).expect("rm");
    write(r.path(), "config/settings.yml", "mode: test\n");
    git(r.path(), &["add", "-A"]);
    git(r.path(), &["commit", "-qm", "file"]);
    assert_eq!(s.json(&["env", "deploy", &id, "--wait"])["status"], "ready");
    let shown = s.cli(&["env", "exec", &id, "web", "--", "cat", "/etc/settings.yml"]);
    assert_eq!(String::from_utf8_lossy(&shown.stdout), "mode: test\n");
    assert_eq!(s.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
}
