//! `offshoot doctor` against the real engine, real sockets, a real PostgreSQL and a real
//! running server: a machine that can run the server passes; each check fails, with its fix,
//! when what it checks is broken.

mod support;

use serde_json::Value;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};
use support::{Server, bin, free_port};

const PG: &str = "postgres://offshoot:offshoot@127.0.0.1:5432/postgres";

fn doctor(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(bin())
        .arg("doctor")
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("OFFSHOOT_DATABASE_URL")
        .output()
        .expect("run offshoot doctor")
}

/// The doctor on `dir`, with free API and router ports, then `extra`.
fn doctor_on_free_ports(dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Output {
    let (api, router) = (addr(free_port()), addr(free_port()));
    let mut args = vec!["--data-dir", dir.to_str().expect("utf-8"), "--listen", &api, "--router-listen", &router];
    args.extend_from_slice(extra);
    doctor(&args, envs)
}

fn report(o: &Output) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    v["checks"].as_array().expect("checks").clone()
}

fn find<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no check `{name}` in {checks:?}"))
}

fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

fn private_dir(path: &Path) {
    std::fs::create_dir_all(path).expect("mkdir");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
}

#[test]
fn a_machine_that_can_run_the_server_passes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    private_dir(&data);
    let (api, router) = (addr(free_port()), addr(free_port()));
    let o = doctor(
        &[
            "--listen",
            &api,
            "--router-listen",
            &router,
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--database-url",
            PG,
            "--output",
            "json",
        ],
        &[],
    );
    let checks = report(&o);
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap_or("")).collect();
    assert_eq!(
        names,
        ["engine", "images", "network-pool", "api-port", "router-port", "domain", "data-dir", "disk", "database", "certificates"]
    );
    let pool = find(&checks, "network-pool");
    assert!(
        pool["ok"] == true && pool["detail"].as_str().is_some_and(|d| d.starts_with("10.213.0.0/16: ") && d.contains("/24 networks free")),
        "{pool}"
    );
    for c in &checks {
        assert_eq!(c["ok"], true, "{c}");
        assert!(c["detail"].as_str().is_some_and(|d| !d.is_empty()), "{c}");
    }
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(find(&checks, "engine")["detail"].as_str().is_some_and(|d| d.contains("API 1.")), "{checks:?}");
    assert!(find(&checks, "images")["detail"].as_str().is_some_and(|d| d.contains("busybox:stable")), "{checks:?}");
    assert_eq!(find(&checks, "api-port")["detail"], format!("{api} is free"));
    let db = find(&checks, "database")["detail"].as_str().unwrap_or("").to_owned();
    assert!(db.starts_with("PostgreSQL ") && db.contains("offshoot:****@127.0.0.1"), "{db}");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("offshoot:offshoot@"), "the password is printed");
    assert!(find(&checks, "disk")["detail"].as_str().is_some_and(|d| d.contains("GiB free")), "{checks:?}");
}

#[test]
fn each_check_fails_with_its_fix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A port another program holds, an engine that is not there, a data directory that is a
    // file, a database that refuses the password, an image nobody built.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr").to_string();
    let data = tmp.path().join("data");
    std::fs::write(&data, "not a directory").expect("write");
    let o = doctor(
        &[
            "--listen",
            &taken_addr,
            "--router-listen",
            &addr(free_port()),
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--database-url",
            "postgres://offshoot:wrong@127.0.0.1:5432/postgres",
            "--output",
            "json",
        ],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(o.status.code(), Some(1));
    let checks = report(&o);
    failed_with(&checks, "engine", "unix:///nonexistent/docker.sock", "apt-get install docker.io");
    failed_with(&checks, "images", "not checked", "engine");
    failed_with(
        &checks,
        "api-port",
        "taken by another program",
        &format!("ss -ltnp 'sport = :{}'", taken.local_addr().expect("addr").port()),
    );
    failed_with(&checks, "data-dir", "is not a directory", "--data-dir");
    failed_with(&checks, "database", "password authentication failed", "user and password");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("wrong"), "the password is printed");
    assert_eq!(find(&checks, "router-port")["ok"], true);
    drop(taken);
    // Without a PostgreSQL URL, the SQLite file has nowhere to go.
    let o = doctor_on_free_ports(&data, &["--output", "json"], &[]);
    failed_with(&report(&o), "database", "its directory is not a directory", "data-dir");

    // With the engine back: a missing image.
    let d = tmp.path().join("d2");
    private_dir(&d);
    let o = doctor_on_free_ports(&d, &["--image", "offshoot-doctor/absent:1", "--output", "json"], &[]);
    assert_eq!(o.status.code(), Some(1));
    failed_with(&report(&o), "images", "not in the engine: offshoot-doctor/absent:1", "docker pull offshoot-doctor/absent:1");

    // A data directory others may write; then a secret key others may read.
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let o = doctor_on_free_ports(&shared, &["--output", "json"], &[]);
    assert_eq!(o.status.code(), Some(1));
    failed_with(&report(&o), "data-dir", "mode 0777", "chmod go-w");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::write(shared.join("secret.key"), "k").expect("write");
    std::fs::set_permissions(shared.join("secret.key"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let o = doctor_on_free_ports(&shared, &["--output", "json"], &[]);
    assert_eq!(o.status.code(), Some(1));
    failed_with(&report(&o), "data-dir", "secret.key (mode 0644)", "chmod 600");

    // The human form says the same, with the fix under the check.
    let o = doctor_on_free_ports(&shared, &[], &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.lines().any(|l| l.starts_with("FAIL  data-dir")), "{text}");
    assert!(text.contains("fix: `chmod 600"), "{text}");
    assert!(text.contains("1 check failed"), "{text}");
}

fn failed_with(checks: &[Value], name: &str, detail: &str, fix: &str) {
    let c = find(checks, name);
    assert_eq!(c["ok"], false, "{c}");
    assert!(c["detail"].as_str().is_some_and(|d| d.contains(detail)), "`{name}` detail lacks `{detail}`: {c}");
    assert!(c["fix"].as_str().is_some_and(|f| f.contains(fix)), "`{name}` fix lacks `{fix}`: {c}");
}

#[test]
fn a_running_server_is_recognised_on_its_ports() {
    let server = Server::new(None);
    let o = doctor(
        &[
            "--listen",
            &addr(server.api),
            "--router-listen",
            &addr(server.router),
            "--data-dir",
            server.data.to_str().expect("utf-8"),
            "--output",
            "json",
        ],
        &[],
    );
    let checks = report(&o);
    assert_eq!(o.status.code(), Some(0), "{checks:?}");
    for port in ["api-port", "router-port"] {
        let c = find(&checks, port);
        assert_eq!(c["ok"], true, "{c}");
        assert!(c["detail"].as_str().is_some_and(|d| d.contains("taken by a running Offshoot server")), "{c}");
        assert!(c["fix"].is_string(), "{c}");
    }
    let db = find(&checks, "database")["detail"].as_str().unwrap_or("").to_owned();
    assert!(db.starts_with("SQLite ") && db.contains("offshoot.db opens"), "{db}");
    assert!(find(&checks, "data-dir")["detail"].as_str().is_some_and(|d| d.contains("holds a server's state")), "{checks:?}");
}
