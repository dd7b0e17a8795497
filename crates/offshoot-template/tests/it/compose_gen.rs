//! What compose generation keeps of a service's files: bind mounts of the repository's files
//! and folders, and `configs` of its files, become `configmap` entries, `secrets` of its files
//! `secret_files`; the rest is reported.

use offshoot_template::compose::{self, Options, PathKind};
use offshoot_template::model::ConfigMapFile;

const COMPOSE: &str = r#"services:
  web:
    image: nginx:stable
    volumes:
      - ./conf/nginx.conf:/etc/nginx/nginx.conf:ro
      - ./site:/usr/share/nginx/html
      - ./data:/var/lib/data
      - /var/run/docker.sock:/var/run/docker.sock
      - ../outside:/outside
      - type: bind
        source: .
        target: /src
      - cache:/cache
    configs:
      - app_config
      - source: pipeline
        target: /etc/pipeline.yml
      - inline
      - missing
configs:
  app_config:
    file: ./conf/app.conf
  pipeline:
    file: pipelines/main.yml
  inline:
    content: "a = 1"
  missing:
    file: ./nope.conf
volumes:
  cache:
"#;

fn kind(p: &str) -> Option<PathKind> {
    match p {
        "conf/nginx.conf" | "conf/app.conf" | "pipelines/main.yml" => Some(PathKind::File),
        "site" | "." => Some(PathKind::Folder),
        _ => None,
    }
}

fn entry(f: &ConfigMapFile) -> (String, String, String) {
    let o = |t: &Option<offshoot_template::span::Text>| t.as_ref().map_or_else(String::new, |t| t.value.clone());
    (f.name.value.clone(), o(&f.repo_path), o(&f.mount_path))
}

#[test]
fn repository_files_bound_or_configured_become_configmap_entries_and_the_rest_is_reported() {
    let opts = Options { app: Some("site".into()), path_kind: Some(&kind), ..Options::default() };
    let (g, diags) = compose::generate("docker-compose.yml", COMPOSE, &opts);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let g = g.expect("generated");
    let web = g.template.service("web").expect("web");
    let got: Vec<(String, String, String)> = web.configmap.iter().map(entry).collect();
    let want = [
        ("conf-nginx-conf", "conf/nginx.conf", "/etc/nginx/nginx.conf"),
        ("site", "site", "/usr/share/nginx/html"),
        ("repository", ".", "/src"),
        ("app-config", "conf/app.conf", "/app_config"),
        ("pipeline", "pipelines/main.yml", "/etc/pipeline.yml"),
    ];
    let want: Vec<(String, String, String)> = want.iter().map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into())).collect();
    assert_eq!(got, want);
    // The named volume stays a volume.
    let vols: Vec<&str> = web.volumes.iter().flatten().filter_map(|v| v.name.as_ref().map(|n| n.as_str())).collect();
    assert_eq!(vols, ["cache"]);
    // Everything else is in the report, with why.
    let dropped: Vec<(String, String)> = g.dropped.iter().map(|d| (d.item.clone(), d.reason.clone())).collect();
    let reason = |item: &str| {
        dropped.iter().find(|(i, _)| i == item).map(|(_, r)| r.clone()).unwrap_or_else(|| panic!("{item} not reported: {dropped:?}"))
    };
    assert!(
        reason("volume `./data:/var/lib/data`").contains("is not in the repository")
            && reason("volume `./data:/var/lib/data`").contains("named volume")
    );
    assert!(reason("volume `/var/run/docker.sock:/var/run/docker.sock`").contains("outside the repository"));
    assert!(reason("volume `../outside:/outside`").contains("outside the repository"));
    assert!(reason("config `inline`").contains("not `content`"));
    assert!(reason("config `missing`").contains("`./nope.conf` is not in the repository"));
    assert!(!dropped.iter().any(|(i, _)| i.contains("configs")), "top-level configs are read, not dropped: {dropped:?}");
    // A patch redeploys the service: its files come from the commit.
    let patch = g.template.workflows.iter().find(|w| w.name.value == "patch").expect("patch");
    let tasks: Vec<String> = patch.parallelize.iter().flat_map(|s| &s.tasks).map(|t| format!("{:?}", t.value)).collect();
    assert_eq!(tasks, [format!("{:?}", offshoot_template::model::Task::Service("web".into()))]);
    // The generated template is valid, and says the same when read back.
    let yaml = g.template_yaml();
    let doc = offshoot_template::document::check("generated", &yaml, Some(offshoot_template::document::Kind::Template));
    assert!(!doc.has_errors(), "{:?}\n{yaml}", doc.diagnostics);
    let back = doc.template.expect("template");
    assert_eq!(back.service("web").expect("web").configmap.iter().map(entry).collect::<Vec<_>>(), got);
}

#[test]
fn without_a_way_to_see_folders_only_files_read_count() {
    let read = |p: &str| (p == "conf/nginx.conf").then(|| "events {}".to_owned());
    let opts = Options { read_file: Some(&read), ..Options::default() };
    let (g, _) = compose::generate("docker-compose.yml", COMPOSE, &opts);
    let g = g.expect("generated");
    let web = g.template.service("web").expect("web");
    assert_eq!(web.configmap.iter().map(entry).map(|e| e.1).collect::<Vec<_>>(), ["conf/nginx.conf"]);
}

