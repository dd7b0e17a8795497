//! Terraform `infrastructure` end to end, without the internet: this machine's `terraform`
//! copied into a runner image built on `busybox:stable`, a module of built-in resources only
//! (`terraform_data` with `local-exec` provisioners that call back a listener of this test).
//! Setup applies it and its outputs reach the service; the state survives a server restart (a
//! patch of the same module makes nothing again); a changed module is applied again by patch;
//! a failing apply and a failing destroy are each reported in Terraform's own words, the failed
//! destroy keeping the environment and its state until a second delete destroys it.
//!
//! Without `terraform` on PATH these tests are ignored, with the reason (see `build.rs`).

mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use support::*;

const RUNNER: &str = "offshoot-terraform:test";

/// The runner image: this machine's Terraform on busybox (`/bin/sh`, `wget`).
fn runner_image() {
    let out = std::process::Command::new("sh").args(["-c", "command -v terraform"]).output().expect("sh");
    let terraform = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!terraform.is_empty(), "terraform is on PATH (build.rs found it)");
    let ctx = tempfile::tempdir().expect("tempdir");
    std::fs::copy(&terraform, ctx.path().join("terraform")).expect("copy terraform");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:stable\nCOPY terraform /usr/local/bin/terraform\nENV PATH=/usr/local/bin:/bin\n",
    )
    .expect("write");
    let o = std::process::Command::new("docker")
        .args(["build", "-q", "-t", RUNNER, ctx.path().to_str().expect("utf-8")])
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("docker build");
    assert!(o.status.success(), "building the runner image: {}", String::from_utf8_lossy(&o.stderr));
}

/// docker0's address: containers reach this machine there.
fn docker0() -> String {
    let o = std::process::Command::new("ip").args(["-4", "-o", "addr", "show", "docker0"]).output().expect("ip");
    let text = String::from_utf8_lossy(&o.stdout);
    let addr = text.split_whitespace().skip_while(|w| *w != "inet").nth(1).expect("docker0 has an address");
    addr.split('/').next().expect("address").to_owned()
}

/// A listener the provisioners call: it records each path, and answers 500 while `failing`.
struct Sink {
    url: String,
    /// Its port, which containers are let through the host firewall to (`--allow-host-port`).
    port: String,
    seen: Arc<Mutex<Vec<String>>>,
    failing: Arc<AtomicBool>,
}

impl Sink {
    fn start() -> Sink {
        let ip = docker0();
        let listener = TcpListener::bind(format!("{ip}:0")).expect("bind on docker0");
        let port = listener.local_addr().expect("addr").port().to_string();
        let url = format!("http://{ip}:{port}");
        let (seen, failing) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (s, f) = (seen.clone(), failing.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut line = String::new();
                let _ = BufReader::new(&stream).read_line(&mut line);
                let path = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let fail = f.load(Ordering::SeqCst);
                let status = if fail { "500 Internal Server Error" } else { "200 OK" };
                let _ = (&stream).write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").as_bytes());
                s.lock().expect("lock").push(format!("{}{path}", if fail { "refused " } else { "" }));
            }
        });
        Sink { url, port, seen, failing }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }

    fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|p| *p == path).count()
    }
}

const MODULE: &str = r#"variable "RELEASE_ENV_ID" {}
variable "SINK_URL" {}
variable "generation" {}
variable "fail_apply" {
  default = ""
}

resource "terraform_data" "bucket" {
  triggers_replace = var.generation
  input = {
    sink = var.SINK_URL
    name = "${var.RELEASE_ENV_ID}-${var.generation}"
  }
  provisioner "local-exec" {
    command = "wget -q -O- '${var.SINK_URL}/created/${var.RELEASE_ENV_ID}-${var.generation}'"
  }
  provisioner "local-exec" {
    when    = destroy
    command = "wget -q -O- '${self.input.sink}/destroyed/${self.input.name}'"
  }
}

resource "terraform_data" "check" {
  triggers_replace = var.fail_apply
  provisioner "local-exec" {
    command = "test -z '${var.fail_apply}' || { echo 'the check says no' >&2; exit 3; }"
  }
}

output "url" {
  value = "s3://bucket-${var.RELEASE_ENV_ID}-${var.generation}"
}

output "password" {
  value     = "pw-${var.RELEASE_ENV_ID}-${var.generation}"
  sensitive = true
}
"#;

const TEMPLATE: &str = "app: infra
services:
- name: web
  image: busybox:stable
  command: [sh, -c, 'sleep 100000']
infrastructure:
- name: infra
  type: terraform
  directory: terraform
  values: values.yaml
workflows:
- name: setup
  order_from: [infrastructure.infra, services.web]
- name: patch
  order_from: [infrastructure.infra, services.web]
- name: teardown
  order_from: [infrastructure.infra, release.remove_environment]
";

