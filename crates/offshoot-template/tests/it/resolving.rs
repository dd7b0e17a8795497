//! Resolution: environment templates, variable layers, built-ins, mapping, secrets.

use offshoot_template::document::{self, Kind};
use offshoot_template::envvars::VarValue;
use offshoot_template::resolve::{self, Options, Resolved};

const TEMPLATE: &str = r#"
app: shop
hostnames:
- web: web-${env_id}.${domain}
- rcon-ws: ws-${env_id}.${domain}
resources:
  cpu: {limits: 1000m, requests: 100m}
  memory: {limits: 1Gi, requests: 100Mi}
  replicas: 1
parameters:
- name: model
  default: llama3
services:
- name: web
  image: shop/web
  build:
    context: web
    args:
    - API=${envs.API_URL}
    - TOKEN=${envs.TOKEN}
  ports:
  - type: node_port
    port: '8080'
    target_port: '80'
  envs:
  - key: MODEL
    value: ${parameters.model}
  init:
  - name: migrate
    command: [sh, -c, "echo $PHASE"]
    envs:
    - key: PHASE
      value: init
- name: rcon-ws
  image: busybox
- name: db
  image: postgres
jobs:
- name: seed
  from_services: web
  command: [seed]
environment_templates:
- name: ephemeral
  resources:
    replicas: 2
  services:
  - name: db
    remove: true
  - name: cache
    add: true
    image: redis
  datasets:
  - name: customers
- name: permanent
  domain: example.org
workflows:
- name: setup
  parallelize:
  - step: all
    tasks: [services.all]
  - step: seed
    tasks: [jobs.seed]
    halt_on_error: true
- name: teardown
  order_from: [release.remove_environment]
"#;

const VARS: &str = r#"
defaults:
- key: LEVEL
  value: default
- key: DEBUG
  value: TRUE
- key: PORT
  value: 1001
- key: TOKEN
  value: s3cr3t
  secret: true
services:
  web:
  - key: LEVEL
    value: service
  - key: API_URL
    value: http://api
envs:
- key: LEVEL
  value: environment
mapping:
  PUBLIC_URL: ${WEB_INGRESS_URL}/app
  COMMIT: RELEASE_COMMIT_SHORT
  WS: wss://$RCON_WS_INGRESS_HOST
  FALLBACK: ${NOT_SET:-fallback}
  LEAK: prefix-${TOKEN}
  STAGE: production
"#;

fn resolve(env_template: Option<&str>) -> Resolved {
    let t = document::check("t.yaml", TEMPLATE, Some(Kind::Template));
    assert!(!t.has_errors(), "{:?}", t.diagnostics);
    let v = document::check("v.yaml", VARS, Some(Kind::EnvVars));
    assert!(!v.has_errors(), "{:?}", v.diagnostics);
    let opts = Options {
        environment_template: env_template.map(str::to_owned),
        branch: "feature/x".into(),
        env_id: "ted1bc4".into(),
        commit: Some("0123456789abcdef".into()),
        domain: "localhost".into(),
        ..Options::default()
    };
    resolve::resolve("t.yaml", t.root.as_ref().expect("root"), v.env_vars.as_ref(), &opts).expect("resolves")
}

fn plain(v: Option<&VarValue>) -> &str {
    match v {
        Some(VarValue::Plain(s)) => s,
        other => panic!("expected a plain value, got {other:?}"),
    }
}

#[test]
fn environment_template_is_applied() {
    let r = resolve(None);
    assert_eq!(r.environment_template.as_deref(), Some("ephemeral"));
    let names: Vec<&str> = r.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web", "rcon-ws", "cache"]);
    assert!(r.services.iter().all(|s| s.replicas == 2));
    assert_eq!(r.services[0].cpu.limits.as_deref(), Some("1000m"), "resources are merged, not replaced");
    assert_eq!(r.datasets, ["customers"]);
    let p = resolve(Some("permanent"));
    assert_eq!(p.domain, "example.org");
    assert_eq!(p.services[0].hostnames, ["web-ted1bc4.example.org"]);
    assert_eq!(p.services.len(), 3);
}