const SECRETS: &str = r#"services:
  db:
    image: postgres:16
    secrets:
      - db_password
      - source: tls_key
        target: tls/key.pem
        mode: 0440
        uid: "999"
      - from_env
      - vault
      - nowhere
secrets:
  db_password:
    file: ./secrets/db_password.txt
  tls_key:
    file: certs/key.pem
  from_env:
    environment: DB_PASSWORD
  vault:
    external: true
"#;

#[test]
fn file_secrets_become_secret_files_read_from_the_repository_and_the_rest_is_reported() {
    let kind = |p: &str| matches!(p, "secrets/db_password.txt" | "certs/key.pem").then_some(PathKind::File);
    let opts = Options { app: Some("db".into()), path_kind: Some(&kind), ..Options::default() };
    let (g, diags) = compose::generate("docker-compose.yml", SECRETS, &opts);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let g = g.expect("generated");
    let db = g.template.service("db").expect("db");
    let got: Vec<(String, String, u32, Option<String>)> = db
        .secret_files
        .iter()
        .map(|f| (f.name.value.clone(), f.target(), f.mode_bits(), f.uid.as_ref().map(|u| u.value.clone())))
        .collect();
    assert_eq!(
        got,
        [
            ("db_password".to_owned(), "/run/secrets/db_password".to_owned(), 0o400, None),
            ("tls_key".to_owned(), "/run/secrets/tls/key.pem".to_owned(), 0o440, Some("999".to_owned())),
        ]
    );
    // Where each value comes from: for whoever keeps the application; never in the template.
    let sources: Vec<(&str, &str)> = g.secret_files.iter().map(|s| (s.name.as_str(), s.path.as_str())).collect();
    assert_eq!(sources, [("db_password", "secrets/db_password.txt"), ("tls_key", "certs/key.pem")]);
    let dropped: Vec<(String, String)> = g.dropped.iter().map(|d| (d.item.clone(), d.reason.clone())).collect();
    let reason = |item: &str| dropped.iter().find(|(i, _)| i == item).map(|(_, r)| r.clone()).unwrap_or_default();
    assert!(reason("secret `from_env`").contains("offshoot app secret set APP from_env --file"), "{dropped:?}");
    assert!(reason("secret `vault`").contains("external"), "{dropped:?}");
    assert!(reason("secret `nowhere`").contains("no top-level secret"), "{dropped:?}");
    assert!(!dropped.iter().any(|(i, _)| i.starts_with("top-level")), "top-level secrets are read: {dropped:?}");
    // Valid, read back the same, and the patch redeploys the service (a new value applies).
    let yaml = g.template_yaml();
    let doc = offshoot_template::document::check("generated", &yaml, Some(offshoot_template::document::Kind::Template));
    assert!(!doc.has_errors(), "{:?}\n{yaml}", doc.diagnostics);
    assert_eq!(doc.template.expect("template").service("db").expect("db").secret_files.len(), 2);
    let patch = g.template.workflows.iter().find(|w| w.name.value == "patch").expect("patch");
    assert_eq!(patch.parallelize.iter().flat_map(|s| &s.tasks).count(), 1);
}

/// A compose service asking for host privileges or the host's network gets neither: each key
/// is reported with why, and the generated template has nothing of them.
#[test]
fn host_privileges_and_the_host_network_are_reported_never_granted() {
    let compose = "services:\n  web:\n    image: busybox:stable\n    privileged: true\n    cap_add: [SYS_ADMIN, NET_ADMIN]\n    security_opt: ['seccomp:unconfined']\n    devices: ['/dev/kmsg:/dev/kmsg']\n    pid: host\n    ipc: host\n    userns_mode: host\n    network_mode: host\n";
    let (g, diags) = compose::generate("docker-compose.yml", compose, &Options::default());
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let g = g.expect("generated");
    for key in ["privileged", "cap_add", "security_opt", "devices", "pid", "ipc", "userns_mode"] {
        let d = g.dropped.iter().find(|d| d.item.contains(key)).unwrap_or_else(|| panic!("`{key}` not reported: {:?}", g.dropped));
        assert!(d.reason.contains("host privileges are not granted"), "{key}: {}", d.reason);
    }
    assert!(g.dropped.iter().any(|d| d.item.contains("network_mode") && d.reason.contains("share one network")), "{:?}", g.dropped);
    let yaml = g.template_yaml();
    for word in ["privileged", "SYS_ADMIN", "host", "kmsg", "seccomp"] {
        assert!(!yaml.contains(word), "`{word}` in the generated template:\n{yaml}");
    }
}

