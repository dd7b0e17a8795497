//! The set-up scripts' gateway lookup (scripts/lib.sh), with stand-ins for `docker` and `ip` on
//! the PATH: engines report the Docker bridge's gateway in different places (Docker 20.10 may
//! report none in the bridge's IPAM config), and whichever answers, PostgreSQL's and MariaDB's
//! listen addresses come out valid; with no answer or a malformed one, nothing is written and
//! the script says what to do.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lib() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())).join("../../scripts/lib.sh")
}

/// A directory with stand-ins for `docker` and `ip` that answer from environment variables:
/// STUB_IPAM (the IPAM gateway), STUB_IF (docker0's address), STUB_ROUTE (a container's
/// `ip route`). Each prints an empty line when its variable is empty, as the real ones do.
fn stubs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).expect("write stub");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    write(
        "docker",
        r#"#!/bin/sh
case "$*" in
  *IPAM*) echo "$STUB_IPAM" ;;
  *bridge.name*) echo "docker0" ;;
  run*) [ -n "$STUB_ROUTE" ] && echo "$STUB_ROUTE" ;;
esac
exit 0
"#,
    );
    write(
        "ip",
        r#"#!/bin/sh
[ -n "$STUB_IF" ] || { echo 'Device "docker0" does not exist.' >&2; exit 1; }
echo "5: docker0    inet $STUB_IF/16 brd 172.17.255.255 scope global docker0\       valid_lft forever preferred_lft forever"
"#,
    );
    dir
}

/// Runs `script` (bash, with scripts/lib.sh sourced) with the stubs first on the PATH.
fn run(stubs: &Path, vars: &[(&str, &str)], script: &str) -> Output {
    let path = format!("{}:{}", stubs.display(), std::env::var("PATH").unwrap_or_default());
    Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail; . '{}'; {script}", lib().display()))
        .env("PATH", path)
        .env("STUB_IPAM", "")
        .env("STUB_IF", "")
        .env("STUB_ROUTE", "")
        .envs(vars.iter().copied())
        .output()
        .expect("run bash")
}

fn configure(vars: &[(&str, &str)]) -> (Output, tempfile::TempDir) {
    let stubs = stubs();
    let out = tempfile::tempdir().expect("tempdir");
    let o = run(
        stubs.path(),
        vars,
        &format!(
            "gw=$(find_gateway); write_pg_listen '{0}/conf.d/offshoot.conf' \"$gw\" >/dev/null; write_mariadb_bind '{0}/90-offshoot.cnf' \"$gw\" >/dev/null",
            out.path().display()
        ),
    );
    (o, out)
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs the lookup and the writes with the stubs answering `vars`; they must succeed. Returns
/// PostgreSQL's and MariaDB's files as written.
fn configured(vars: &[(&str, &str)]) -> (String, String) {
    let (o, out) = configure(vars);
    assert!(o.status.success(), "{}", text(&o));
    let read = |f: &str| std::fs::read_to_string(out.path().join(f)).expect("written");
    (read("conf.d/offshoot.conf"), read("90-offshoot.cnf"))
}

#[test]
fn a_bridge_without_an_ipam_gateway_falls_back_to_docker0() {
    let (pg, mariadb) = configured(&[("STUB_IPAM", ""), ("STUB_IF", "172.17.0.1")]);
    assert_eq!(pg, "listen_addresses = '127.0.0.1,172.17.0.1'\n");
    assert_eq!(mariadb, "[mysqld]\nbind-address = 127.0.0.1,172.17.0.1\n");
}

#[test]
fn the_ipam_gateway_comes_first_and_a_container_route_last() {
    let (pg, _) = configured(&[("STUB_IPAM", "172.20.0.1"), ("STUB_IF", "172.17.0.1")]);
    assert_eq!(pg, "listen_addresses = '127.0.0.1,172.20.0.1'\n");
    let (pg, _) = configured(&[("STUB_ROUTE", "default via 172.18.0.1 dev eth0 ")]);
    assert_eq!(pg, "listen_addresses = '127.0.0.1,172.18.0.1'\n");
    // A malformed IPAM answer is passed over, not written.
    let (pg, _) = configured(&[("STUB_IPAM", "172.17.0.1,"), ("STUB_IF", "172.17.0.1")]);
    assert_eq!(pg, "listen_addresses = '127.0.0.1,172.17.0.1'\n");
}

#[test]
fn no_gateway_anywhere_stops_with_a_fix_and_writes_nothing() {
    let (o, out) = configure(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("could not find the Docker bridge's gateway"), "{t}");
    assert!(t.contains("fix: "), "{t}");
    assert!(!out.path().join("conf.d/offshoot.conf").exists());
    assert!(!out.path().join("90-offshoot.cnf").exists());
}

#[test]
fn an_empty_or_malformed_address_is_refused_and_the_old_file_kept() {
    let stubs = stubs();
    let out = tempfile::tempdir().expect("tempdir");
    let conf = out.path().join("offshoot.conf");
    std::fs::write(&conf, "listen_addresses = '127.0.0.1,172.17.0.1'\n").expect("write");
    for bad in ["", "172.17.0.1,", "172.17.0", "172.17.0.256", "01.2.3.4", "1.2.3.4 5.6.7.8", "::1"] {
        let o = run(stubs.path(), &[], &format!("write_pg_listen '{}' '{bad}'", conf.display()));
        assert_eq!(o.status.code(), Some(1), "`{bad}` was accepted: {}", text(&o));
        assert!(text(&o).contains("is not an IPv4 address"), "{}", text(&o));
        assert_eq!(std::fs::read_to_string(&conf).expect("kept"), "listen_addresses = '127.0.0.1,172.17.0.1'\n");
    }
    // Rewriting the same content reports no change (no needless database restart).
    let o = run(stubs.path(), &[], &format!("write_pg_listen '{}' 172.17.0.1", conf.display()));
    assert!(o.status.success() && o.stdout.is_empty(), "{}", text(&o));
    let o = run(stubs.path(), &[], &format!("write_pg_listen '{}' 10.0.0.1", conf.display()));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "changed\n");
}

#[test]
fn every_script_passes_shellcheck() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())).join("../..");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(root.join("scripts")).expect("scripts").flatten().map(|e| e.path()).collect();
    scripts.extend([
        root.join(".ci/run"),
        root.join("examples/shop/api/orders.sh"),
        root.join("crates/offshoot-store/tests/fixtures/v0/make"),
    ]);
    assert!(scripts.len() >= 7, "{scripts:?}");
    let o = Command::new("shellcheck").arg("-x").args(&scripts).current_dir(&root).output();
    let o = match o {
        Ok(o) => o,
        Err(e) => panic!("shellcheck could not run ({e}): `bash scripts/services` installs it"),
    };
    assert!(o.status.success(), "{}", text(&o));
}