#[test]
fn variables_are_layered() {
    let r = resolve(None);
    let web = &r.services[0];
    assert_eq!(web.hostnames, ["web-ted1bc4.localhost"]);
    assert_eq!(plain(web.env.get("LEVEL")), "environment");
    assert_eq!(plain(web.env.get("DEBUG")), "TRUE", "unquoted booleans keep their spelling");
    assert_eq!(plain(web.env.get("PORT")), "1001");
    assert_eq!(plain(web.env.get("MODEL")), "llama3");
    assert_eq!(plain(web.env.get("RELEASE_ENV")), "true");
    assert_eq!(plain(web.env.get("RELEASE_BRANCH_NAME")), "feature/x");
    assert_eq!(plain(web.env.get("RELEASE_COMMIT_SHORT")), "0123456");
    assert_eq!(plain(web.env.get("RCON_WS_INGRESS_HOST")), "ws-ted1bc4.localhost");
    assert_eq!(plain(web.env.get("WEB_INGRESS_URL")), "https://web-ted1bc4.localhost");
    assert_eq!(plain(web.env.get("PUBLIC_URL")), "https://web-ted1bc4.localhost/app");
    assert_eq!(plain(web.env.get("COMMIT")), "0123456");
    assert_eq!(plain(web.env.get("WS")), "wss://ws-ted1bc4.localhost");
    assert_eq!(plain(web.env.get("FALLBACK")), "fallback");
    assert_eq!(plain(web.env.get("STAGE")), "production", "a bare word that names no variable is literal");
    assert!(r.warnings.iter().any(|w| w.code == "undefined-variable" && w.message.contains("STAGE")));
    // The other services get the defaults, not web's service variables.
    assert_eq!(plain(r.services[1].env.get("LEVEL")), "environment");
    assert!(!r.services[1].env.contains_key("API_URL"));
    // Init containers inherit the service's variables and image, plus their own.
    assert_eq!(plain(web.init[0].env.get("PHASE")), "init");
    assert_eq!(plain(web.init[0].env.get("MODEL")), "llama3");
    assert_eq!(web.init[0].image.as_deref(), Some("shop/web"));
    // Jobs take their service's image and variables.
    assert_eq!(r.jobs[0].image.as_deref(), Some("shop/web"));
    assert_eq!(plain(r.jobs[0].env.get("API_URL")), "http://api");
}

#[test]
fn secrets_stay_secret() {
    let r = resolve(None);
    let web = &r.services[0];
    assert!(web.env.get("TOKEN").is_some_and(VarValue::is_secret));
    assert!(web.env.get("LEAK").is_some_and(VarValue::is_secret), "a value built from a secret is secret");
    assert_eq!(web.env.get("LEAK").map(VarValue::expose), Some("prefix-s3cr3t"));
    let build = web.build.as_ref().expect("build");
    assert_eq!(build.args.get("API").map(VarValue::expose), Some("http://api"));
    assert!(build.args.get("TOKEN").is_some_and(VarValue::is_secret));
    let json = serde_json::to_string(&r).expect("json");
    assert!(!json.contains("s3cr3t"), "a secret leaked into the output");
    assert!(json.contains("[redacted]"));
}

#[test]
fn workflows_are_normalized() {
    let r = resolve(None);
    let setup = &r.workflows["setup"];
    assert_eq!(setup[0].tasks, ["services.web", "services.rcon-ws", "services.cache"]);
    assert!(setup[1].halt_on_error && setup[1].wait_for_finish);
    assert_eq!(r.workflows["teardown"][0].tasks, ["release.remove_environment"]);
}

#[test]
fn unknown_environment_template_is_an_error() {
    let t = document::check("t.yaml", TEMPLATE, Some(Kind::Template));
    let opts = Options { environment_template: Some("staging".into()), env_id: "x".into(), ..Options::default() };
    let errors = resolve::resolve("t.yaml", t.root.as_ref().expect("root"), None, &opts).expect_err("staging is not defined");
    assert_eq!(errors[0].code, "unknown-environment-template");
    assert_eq!(errors[0].hint.as_deref(), Some("defined: ephemeral, permanent"));
}

