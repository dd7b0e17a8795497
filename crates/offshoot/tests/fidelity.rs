//! End to end on the Docker engine: template keys that change what runs do what they say:
//! `parameters` given at creation reach the services.

mod support;

use support::*;

/// An application from a repository of `template` and `files`, and a ready environment of its
/// `main`: the repository (kept while the test runs) and the environment's id.
fn ready_env(s: &Server, app: &str, template: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let repo = repo(template, None, files, &[]);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let env = s.json(&["env", "create", app, "--branch", "main", "--wait"]);
    assert_eq!(env["status"], "ready", "{env}");
    (repo, env["id"].as_str().expect("id").to_owned())
}

const TUNED: &str = r#"app: tuned
hostnames:
- web: web-${env_id}.${domain}
parameters:
- name: llm
  type: string
  description: the model to serve
  default: llama2
- name: workers
  type: integer
  default: '2'
- name: tier
  options: [small, large]
services:
- name: web
  image: busybox:stable
  command: [sh, -c, "trap 'exit 0' TERM; mkdir -p /www; echo llm=$LLM workers=$WORKERS tier=$TIER > /www/index.html; httpd -f -p 8080 -h /www & wait"]
  envs:
  - key: LLM
    value: ${parameters.llm}
  - key: WORKERS
    value: ${parameters.workers}
  - key: TIER
    value: ${parameters.tier}
  ports:
  - type: node_port
    port: '8080'
    target_port: '8080'
  readiness_probe:
    http_get:
      path: /
      port: '8080'
    period_seconds: 1
    failure_threshold: 30
"#;

