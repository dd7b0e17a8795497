//! The same behaviours, asked of every runtime through the same API: on the Docker engine
//! always; on Kubernetes when `KUBECONFIG` names a cluster that answers (skipped, saying why,
//! otherwise: this machine has none). Only public images, so a cluster pulls them itself.

#![expect(clippy::print_stderr, reason = "a skipped runtime says why")]

mod support;

use support::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rt {
    Docker,
    Kubernetes,
}

/// A server on the runtime, or `None` when that runtime is not available here.
fn server(rt: Rt) -> Option<Server> {
    match rt {
        Rt::Docker => Some(Server::new(None)),
        Rt::Kubernetes => {
            let Some(path) = std::env::var_os("KUBECONFIG") else {
                eprintln!("kubernetes: skipped, KUBECONFIG is not set (no cluster on this machine)");
                return None;
            };
            let path = path.to_string_lossy().into_owned();
            let s = std::panic::catch_unwind(|| Server::new_with(None, &["--runtime", "kubernetes", "--kubeconfig", &path]));
            match s {
                Ok(s) => Some(s),
                Err(_) => {
                    eprintln!("kubernetes: skipped, the server could not reach the cluster of {path}");
                    None
                }
            }
        }
    }
}

fn app(s: &Server, name: &str, services: &str, extra: &str) -> tempfile::TempDir {
    let r = repo(&format!("app: {name}\n{extra}services:\n{services}"), None, &[], &[]);
    s.json(&["app", "create", "--repo", r.path().to_str().expect("utf-8")]);
    r
}

fn create(s: &Server, app: &str) -> serde_json::Value {
    let o = s.cli(&["env", "create", app, "--branch", "main", "--wait", "--output", "json"]);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"))
}

fn gone(rt: Rt, id: &str) -> bool {
    match rt {
        Rt::Docker => leftovers(id).trim().is_empty(),
        // The server waits for the namespace to be gone before it says `deleted`.
        Rt::Kubernetes => true,
    }
}

fn ready_then_torn_down(rt: Rt) {
    let Some(s) = server(rt) else { return };
    let _r = app(
        &s,
        "plain",
        "- name: web\n  image: busybox:stable\n  command: [sh, -c, 'mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 8080 -h /www']\n  ports:\n  - type: container_port\n    port: '8080'\n  readiness_probe:\n    http_get:\n      path: /\n      port: '8080'\n    period_seconds: 1\n    failure_threshold: 60\n",
        "jobs:\n- name: hello\n  image: busybox:stable\n  command: [sh, -c, 'echo hello']\n  halt_on_error: true\nworkflows:\n- name: setup\n  parallelize:\n  - step: job\n    tasks: [jobs.hello]\n  - step: services\n    tasks: [services.web]\n- name: teardown\n  parallelize:\n  - step: remove\n    tasks: [release.remove_environment]\n",
    );
    let e = create(&s, "plain");
    assert_eq!(e["status"], "ready", "{rt:?}: {e}");
    assert_eq!(e["services"][0]["status"], "ready", "{rt:?}: {e}");
    let id = e["id"].as_str().expect("id").to_owned();
    let d = s.json(&["env", "delete", &id, "--wait"]);
    assert_eq!(d["status"], "deleted", "{rt:?}: {d}");
    assert!(gone(rt, &id), "{rt:?}: {id} left objects behind");
}

fn a_missing_image_fails_with_its_name(rt: Rt) {
    let Some(s) = server(rt) else { return };
    let _r = app(&s, "broken", "- name: web\n  image: offshoot-test/does-not-exist:1\n", "");
    let e = create(&s, "broken");
    assert_eq!(e["status"], "failed", "{rt:?}: {e}");
    let reason = e["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("offshoot-test/does-not-exist"), "{rt:?}: {reason}");
    let id = e["id"].as_str().expect("id").to_owned();
    assert_eq!(s.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
}

fn a_failing_job_stops_the_workflow(rt: Rt) {
    let Some(s) = server(rt) else { return };
    let _r = app(
        &s,
        "jobfail",
        "- name: web\n  image: busybox:stable\n  command: [sh, -c, 'exec sleep 3600']\n",
        "jobs:\n- name: migrate\n  image: busybox:stable\n  command: [sh, -c, 'echo no schema; exit 3']\n  halt_on_error: true\nworkflows:\n- name: setup\n  parallelize:\n  - step: migrate\n    tasks: [jobs.migrate]\n    halt_on_error: true\n  - step: services\n    tasks: [services.web]\n",
    );
    let e = create(&s, "jobfail");
    assert_eq!(e["status"], "failed", "{rt:?}: {e}");
    assert!(e["reason"].as_str().unwrap_or_default().contains("migrate"), "{rt:?}: {e}");
    // The workflow stopped before the services.
    assert!(e["services"].as_array().is_none_or(|v| v.iter().all(|s| s["status"] != "ready")), "{rt:?}: {e}");
    let id = e["id"].as_str().expect("id").to_owned();
    assert_eq!(s.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
}

#[test]
fn docker_ready_then_torn_down() {
    ready_then_torn_down(Rt::Docker);
}

#[test]
fn kubernetes_ready_then_torn_down() {
    ready_then_torn_down(Rt::Kubernetes);
}

#[test]
fn docker_a_missing_image_fails_with_its_name() {
    a_missing_image_fails_with_its_name(Rt::Docker);
}

#[test]
fn kubernetes_a_missing_image_fails_with_its_name() {
    a_missing_image_fails_with_its_name(Rt::Kubernetes);
}

#[test]
fn docker_a_failing_job_stops_the_workflow() {
    a_failing_job_stops_the_workflow(Rt::Docker);
}

#[test]
fn kubernetes_a_failing_job_stops_the_workflow() {
    a_failing_job_stops_the_workflow(Rt::Kubernetes);
}

/// A job's own `memory` limit and `volumes` on the Docker engine: the limit is the container's,
/// and its persistent volume is the environment's volume of that name, which the service reads.
#[test]
fn docker_a_job_has_its_own_memory_limit_and_volumes() {
    let Some(s) = server(Rt::Docker) else { return };
    let _r = app(
        &s,
        "seeded",
        "- name: web\n  image: busybox:stable\n  command: [sh, -c, 'exec sleep 3600']\n  volumes:\n  - type: persistent\n    name: data\n    mount_path: /data\n",
        "jobs:\n- name: seed\n  image: busybox:stable\n  command: [sh, -c, 'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; echo seeded > /seed/mark']\n  memory:\n    limits: 64Mi\n  volumes:\n  - type: persistent\n    name: data\n    mount_path: /seed\nworkflows:\n- name: setup\n  parallelize:\n  - step: seed\n    tasks: [jobs.seed]\n  - step: services\n    tasks: [services.web]\n",
    );
    let e = create(&s, "seeded");
    assert_eq!(e["status"], "ready", "{e}");
    let steps = e["deployments"][0]["steps"].as_array().cloned().unwrap_or_default();
    let seed = steps.iter().find(|st| st["output"].as_str().is_some_and(|o| o.contains("67108864"))).cloned();
    assert!(seed.is_some(), "the job ran with its 64 MiB limit: {e}");
    let id = e["id"].as_str().expect("id").to_owned();
    let mark = s.cli(&["env", "exec", &id, "web", "--", "cat", "/data/mark"]);
    assert_eq!(String::from_utf8_lossy(&mark.stdout).trim(), "seeded", "{mark:?}");
    assert_eq!(s.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
    assert!(gone(Rt::Docker, &id));
}