#[test]
fn routes_list_rules_in_order_then_hostnames() {
    let text = TEMPLATE.replace(
        "resources:\n  cpu:",
        "rules:\n- service: rcon-ws\n  hostnames:\n  - shop-${env_id}.${domain}\n  path: /api/v1/streaming\n  visibility: private\n- service: web\n  hostnames:\n  - shop-${env_id}.${domain}\n  path: /\nresources:\n  cpu:",
    );
    let t = document::check("t.yaml", &text, Some(Kind::Template));
    assert!(!t.has_errors(), "{:?}", t.diagnostics);
    let opts = Options { env_id: "e1".into(), domain: "localhost".into(), ..Options::default() };
    let r = resolve::resolve("t.yaml", t.root.as_ref().expect("root"), None, &opts).expect("resolves");
    let routes: Vec<(&str, &str, &str, &str)> =
        r.routes.iter().map(|r| (r.service.as_str(), r.host.as_str(), r.path.as_str(), r.visibility.as_str())).collect();
    assert_eq!(
        routes,
        [
            ("rcon-ws", "shop-e1.localhost", "/api/v1/streaming", "private"),
            ("web", "shop-e1.localhost", "/", "public"),
            ("web", "web-e1.localhost", "/", "public"),
            ("rcon-ws", "ws-e1.localhost", "/", "public"),
        ]
    );
}

#[test]
fn ingress_values_must_read_as_nginx_reads_them() {
    let good = "ingress:\n  proxy_body_size: 30m\n  proxy_buffering: true\n  proxy_buffers_number: 4\n  proxy_read_timeout: '180'\n  proxy_send_timeout: 1m30s\nservices:\n- name: a\n  image: x\n";
    let t = document::check("t.yaml", good, Some(Kind::Template));
    assert!(!t.has_errors(), "{:?}", t.diagnostics);
    let bad = "ingress:\n  proxy_body_size: 30 MB\n  proxy_read_timeout: soon\n  proxy_buffering: maybe\n  proxy_buffers_number: 0\nservices:\n- name: a\n  image: x\n";
    let t = document::check("t.yaml", bad, Some(Kind::Template));
    let errors: Vec<(u32, String)> = t
        .diagnostics
        .iter()
        .filter(|d| d.severity == offshoot_template::diag::Severity::Error)
        .map(|d| (d.line, d.message.clone()))
        .collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert_eq!(errors[0].0, 2);
    assert!(errors[0].1.contains("proxy_body_size: 30 MB") && errors[1].1.contains("proxy_read_timeout"), "{errors:?}");
}

#[test]
fn imported_ingress_variables_and_their_fallbacks() {
    let t = document::check("t.yaml", "app: front\nservices:\n- name: web\n  image: x\n", Some(Kind::Template));
    let v = document::check(
        "v.yaml",
        "defaults: []\nmapping:\n  BACKEND: ${API_INGRESS_URL:-no backend}\n  ADMIN: ${PANEL_INGRESS_HOST:-no admin}\n",
        Some(Kind::EnvVars),
    );
    let run = |imported: &[(&str, &str)]| {
        let opts = Options {
            env_id: "e1".into(),
            domain: "localhost".into(),
            imported: imported.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            ..Options::default()
        };
        let r = resolve::resolve("t.yaml", t.root.as_ref().expect("root"), v.env_vars.as_ref(), &opts).expect("resolves");
        let env = r.services[0].env.clone();
        (plain(env.get("BACKEND")).to_owned(), plain(env.get("ADMIN")).to_owned())
    };
    assert_eq!(run(&[("API_INGRESS_URL", "http://api-e2.localhost")]), ("http://api-e2.localhost".to_owned(), "no admin".to_owned()));
    assert_eq!(run(&[]), ("no backend".to_owned(), "no admin".to_owned()));
}

