//! End to end on the Docker engine: template keys that change what runs do what they say:
//! `parameters` given at creation reach the services.

mod support;

use support::*;

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
