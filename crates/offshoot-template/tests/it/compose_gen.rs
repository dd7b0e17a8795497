//! What compose generation keeps of a service's files: bind mounts of the repository's files
//! and folders, and `configs` of its files, become `configmap` entries; the rest is reported.

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