#[test]
fn a_job_takes_its_own_limits_and_volumes_else_its_services_else_the_templates() {
    let template = "app: t\nresources:\n  cpu:\n    limits: 1000m\n  memory:\n    limits: 1Gi\nservices:\n- name: api\n  image: busybox:stable\n  memory:\n    limits: 256Mi\n  volumes:\n  - type: persistent\n    name: data\n    mount_path: /data\njobs:\n- name: migrate\n  from_services: api\n- name: seed\n  image: busybox:stable\n  cpu:\n    limits: 250m\n  volumes: []\n";
    let doc = offshoot_template::document::check("t.yaml", template, Some(offshoot_template::document::Kind::Template));
    assert!(!doc.has_errors(), "{:?}", doc.diagnostics);
    let opts = offshoot_template::resolve::Options { branch: "main".into(), env_id: "abc1234".into(), ..Default::default() };
    let r = offshoot_template::resolve::resolve("t.yaml", &doc.root.expect("root"), None, &opts).expect("resolves");
    let job = |n: &str| r.jobs.iter().find(|j| j.name == n).expect("job");
    let migrate = job("migrate");
    assert_eq!((migrate.cpu.limits.as_deref(), migrate.memory.limits.as_deref()), (Some("1000m"), Some("256Mi")));
    assert_eq!(migrate.volumes.iter().filter_map(|v| v.name.as_ref().map(|n| n.value.clone())).collect::<Vec<_>>(), ["data"]);
    let seed = job("seed");
    assert_eq!((seed.cpu.limits.as_deref(), seed.memory.limits.as_deref()), (Some("250m"), Some("1Gi")));
    assert!(seed.volumes.is_empty(), "its own empty list wins");
}

#[test]
fn a_jobs_own_build_is_what_it_runs() {
    let t = "app: t\nservices:\n- name: api\n  image: busybox:stable\n  envs:\n  - key: TOKEN\n    value: abc\njobs:\n- name: seed\n  build:\n    context: seed\n    args:\n    - TOKEN=${envs.TOKEN}\n- name: migrate\n  from_services: api\n  build:\n    context: migrations\n";
    let doc = document::check("t.yaml", t, Some(Kind::Template));
    assert!(doc.diagnostics.is_empty(), "a job of its own build is valid: {:?}", doc.diagnostics);
    let r = resolve::resolve("t.yaml", doc.root.as_ref().expect("root"), None, &Options::default()).expect("resolves");
    let job = |name: &str| r.jobs.iter().find(|j| j.name == name).expect("job");
    let seed = job("seed").build.as_ref().expect("a build");
    assert_eq!(seed.context, "seed");
    let migrate = job("migrate");
    assert_eq!(migrate.build.as_ref().map(|b| b.context.as_str()), Some("migrations"));
    assert_eq!(migrate.env.get("TOKEN").map(|v| v.expose()), Some("abc"), "its service's variables");
}

#[test]
fn keys_offshoot_does_nothing_with_are_warnings_at_their_lines() {
    use offshoot_template::ledger::{Runtime, diagnostics, scan};
    let t = "app: t\nservices:\n- name: api\n  image: busybox:stable\ncron_jobs:\n- name: nightly\n  image: busybox:stable\n  schedule: '0 3 * * *'\ncustom_links:\n- name: Grafana\n  url: https://grafana.example.com\nbuilds:\n- name: api\n  context: api\n  image_scan:\n    severity: high\ndevelopment_environment:\n  services:\n  - name: api\n    command: [sh]\nparameters:\n- name: size\n  type: string\n";
    let doc = document::check("t.yaml", t, Some(Kind::Template));
    assert!(!doc.has_errors(), "{:?}", doc.diagnostics);
    let found = diagnostics("t.yaml", &scan(doc.root.as_ref().expect("root"), Runtime::Docker), Runtime::Docker);
    let ignored: Vec<(u32, &str)> = found.iter().filter(|d| d.code == "ignored-key").map(|d| (d.line, d.message.as_str())).collect();
    let lines: Vec<u32> = ignored.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [9, 15, 17], "cron jobs run and parameters are given: {ignored:?}");
    assert!(ignored[1].1.contains("`builds[0].image_scan` is ignored on Docker: Offshoot does not scan images"), "{ignored:?}");
}

