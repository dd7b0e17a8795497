//! Isolation between environments and from the host, on the real engine: what every container
//! is held to (no new privileges, capabilities dropped, a process limit, a memory limit), seen
//! from inside the container as well as in the engine's record; and environments that cannot
//! reach each other by name or by address.

mod support;

use support::*;

fn ready_env(s: &Server) -> String {
    let e = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    assert_eq!(e["status"], "ready", "{e}");
    e["id"].as_str().expect("id").to_owned()
}

/// A shell command in a service's container: (exit code, standard output and error).
fn sh(s: &Server, id: &str, service: &str, script: &str) -> (i32, String) {
    let o = s.cli(&["env", "exec", id, service, "--", "sh", "-c", script]);
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.code().unwrap_or(-1), text)
}

/// Every container runs with `no-new-privileges`, without raw sockets and the other dropped
/// capabilities, under a process limit and a memory limit (the server's defaults when the
/// template gives none), never privileged, on its environment's own network, with no host
/// path but the files Offshoot itself mounts.
#[test]
fn containers_run_without_new_privileges_or_raw_sockets_and_within_limits() {
    let s = Server::new_with(None, &["--container-pids", "100", "--container-memory", "96Mi"]);
    // Without the template's memory limit: the server's default applies.
    let repo = shop_repo(|t| t.replace("  memory:\n    limits: 256Mi\n    requests: 32Mi\n", ""));
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let id = ready_env(&s);
    let names: Vec<String> = docker(&["ps", "-a", "--filter", &format!("label=offshoot.env={id}"), "--format", "{{.Names}}"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(names.len() >= 3, "{names:?}");
    for name in &names {
        let inspect: serde_json::Value = serde_json::from_str(&docker(&["inspect", name])).expect("inspect");
        let h = &inspect[0]["HostConfig"];
        assert_eq!(h["SecurityOpt"], serde_json::json!(["no-new-privileges:true"]), "{name}");
        for cap in ["NET_RAW", "MKNOD", "AUDIT_WRITE", "SETFCAP"] {
            assert!(h["CapDrop"].as_array().is_some_and(|c| c.iter().any(|x| x == cap)), "{name}: {}", h["CapDrop"]);
        }
        assert!(h["CapAdd"].is_null(), "{name}: {}", h["CapAdd"]);
        assert_eq!(h["Privileged"], false, "{name}");
        assert_eq!(h["PidsLimit"], 100, "{name}");
        assert_eq!(h["Memory"], 96 << 20, "{name}");
        let mode = h["NetworkMode"].as_str().unwrap_or_default();
        assert!(mode == format!("offshoot-{id}") || mode == "none", "{name}: {mode}");
        for bind in h["Binds"].as_array().into_iter().flatten().filter_map(|b| b.as_str()) {
            let source = bind.split(':').next().unwrap_or_default();
            assert!(
                !source.starts_with('/') || source.starts_with(s.data.to_str().expect("utf-8")) || source.starts_with("/dev/shm/offshoot-"),
                "{name} mounts a host path: {bind}"
            );
        }
    }
    // From inside: no new privileges, no NET_RAW (capability 13) in the effective set.
    let (_, status) = sh(&s, &id, "web", "grep -E '^(NoNewPrivs|CapEff)' /proc/self/status");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:\t")).expect("CapEff");
    let caps = u64::from_str_radix(eff.trim(), 16).expect("hex");
    assert_eq!(caps & (1 << 13), 0, "NET_RAW is effective: {eff}");
    assert_ne!(caps & (1 << 0), 0, "CHOWN stays: {eff}");
    let (_, memory) = sh(&s, &id, "web", "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes");
    assert_eq!(memory.trim(), (96u64 << 20).to_string(), "{memory}");
    // A fork bomb stays in its container: past 100 processes, fork fails.
    let (_, bomb) = sh(&s, &id, "web", "i=0; while [ $i -lt 150 ]; do sleep 30 & i=$((i+1)); done 2>&1; echo done");
    assert!(bomb.contains("can't fork") || bomb.contains("Resource temporarily unavailable"), "{bomb}");
    s.json(&["env", "delete", &id, "--wait"]);
}

/// Two environments of one application: neither reaches the other's containers, by their
/// service names (each resolves its own) or by address.
#[test]
fn an_environment_cannot_reach_another_by_name_or_address() {
    let s = Server::new(None);
    let repo = shop_repo(|t| t);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let (a, b) = (ready_env(&s), ready_env(&s));
    let address = |env: &str, service: &str| {
        docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", &format!("offshoot-{env}-{service}")])
            .trim()
            .to_owned()
    };
    let (a_api, b_api) = (address(&a, "api"), address(&b, "api"));
    assert!(!a_api.is_empty() && !b_api.is_empty() && a_api != b_api);
    // Its own api, by name and by address.
    let (code, out) = sh(&s, &a, "web", "nc -w 2 api 8080 </dev/null && echo reached");
    assert!(code == 0 && out.contains("reached"), "{out}");
    let (_, out) = sh(&s, &a, "web", "nslookup api 2>&1");
    assert!(out.contains(&a_api) && !out.contains(&b_api), "{out}");
    // The other's: neither its container name nor its address.
    let (_, out) = sh(&s, &a, "web", &format!("nslookup offshoot-{b}-api 2>&1; nc -w 2 offshoot-{b}-api 8080 </dev/null && echo reached"));
    assert!(!out.contains("reached") && !out.contains(&b_api), "{out}");
    let (_, out) = sh(&s, &a, "web", &format!("nc -w 2 {b_api} 8080 </dev/null && echo reached"));
    assert!(!out.contains("reached"), "environment {a} reached {b}'s api at {b_api}: {out}");
    for id in [a, b] {
        s.json(&["env", "delete", &id, "--wait"]);
    }
}

/// Secret values are never shown: not by the CLI (human or JSON), not in an API response, a
/// dashboard page, a rendered manifest, the activity log or the server's log, though the
/// environment's containers get them; nor is the administrator's token in any of these. A
/// secret written in the repository's Environment Variables file is shown masked, and saving
/// the masked file back keeps it.
#[test]
fn no_secret_value_appears_in_any_output_response_page_or_log() {
    const IN_REPO: &str = "repo-secret-4f9a2c71";
    const SET: &str = "set-secret-8d1e7b05";
    const FILE: &str = "file-secret-c3a9e1d4";
    let s = Server::new(None);
    let repo = shop_repo(|t| t);
    let vars = repo.path().join(".release/environment_variables.yaml");
    let text = std::fs::read_to_string(&vars).expect("vars").replace("value: change-me", &format!("value: {IN_REPO}"));
    std::fs::write(&vars, text).expect("vars");
    for args in [vec!["add", "-A"], vec!["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "a secret"]] {
        assert!(std::process::Command::new("git").args(&args).current_dir(repo.path()).status().expect("git").success());
    }
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let set = |args: &[&str], value: &str| {
        let o = s.cli_stdin(args, value);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    let mut shown = vec![
        set(&["app", "secret", "set", "shop", "DB_PASSWORD", "--service", "api"], SET),
        set(&["app", "secret", "set", "shop", "tls.key", "--file"], FILE),
    ];
    let id = ready_env(&s);
    // The containers get them.
    let (_, inside) = sh(&s, &id, "api", "echo $API_TOKEN $DB_PASSWORD");
    assert_eq!(inside.trim(), format!("{IN_REPO} {SET}"));
    let commands: [&[&str]; 12] = [
        &["env", "show", &id],
        &["env", "list"],
        &["env", "render", &id],
        &["env", "logs", &id],
        &["env", "jobs", &id],
        &["app", "show", "shop"],
        &["app", "list"],
        &["app", "env-vars", "shop"],
        &["app", "template", "shop"],
        &["activity", "--limit", "1000"],
        &["status"],
        &["app", "deliveries", "shop"],
    ];
    for c in commands {
        for output in ["human", "json"] {
            let mut args = c.to_vec();
            args.extend(["--output", output]);
            let o = s.cli(&args);
            shown.push(format!("{args:?}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)));
        }
    }
    let token = s.token();
    for path in ["/api/v1/envs", &format!("/api/v1/envs/{id}"), "/api/v1/apps", "/api/v1/apps/shop", "/api/v1/activity?limit=1000"] {
        let head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}");
        shown.push(format!("{path}: {}", http_raw(s.api, &head, b"").unwrap_or_default()));
    }
    let cookie = dashboard_login(&s, &token);
    for page in ["/ui/envs", &format!("/ui/envs/{id}"), "/ui/apps", "/ui/apps/shop", "/ui/activity"] {
        let answer = http_raw(s.api, &format!("GET {page} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}"), b"").unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.1 200"), "{page}: {}", answer.lines().next().unwrap_or_default());
        shown.push(format!("{page}: {answer}"));
    }
    s.json(&["env", "delete", &id, "--wait"]);
    shown.push(format!("the server's log: {}", s.log()));
    let mut leaks = Vec::new();
    for text in &shown {
        for secret in [IN_REPO, SET, FILE, token.as_str()] {
            if text.contains(secret) {
                leaks.push(format!("`{secret}` in {}", text.chars().take(80).collect::<String>()));
            }
        }
    }
    assert!(leaks.is_empty(), "{leaks:#?}");
    // The Environment Variables file is shown masked, and saving what was shown keeps the value.
    let o = s.cli(&["app", "env-vars", "shop"]);
    let shown_file = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(shown_file.contains("value: \"[redacted]\""), "{shown_file}");
    let edited = repo.path().join("edited.yaml");
    std::fs::write(&edited, shown_file.replace("value: info", "value: debug")).expect("write");
    s.json(&["app", "env-vars", "shop", "--set-file", edited.to_str().expect("utf-8")]);
    let id = ready_env(&s);
    let (_, inside) = sh(&s, &id, "api", "echo $API_TOKEN $LOG_LEVEL");
    assert_eq!(inside.trim(), format!("{IN_REPO} debug"), "the secret kept, the edit made");
    s.json(&["env", "delete", &id, "--wait"]);
}

/// What builds are given: an image build gets only its `build.args` (none of the environment's
/// variables, secret or not), and a static build gets the variables of its own service, secret
/// ones included only when mapped to it (by the variables file or `app secret set --service`),
/// never another service's; neither ever gets the server's token.
#[test]
fn builds_get_no_secret_not_mapped_to_them_and_never_the_api_token() {
    const VARS: &str = "defaults:
- key: PLAIN_FOR_ALL
  value: plain-7a1c
services:
  api:
  - key: API_ONLY
    value: api-secret-5d2e9b
    secret: true
  web:
  - key: WEB_ONLY
    value: web-secret-0c8f3a
    secret: true
";
    const SET_FOR_API: &str = "set-for-api-91b4e6";
    let repo = repo(
        SPA_TEMPLATE,
        Some(VARS),
        &[
            (
                "api/Dockerfile",
                "FROM busybox:stable\nRUN mkdir /www && env > /www/build-env.txt && echo api > /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
            ),
            ("front-end/build.sh", "env > dist/env.txt\n"),
        ],
        &[],
    );
    let s = Server::new(None);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    s.json(&["app", "set", "spa", "--static-builder", "busybox:stable"]);
    let o = s.cli_stdin(&["app", "secret", "set", "spa", "SET_FOR_API", "--service", "api"], SET_FOR_API);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let env = s.json(&["env", "create", "spa", "--branch", "main", "--wait"]);
    assert_eq!(env["status"], "ready", "{env}");
    let id = env["id"].as_str().expect("id");
    let token = s.token();
    let get = |host: String, path: &str| {
        let (status, _, body) = fetch(s.router, "GET", &host, path, &[]);
        assert_eq!(status, 200, "{host}{path}");
        String::from_utf8_lossy(&body).into_owned()
    };
    // The api container itself has what is mapped to it: the builds are what is checked.
    let (_, inside) = sh(&s, id, "api", "echo $API_ONLY $SET_FOR_API");
    assert_eq!(inside.trim(), format!("api-secret-5d2e9b {SET_FOR_API}"));
    let image_build = get(format!("api-{id}.localhost"), "/build-env.txt");
    assert!(image_build.contains("PATH="), "the build's environment was written: {image_build}");
    for value in ["plain-7a1c", "api-secret-5d2e9b", "web-secret-0c8f3a", SET_FOR_API, &token] {
        assert!(!image_build.contains(value), "the image build was given `{value}`: {image_build}");
    }
    let static_build = get(format!("web-{id}.localhost"), "/env.txt");
    assert!(static_build.contains("PLAIN_FOR_ALL=plain-7a1c"), "{static_build}");
    assert!(static_build.contains("WEB_ONLY=web-secret-0c8f3a"), "mapped to the site: {static_build}");
    for value in ["api-secret-5d2e9b", SET_FOR_API, &token] {
        assert!(!static_build.contains(value), "the static build was given `{value}`: {static_build}");
    }
    s.json(&["env", "delete", id, "--wait"]);
}

/// Containers reach this machine only where they are given: the router (listening beyond
/// loopback here), the `--allow-host-port`s and their datasets' database servers (the dataset
/// tests read their clones through it); never the API, nor a service of the machine no app is
/// given. The reachable ports prove the path works: the others are refused by the firewall.
#[test]
fn containers_reach_only_the_host_services_they_are_given() {
    let listen = || {
        let l = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
        let port = l.local_addr().expect("addr").port().to_string();
        std::thread::spawn(move || for _ in l.incoming() {});
        port
    };
    let (not_given, given) = (listen(), listen());
    let s = Server::new_with(None, &["--listen", "0.0.0.0:0", "--router-listen", "0.0.0.0:0", "--allow-host-port", &given]);
    assert!(s.log().contains("host firewall: containers reach this machine only on the ports they are given"), "{}", s.log());
    let repo = shop_repo(|t| t);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let id = ready_env(&s);
    let reaches = |port: &str| {
        let (_, said) = sh(&s, &id, "api", &format!("nc -w 3 host.docker.internal {port} </dev/null && echo open || echo closed"));
        said.lines().last().unwrap_or_default().trim() == "open"
    };
    assert!(reaches(&s.router.to_string()), "the router is reached");
    assert!(reaches(&given), "an allowed port is reached");
    assert!(!reaches(&s.api.to_string()), "the API is reached from a container");
    assert!(!reaches(&not_given), "a service of the machine no app is given is reached");
    s.json(&["env", "delete", &id, "--wait"]);
}
