//! The `offshoot` binary as scripts use it: exit codes, output formats, files written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn offshoot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_offshoot")).args(args).output().expect("run offshoot")
}

fn example() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())).join("../../examples/shop")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&p, body).expect("write");
    p
}

#[test]
fn validate_the_example_repository() {
    let o = offshoot(&["validate", example().to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("ok: 3 files checked, no problems"), "{}", stdout(&o));
}

#[test]
fn validate_reports_errors_with_positions_and_exit_code_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(dir.path(), "t.yaml", "services:\n- name: web\n  image: nginx\n  ports:\n  - type: node_prot\n    port: 80\n");
    let o = offshoot(&["validate", f.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("t.yaml:5:11: error: `node_prot` is not a valid port type"), "{out}");
    assert!(out.contains("hint: did you mean `node_port`?"), "{out}");

    let o = offshoot(&["validate", f.to_str().expect("utf-8"), "--output", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let d = &v["diagnostics"][0];
    for key in ["file", "line", "column", "severity", "code", "message", "hint"] {
        assert!(d.get(key).is_some(), "missing {key} in {d}");
    }
    assert_eq!(d["line"], 5);
    assert_eq!(d["severity"], "error");
    assert_eq!(d["code"], "invalid-value");
}

#[test]
fn strict_turns_warnings_into_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(dir.path(), "t.yaml", "services:\n- name: web\n  image: nginx\n  imgae: typo\n");
    let f = f.to_str().expect("utf-8");
    assert_eq!(offshoot(&["validate", f]).status.code(), Some(0));
    assert_eq!(offshoot(&["validate", f, "--strict"]).status.code(), Some(1));
}

#[test]
fn validate_says_what_the_runtime_ignores_or_refuses_at_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = "app: t\nservices:\n- name: web\n  image: nginx\n  node_selector:\n  - key: disk\n    value: ssd\n  registry: public\n";
    let f = write(dir.path(), "t.yaml", t);
    let f = f.to_str().expect("utf-8");
    // Docker ignores the node selector and the registry: warnings, at their lines, with why.
    let o = offshoot(&["validate", f]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(
        text.contains("t.yaml:5:3: warning: `services[0].node_selector` is ignored on Docker: one machine runs the environment"),
        "{text}"
    );
    assert!(text.contains("t.yaml:8:3: warning: `services[0].registry` is ignored on Docker"), "{text}");
    assert!(text.contains("[ignored-key]"), "{text}");
    assert_eq!(offshoot(&["validate", f, "--strict"]).status.code(), Some(1), "--strict fails on what is ignored");
    // Kubernetes applies the node selector.
    let text = stdout(&offshoot(&["validate", f, "--runtime", "kubernetes"]));
    assert!(!text.contains("node_selector") && text.contains("`services[0].registry` is ignored on Kubernetes"), "{text}");
    // What is refused is an error, naming the key and the alternative.
    let charts = write(dir.path(), "c.yaml", "app: c\nservices:\n- name: web\n  image: nginx\ncharts:\n- name: x\n  directory: chart\n");
    let o = offshoot(&["validate", charts.to_str().expect("utf-8"), "--output", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let d = &v["diagnostics"][0];
    assert_eq!((d["line"].as_u64(), d["code"].as_str()), (Some(5), Some("unsupported")), "{v}");
    assert!(
        d["message"].as_str().is_some_and(|m| m.contains("Helm `charts`") && m.contains("run the chart's images as `services`")),
        "{v}"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(offshoot(&["validate"]).status.code(), Some(2));
    assert_eq!(offshoot(&["validate", ".", "--kind", "nonsense"]).status.code(), Some(2));
    assert_eq!(offshoot(&["frobnicate"]).status.code(), Some(2));
    let o = offshoot(&["template", "generate", "/nonexistent-dir-for-offshoot"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("error:"));
}

#[test]
fn kind_can_be_forced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(dir.path(), "v.yaml", "defaults:\n- key: A\n  value: 1\n");
    let f = f.to_str().expect("utf-8");
    assert_eq!(offshoot(&["validate", f, "--kind", "env-vars"]).status.code(), Some(0));
    // Read as a template, `defaults` is an unknown key: a warning, so still 0 unless strict.
    assert_eq!(offshoot(&["validate", f, "--kind", "template", "--strict"]).status.code(), Some(1));
}

#[test]
fn generate_writes_a_valid_template_and_reports_what_was_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "docker-compose.yml",
        "services:\n  web:\n    build: ./web\n    command: npm start\n    ports: [\"${WEB_PORT:-3000}:3000\"]\n    volumes: [\"./web:/app\", \"/var/run/docker.sock:/var/run/docker.sock\"]\n    environment:\n      - API_URL=http://api:8080\n    depends_on: [api]\n  api:\n    image: busybox:stable\n    expose: [\"8080\"]\n    restart: always\n",
    );
    write(dir.path(), "web/Dockerfile", "FROM busybox:stable\n");
    let out_dir = dir.path().join("out");
    let o = offshoot(&[
        "template",
        "generate",
        dir.path().to_str().expect("utf-8"),
        "--app",
        "shop",
        "--out-dir",
        out_dir.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("volume `/var/run/docker.sock:/var/run/docker.sock`") && stderr.contains("outside the repository"), "{stderr}");
    assert!(stderr.contains("`restart`"), "{stderr}");
    let template = std::fs::read_to_string(out_dir.join("application_template.yaml")).expect("template written");
    // The repository's folder mounted over the image, as compose mounts it.
    assert!(template.contains("configmap:\n  - name: web\n    mount_path: /app\n    repo_path: web"), "{template}");
    assert!(template.contains("- web: web-shop-${env_id}.${domain}"), "{template}");
    assert!(template.contains("port: \"3000\""), "{template}");
    let vars = std::fs::read_to_string(out_dir.join("environment_variables.yaml")).expect("vars written");
    assert!(vars.contains("API_URL"), "{vars}");
    for f in ["application_template.yaml", "environment_variables.yaml"] {
        let o = offshoot(&["validate", out_dir.join(f).to_str().expect("utf-8"), "--strict"]);
        assert_eq!(o.status.code(), Some(0), "{f}: {}", stdout(&o));
    }
}

#[test]
fn resolve_prints_json_with_secrets_redacted() {
    let o = offshoot(&[
        "template",
        "resolve",
        example().to_str().expect("utf-8"),
        "--branch",
        "feature/x",
        "--env-id",
        "abc1234",
        "--commit",
        "0123456789",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert!(!out.contains("change-me"), "secret leaked: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let api = v["services"].as_array().and_then(|s| s.iter().find(|s| s["name"] == "api")).expect("api");
    assert_eq!(api["env"]["API_TOKEN"], "[redacted]");
    assert_eq!(api["env"]["PUBLIC_API"], "https://api-abc1234.localhost/v1");
    assert_eq!(api["env"]["SHORT_SHA"], "0123456");
    assert_eq!(api["hostnames"][0], "api-abc1234.localhost");
    let web = v["services"].as_array().and_then(|s| s.iter().find(|s| s["name"] == "web")).expect("web");
    assert_eq!(web["build"]["args"]["API_URL"], "https://api-abc1234.localhost");
    let o = offshoot(&["template", "resolve", example().to_str().expect("utf-8"), "--environment-template", "permanent"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["services"][0]["replicas"], 2);
}

#[test]
fn resolve_shows_where_a_datasets_variables_will_come_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), ".release.yaml", "application_template: .release/a.yaml\nenvironment_variables: .release/e.yaml\n");
    write(
        dir.path(),
        ".release/a.yaml",
        "app: x\nenvironment_templates:\n- name: ephemeral\n  datasets:\n  - name: shop-data\nservices:\n- name: web\n  image: busybox:stable\n",
    );
    write(
        dir.path(),
        ".release/e.yaml",
        "defaults: []\nmapping:\n  DATABASE_URL: ${SHOP_DATA_DB_URL}\n  DB_HOST: ${SHOP_DATA_RDS_DB_POOL_HOST}\n",
    );
    let o = offshoot(&["template", "resolve", dir.path().to_str().expect("utf-8"), "--branch", "main", "--env-id", "abc1234"]);
    assert!(o.status.success(), "{o:?}");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let env = &r["services"][0]["env"];
    assert_eq!(env["DB_HOST"], "<SHOP_DATA_RDS_DB_POOL_HOST: set when the environment checks out a clone of `shop-data`>");
    assert_eq!(env["DATABASE_URL"], "[redacted]", "a dataset's URL is secret");
    assert!(r["warnings"].as_array().is_none_or(Vec::is_empty), "no undefined-variable warning: {}", r["warnings"]);
}

#[test]
fn datasets_at_the_template_root_point_to_environment_templates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(dir.path(), "t.yaml", "app: x\ndatasets:\n- name: a\nservices:\n- name: web\n  image: busybox:stable\n");
    let o = offshoot(&["validate", f.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(text.contains("t.yaml:2:1") && text.contains("`datasets` belongs to an environment template"), "{text}");
}