#[test]
fn parameters_are_checked_at_creation_and_reach_the_services() {
    let repo = repo(TUNED, None, &[], &[]);
    let s = Server::new(None);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let refused = |args: &[&str], needle: &str| {
        let mut all = vec!["env", "create", "tuned", "--branch", "main"];
        all.extend_from_slice(args);
        let o = s.cli(&all);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: expected `{needle}` in: {err}");
    };
    refused(&[], "parameter `tier` has no default and was not given: pass `--param tier=VALUE`");
    refused(&["--param", "tier=medium"], "parameter `tier` is one of small, large, not `medium`");
    refused(&["--param", "tier=small", "--param", "workers=many"], "parameter `workers` is an integer, and `many` is not an integer");
    refused(
        &["--param", "tier=small", "--param", "colour=red"],
        "parameter `colour` is not declared; the template's are llm, workers, tier",
    );
    let o = s.cli(&["env", "create", "tuned", "--branch", "main", "--param", "tier"]);
    assert_eq!(o.status.code(), Some(2), "not NAME=VALUE is a usage error");
    assert!(s.json(&["env", "list"]).as_array().expect("list").is_empty(), "nothing was created");

    let env = s.json(&["env", "create", "tuned", "--branch", "main", "--param", "tier=large", "--param", "llm=gpt-4", "--wait"]);
    assert_eq!(env["status"], "ready", "{env}");
    let id = env["id"].as_str().expect("id");
    let page = http(s.router, &format!("web-{id}.localhost"), "/").expect("answer");
    assert!(page.contains("llm=gpt-4 workers=2 tier=large"), "{page}");
    let shown = s.json(&["env", "show", id]);
    let params: Vec<(String, String, bool)> = shown["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| (p["name"].as_str().unwrap_or("").to_owned(), p["value"].as_str().unwrap_or("").to_owned(), p["default"] == true))
        .collect();
    assert_eq!(
        params,
        [("llm".into(), "gpt-4".into(), false), ("workers".into(), "2".into(), true), ("tier".into(), "large".into(), false)]
    );
    let text = String::from_utf8_lossy(&s.cli(&["env", "show", id, "--output", "human"]).stdout).into_owned();
    assert!(text.contains("parameter workers = 2  (default)") && text.contains("parameter llm = gpt-4\n"), "{text}");
    s.json(&["env", "delete", id, "--wait"]);
}

const CLOCKED: &str = r#"app: clocked
services:
- name: web
  image: busybox:stable
  command: [sh, -c, "trap 'exit 0' TERM; mkdir -p /www; echo served by web > /www/index.html; httpd -f -p 8080 -h /www & wait"]
  ports:
  - type: container_port
    port: '8080'
  configmap:
  - name: motd
    mount_path: /etc/motd.txt
    repo_path: motd.txt
  readiness_probe:
    tcp_socket:
      port: '8080'
    period_seconds: 1
    failure_threshold: 30
cron_jobs:
- name: report
  from_services: web
  schedule: '* * * * *'
  command: [sh, -c, "cat /etc/motd.txt"]
- name: tick
  build:
    context: tick
  schedule: '* * * * *'
  command: [sh, -c, "echo tick $MODE $(cat /mark); wget -qO- http://web:8080/"]
  envs:
  - key: MODE
    value: minutely
"#;

/// The newest run of `job` with `status`, once there is one (at most `secs`).
fn first_run(s: &Server, id: &str, job: &str, status: &str, secs: u64) -> serde_json::Value {
    eventually(secs, &format!("a {status} run of {job}"), || {
        let jobs = s.json(&["env", "jobs", id]);
        let runs = jobs.as_array()?.iter().find(|j| j["name"] == job)?["runs"].as_array()?.clone();
        let found = runs.into_iter().find(|r| r["status"] == status);
        if found.is_none() {
            std::thread::sleep(std::time::Duration::from_millis(900));
        }
        found
    })
}

#[test]
fn a_cron_job_runs_every_minute_in_its_environment_and_skips_while_it_sleeps() {
    let s = Server::new(None);
    let files = [("tick/Dockerfile", "FROM busybox:stable\nRUN echo built-tick > /mark\n"), ("motd.txt", "from the repository\n")];
    let (_repo, id) = ready_env(&s, "clocked", CLOCKED, &files);
    let jobs = s.json(&["env", "jobs", &id]);
    assert_eq!(jobs[0]["schedule"], "* * * * *");
    assert!(jobs[0]["next_at"].as_i64().is_some(), "{jobs}");

    // Within a minute (and the clock's few seconds), a run on the real clock, from the image
    // its deployment built, on the environment's network: it reached the service by its name.
    let run = first_run(&s, &id, "tick", "succeeded", 120);
    let output = run["output"].as_str().unwrap_or_default();
    assert!(output.contains("tick minutely built-tick") && output.contains("served by web"), "its own image, its variables: {run}");
    assert_eq!(run["scheduled_at"].as_i64().expect("scheduled") % 60_000, 0, "on the minute");
    // A cron job made from a service has the service's repository files.
    let report = first_run(&s, &id, "report", "succeeded", 120);
    assert!(report["output"].as_str().unwrap_or_default().contains("from the repository"), "{report}");
    let o = s.cli(&["env", "logs", &id, "--job", "tick"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success() && text.contains("tick| tick minutely"), "{text}{}", String::from_utf8_lossy(&o.stderr));
    let o = s.cli(&["env", "logs", &id, "--job", "nope"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no cron job `nope`"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(leftovers_of_jobs(&id), 0, "each run's container is removed");

    // Asleep: the next occurrence is skipped, and says why.
    s.json(&["env", "sleep", &id, "--wait"]);
    let skipped = first_run(&s, &id, "tick", "skipped", 120);
    assert_eq!(skipped["reason"], "the environment is asleep", "{skipped}");
    let text = String::from_utf8_lossy(&s.cli(&["env", "jobs", &id, "--output", "human"]).stdout).into_owned();
    assert!(text.contains("tick  schedule `* * * * *` (UTC)") && text.contains("(the environment is asleep)"), "{text}");
    s.json(&["env", "delete", &id, "--wait"]);
}

/// How many job containers of the environment exist.
fn leftovers_of_jobs(id: &str) -> usize {
    docker(&["ps", "-aq", "--filter", &format!("name=offshoot-{id}-job-")]).lines().count()
}

const SEEDED: &str = r#"app: seeded
hostnames:
- web: web-${env_id}.${domain}
services:
- name: web
  image: busybox:stable
  command: [sh, -c, "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]
  volumes:
  - type: persistent
    name: site
    mount_path: /www
  ports:
  - type: node_port
    port: '8080'
  readiness_probe:
    tcp_socket:
      port: '8080'
    period_seconds: 1
    failure_threshold: 30
jobs:
- name: seed
  build:
    context: seed
  memory:
    limits: 64Mi
  volumes:
  - type: persistent
    name: site
    mount_path: /out
  command: [sh, -c, "cp /seed.txt /out/seed.txt; (cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes) > /out/limit.txt; echo seeded"]
workflows:
- name: setup
  order_from: [jobs.seed, services.web]
- name: patch
  order_from: [jobs.seed, services.web]
- name: teardown
  order_from: [release.remove_environment]
"#;

#[test]
fn a_job_runs_its_own_build_with_its_own_volumes_and_limits() {
    // Content of this run's own: an image left by an earlier run is not reused.
    let run = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    );
    let seed = |text: &str| format!("FROM busybox:stable\nRUN echo {text} > /seed.txt && echo {run} > /run.txt\n");
    let v1 = seed("built-one");
    let s = Server::new(None);
    let (repo, id) = ready_env(&s, "seeded", SEEDED, &[("seed/Dockerfile", v1.as_str())]);
    let host = format!("web-{id}.localhost");
    let page = http(s.router, &host, "/seed.txt").expect("answer");
    assert!(page.contains("built-one"), "the job ran its own image and wrote the service's volume: {page}");
    let limit = http(s.router, &host, "/limit.txt").expect("answer");
    assert!(limit.contains("67108864"), "its own memory limit: {limit}");
    let o = s.cli(&["env", "logs", &id, "--build"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("job-seed| "), "{}", String::from_utf8_lossy(&o.stdout));

    // A commit that changes the job's build: the deployment builds it again and runs the new one.
    std::fs::write(repo.path().join("seed/Dockerfile"), seed("built-two")).expect("write");
    git(repo.path(), &["commit", "-qam", "seed two"]);
    let o = s.cli(&["env", "deploy", &id, "--wait"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = http(s.router, &host, "/seed.txt").expect("answer");
    assert!(page.contains("built-two"), "{page}");
    s.json(&["env", "delete", &id, "--wait"]);
}

const SEALED: &str = r#"app: sealed
services:
- name: api
  image: busybox:stable
  command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]
  secret_files:
  - name: db_pass
  - name: tls.key
    mount_path: /etc/tls/key.pem
    mode: '0440'
workflows:
- name: setup
  order_from: [services.api]
- name: patch
  order_from: [services.api]
- name: teardown
  order_from: [release.remove_environment]
"#;

/// `offshoot app secret set APP NAME --file` with `value` on standard input.
fn set_file_secret(s: &Server, app: &str, name: &str, value: &str) {
    let o = s.cli_stdin(&["app", "secret", "set", app, name, "--file"], value);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn file_secrets_are_refused_until_set_and_a_new_value_replaces_the_service() {
    let repo = repo(SEALED, None, &[], &[]);
    let s = Server::new(None);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let o = s.cli(&["env", "create", "sealed", "--branch", "main", "--wait", "--output", "json"]);
    let env: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(env["status"], "failed", "{env}");
    let reason = env["reason"].as_str().unwrap_or_default();
    assert!(
        reason
            .contains("application `sealed` has no file secret `db_pass`; set it: `offshoot app secret set sealed db_pass --file < FILE`"),
        "{reason}"
    );
    let id = env["id"].as_str().expect("id").to_owned();

    set_file_secret(&s, "sealed", "db_pass", "first\n");
    set_file_secret(&s, "sealed", "tls.key", "-----BEGIN KEY-----\n");
    assert_eq!(s.json(&["env", "deploy", &id, "--wait"])["status"], "ready");
    let read = |path: &str| String::from_utf8_lossy(&s.cli(&["env", "exec", &id, "api", "--", "cat", path]).stdout).into_owned();
    assert_eq!(read("/run/secrets/db_pass"), "first\n", "kept byte for byte");
    assert_eq!(read("/etc/tls/key.pem"), "-----BEGIN KEY-----\n");
    let container = || docker(&["inspect", "--format", "{{.Id}}", &format!("offshoot-{id}-api")]).trim().to_owned();
    let before = container();

    // A new value: the next deployment replaces the service, which reads it.
    set_file_secret(&s, "sealed", "db_pass", "second\n");
    assert_eq!(s.json(&["env", "deploy", &id, "--wait"])["status"], "ready");
    assert_ne!(container(), before);
    assert_eq!(read("/run/secrets/db_pass"), "second\n");
    // A bad name is refused.
    let o = s.cli(&["app", "secret", "set", "sealed", "../x", "--file"]);
    assert!(!o.status.success());
    s.json(&["env", "delete", &id, "--wait"]);
}

const LEDGERED: &str = r#"app: ledgered
services:
- name: api
  image: busybox:stable
  command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]
  registry: public
  node_selector:
  - key: disk
    value: ssd
custom_links:
- name: Grafana
  url: https://grafana.example.com
"#;

#[test]
fn an_environment_lists_what_its_runtime_ignores_and_refused_keys_stop_its_creation() {
    let s = Server::new(None);
    let (_repo, id) = ready_env(&s, "ledgered", LEDGERED, &[]);
    let shown = s.json(&["env", "show", &id]);
    let compat: Vec<(String, String, u64, String)> = shown["compat"]
        .as_array()
        .expect("compat")
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap_or("").to_owned(),
                c["support"].as_str().unwrap_or("").to_owned(),
                c["line"].as_u64().unwrap_or(0),
                c["why"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let paths: Vec<(&str, u64)> = compat.iter().map(|(p, _, l, _)| (p.as_str(), *l)).collect();
    assert_eq!(paths, [("services[0].registry", 6), ("services[0].node_selector", 7), ("custom_links", 10)], "{shown}");
    assert!(compat.iter().all(|(_, s, _, why)| s == "ignored" && !why.is_empty()));
    let text = String::from_utf8_lossy(&s.cli(&["env", "show", &id, "--output", "human"]).stdout).into_owned();
    assert!(text.contains("ignored here: `services[0].node_selector` (line 7): one machine runs the environment"), "{text}");
    s.json(&["env", "delete", &id, "--wait"]);

    // Refused keys: nothing is created, and the message names each one with its line and why.
    let refused = "app: refused\nservices:\n- name: api\n  image: busybox:stable\n  secrets_from: [vault]\n  volumes:\n  - type: s3\n    name: assets\n    mount_path: /assets\n    bucket: my-bucket\n";
    let repo = support::repo(refused, None, &[], &[]);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let o = s.cli(&["env", "create", "refused", "--branch", "main"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("the template uses what Docker refuses"), "{err}");
    assert!(err.contains("`services[0].secrets_from` (line 5): `secrets_from` names an external secrets provider"), "{err}");
    assert!(err.contains("`services[0].volumes[0].type` (line 7): `s3` volumes need an object-storage provider"), "{err}");
    assert!(s.json(&["env", "list", "--app", "refused"]).as_array().expect("list").is_empty());
}