fn commit(repo: &std::path::Path, file: &str, text: &str) {
    std::fs::write(repo.join(file), text).expect("write");
    git(repo, &["commit", "-qam", file]);
}

fn printenv(s: &Server, id: &str, var: &str) -> String {
    let o = s.cli(&["env", "exec", id, "web", "--", "sh", "-c", &format!("echo \"${var}\"")]);
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
#[cfg_attr(offshoot_no_terraform, ignore = "no `terraform` on PATH: the Terraform runner image cannot be built here")]
fn infrastructure_applies_feeds_its_outputs_to_services_survives_a_restart_and_destroys_at_teardown() {
    runner_image();
    let sink = Sink::start();
    let vars = format!("defaults:\n- key: SINK_URL\n  value: {}\n", sink.url);
    let repo = repo(TEMPLATE, Some(&vars), &[("terraform/main.tf", MODULE), ("terraform/values.yaml", "generation: '1'\n")], &[]);
    let data = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start_with(data.path(), None, &["--terraform-image", RUNNER, "--allow-host-port", &sink.port]);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);

    // Setup: applied before the service starts, which gets its outputs.
    let env = s.json(&["env", "create", "infra", "--branch", "main", "--wait"]);
    assert_eq!(env["status"], "ready", "{env}");
    let id = env["id"].as_str().expect("id").to_owned();
    assert_eq!(sink.seen(), [format!("/created/{id}-1")]);
    assert_eq!(printenv(&s, &id, "INFRA_URL"), format!("s3://bucket-{id}-1"));
    assert_eq!(printenv(&s, &id, "INFRA_PASSWORD"), format!("pw-{id}-1"));
    let shown = s.json(&["env", "show", &id]);
    let infra = &shown["infrastructure"][0];
    assert_eq!(
        (infra["name"].as_str(), infra["status"].as_str(), infra["state"].as_str()),
        (Some("infra"), Some("applied"), Some("offshoot")),
        "{shown}"
    );
    assert_eq!(infra["outputs"], serde_json::json!(["INFRA_URL"]));
    assert_eq!(infra["sensitive_outputs"], serde_json::json!(["INFRA_PASSWORD"]));
    let o = s.cli(&["env", "logs", &id, "--infrastructure", "infra"]);
    let log = String::from_utf8_lossy(&o.stdout);
    assert!(log.contains("infra| Apply complete! Resources: 2 added"), "{log}");
    // The sensitive value is in no output, and the state (which holds it) is kept encrypted.
    let human = String::from_utf8_lossy(&s.cli(&["env", "show", &id]).stdout).into_owned();
    assert!(human.contains("infrastructure infra applied (state: offshoot); outputs INFRA_URL, INFRA_PASSWORD (sensitive)"), "{human}");
    let secret = format!("pw-{id}-1");
    for shown in [shown.to_string(), human, log.into_owned()] {
        assert!(!shown.contains(&secret), "the sensitive output shows: {shown}");
    }
    let db = std::fs::read(data.path().join("offshoot.db")).expect("the store");
    assert!(!String::from_utf8_lossy(&db).contains(&secret), "the state is stored in clear");

    // A restart keeps the state: patching the same module makes nothing again.
    s.kill();
    let mut s = Server::start_with(data.path(), None, &["--terraform-image", RUNNER, "--allow-host-port", &sink.port]);
    assert_eq!(s.json(&["env", "deploy", &id, "--wait"])["status"], "ready");
    assert_eq!(sink.seen(), [format!("/created/{id}-1")], "nothing was made again");

    // A changed module: the old resource destroyed, the new one made, the new outputs served.
    commit(repo.path(), "terraform/values.yaml", "generation: '2'\n");
    assert_eq!(s.json(&["env", "deploy", &id, "--wait"])["status"], "ready");
    assert_eq!(sink.seen()[1..], [format!("/destroyed/{id}-1"), format!("/created/{id}-2")]);
    assert_eq!(printenv(&s, &id, "INFRA_URL"), format!("s3://bucket-{id}-2"));

    // A failing apply fails the environment with Terraform's own message; fixed, it is ready.
    commit(repo.path(), "terraform/values.yaml", "generation: '2'\nfail_apply: 'yes'\n");
    let o = s.cli(&["env", "deploy", &id, "--wait", "--output", "json"]);
    let failed: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(failed["status"], "failed", "{failed}");
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("terraform apply failed (exit code 1)") && reason.contains("the check says no"), "{reason}");
    commit(repo.path(), "terraform/values.yaml", "generation: '2'\n");
    assert_eq!(s.json(&["env", "deploy", &id, "--wait"])["status"], "ready");

    // A failing destroy keeps the environment, failed, with its state; deleted again, it goes.
    sink.failing.store(true, Ordering::SeqCst);
    let o = s.cli(&["env", "delete", &id, "--wait", "--output", "json"]);
    let kept = s.json(&["env", "show", &id]);
    assert_eq!(kept["status"], "failed", "{kept} {}", String::from_utf8_lossy(&o.stderr));
    let reason = kept["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("terraform destroy failed") && reason.contains("local-exec provisioner error"), "{reason}");
    assert!(reason.contains(&format!("offshoot env delete {id}")), "{reason}");
    assert_eq!(kept["infrastructure"][0]["state"], "offshoot", "the state is kept: {kept}");
    assert!(!containers(&id).is_empty(), "the environment is kept");
    sink.failing.store(false, Ordering::SeqCst);
    let o = s.cli(&["env", "delete", &id, "--wait"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(sink.count(&format!("/destroyed/{id}-2")) == 1, "{:?}", sink.seen());
    assert!(sink.seen().contains(&format!("refused /destroyed/{id}-2")), "{:?}", sink.seen());
    assert_eq!(leftovers(&id), "", "nothing of the environment is left");
    s.kill();
}

/// A server killed while Terraform applies: the run's container goes on; restarted, the server
/// waits for it, keeps the state it left, and the resumed deployment makes nothing twice.
#[test]
#[cfg_attr(offshoot_no_terraform, ignore = "no `terraform` on PATH: the Terraform runner image cannot be built here")]
fn a_run_cut_short_by_a_killed_server_is_salvaged_and_nothing_is_made_twice() {
    runner_image();
    let sink = Sink::start();
    let vars = format!("defaults:\n- key: SINK_URL\n  value: {}\n", sink.url);
    let slow =
        MODULE.replace("command = \"wget -q -O- '${var.SINK_URL}/created/", "command = \"sleep 4; wget -q -O- '${var.SINK_URL}/created/");
    let repo = repo(TEMPLATE, Some(&vars), &[("terraform/main.tf", slow.as_str()), ("terraform/values.yaml", "generation: '1'\n")], &[]);
    let data = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start_with(data.path(), None, &["--terraform-image", RUNNER, "--allow-host-port", &sink.port]);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let env = s.json(&["env", "create", "infra", "--branch", "main"]);
    let id = env["id"].as_str().expect("id").to_owned();
    let runner = format!("offshoot-{id}-infra.terraform");
    eventually(60, "the runner container runs", || {
        (!docker(&["ps", "-q", "--filter", &format!("name={runner}")]).trim().is_empty()).then_some(())
    });
    s.kill();
    assert!(sink.seen().is_empty(), "killed before the provisioner called: {:?}", sink.seen());
    let mut s = Server::start_with(data.path(), None, &["--terraform-image", RUNNER, "--allow-host-port", &sink.port]);
    let ready = eventually(120, "the resumed deployment ends", || {
        let e = s.json(&["env", "show", &id]);
        (e["status"] != "creating" && e["status"] != "deploying").then_some(e)
    });
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(sink.seen(), [format!("/created/{id}-1")], "the interrupted run made it once; the resumed one nothing more");
    let runs = &ready["infrastructure"][0]["runs"];
    assert_eq!(runs[1]["status"], "interrupted", "{runs}");
    assert_eq!(runs[0]["status"], "succeeded", "{runs}");
    let o = s.cli(&["env", "logs", &id, "--infrastructure", "infra"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("No changes."), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(printenv(&s, &id, "INFRA_URL"), format!("s3://bucket-{id}-1"));
    s.json(&["env", "delete", &id, "--wait"]);
    assert_eq!(sink.count(&format!("/destroyed/{id}-1")), 1);
    assert_eq!(leftovers(&id), "");
    s.kill();
}

/// A runner image that cannot be had: the apply fails saying which image and how to choose
/// another; nothing was ever applied, so the environment deletes without a runner.
#[test]
#[cfg_attr(offshoot_no_terraform, ignore = "no `terraform` on PATH: the Terraform runner image cannot be built here")]
fn a_missing_runner_image_fails_the_apply_and_leaves_nothing_to_destroy() {
    let vars = "defaults:\n- key: SINK_URL\n  value: http://127.0.0.1:9\n";
    let repo = repo(TEMPLATE, Some(vars), &[("terraform/main.tf", MODULE), ("terraform/values.yaml", "generation: '1'\n")], &[]);
    let s = Server::new(None);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    s.json(&["app", "set", "infra", "--terraform-image", "offshoot-test/no-such-runner:1"]);
    let o = s.cli(&["env", "create", "infra", "--branch", "main", "--wait", "--output", "json"]);
    let env: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(env["status"], "failed", "{env}");
    let reason = env["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("offshoot-test/no-such-runner:1") && reason.contains("offshoot app set infra --terraform-image IMAGE"),
        "{reason}"
    );
    let id = env["id"].as_str().expect("id").to_owned();
    let o = s.cli(&["env", "delete", &id, "--wait"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(leftovers(&id), "");
}