/// Found by fuzzing: a port that is no number was carried into the template, which then failed
/// its own check at a line of the generated file. It is reported against the compose file.
#[test]
fn a_port_that_is_no_number_is_reported_against_the_compose_file() {
    let compose = "services:\n  web:\n    image: busybox:stable\n    ports:\n    - \"5000:8rvice\"\n    - \"0\"\n    - \"70000:80\"\n    - \"8080\"\n";
    let (g, diags) = compose::generate("docker-compose.yml", compose, &Options::default());
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let g = g.expect("generated");
    let reasons: Vec<&str> = g.dropped.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "the container port `8rvice` is not a port number (1 to 65535)",
            "the container port `0` is not a port number (1 to 65535)",
            "the published port `70000` is not a port number (1 to 65535)"
        ]
    );
    let doc = offshoot_template::document::check("application_template.yaml", &g.template_yaml(), None);
    assert!(doc.diagnostics.iter().all(|d| !d.is_error()), "{:?}", doc.diagnostics);
    assert!(g.template_yaml().contains("port: \"8080\""), "{}", g.template_yaml());
}

/// Found by fuzzing: a `depends_on` cycle was generated into a template that then failed its
/// own check. It is an error against the compose file's line, as `docker compose` refuses it.
#[test]
fn a_dependency_cycle_is_an_error_at_the_compose_file_line() {
    let compose = "services:\n  api:\n    image: busybox:stable\n    depends_on: [db]\n  db:\n    image: busybox:stable\n    depends_on:\n      - api\n";
    let (_, diags) = compose::generate("docker-compose.yml", compose, &Options::default());
    let errors: Vec<(u32, &str)> = diags.iter().filter(|d| d.is_error()).map(|d| (d.line, d.message.as_str())).collect();
    assert_eq!(errors, [(8, "depends_on forms a cycle: api -> db -> api")], "{diags:?}");
    assert_eq!(&*diags[0].file, "docker-compose.yml");
}

/// Found by fuzzing: a long service name made a hostname label longer than DNS allows (63).
/// It is shortened, and two services shortened alike still get hostnames of their own.
#[test]
fn a_long_service_name_gets_a_hostname_within_dns_limits() {
    let long = "front".to_owned() + &"-end".repeat(20);
    let compose = format!(
        "services:\n  {long}-a:\n    image: busybox:stable\n    ports: ['8080:80']\n  {long}-b:\n    image: busybox:stable\n    ports: ['8081:80']\n"
    );
    let (g, diags) = compose::generate("docker-compose.yml", &compose, &Options::default());
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let yaml = g.expect("generated").template_yaml();
    let doc = offshoot_template::document::check("application_template.yaml", &yaml, None);
    assert!(doc.diagnostics.iter().all(|d| !d.is_error()), "{:?}\n{yaml}", doc.diagnostics);
    let hosts: Vec<&str> = yaml.lines().filter(|l| l.contains("${env_id}")).collect();
    assert_eq!(hosts.len(), 2, "{yaml}");
    assert_ne!(hosts[0].split(':').nth(1), hosts[1].split(':').nth(1), "{yaml}");
}

/// Found by fuzzing: a `${` not closed, or one that is no variable reference, was carried into
/// the variables file (where `${secrets.…` means a secrets provider). `docker compose` refuses
/// such a file; so does generation, at the line.
#[test]
fn an_invalid_interpolation_is_an_error_at_its_line() {
    for (value, why) in [
        ("${secrets.me=x", "`${secrets.me=x` is not closed"),
        ("${secrets.token}", "`${secrets.token}` is not a variable reference"),
        ("a${}b", "`${}` names no variable"),
        ("${A:-${B.c}}", "`${B.c}` is not a variable reference"),
    ] {
        let compose = format!("services:\n  web:\n    image: busybox:stable\n    environment:\n      X: '{value}'\n");
        let (_, diags) = compose::generate("docker-compose.yml", &compose, &Options::default());
        let errors: Vec<(u32, &str)> = diags.iter().filter(|d| d.is_error()).map(|d| (d.line, d.message.as_str())).collect();
        assert_eq!(errors, [(5, format!("invalid interpolation: {why}").as_str())], "{value}");
    }
    // Valid forms pass, `$$` included.
    let compose = "services:\n  web:\n    image: busybox:stable\n    environment:\n      X: '$$HOME ${A:-x} ${B?} $C'\n";
    let (_, diags) = compose::generate("docker-compose.yml", compose, &Options::default());
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
}

/// Found by fuzzing: `retries: 0` (Docker's "the default") became `failure_threshold: 0`, which
/// the template refuses. It is left to the default.
#[test]
fn a_healthcheck_with_zero_retries_keeps_the_default_threshold() {
    let compose = "services:\n  db:\n    image: busybox:stable\n    healthcheck:\n      test: [CMD, true]\n      retries: 0\n";
    let (g, diags) = compose::generate("docker-compose.yml", compose, &Options::default());
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let yaml = g.expect("generated").template_yaml();
    assert!(!yaml.contains("failure_threshold"), "{yaml}");
    let doc = offshoot_template::document::check("application_template.yaml", &yaml, None);
    assert!(doc.diagnostics.iter().all(|d| !d.is_error()), "{:?}", doc.diagnostics);
}
