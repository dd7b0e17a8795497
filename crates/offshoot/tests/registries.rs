//! End to end with a registry that asks for a password (started by `scripts/services` on
//! 127.0.0.1:5001, user `offshoot`): an environment of a private image fails saying which
//! registry to log in to, and is ready after `offshoot registry login`; a build `FROM` the private
//! image works; an application's own credentials win over the server's; the password is never
//! shown.

mod support;

use std::process::{Command, Stdio};
use support::*;

const REGISTRY: &str = "127.0.0.1:5001";
const USER: &str = "offshoot";
const PASSWORD: &str = "offshoot-registry";

/// Pushes a small image of its own to the private registry and removes the local copy, so that
/// only a pull with credentials can give it. Its reference.
fn push_private(marker: &str) -> String {
    let config = tempfile::tempdir().expect("tempdir");
    let docker_in = |args: &[&str], stdin: Option<&str>| {
        let mut c = Command::new("docker")
            .arg("--config")
            .arg(config.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker");
        if let Some(text) = stdin {
            use std::io::Write as _;
            c.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
        }
        let o = c.wait_with_output().expect("docker");
        assert!(o.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let context = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM busybox:stable\nRUN mkdir -p /www && echo private {marker} > /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"),
    )
    .expect("write");
    let image = format!("{REGISTRY}/offshoot-test/private:{marker}");
    docker_in(&["build", "-q", "-t", &image, context.path().to_str().expect("utf-8")], None);
    docker_in(&["login", REGISTRY, "--username", USER, "--password-stdin"], Some(PASSWORD));
    docker_in(&["push", "-q", &image], None);
    docker(&["rmi", "-f", &image]);
    image
}

fn login(s: &Server, password: &str, app: Option<&str>) -> std::process::Output {
    let mut args = vec!["registry", "login", REGISTRY, "--username", USER, "--password-stdin"];
    if let Some(a) = app {
        args.extend(["--app", a]);
    }
    s.cli_stdin(&args, &format!("{password}\n"))
}

fn template(app: &str, image_or_build: &str) -> String {
    format!(
        "app: {app}\nhostnames:\n- web: web-${{env_id}}.${{domain}}\nservices:\n- name: web\n{image_or_build}  ports:\n  - type: node_port\n    port: '8080'\n  readiness_probe:\n    http_get:\n      path: /\n      port: '8080'\n    period_seconds: 1\n    failure_threshold: 30\n"
    )
}

#[test]
fn private_images_are_pulled_and_built_from_with_the_registrys_credentials() {
    let marker = format!("{}{}", std::process::id(), support::free_port());
    let image = push_private(&marker);
    let s = Server::new(None);
    let repo = repo(&template("private", &format!("  image: {image}\n")), None, &[], &[]);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);

    // Without credentials: failed, naming the registry and the command that fixes it.
    let o = s.cli(&["env", "create", "private", "--branch", "main", "--wait", "--output", "json"]);
    let env: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(env["status"], "failed", "{env}");
    let reason = env["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("registry `{REGISTRY}` refused `{image}` without valid credentials"))
            && reason.contains(&format!("offshoot registry login {REGISTRY} --username USER --password-stdin")),
        "{reason}"
    );
    let id = env["id"].as_str().expect("id").to_owned();

    // A wrong password for the server, the right one for the application: the application's wins.
    assert!(login(&s, "not-the-password", None).status.success());
    let o = login(&s, PASSWORD, Some("private"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let deployed = s.json(&["env", "deploy", &id, "--wait"]);
    assert_eq!(deployed["status"], "ready", "{deployed}");
    let page = http(s.router, &format!("web-{id}.localhost"), "/").expect("answer");
    assert!(page.contains(&format!("private {marker}")), "{page}");

    // A build `FROM` the private image pulls it with the same credentials.
    docker(&["rmi", "-f", &image]);
    let built = template("built", "  build:\n    context: web\n");
    let dockerfile = format!("FROM {image}\nRUN echo built on top >> /www/index.html\n");
    let repo2 = support::repo(&built, None, &[("web/Dockerfile", dockerfile.as_str())], &[]);
    s.json(&["app", "create", "--repo", repo2.path().to_str().expect("utf-8")]);
    let o = s.cli(&["env", "create", "built", "--branch", "main", "--wait", "--output", "json"]);
    let env2: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(env2["status"], "failed", "the server's credentials are wrong, and `built` has none of its own: {env2}");
    assert!(login(&s, PASSWORD, None).status.success());
    let id2 = env2["id"].as_str().expect("id").to_owned();
    assert_eq!(s.json(&["env", "deploy", &id2, "--wait"])["status"], "ready");
    let page = http(s.router, &format!("web-{id2}.localhost"), "/").expect("answer");
    assert!(page.contains(&format!("private {marker}")) && page.contains("built on top"), "{page}");

    // Listed without the password; the password is in no output, log or container configuration.
    let list = s.json(&["registry", "list"]);
    let rows: Vec<(String, String)> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|r| (r["host"].as_str().unwrap_or("").to_owned(), r["app"].as_str().unwrap_or("(server)").to_owned()))
        .collect();
    assert_eq!(rows, [(REGISTRY.to_owned(), "(server)".to_owned()), (REGISTRY.to_owned(), "private".to_owned())]);
    let log = std::fs::read_to_string(s.data.with_extension("log")).unwrap_or_default();
    for shown in [list.to_string(), log, docker(&["inspect", &format!("offshoot-{id}-web")]), s.json(&["activity"]).to_string()] {
        assert!(!shown.contains(PASSWORD), "the password shows: {shown}");
    }
    // Logged out: forgotten; again: not found.
    assert!(s.cli(&["registry", "logout", REGISTRY, "--app", "private"]).status.success());
    let o = s.cli(&["registry", "logout", REGISTRY, "--app", "private"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"), "{}", String::from_utf8_lossy(&o.stderr));
    // A host that is not one is refused.
    let o = login(&s, PASSWORD, None);
    assert!(o.status.success());
    let bad = s.cli(&["registry", "logout", "https://x"]);
    assert_eq!(bad.status.code(), Some(1));
    for id in [&id, &id2] {
        s.json(&["env", "delete", id, "--wait"]);
    }
}