#[test]
fn parameters_declare_known_types_and_defaults_that_fit() {
    let t = "app: t\nservices:\n- name: api\n  image: busybox:stable\n  envs:\n  - key: N\n    value: ${parameters.n}\nparameters:\n- name: n\n  type: integer\n  default: many\n- name: colour\n  type: colour\n- name: size\n  options: [s, m]\n  default: l\n- name: n\n";
    let doc = offshoot_template::document::check("t.yaml", t, Some(offshoot_template::document::Kind::Template));
    let errors: Vec<(u32, &str)> = doc.diagnostics.iter().filter(|d| d.is_error()).map(|d| (d.line, d.message.as_str())).collect();
    assert_eq!(
        errors,
        [
            (11, "the default of parameter `n` is an integer, and `many` is not an integer"),
            (13, "parameter `colour` has type `colour`; the types are string, integer, number, boolean"),
            (16, "the default of parameter `size` is one of s, m, not `l`"),
            (17, "parameter `n` is defined twice (first at line 9)"),
        ],
        "{errors:?}"
    );
}

#[test]
fn cron_jobs_need_a_schedule_of_five_fields_and_names_of_their_own() {
    let t = "app: t\nservices:\n- name: api\n  image: busybox:stable\njobs:\n- name: seed\n  image: busybox:stable\n  schedule: '0 3 * * *'\ncron_jobs:\n- name: seed\n  image: busybox:stable\n  schedule: '@daily'\n- name: nightly\n  image: busybox:stable\n- name: every\n  from_services: api\n  schedule: '0 0 3 * * *'\n";
    let doc = offshoot_template::document::check("t.yaml", t, Some(offshoot_template::document::Kind::Template));
    let found: Vec<(u32, &str, &str)> =
        doc.diagnostics.iter().map(|d| (d.line, d.code, d.message.as_str())).filter(|(_, c, _)| *c != "unknown-key").collect();
    assert_eq!(
        found,
        [
            (8, "misplaced-key", "job `seed` has a `schedule`, which only `cron_jobs` entries have; it runs only from workflows"),
            (10, "duplicate-name", "job or cron job `seed` is defined twice (first at line 6)"),
            (13, "missing-field", "cron job `nightly` needs a `schedule` (five cron fields, UTC)"),
            (
                17,
                "invalid-value",
                "the `schedule` of cron job `every`: `0 0 3 * * *` has 6 fields; a schedule has five: minute hour day-of-month month day-of-week"
            ),
        ],
        "{:?}",
        doc.diagnostics
    );
    // A valid one resolves with its schedule and its service's image.
    let ok = "app: t\nservices:\n- name: api\n  image: busybox:stable\ncron_jobs:\n- name: nightly\n  from_services: api\n  schedule: '0 3 * * *'\n";
    let doc = document::check("t.yaml", ok, Some(Kind::Template));
    assert!(!doc.has_errors(), "{:?}", doc.diagnostics);
    let r = resolve::resolve("t.yaml", doc.root.as_ref().expect("root"), None, &Options::default()).expect("resolves");
    assert_eq!(r.cron_jobs.len(), 1);
    assert_eq!((r.cron_jobs[0].schedule.as_deref(), r.cron_jobs[0].image.as_deref()), (Some("0 3 * * *"), Some("busybox:stable")));
    assert!(r.jobs.is_empty());
}

