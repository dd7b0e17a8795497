//! Data-driven diagnostics: one input, the rendered diagnostics as a snapshot.

use offshoot_template::document::{self, Kind};

fn check(name: &str, kind: Kind, src: &str) {
    let doc = document::check(&format!("{name}.yaml"), src, Some(kind));
    let rendered: String = doc.diagnostics.iter().map(|d| d.render(src)).collect::<Vec<_>>().join("\n");
    insta::assert_snapshot!(name, rendered);
}

#[test]
fn typos_and_unknown_keys() {
    check(
        "typos",
        Kind::Template,
        "app: shop\nservices:\n- name: web\n  image: nginx\n  prots:\n  - type: node_port\n    port: 80\nJobs:\n- name: migrate\n  from_services: web\nbuilds:\n- name: web\n  dokcerfile: Dockerfile\n",
    );
}

#[test]
fn duplicate_keys_last_wins() {
    let src = "services:\n- name: a\n  image: one\n  image: two\n";
    check("duplicate_keys", Kind::Template, src);
    let doc = document::check("t.yaml", src, Some(Kind::Template));
    let image = doc.template.and_then(|t| t.services.into_iter().next()).and_then(|s| s.image).map(|i| i.value);
    assert_eq!(image.as_deref(), Some("two"));
}

#[test]
fn references_ports_quantities_cycles() {
    check(
        "references",
        Kind::Template,
        r#"hostnames:
- web: web-${env_id}.${domain}
- wbe: wbe-${env_id}.${domain}
- api: api-${branch}.${domain}
resources:
  cpu:
    limits: lots
  memory:
    requests: 100m
services:
- name: web
  image: nginx
  depends_on: [api]
  ports:
  - type: node_port
    port: '80000'
  volumes:
  - claim: models
    mount_path: /models
- name: api
  image: busybox
  depends_on: [web]
  readiness_probe:
    period_seconds: 5
- name: web
  image: again
jobs:
- name: migrate
  from_services: apii
workflows:
- name: setup
  parallelize:
  - step: one
    tasks: [services.web, jobs.migrat, charts.none, deploy.web]
- name: setpu
  order_from: [services.all]
"#,
    );
}

#[test]
fn environment_template_overrides() {
    check(
        "overrides",
        Kind::Template,
        "services:\n- name: web\n  image: nginx\nenvironment_templates:\n- name: ephemeral\n  services:\n  - name: worker\n    replicas: 2\n  - name: extra\n    add: true\n    image: busybox\n- name: permanent\n  services:\n  - name: web\n    remove: true\n",
    );
}

#[test]
fn expressions() {
    check(
        "expressions",
        Kind::Template,
        "parameters:\n- name: model\n  default: llama\nservices:\n- name: web\n  image: nginx\n  envs:\n  - key: A\n    value: ${parameters.modle}\n  - key: B\n    value: ${unclosed\n  - key: C\n    value: ${X:?nope}\n  build:\n    context: .\n    args:\n    - URL=${envs.WEB_URL\n",
    );
}

#[test]
fn invalid_yaml_points_at_the_line() {
    check("invalid_yaml", Kind::Template, "app: x\nservices:\n  - name: a\n   image: b\n");
}

#[test]
fn env_vars_file() {
    check(
        "env_vars",
        Kind::EnvVars,
        "defaults:\n- key: FLAG\n  value: true\n- key: PORT\n  value: 1001\n- key: 9BAD\n  value: x\n- key: MISSING\n- key: FLAG\n  value: false\nservices:\n  web:\n  - key: TOKEN\n    secret: true\nmapping:\n  URL: ${WEB_INGRESS_URL\n",
    );
}

#[test]
fn app_imports_turn_unknown_services_into_warnings() {
    let src = "app_imports:\n- name: backend\nhostnames:\n- api: api-${env_id}.${domain}\nservices:\n- name: web\n  image: nginx\n";
    let doc = document::check("t.yaml", src, Some(Kind::Template));
    assert!(!doc.has_errors(), "{:?}", doc.diagnostics);
    assert!(doc.diagnostics.iter().any(|d| d.code == "unknown-service" && !d.is_error()));
    let without = document::check("t.yaml", &src.replace("app_imports:\n- name: backend\n", ""), Some(Kind::Template));
    assert!(without.diagnostics.iter().any(|d| d.code == "unknown-service" && d.is_error()));
}

#[test]
fn kinds_are_detected_from_shape() {
    let kind = |s: &str| document::check("f.yaml", s, None).kind;
    assert_eq!(kind("application_template: .release/a.yaml\n"), Kind::ReleaseYaml);
    assert_eq!(kind("defaults: []\nservices: {}\n"), Kind::EnvVars);
    assert_eq!(kind("services:\n  web: []\n"), Kind::EnvVars);
    assert_eq!(kind("services:\n  web:\n    image: nginx\n"), Kind::Compose);
    assert_eq!(kind("app: x\nservices:\n- name: web\n"), Kind::Template);
    assert_eq!(kind("apiVersion: v1\nkind: Pod\n"), Kind::Foreign);
}

#[test]
fn release_yaml_paths_stay_inside_the_repository() {
    let doc = document::check(".release.yaml", "application_template: ../../etc/passwd\nenvironment_variables: /abs.yaml\n", None);
    let codes: Vec<&str> = doc.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.code).collect();
    assert_eq!(codes, vec!["invalid-path", "invalid-path"]);
}

#[test]
fn depends_on_cycles_are_errors() {
    let src = "services:\n- name: web\n  image: a\n  depends_on: [api]\n- name: api\n  image: b\n  depends_on: [db]\n- name: db\n  image: c\n  depends_on: [web]\n- name: solo\n  image: d\n  depends_on: [solo]\n";
    let doc = document::check("t.yaml", src, Some(Kind::Template));
    let cycles: Vec<&str> = doc.diagnostics.iter().filter(|d| d.code == "dependency-cycle").map(|d| d.message.as_str()).collect();
    assert_eq!(cycles, ["depends_on forms a cycle: web -> api -> db -> web", "depends_on forms a cycle: solo -> solo"]);
}

#[test]
fn static_sites() {
    check(
        "static_sites",
        Kind::Template,
        "services:\n- name: web\n  static: true\n  build_base: ../outside\n  build_command: npm run build\n  build_output_directory: /abs/dist\n  static_fallback: ../index.html\n- name: app\n  static: true\n  build_command: npm run build\n  static_fallback: 'false'\n- name: api\n  image: busybox\n  static_fallback: index.html\n",
    );
}