#[test]
fn secret_files_are_checked_where_they_are_written() {
    let t = "app: t\nservices:\n- name: db\n  image: busybox:stable\n  secret_files:\n  - name: ../etc\n  - name: ok\n    mount_path: /run/../etc/shadow\n  - name: pass\n    mode: '0999'\n  - name: pass2\n    mount_path: pass\n  - name: pass3\n    mount_path: /run/secrets/pass\n    uid: root\n";
    let doc = document::check("t.yaml", t, Some(Kind::Template));
    let errors: Vec<(u32, &str)> = doc.diagnostics.iter().filter(|d| d.is_error()).map(|d| (d.line, d.message.as_str())).collect();
    let lines: Vec<u32> = errors.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [6, 8, 10, 11, 13, 15], "{errors:?}");
    assert!(errors[0].1.contains("a name has letters, digits"), "{errors:?}");
    assert!(errors[1].1.contains("must not contain `..`"), "{errors:?}");
    assert!(errors[2].1.contains("mode `0999` is not an octal mode"), "{errors:?}");
    assert!(errors[3].1.contains("`/run/secrets/pass` is mounted twice"), "a relative target is under /run/secrets: {errors:?}");
    assert!(errors[5].1.contains("`root` is not a numeric user or group id"), "{errors:?}");
}

#[test]
fn references_to_a_secrets_provider_are_refused_where_they_are_written() {
    let vars = "defaults:\n- key: TOKEN\n  value: $secrets.rsm.TOKEN\n- key: PLAIN\n  value: secrets.are.fine\nservices:\n  api:\n  - key: KEY\n    value: ${secrets.aws./openai/key}\n    secret: true\n";
    let doc = document::check("environment_variables.yaml", vars, Some(Kind::EnvVars));
    let errors: Vec<(u32, &str, &str)> =
        doc.diagnostics.iter().filter(|d| d.is_error()).map(|d| (d.line, d.code, d.message.as_str())).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!((errors[0].0, errors[0].1), (3, "unsupported"));
    assert!(errors[0].2.starts_with("`TOKEN` is `$secrets.rsm.TOKEN`: a reference to a secrets provider"), "{errors:?}");
    assert!(errors[0].2.contains("offshoot app secret set APP KEY"), "{errors:?}");
    assert_eq!(errors[1].0, 9);
    let t = "app: t\nservices:\n- name: api\n  image: busybox:stable\n  envs:\n  - key: DB\n    value: $secrets.ssm./db/pass\n";
    let doc = document::check("t.yaml", t, Some(Kind::Template));
    assert!(doc.diagnostics.iter().any(|d| d.code == "unsupported" && d.line == 7), "{:?}", doc.diagnostics);
}

/// `<SERVICE>_INGRESS_URL` through a router: `https` only for a host a certificate served there
/// covers (every host with the operator's own), HTTP on the router's port otherwise; the
/// default ports left out.
#[test]
fn ingress_urls_are_https_only_where_a_certificate_covers_the_host() {
    let t = document::check(
        "t.yaml",
        "app: a\nhostnames:\n- web: web-${env_id}.example.com\n- api: api.other.io\nservices:\n- name: web\n  image: x\n  ports:\n  - type: node_port\n    port: '80'\n- name: api\n  image: x\n  ports:\n  - type: node_port\n    port: '80'\n",
        Some(Kind::Template),
    );
    let urls = |port: u16, https: Option<resolve::IngressHttps>| {
        let opts = Options {
            env_id: "e1".into(),
            domain: "example.com".into(),
            ingress_port: Some(port),
            ingress_https: https,
            ..Default::default()
        };
        let r = resolve::resolve("t.yaml", t.root.as_ref().expect("root"), None, &opts).expect("resolves");
        let env = r.services[0].env.clone();
        (plain(env.get("WEB_INGRESS_URL")).to_owned(), plain(env.get("API_INGRESS_URL")).to_owned())
    };
    let wildcard = || resolve::IngressHttps { port: 8443, names: Some(vec!["*.example.com".into(), "example.com".into()]) };
    assert_eq!(urls(8080, None), ("http://web-e1.example.com:8080".into(), "http://api.other.io:8080".into()));
    assert_eq!(urls(8080, Some(wildcard())), ("https://web-e1.example.com:8443".into(), "http://api.other.io:8080".into()));
    assert_eq!(
        urls(80, Some(resolve::IngressHttps { port: 443, names: None })),
        ("https://web-e1.example.com".into(), "https://api.other.io".into())
    );
    assert_eq!(urls(80, Some(resolve::IngressHttps { port: 443, names: Some(vec![]) })).1, "http://api.other.io");
}
